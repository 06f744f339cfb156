"""The actor routes over real HTTP: Abaco's fields, strict input, permissions."""

from __future__ import annotations

import attrs
import httpx
import pytest

from abaco.api import create_app, serve_api
from abaco.auth import Role
from abaco.channels import open_hub
from abaco.control import PlaceWorker, scheduler_inbox
from tests.api._helpers import IMAGE, create_actor, push_bundle, user_client

ABACO_ACTOR_FIELDS = {
    "id", "name", "owner", "image", "description", "default_environment", "status",
    "status_message", "stateless", "type", "token", "hints", "link", "webhook",
    "max_workers", "mem_limit", "max_cpus", "use_container_uid", "privileged", "queue",
    "log_ex", "cron_schedule", "cron_on", "cron_next_ex", "mounts", "uid", "gid",
    "revision", "tenant", "api_server", "create_time", "last_update_time",
}  # fmt: skip


@pytest.fixture
async def image(client, tmp_path):
    return await push_bundle(client, tmp_path)


async def test_a_request_without_a_valid_token_is_a_401_envelope(api_url):
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        missing = await anonymous.get("/actors")
        wrong = await anonymous.get("/actors", headers={"Authorization": "Bearer nope"})
        basic = await anonymous.get("/actors", headers={"Authorization": "Basic eDp5"})
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.json()["status"] == "error"


async def test_an_actor_is_created_with_abacos_fields_and_asks_for_a_worker(
    client, image, platform_redis, settings
):
    actor = await create_actor(client, name="hello", default_environment={"A": "1"})
    assert set(actor) >= ABACO_ACTOR_FIELDS
    assert actor["status"] == "SUBMITTED"
    assert actor["owner"] == settings.auth.admin_user
    assert actor["revision"] == 1
    assert actor["_links"]["executions"].endswith(f"/actors/{actor['id']}/executions")
    async with open_hub(platform_redis, namespace=settings.redis.key_prefix) as hub:
        delivery = await scheduler_inbox(hub, settings.redis.key_prefix).get(timeout=2)
    command = PlaceWorker.from_wire(delivery.message)
    assert command.actor_id == actor["id"]
    workers = (await client.get(f"/actors/{actor['id']}/workers")).json()["result"]
    assert [w["id"] for w in workers] == [command.worker_id]
    assert workers[0]["status"] == "REQUESTED"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"image": IMAGE, "colour": "red"}, "unknown fields ['colour']"),
        ({"image": 7}, "expected a string"),
        ({"image": IMAGE, "stateless": "yes"}, "expected a boolean"),
        ({"image": IMAGE, "max_workers": -1}, "max_workers"),
        ({"image": IMAGE, "default_environment": {"A": 1}}, "expected a string"),
        ({"image": IMAGE, "hints": ["{x}"]}, "Hints must be simple"),
        ({"image": IMAGE, "type": "video"}, "type"),
        ({"image": IMAGE, "mem_limit": "lots"}, "mem_limit"),
        ({"name": "no image"}, "image is required"),
        ({"image": "org.example/absent:1.0.0"}, "no such bundle"),
        ({"image": "not a reference"}, "image"),
        ([IMAGE], "expected a JSON object"),
    ],
)
async def test_a_bad_actor_description_is_a_400_that_says_what_is_wrong(client, image, body, says):
    response = await client.post("/actors", json=body)
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert (await client.get("/actors")).json()["result"] == []


async def test_malformed_json_and_an_empty_body_are_400s(client, image):
    for content in (b"{not json", b"", b"\xff\xfe"):
        response = await client.post(
            "/actors", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["status"] == "error"


async def test_get_list_update_and_delete_an_actor(client, image, tmp_path):
    actor = await create_actor(client, name="one", description="first")
    other = await create_actor(client, name="two")
    listed = (await client.get("/actors")).json()["result"]
    assert [a["id"] for a in listed] == sorted([actor["id"], other["id"]])
    page = (await client.get("/actors", params={"limit": 1, "offset": 1})).json()["result"]
    assert [a["id"] for a in page] == [listed[1]["id"]]

    response = await client.put(f"/actors/{actor['id']}", json={"description": "changed"})
    assert response.status_code == 200, response.text
    same_image = response.json()["result"]
    assert (same_image["description"], same_image["revision"]) == ("changed", 1)
    assert same_image["name"] == "one"  # left out: kept

    newer = await push_bundle(client, tmp_path / "v2", "2.0.0")
    updated = (await client.put(f"/actors/{actor['id']}", json={"image": newer})).json()
    assert (updated["result"]["revision"], updated["result"]["status"]) == (2, "SUBMITTED")

    assert (await client.delete(f"/actors/{actor['id']}")).status_code == 200
    gone = await client.get(f"/actors/{actor['id']}")
    assert gone.status_code == 404
    assert gone.json()["message"] == f"No actor found with identifier: {actor['id']}."


async def test_permissions_read_execute_update_and_none(
    client, image, platform_redis, settings, api_url
):
    alice = await user_client(platform_redis, settings, api_url, "alice")
    bob = await user_client(platform_redis, settings, api_url, "bob")
    async with alice, bob:
        actor = await create_actor(alice, name="alices")
        assert actor["owner"] == "alice"
        path = f"/actors/{actor['id']}"

        async def bob_can() -> tuple[int, int, int]:
            read = await bob.get(path)
            send = await bob.post(f"{path}/messages", json={"message": "hi"})
            update = await bob.put(path, json={"description": "bob was here"})
            return read.status_code, send.status_code, update.status_code

        assert await bob_can() == (403, 403, 403)
        assert [a["id"] for a in (await bob.get("/actors")).json()["result"]] == []
        for level, expected in [
            ("READ", (200, 403, 403)),
            ("EXECUTE", (200, 200, 403)),
            ("UPDATE", (200, 200, 200)),
            ("NONE", (403, 403, 403)),
        ]:
            grant = await alice.post(f"{path}/permissions", json={"user": "bob", "level": level})
            assert grant.status_code == 200, grant.text
            assert await bob_can() == expected, level
        world = await alice.post(
            f"{path}/permissions", json={"user": "ABACO_WORLD", "level": "READ"}
        )
        assert world.json()["result"] == {"ABACO_WORLD": "READ", "alice": "UPDATE"}
        assert (await bob.get(path)).status_code == 200
        refused = await bob.get(path + "/permissions")
        assert refused.status_code == 200  # READ shows the permissions
        bad_level = await alice.post(f"{path}/permissions", json={"user": "bob", "level": "ALL"})
        assert bad_level.status_code == 400
        assert (await client.get(path)).status_code == 200  # admins see everything


async def test_only_admins_and_privileged_users_set_reserved_fields(
    client, image, platform_redis, settings, api_url
):
    for role, allowed in [(Role.LIMITED, False), (Role.USER, False), (Role.PRIVILEGED, True)]:
        user = await user_client(platform_redis, settings, api_url, f"u-{role}", role)
        async with user:
            response = await user.post("/actors", json={"image": IMAGE, "max_workers": 3})
        assert (response.status_code == 200) is allowed, (role, response.text)
        if not allowed:
            assert response.status_code == 403
            assert response.json()["message"] == (
                "Not authorized -- only admins and privileged users can set max workers."
            )


async def test_privileged_actors_are_refused(client, image):
    response = await client.post("/actors", json={"image": IMAGE, "privileged": True})
    assert response.status_code == 400
    assert "privileged" in response.json()["message"]


async def test_a_stateful_actors_state_can_be_set_and_read(client, image):
    stateful = await create_actor(client, stateless=False)
    stateless = await create_actor(client)
    path = f"/actors/{stateful['id']}/state"
    assert (await client.get(path)).json()["result"] == {"state": {}}
    assert (await client.post(path, json={"count": 3})).status_code == 200
    assert (await client.get(path)).json()["result"] == {"state": {"count": 3}}
    refused = await client.post(f"/actors/{stateless['id']}/state", json={"a": 1})
    assert refused.status_code == 404
    assert refused.json()["message"] == "actor is stateless."
    too_many = await client.put(f"/actors/{stateful['id']}", json={"max_workers": 2})
    assert too_many.status_code == 400


async def test_workers_num_makes_sure_there_are_n(client, image, platform_redis, settings, api_url):
    actor = await create_actor(client)
    path = f"/actors/{actor['id']}/workers"
    first = await client.post(path, json={"num": 3})
    assert first.json()["message"] == (
        "Scheduled 2 new worker(s) to start. Previously, there were 1 workers."
    )
    again = await client.post(path, json={"num": 2})
    assert again.json()["message"] == f"Actor {actor['id']} already had 2 worker(s)."
    workers = (await client.get(path)).json()["result"]
    assert len(workers) == 3
    one = workers[0]["id"]
    assert (await client.get(f"{path}/{one}")).json()["result"]["id"] == one
    assert (await client.delete(f"{path}/{one}")).status_code == 200
    assert (await client.get(f"{path}/{one}")).json()["result"]["status"] == "SHUTDOWN_REQUESTED"
    assert (await client.get(f"{path}/nope")).status_code == 404
    assert (await client.post(path, json={"num": "3"})).status_code == 400
    user = await user_client(platform_redis, settings, api_url, "someone")
    async with user:
        mine = await create_actor(user)
        refused = await user.post(f"/actors/{mine['id']}/workers", json={"num": 2})
    assert refused.status_code == 403


async def test_the_actor_quota_and_the_request_rate_answer_429(settings, tmp_path, platform_redis):
    strict = attrs.evolve(
        settings, api=attrs.evolve(settings.api, max_actors_per_user=1, requests_per_second=5)
    )
    from abaco.auth import admin_token

    headers = {"Authorization": f"Bearer {admin_token(strict)}"}
    async with (
        serve_api(create_app(strict), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, headers=headers) as http,
    ):
        await push_bundle(http, tmp_path)
        assert (await http.post("/actors", json={"image": IMAGE})).status_code == 200
        over = await http.post("/actors", json={"image": IMAGE})
        assert over.status_code == 429
        statuses = [(await http.get("/actors")).status_code for _ in range(10)]
    assert 429 in statuses
