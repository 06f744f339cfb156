"""Abaco's nonce scenarios: create, list, redeem limited and unlimited nonces.

A sequence, as in Abaco. Redeeming sends ``?x-nonce=ID`` and no token at all.
"""

from __future__ import annotations

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    check_nonce_fields,
    get_actor_id,
    refused,
    register,
)


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor (ported in test_actors): abaco_test_suite."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)
    await check_actor_is_ready(api.admin, actor["id"])


async def test_list_empty_nonce(api):
    """Ports test_list_empty_nonce."""
    actor_id = await get_actor_id(api.admin)
    assert basic_response_checks(await api.admin.get(f"/actors/{actor_id}/nonces")) == []


async def test_create_unlimited_nonce(api):
    """Ports test_create_unlimited_nonce: no body means EXECUTE, unlimited uses."""
    actor_id = await get_actor_id(api.admin)
    nonce = basic_response_checks(await api.admin.post(f"/actors/{actor_id}/nonces"))
    check_nonce_fields(
        nonce, actor_id=actor_id, level="EXECUTE", max_uses=-1, current_uses=0, remaining_uses=-1
    )
    assert nonce["last_use_time"] is None


async def test_create_limited_nonce(api):
    """Ports test_create_limited_nonce (a form, as Abaco's)."""
    actor_id = await get_actor_id(api.admin)
    answer = await api.admin.post(
        f"/actors/{actor_id}/nonces", data={"max_uses": 3, "level": "READ"}
    )
    check_nonce_fields(
        basic_response_checks(answer),
        actor_id=actor_id,
        level="READ",
        max_uses=3,
        current_uses=0,
        remaining_uses=3,
    )


async def test_list_nonces(api):
    """Ports test_list_nonces: both nonces are listed."""
    actor_id = await get_actor_id(api.admin)
    assert len(basic_response_checks(await api.admin.get(f"/actors/{actor_id}/nonces"))) == 2


async def test_invalid_method_list_nonces(api):
    """Ports test_invalid_method_list_nonces."""
    actor_id = await get_actor_id(api.admin)
    refused(await api.admin.put(f"/actors/{actor_id}/nonces"), 405, "Invalid HTTP method")


async def _nonce_with(api, actor_id: str, max_uses: int) -> str:
    nonces = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/nonces"))
    found = [n["id"] for n in nonces if n["max_uses"] == max_uses]
    assert len(found) == 1, nonces
    return str(found[0])


async def test_redeem_unlimited_nonce(api):
    """Ports test_redeem_unlimited_nonce: three reads and one message, each one use."""
    actor_id = await get_actor_id(api.admin)
    nonce_id = await _nonce_with(api, actor_id, -1)
    by_nonce = {"x-nonce": nonce_id}
    for path in ("", "/executions", "/messages"):
        basic_response_checks(await api.anonymous.get(f"/actors/{actor_id}{path}", params=by_nonce))
    nonce = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/nonces/{nonce_id}"))
    check_nonce_fields(
        nonce, actor_id=actor_id, level="EXECUTE", max_uses=-1, current_uses=3, remaining_uses=-1
    )
    assert nonce["last_use_time"]
    answer = await api.anonymous.post(
        f"/actors/{actor_id}/messages", params=by_nonce, data={"message": "test"}
    )
    basic_response_checks(answer)
    nonce = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/nonces/{nonce_id}"))
    check_nonce_fields(
        nonce, actor_id=actor_id, level="EXECUTE", max_uses=-1, current_uses=4, remaining_uses=-1
    )


async def test_redeem_limited_nonce(api):
    """Ports test_redeem_limited_nonce: a READ nonce cannot send a message (and that
    costs no use); three reads use it up; a fourth is refused."""
    actor_id = await get_actor_id(api.admin)
    nonce_id = await _nonce_with(api, actor_id, 3)
    by_nonce = {"x-nonce": nonce_id}
    path = f"/actors/{actor_id}/nonces/{nonce_id}"
    basic_response_checks(await api.anonymous.get(f"/actors/{actor_id}", params=by_nonce))
    check_nonce_fields(
        basic_response_checks(await api.admin.get(path)),
        actor_id=actor_id,
        level="READ",
        max_uses=3,
        current_uses=1,
        remaining_uses=2,
    )
    answer = await api.anonymous.post(
        f"/actors/{actor_id}/messages", params=by_nonce, data={"message": "test"}
    )
    refused(answer, 403, "Not authorized")
    for _ in range(2):
        basic_response_checks(await api.anonymous.get(f"/actors/{actor_id}", params=by_nonce))
    refused(
        await api.anonymous.get(f"/actors/{actor_id}", params=by_nonce),
        403,
        "No remaining uses left for this nonce",
    )
    check_nonce_fields(
        basic_response_checks(await api.admin.get(path)),
        actor_id=actor_id,
        level="READ",
        max_uses=3,
        current_uses=3,
        remaining_uses=0,
    )


async def test_invalid_method_get_nonce(api):
    """Ports test_invalid_method_get_nonce."""
    actor_id = await get_actor_id(api.admin)
    nonce_id = await _nonce_with(api, actor_id, 3)
    answer = await api.admin.post(f"/actors/{actor_id}/nonces/{nonce_id}")
    refused(answer, 405, "Invalid HTTP method")
