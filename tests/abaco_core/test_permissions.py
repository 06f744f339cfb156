"""Abaco's permission scenarios: the order of the levels, list, add and modify grants,
and what each level lets a user do.

A sequence, as in Abaco. Refusals are 403 (issue 9; Abaco answered 400).
"""

from __future__ import annotations

import pytest

from abaco.actors.models import PermissionLevel
from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    get_actor_id,
    refused,
    register,
)
from tests.abaco_core.conftest import ADMIN, PRIVILEGED, USER


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("NONE", "READ"),
        ("NONE", "EXECUTE"),
        ("NONE", "UPDATE"),
        ("READ", "EXECUTE"),
        ("READ", "UPDATE"),
        ("EXECUTE", "UPDATE"),
    ],
)
def test_permission_order(lower, higher):
    """Ports test_permission_NONE_READ, test_permission_NONE_EXECUTE,
    test_permission_NONE_UPDATE, test_permission_READ_EXECUTE, test_permission_READ_UPDATE
    and test_permission_EXECUTE_UPDATE."""
    assert PermissionLevel[lower] < PermissionLevel[higher]


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor and the grant of test_update_actor_other_user
    (ported in test_actors): abaco_test_suite, shared with UPDATE."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)
    grant = {"user": PRIVILEGED, "level": "UPDATE"}
    basic_response_checks(await api.admin.post(f"/actors/{actor['id']}/permissions", data=grant))
    await check_actor_is_ready(api.admin, actor["id"])


async def test_list_permissions(api):
    """Ports test_list_permissions: the owner and the user it was shared with."""
    actor_id = await get_actor_id(api.admin)
    levels = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/permissions"))
    assert levels == {ADMIN: "UPDATE", PRIVILEGED: "UPDATE"}


async def test_invalid_method_list_permissions(api):
    """Ports test_invalid_method_list_permissions."""
    actor_id = await get_actor_id(api.admin)
    refused(await api.admin.put(f"/actors/{actor_id}/permissions"), 405, "Invalid HTTP method")


async def test_add_permissions(api):
    """Ports test_add_permissions."""
    actor_id = await get_actor_id(api.admin)
    grant = {"user": "tester", "level": "UPDATE"}
    basic_response_checks(await api.admin.post(f"/actors/{actor_id}/permissions", data=grant))
    levels = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/permissions"))
    assert len(levels) == 3
    assert levels["tester"] == "UPDATE"


async def test_modify_user_perissions(api):
    """Ports test_modify_user_perissions: a second grant replaces the first."""
    actor_id = await get_actor_id(api.admin)
    grant = {"user": "tester", "level": "READ"}
    basic_response_checks(await api.admin.post(f"/actors/{actor_id}/permissions", data=grant))
    levels = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/permissions"))
    assert len(levels) == 3
    assert levels["tester"] == "READ"


async def _attempts(api, actor_id: str) -> dict[str, int]:
    """What the plain user gets for a read, a message and an update of the actor."""
    user = api.user
    read = await user.get(f"/actors/{actor_id}")
    execute = await user.post(f"/actors/{actor_id}/messages", data={"message": "hi"})
    update = await user.put(f"/actors/{actor_id}", json={"description": "changed"})
    return {"read": read.status_code, "execute": execute.status_code, "update": update.status_code}


@pytest.mark.parametrize(
    ("level", "allowed"),
    [
        ("READ", {"read"}),
        ("EXECUTE", {"read", "execute"}),
        ("UPDATE", {"read", "execute", "update"}),
        ("NONE", set()),
    ],
)
async def test_permission_matrix(api, level, allowed):
    """The rules behind Abaco's permission tests, level by level for one user: READ
    reads, EXECUTE also sends messages, UPDATE also changes the actor, NONE revokes; a
    refusal is 403 with Abaco's message, and a user without READ does not see the actor
    in its list."""
    actor_id = await get_actor_id(api.admin)
    grant = {"user": USER, "level": level}
    basic_response_checks(await api.admin.post(f"/actors/{actor_id}/permissions", json=grant))
    statuses = await _attempts(api, actor_id)
    assert {what for what, status in statuses.items() if status == 200} == allowed, statuses
    assert all(status == 403 for what, status in statuses.items() if what not in allowed)
    if "read" not in allowed:
        refused(await api.user.get(f"/actors/{actor_id}"), 403, "you do not have access")
    listed = basic_response_checks(await api.user.get("/actors"))
    assert [a["id"] for a in listed] == ([actor_id] if allowed else [])
