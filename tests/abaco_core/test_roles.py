"""Abaco's role-based access scenarios: users of the privileged, user and limited roles.

A sequence, as in Abaco, whose role tests run in a tenant of their own where each of
these users has only what it registers here (so each lists exactly one actor).
"""

from __future__ import annotations

import pytest

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import basic_response_checks, get_actor_id, refused, register

ROLE_TYPES = ["limited", "privileged", "user"]


@pytest.mark.parametrize("role", ROLE_TYPES)
async def test_other_users_can_create_basic_actor(api, role):
    """Ports test_other_users_can_create_basic_actor."""
    await register(api.by_role(role), image=ABACO_TEST, name=f"abaco_test_suite_{role}")


@pytest.mark.parametrize("role", ROLE_TYPES)
async def test_other_users_actor_list(api, role):
    """Ports test_other_users_actor_list: each user lists its own actor only."""
    listed = basic_response_checks(await api.by_role(role).get("/actors"))
    assert [a["name"] for a in listed] == [f"abaco_test_suite_{role}"]


@pytest.mark.parametrize("role", ROLE_TYPES)
async def test_other_users_get_actor(api, role):
    """Ports test_other_users_get_actor; and no user reads another's actor (403)."""
    http = api.by_role(role)
    actor_id = await get_actor_id(http, f"abaco_test_suite_{role}")
    basic_response_checks(await http.get(f"/actors/{actor_id}"))
    for other in ROLE_TYPES:
        if other != role:
            answer = await api.by_role(other).get(f"/actors/{actor_id}")
            refused(answer, 403, "you do not have access to this actor")


@pytest.mark.parametrize("role", ROLE_TYPES)
async def test_other_users_can_delete_basic_actor(api, role):
    """Ports test_other_users_can_delete_basic_actor."""
    http = api.by_role(role)
    actor_id = await get_actor_id(http, f"abaco_test_suite_{role}")
    basic_response_checks(await http.delete(f"/actors/{actor_id}"))
    assert basic_response_checks(await http.get("/actors")) == []


async def test_limited_user_cannot_create_priv_actor(api):
    """Ports test_limited_user_cannot_create_priv_actor: 403 with Abaco's message."""
    fields = {"image": ABACO_TEST, "name": "abaco_test_suite", "privileged": True}
    answer = await api.limited.post("/actors", data=fields)
    refused(answer, 403, "only admins and privileged users can make privileged actors")


async def test_priv_user_can_create_priv_actor(api):
    """Ports test_priv_user_can_create_priv_actor: the package's platform allows
    privileged actors (``[worker] allow_privileged = true``), so a privileged user makes
    one (a form, as Abaco's) and deletes it."""
    fields = {"image": ABACO_TEST, "name": "abaco_test_suite_priv_delete", "privileged": True}
    actor = basic_response_checks(await api.privileged.post("/actors", data=fields))
    assert actor["privileged"] is True
    basic_response_checks(await api.privileged.delete(f"/actors/{actor['id']}"))
    assert basic_response_checks(await api.privileged.get("/actors")) == []
