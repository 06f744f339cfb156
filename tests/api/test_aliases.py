"""Aliases over real HTTP: CRUD, unique names, reserved names, use in actor routes, permissions."""

from __future__ import annotations

import pytest

from abaco.actors.ids import new_id
from tests.api._helpers import create_actor, push_bundle, user_client


@pytest.fixture
async def actor(client, tmp_path):
    await push_bundle(client, tmp_path)
    return await create_actor(client, name="hello")


@pytest.fixture
async def users(platform_redis, settings, api_url):
    """alice and bob, two plain users (closed at the end)."""
    made = {}
    for name in ("alice", "bob"):
        made[name] = await user_client(platform_redis, settings, api_url, name)
    yield made
    for http in made.values():
        await http.aclose()


async def _alias(http, alias, actor_id, **fields):
    response = await http.post(
        "/actors/aliases", json={"alias": alias, "actor_id": actor_id, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_alias_routes_are_not_taken_for_actor_routes(client, actor):
    listed = await client.get("/actors/aliases")
    assert listed.status_code == 200, listed.text
    assert listed.json()["result"] == []
    for path in ("/actors/aliases/nobody", "/actors/aliases/nobody/permissions"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["message"] == "No alias found: nobody."
    document = (await client.get("/openapi.json")).json()
    for path in (
        "/actors/aliases",
        "/actors/aliases/{alias}",
        "/actors/aliases/{alias}/permissions",
        "/actors/aliases/{alias}/nonces",
        "/actors/aliases/{alias}/nonces/{nonce_id}",
    ):
        assert path in document["paths"]
    body = document["paths"]["/actors/aliases"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"alias", "actor_id"}


async def test_an_alias_is_created_read_listed_repointed_and_deleted(client, actor, settings):
    other = await create_actor(client, name="other")
    made = await _alias(client, "jane", actor["id"], description="the hello actor")
    assert made["alias"] == "jane"
    assert made["actor_id"] == actor["id"]
    assert made["owner"] == settings.auth.admin_user
    assert made["description"] == "the hello actor"
    assert made["_links"]["actor"].endswith(f"/actors/{actor['id']}")
    assert (await client.get("/actors/aliases/jane")).json()["result"] == made
    assert [a["alias"] for a in (await client.get("/actors/aliases")).json()["result"]] == ["jane"]

    moved = await client.put("/actors/aliases/jane", json={"actor_id": other["id"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["result"]["actor_id"] == other["id"]
    assert moved.json()["result"]["description"] == "the hello actor"
    assert (await client.get("/actors/jane")).json()["result"]["id"] == other["id"]

    deleted = await client.delete("/actors/aliases/jane")
    assert deleted.status_code == 200, deleted.text
    assert (await client.get("/actors/aliases/jane")).status_code == 404
    assert (await client.get("/actors/jane")).status_code == 404
    assert (await client.get("/actors/aliases")).json()["result"] == []
    # The actors themselves stay.
    assert (await client.get(f"/actors/{actor['id']}")).status_code == 200


async def test_an_alias_name_is_unique_in_its_tenant(client, actor):
    other = await create_actor(client, name="other")
    await _alias(client, "jane", actor["id"])
    await _alias(client, "doe", actor["id"])  # two aliases of one actor are fine
    again = await client.post("/actors/aliases", json={"alias": "jane", "actor_id": other["id"]})
    assert again.status_code == 400  # as Abaco answers
    assert again.json()["message"] == "Alias jane already exists."
    assert (await client.get("/actors/aliases/jane")).json()["result"]["actor_id"] == actor["id"]


@pytest.mark.parametrize(
    ("alias", "says"),
    [
        ("aliases", "reserved word"),
        ("search", "reserved word"),
        ("admin", "reserved word"),
        ("utilization", "reserved word"),
        ("configs", "reserved word"),
        ("cron", "reserved word"),
        ("Messages", "reserved word"),
        ("two words", "letters, digits"),
        ("a/b", "letters, digits"),
        ("a:b", "letters, digits"),
        ("..", "letters, digits"),
        (".hidden", "letters, digits"),
        ("_ids", "letters, digits"),
        ("café", "letters, digits"),
        ("x" * 129, "letters, digits"),
        ("", "Missing required field: alias"),
        (new_id(), "cannot be an Abaco hash id"),
    ],
)
async def test_a_bad_alias_name_is_refused(client, actor, alias, says):
    response = await client.post("/actors/aliases", json={"alias": alias, "actor_id": actor["id"]})
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert (await client.get("/actors/aliases")).json()["result"] == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"alias": "jane", "actor_id": "ACTOR", "colour": "red"}, 400, "unknown fields"),
        ({"alias": 7, "actor_id": "ACTOR"}, 400, "expected a string"),
        ({"alias": "jane"}, 400, "Missing required field: actor_id"),
        ({"actor_id": "ACTOR"}, 400, "Missing required field: alias"),
        (["jane"], 400, "expected a JSON object"),
        ({"alias": "jane", "actor_id": "nope"}, 404, "No actor found"),
        ({"alias": "jane", "actor_id": "a:b"}, 404, "No actor found"),
    ],
)
async def test_a_bad_alias_description_is_a_4xx(client, actor, body, status, says):
    if isinstance(body, dict) and body.get("actor_id") == "ACTOR":
        body = {**body, "actor_id": actor["id"]}
    response = await client.post("/actors/aliases", json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["message"]
    assert (await client.get("/actors/aliases")).json()["result"] == []


async def test_a_bad_alias_update_is_a_400_and_changes_nothing(client, actor):
    await _alias(client, "jane", actor["id"])
    for body, says in (
        ({"alias": "john", "actor_id": actor["id"]}, "alias itself cannot be updated"),
        ({"description": "no actor"}, "Missing required field: actor_id"),
        ({"actor_id": actor["id"], "colour": "red"}, "unknown fields"),
    ):
        response = await client.put("/actors/aliases/jane", json=body)
        assert response.status_code == 400, response.text
        assert says in response.json()["message"]
    empty = await client.put("/actors/aliases/jane", content=b"")
    assert empty.status_code == 400
    missing = await client.put("/actors/aliases/nobody", json={"actor_id": actor["id"]})
    assert missing.status_code == 404
    assert (await client.get("/actors/aliases/jane")).json()["result"]["actor_id"] == actor["id"]


async def test_an_alias_with_dots_works_wherever_an_actor_id_does(client, actor):
    name = "dots.in.my.name.alias"
    await _alias(client, name, actor["id"])
    got = await client.get(f"/actors/{name}")
    assert got.status_code == 200, got.text
    assert got.json()["result"]["id"] == actor["id"]
    sent = await client.post(f"/actors/{name}/messages", json={"message": "hi"})
    assert sent.status_code == 200, sent.text
    execution_id = sent.json()["result"]["execution_id"]
    assert actor["id"] in sent.json()["result"]["_links"]["self"]
    count = (await client.get(f"/actors/{name}/messages")).json()["result"]
    assert count["messages"] == 1
    assert actor["id"] in count["_links"]["self"]
    executions = (await client.get(f"/actors/{name}/executions")).json()["result"]
    assert executions["actor_id"] == actor["id"]
    assert executions["ids"] == [execution_id]
    one = await client.get(f"/actors/{name}/executions/{execution_id}")
    assert one.status_code == 200, one.text
    assert (await client.get(f"/actors/{name}/workers")).status_code == 200
    permissions = (await client.get(f"/actors/{name}/permissions")).json()["result"]
    assert permissions == (await client.get(f"/actors/{actor['id']}/permissions")).json()["result"]


async def test_alias_permissions_follow_abaco(client, tmp_path, users):
    await push_bundle(client, tmp_path)
    alice, bob = users["alice"], users["bob"]
    actor = await create_actor(alice, name="alices")
    # Giving an actor an alias needs UPDATE on the actor.
    refused = await bob.post("/actors/aliases", json={"alias": "jane", "actor_id": actor["id"]})
    assert refused.status_code == 403
    await _alias(alice, "jane", actor["id"])
    permissions = (await alice.get("/actors/aliases/jane/permissions")).json()["result"]
    assert permissions == {"alice": "UPDATE"}

    # Without a permission on the alias, bob cannot see it or manage it.
    assert (await bob.get("/actors/aliases")).json()["result"] == []
    for call in (
        bob.get("/actors/aliases/jane"),
        bob.get("/actors/aliases/jane/permissions"),
        bob.delete("/actors/aliases/jane"),
        bob.post("/actors/aliases/jane/permissions", json={"user": "bob", "level": "UPDATE"}),
    ):
        response = await call
        assert response.status_code == 403
        assert "you do not have access to this alias" in response.json()["message"]

    # READ on the alias lets bob read the alias, but not the actor behind it.
    granted = await alice.post(
        "/actors/aliases/jane/permissions", json={"user": "bob", "level": "READ"}
    )
    assert granted.json()["result"] == {"alice": "UPDATE", "bob": "READ"}
    assert (await bob.get("/actors/aliases/jane")).status_code == 200
    assert [a["alias"] for a in (await bob.get("/actors/aliases")).json()["result"]] == ["jane"]
    through = await bob.get("/actors/jane")
    assert through.status_code == 403
    assert "you do not have access to this actor" in through.json()["message"]
    repoint = await bob.put("/actors/aliases/jane", json={"actor_id": actor["id"]})
    assert repoint.status_code == 403

    # UPDATE on the alias is not enough to point it at an actor bob may not update...
    await alice.post("/actors/aliases/jane/permissions", json={"user": "bob", "level": "UPDATE"})
    repoint = await bob.put("/actors/aliases/jane", json={"actor_id": actor["id"]})
    assert repoint.status_code == 403
    assert "UPDATE access to the actor" in repoint.json()["message"]
    # ... but it is enough to delete the alias, which takes its permissions with it.
    assert (await bob.delete("/actors/aliases/jane")).status_code == 200
    await _alias(alice, "jane", actor["id"])
    assert (await bob.get("/actors/aliases/jane")).status_code == 403


async def test_an_alias_permission_grant_is_checked(client, actor):
    await _alias(client, "jane", actor["id"])
    for body, says in (
        ({"user": "bob", "level": "SUPER"}, "Invalid permission level"),
        ({"user": "", "level": "READ"}, "Invalid permissions description"),
        ({"user": "a:b", "level": "READ"}, "Invalid permissions description"),
        ({"user": "bob"}, "required field missing"),
        ({"user": "bob", "level": "READ", "x": 1}, "unknown fields"),
    ):
        response = await client.post("/actors/aliases/jane/permissions", json=body)
        assert response.status_code == 400, response.text
        assert says in response.json()["message"]
    permissions = (await client.get("/actors/aliases/jane/permissions")).json()["result"]
    assert list(permissions) == ["admin"]


async def test_a_world_grant_on_an_alias_lets_everyone_read_it(client, actor, users):
    await _alias(client, "jane", actor["id"])
    world = {"user": "ABACO_WORLD", "level": "READ"}
    await client.post("/actors/aliases/jane/permissions", json=world)
    assert (await users["bob"].get("/actors/aliases/jane")).status_code == 200
    assert (await users["bob"].delete("/actors/aliases/jane")).status_code == 403


async def test_deleting_an_actor_deletes_its_aliases_and_nonces(client, actor):
    await client.post("/actors/aliases", json={"alias": "doomed", "actor_id": actor["id"]})
    nonce = await client.post(f"/actors/{actor['id']}/nonces", json={"level": "READ"})
    assert nonce.status_code == 200, nonce.text
    assert (await client.delete(f"/actors/{actor['id']}")).status_code == 200
    assert (await client.get("/actors/aliases/doomed")).status_code == 404
    used = await client.get(
        f"/actors/{actor['id']}", params={"x-nonce": nonce.json()["result"]["id"]}
    )
    assert used.status_code in (401, 404)
    # The name is free again.
    other = (await client.post("/actors", json={"image": actor["image"]})).json()["result"]
    again = await client.post("/actors/aliases", json={"alias": "doomed", "actor_id": other["id"]})
    assert again.status_code == 200, again.text
