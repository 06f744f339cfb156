"""Abaco's registration API scenarios: register, list, get, state, invalid input, update.

A sequence, as in Abaco: the actors registered first are used by the tests after them.
Bodies go as forms or JSON as Abaco's tests send each (most are forms).
"""

from __future__ import annotations

import pytest

from tests.abaco_core._bundles import ABACO_TEST, ABACO_TEST2, TEST, WC
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    get_actor_id,
    refused,
    register,
    remove_all_actors,
    response_format,
)
from tests.abaco_core.conftest import ADMIN, LIMITED, PRIVILEGED


async def test_list_actors(api):
    """Ports test_list_actors: a new tenant has no actors."""
    assert basic_response_checks(await api.admin.get("/actors")) == []


async def test_invalid_method_list_actors(api):
    """Ports test_invalid_method_list_actors: PUT /actors is a 405 in the envelope."""
    refused(await api.admin.put("/actors"), 405, "Invalid HTTP method")


async def test_list_nonexistent_actor(api):
    """Ports test_list_nonexistent_actor."""
    refused(await api.admin.get("/actors/bad_actor_id"), 404)


async def test_register_actor(api):
    """Ports test_register_actor: a stateful actor, owned by the caller."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)
    assert actor["owner"] == ADMIN
    assert actor["stateless"] is False


async def test_register_stateless_actor(api):
    """Ports test_register_stateless_actor: stateless is the default."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite_statelesss")
    assert actor["owner"] == ADMIN
    assert actor["stateless"] is True


async def test_register_hints_actor(api):
    """Ports test_register_hints_actor: hints are free-form tags, kept as given."""
    hints = ["sync", "test", "hint_1"]
    actor = await register(api.admin, image=WC, name="abaco_test_suite_hints", hints=hints)
    assert actor["owner"] == ADMIN
    assert actor["hints"] == hints


async def test_register_actor_limited_user(api):
    """Ports test_register_actor_limited_user: a limited user may register a plain actor."""
    actor = await register(api.limited, image=TEST, name="abaco_test_suite_limited_user")
    assert actor["owner"] == LIMITED


async def test_invalid_method_get_actor(api):
    """Ports test_invalid_method_get_actor: POST /actors/ID is a 405 in the envelope."""
    actor_id = await get_actor_id(api.admin)
    refused(await api.admin.post(f"/actors/{actor_id}"), 405, "Invalid HTTP method")


async def test_list_actor(api):
    """Ports test_list_actor."""
    actor_id = await get_actor_id(api.admin)
    actor = basic_response_checks(await api.admin.get(f"/actors/{actor_id}"))
    for field in ("description", "owner", "create_time", "last_update_time"):
        assert field in actor
    assert actor["image"] == ABACO_TEST
    assert actor["name"] == "abaco_test_suite"
    assert actor["id"] == actor_id


async def test_list_actor_state(api):
    """Ports test_list_actor_state."""
    actor_id = await get_actor_id(api.admin)
    assert "state" in basic_response_checks(await api.admin.get(f"/actors/{actor_id}/state"))


async def test_update_actor_state_string(api):
    """Ports test_update_actor_state_string: the answer shows the new state."""
    actor_id = await get_actor_id(api.admin)
    answer = basic_response_checks(await api.admin.post(f"/actors/{actor_id}/state", json="abc"))
    assert answer["state"] == "abc"


async def test_update_actor_state_dict(api):
    """Ports test_update_actor_state_dict: a JSON object state reads back as posted."""
    actor_id = await get_actor_id(api.admin)
    state = {"foo": "abc", "bar": 1, "baz": True}
    basic_response_checks(await api.admin.post(f"/actors/{actor_id}/state", json=state))
    answer = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/state"))
    assert answer["state"] == state


async def test_register_without_image(api):
    """Ports test_register_without_image (an empty JSON object rather than an empty form)."""
    refused(await api.admin.post("/actors", json={}), 400, "image")


@pytest.mark.parametrize(
    ("field", "value"),
    [("stateless", "abcd"), ("use_container_uid", "abcd"), ("default_environment", "abcd")],
)
async def test_register_with_invalid_field(api, field, value):
    """Ports test_register_with_invalid_stateless, test_register_with_invalid_container_uid
    and test_register_with_invalid_def_env: a 400 naming the field."""
    fields = {"image": TEST, "name": "abaco_test_suite_invalid", "stateless": False}
    refused(await api.admin.post("/actors", json={**fields, field: value}), 400, field)


async def test_cant_register_max_workers_stateful(api):
    """Ports test_cant_register_max_workers_stateful."""
    fields = {"image": TEST, "name": "abaco_test_suite_invalid", "stateless": False}
    answer = await api.admin.post("/actors", json={**fields, "max_workers": 3})
    refused(answer, 400, "stateful actors can only have 1 worker")


async def test_register_with_put(api):
    """Ports test_register_with_put: PUT /actors registers nothing (405)."""
    answer = await api.admin.put("/actors", data={"image": TEST})
    response_format(answer)
    assert answer.status_code == 405


async def test_cant_update_stateless_actor_state(api):
    """Ports test_cant_update_stateless_actor_state (404 "actor is stateless.", as Abaco)."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_statelesss")
    answer = await api.admin.post(f"/actors/{actor_id}/state", data={"state": "abc"})
    refused(answer, 404, "actor is stateless")


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("max_workers", 3, "set max workers"),
        ("max_cpus", 3000000000, "set max CPUs"),
        ("mem_limit", "3g", "set mem limit"),
    ],
)
async def test_cant_set_limited(api, field, value, what):
    """Ports test_cant_set_max_workers_limited, test_cant_set_max_cpus_limited and
    test_cant_set_mem_limit_limited: 403 (Abaco: 400) with Abaco's message."""
    fields = {"image": TEST, "name": "abaco_test_suite_invalid", field: value}
    answer = await api.limited.post("/actors", json=fields)
    refused(answer, 403, f"only admins and privileged users can {what}")


@pytest.mark.parametrize(
    "name", ["abaco_test_suite", "abaco_test_suite_hints", "abaco_test_suite_statelesss"]
)
async def test_actor_is_ready(api, name):
    """Ports test_basic_actor_is_ready, test_hints_actor_is_ready and
    test_stateless_actor_is_ready: each registered actor gets a worker and is READY."""
    await check_actor_is_ready(api.admin, await get_actor_id(api.admin, name))


async def test_update_actor(api):
    """Ports test_update_actor: a new image; the name and id stay."""
    actor_id = await get_actor_id(api.admin)
    update = {"image": ABACO_TEST2, "stateless": False}
    actor = basic_response_checks(await api.admin.put(f"/actors/{actor_id}", data=update))
    assert "description" in actor
    assert actor["image"] == ABACO_TEST2
    assert actor["name"] == "abaco_test_suite"
    assert actor["id"] == actor_id


async def test_update_actor_other_user(api):
    """Ports test_update_actor_other_user: a user granted UPDATE updates the actor; the
    owner stays, the update time moves."""
    actor_id = await get_actor_id(api.admin)
    original = basic_response_checks(await api.admin.get(f"/actors/{actor_id}"))
    grant = {"user": PRIVILEGED, "level": "UPDATE"}
    basic_response_checks(await api.admin.post(f"/actors/{actor_id}/permissions", data=grant))
    update = {"image": ABACO_TEST2, "stateless": False}
    actor = basic_response_checks(await api.privileged.put(f"/actors/{actor_id}", data=update))
    assert "description" in actor
    assert actor["image"] == ABACO_TEST2
    assert actor["name"] == "abaco_test_suite"
    assert actor["id"] == actor_id
    assert actor["owner"] == original["owner"] == ADMIN
    assert actor["last_update_time"] != original["last_update_time"]


async def test_limited_remove_final_actors(api):
    """Ports test_limited_remove_final_actors: the limited user deletes its actors (run
    before the admin's clean-up here, so that it has some to delete)."""
    assert len(basic_response_checks(await api.limited.get("/actors"))) == 1
    await remove_all_actors(api.limited)
    # The admin still sees its own.
    assert len(basic_response_checks(await api.admin.get("/actors"))) == 3


async def test_remove_final_actors(api):
    """Ports test_remove_final_actors (without Abaco's 60 s sleep)."""
    await remove_all_actors(api.admin)
