"""Abaco's roles over real HTTP: what limited and plain users may not set, and privileged.

Ports test_register_actor_limited_user, test_cant_set_{max_workers,max_cpus,mem_limit}_limited,
test_limited_user_cannot_create_priv_actor, test_priv_user_can_create_priv_actor and the
test_other_users_* scenarios of Abaco's tests/test_abaco_core.py.
"""

from __future__ import annotations

import attrs
import pytest

from abaco.api import create_app, serve_api
from abaco.auth import Role
from tests.api._helpers import IMAGE, create_actor, push_bundle, user_client

_ONLY = "Not authorized -- only admins and privileged users can"

#: Abaco's refusals, field by field (actors/auth.py check_privileged).
RESERVED = {
    "privileged": (True, f"{_ONLY} make privileged actors."),
    "max_workers": (3, f"{_ONLY} set max workers."),
    "max_cpus": (3000000000, f"{_ONLY} set max CPUs."),
    "mem_limit": ("3g", f"{_ONLY} set mem limit."),
    "queue": ("special", f"{_ONLY} set queue."),
}


@pytest.fixture
def settings(settings):
    """Privileged actors allowed, so that the role rules are what decides."""
    return attrs.evolve(settings, worker=attrs.evolve(settings.worker, allow_privileged=True))


@pytest.fixture
async def image(client, tmp_path):
    return await push_bundle(client, tmp_path)


@pytest.fixture
async def users(platform_redis, settings, api_url):
    """One client per role (besides the admin's ``client``), each a different user."""
    clients = {
        role: await user_client(platform_redis, settings, api_url, f"test{role.value}", role)
        for role in (Role.PRIVILEGED, Role.USER, Role.LIMITED)
    }
    yield clients
    for http in clients.values():
        await http.aclose()


async def test_register_actor_limited_user(users, image):
    actor = await create_actor(users[Role.LIMITED], name="abaco_test_suite_limited_user")
    assert (actor["owner"], actor["image"]) == ("testlimited", IMAGE)
    assert actor["name"] == "abaco_test_suite_limited_user"
    assert "description" in actor
    assert actor["id"]


@pytest.mark.parametrize("field", sorted(RESERVED))
@pytest.mark.parametrize("role", [Role.LIMITED, Role.USER])
async def test_limited_and_plain_users_cannot_set_reserved_fields(users, image, role, field):
    value, message = RESERVED[field]
    http = users[role]
    refused = await http.post("/actors", json={"image": IMAGE, "name": "invalid", field: value})
    assert refused.status_code == 403, refused.text
    assert refused.json() == {
        "status": "error",
        "message": message,
        "result": None,
        "version": refused.json()["version"],
    }
    # Nor by an update of an actor of their own.
    actor = await create_actor(http)
    update = await http.put(f"/actors/{actor['id']}", json={"image": IMAGE, field: value})
    assert (update.status_code, update.json()["message"]) == (403, message)


async def test_a_false_or_zero_reserved_field_is_not_a_request_for_it(users, image):
    # Abaco refuses only what is set: privileged false, max_workers 0 are allowed.
    actor = await create_actor(users[Role.LIMITED], privileged=False, max_workers=0)
    assert (actor["privileged"], actor["max_workers"]) == (False, 0)


@pytest.mark.parametrize("role", [Role.PRIVILEGED, "admin"])
async def test_privileged_users_and_admins_may_set_every_reserved_field(users, client, image, role):
    http = client if role == "admin" else users[role]
    fields = {name: value for name, (value, _) in RESERVED.items()}
    actor = await create_actor(http, name="abaco_test_suite_priv_delete", **fields)
    assert {name: actor[name] for name in fields} == fields
    deleted = await http.delete(f"/actors/{actor['id']}")
    assert deleted.status_code == 200, deleted.text


async def test_privileged_actors_are_refused_unless_the_platform_allows_them(
    settings, platform_redis, tmp_path
):
    closed = attrs.evolve(settings, worker=attrs.evolve(settings.worker, allow_privileged=False))
    async with serve_api(create_app(closed), "127.0.0.1", 0) as url:
        http = await user_client(platform_redis, closed, url, "priv", Role.PRIVILEGED)
        async with http:
            await push_bundle(http, tmp_path)
            response = await http.post("/actors", json={"image": IMAGE, "privileged": True})
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Invalid actor description: privileged actors are not allowed on this platform "
        "([worker] allow_privileged is false)."
    )


async def test_other_users_see_and_delete_only_their_own_actors(users, client, image):
    mine = {role: await create_actor(http, name=f"suite_{role}") for role, http in users.items()}
    for role, http in users.items():
        listed = (await http.get("/actors")).json()["result"]
        assert [a["id"] for a in listed] == [mine[role]["id"]], role
        for other, actor in mine.items():
            seen = await http.get(f"/actors/{actor['id']}")
            assert seen.status_code == (200 if other == role else 403), (role, other)
    assert len((await client.get("/actors")).json()["result"]) == 3  # the admin sees all
    for role, http in users.items():
        assert (await http.delete(f"/actors/{mine[role]['id']}")).status_code == 200


@pytest.mark.parametrize("role", [Role.PRIVILEGED, Role.USER, Role.LIMITED])
async def test_only_admins_manage_workers_and_tokens(users, image, role):
    http = users[role]
    actor = await create_actor(http)
    workers = await http.post(f"/actors/{actor['id']}/workers", json={"num": 2})
    assert (workers.status_code, workers.json()["message"]) == (
        403,
        "Not authorized -- only admins are authorized to update workers.",
    )
    token = await http.post("/tokens", json={"user": "mallory", "role": "admin"})
    assert token.status_code == 403
