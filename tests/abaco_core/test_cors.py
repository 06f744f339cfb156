"""Abaco's CORS scenarios: CORS headers on the actors, messages and workers collections.

The platform runs with the default ``[api] cors_origins = "*"``, as Abaco applied
flask-cors' defaults. A preflight is sent with the caller's token, as Abaco's tests send
it, and without one, as browsers send it.
"""

from __future__ import annotations

import pytest

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import basic_response_checks, get_actor_id, register

ORIGIN = {"Origin": "http://example.com"}
PREFLIGHT = {
    **ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "X-Requested-With",
}


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor (ported in test_actors): abaco_test_suite."""
    await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)


async def _path(api, collection: str) -> str:
    if collection == "actors":
        return "/actors"
    return f"/actors/{await get_actor_id(api.admin)}/{collection}"


@pytest.mark.parametrize("collection", ["actors", "messages", "workers"])
async def test_cors_list(api, collection):
    """Ports test_cors_list_actors, test_cors_list_messages and test_cors_list_workers."""
    response = await api.admin.get(await _path(api, collection), headers=ORIGIN)
    basic_response_checks(response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("caller", ["admin", "anonymous"])
@pytest.mark.parametrize("collection", ["actors", "messages", "workers"])
async def test_cors_options_list(api, collection, caller):
    """Ports test_cors_options_list_actors, test_cors_options_list_messages and
    test_cors_options_list_workers."""
    http = getattr(api, caller)
    response = await http.options(await _path(api, collection), headers=PREFLIGHT)
    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "x-requested-with" in response.headers["Access-Control-Allow-Headers"].lower()
