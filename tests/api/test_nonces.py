"""Nonces over real HTTP: their routes, and ``?x-nonce=`` as a narrow, counted credential."""

from __future__ import annotations

import httpx
import pytest
import trio

from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.channels import open_hub
from tests.api._helpers import create_actor, push_bundle, user_client

ABACO_NONCE_FIELDS = {
    "id", "owner", "actor_id", "alias", "level", "max_uses", "current_uses", "remaining_uses",
    "create_time", "last_use_time", "description", "roles", "api_server", "_links",
}  # fmt: skip


@pytest.fixture
async def actor(client, tmp_path):
    await push_bundle(client, tmp_path)
    return await create_actor(client, name="hello")


@pytest.fixture
async def anonymous(api_url):
    """A client without a token: only the nonce speaks for it."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def _nonce(http, path, **fields):
    response = await http.post(f"{path}/nonces", json=fields)
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def _uses(client, path, nonce_id):
    record = (await client.get(f"{path}/nonces/{nonce_id}")).json()["result"]
    return record["current_uses"], record["remaining_uses"]


async def test_nonces_are_created_listed_read_and_deleted(client, actor, settings, anonymous):
    path = f"/actors/{actor['id']}"
    assert (await client.get(f"{path}/nonces")).json()["result"] == []
    # No body at all asks for the defaults, as in Abaco.
    default = await client.post(f"{path}/nonces")
    assert default.status_code == 200, default.text
    unlimited = default.json()["result"]
    assert set(unlimited) == ABACO_NONCE_FIELDS
    assert unlimited["id"].startswith(f"{settings.stores.tenant}_")
    assert (unlimited["level"], unlimited["max_uses"]) == ("EXECUTE", -1)
    assert (unlimited["current_uses"], unlimited["remaining_uses"]) == (0, -1)
    assert (unlimited["actor_id"], unlimited["alias"]) == (actor["id"], None)
    assert unlimited["owner"] == settings.auth.admin_user
    assert unlimited["roles"] == ["admin"]
    assert unlimited["last_use_time"] is None
    assert unlimited["_links"]["self"].endswith(f"{path}/nonces/{unlimited['id']}")
    limited = await _nonce(client, path, level="READ", max_uses=3, description="for a poller")
    assert (limited["level"], limited["max_uses"], limited["remaining_uses"]) == ("READ", 3, 3)
    assert limited["description"] == "for a poller"

    listed = (await client.get(f"{path}/nonces")).json()["result"]
    assert [n["id"] for n in listed] == [unlimited["id"], limited["id"]]
    assert (await client.get(f"{path}/nonces/{limited['id']}")).json()["result"] == limited

    assert (await anonymous.get(path, params={"x-nonce": limited["id"]})).status_code == 200
    deleted = await client.delete(f"{path}/nonces/{limited['id']}")
    assert deleted.status_code == 200, deleted.text
    assert (await client.get(f"{path}/nonces/{limited['id']}")).status_code == 404
    gone = await anonymous.get(path, params={"x-nonce": limited["id"]})
    assert gone.status_code == 401
    assert "no such nonce" in gone.json()["message"]
    assert [n["id"] for n in (await client.get(f"{path}/nonces")).json()["result"]] == [
        unlimited["id"]
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"level": "NONE"}, "level attribute must be one of"),
        ({"level": "ADMIN"}, "level attribute must be one of"),
        ({"level": 2}, "expected a string"),
        ({"max_uses": 0}, "max uses parameter"),
        ({"max_uses": -2}, "max uses parameter"),
        ({"max_uses": 2**40}, "max uses parameter"),
        ({"max_uses": "3"}, "expected an integer"),
        ({"max_uses": True}, "expected an integer"),
        ({"uses": 3}, "unknown fields"),
        (["READ"], "expected a JSON object"),
    ],
)
async def test_a_bad_nonce_description_is_a_400(client, actor, body, says):
    path = f"/actors/{actor['id']}"
    response = await client.post(f"{path}/nonces", json=body)
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert (await client.get(f"{path}/nonces")).json()["result"] == []


async def test_nonce_routes_refuse_unknown_nonces_actors_and_methods(client, actor):
    path = f"/actors/{actor['id']}"
    for nonce_id in ("nope", "_ids", f"default_{'0' * 32}", "a:b"):
        assert (await client.get(f"{path}/nonces/{nonce_id}")).status_code == 404
        assert (await client.delete(f"{path}/nonces/{nonce_id}")).status_code == 404
    assert (await client.get("/actors/nobody/nonces")).status_code == 404
    assert (await client.put(f"{path}/nonces")).status_code == 405
    nonce = await _nonce(client, path)
    assert (await client.post(f"{path}/nonces/{nonce['id']}")).status_code == 405
    # A nonce is found only under its own actor.
    other = await create_actor(client, name="other")
    assert (await client.get(f"/actors/{other['id']}/nonces/{nonce['id']}")).status_code == 404


async def test_a_nonce_gives_exactly_its_level_on_exactly_its_actor(client, actor, anonymous):
    path = f"/actors/{actor['id']}"
    other = await create_actor(client, name="other")
    reader = (await _nonce(client, path, level="READ"))["id"]
    executor = (await _nonce(client, path, level="EXECUTE"))["id"]

    for get in (path, f"{path}/executions", f"{path}/messages", f"{path}/workers"):
        response = await anonymous.get(get, params={"x-nonce": reader})
        assert response.status_code == 200, (get, response.text)
    assert await _uses(client, path, reader) == (4, -1)

    refused = [
        anonymous.post(f"{path}/messages", params={"x-nonce": reader}, json={"message": "hi"}),
        anonymous.delete(path, params={"x-nonce": reader}),
        anonymous.put(path, params={"x-nonce": executor}, json={"description": "mine now"}),
        anonymous.post(f"{path}/nonces", params={"x-nonce": executor}, json={}),
        anonymous.delete(f"{path}/messages", params={"x-nonce": executor}),
        anonymous.get(f"/actors/{other['id']}", params={"x-nonce": executor}),
        anonymous.get("/actors", params={"x-nonce": executor}),
        anonymous.get("/actors/aliases", params={"x-nonce": executor}),
    ]
    for call in refused:
        response = await call
        assert response.status_code == 403, response.text
        assert response.json()["status"] == "error"
    # Refused requests spend nothing.
    assert await _uses(client, path, reader) == (4, -1)
    assert await _uses(client, path, executor) == (0, -1)
    assert (await client.get(path)).json()["result"]["description"] == ""

    sent = await anonymous.post(
        f"{path}/messages", params={"x-nonce": executor}, json={"message": "hi"}
    )
    assert sent.status_code == 200, sent.text
    assert await _uses(client, path, executor) == (1, -1)
    record = (await client.get(f"{path}/nonces/{executor}")).json()["result"]
    assert record["last_use_time"] is not None


async def test_max_uses_count_down_and_then_refuse(client, actor, anonymous):
    path = f"/actors/{actor['id']}"
    nonce_id = (await _nonce(client, path, level="READ", max_uses=2))["id"]
    assert (await anonymous.get(path, params={"x-nonce": nonce_id})).status_code == 200
    assert await _uses(client, path, nonce_id) == (1, 1)
    assert (await anonymous.get(path, params={"x-nonce": nonce_id})).status_code == 200
    assert await _uses(client, path, nonce_id) == (2, 0)
    spent = await anonymous.get(path, params={"x-nonce": nonce_id})
    assert spent.status_code == 403
    assert "No remaining uses left for this nonce" in spent.json()["message"]
    assert await _uses(client, path, nonce_id) == (2, 0)


async def test_concurrent_uses_of_a_one_use_nonce_let_one_request_through(client, actor, anonymous):
    path = f"/actors/{actor['id']}"
    nonce_id = (await _nonce(client, path, level="READ", max_uses=1))["id"]
    statuses: list[int] = []

    async def use() -> None:
        response = await anonymous.get(path, params={"x-nonce": nonce_id})
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(use)
    assert sorted(statuses) == [200] + [403] * 11
    assert await _uses(client, path, nonce_id) == (1, 0)


async def test_concurrent_uses_of_an_unlimited_nonce_are_all_counted(client, actor, anonymous):
    path = f"/actors/{actor['id']}"
    nonce_id = (await _nonce(client, path, level="READ"))["id"]

    async def use() -> None:
        assert (await anonymous.get(path, params={"x-nonce": nonce_id})).status_code == 200

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(use)
    assert await _uses(client, path, nonce_id) == (12, -1)


@pytest.mark.parametrize("nonce_id", ["", "nope", "default_" + "0" * 32, "bad tenant_" + "0" * 32])
async def test_an_unknown_nonce_is_a_401(actor, anonymous, nonce_id):
    response = await anonymous.get(f"/actors/{actor['id']}", params={"x-nonce": nonce_id})
    assert response.status_code == 401
    assert "no such nonce" in response.json()["message"]


async def test_the_nonce_wins_over_a_bearer_token(client, actor):
    path = f"/actors/{actor['id']}"
    reader = (await _nonce(client, path, level="READ"))["id"]
    # The admin's token would allow it; the READ nonce does not.
    response = await client.post(
        f"{path}/messages", params={"x-nonce": reader}, json={"message": "hi"}
    )
    assert response.status_code == 403
    assert (await client.get(f"{path}/messages")).json()["result"]["messages"] == 0


async def test_x_nonce_is_not_an_environment_variable_of_the_message(
    client, actor, anonymous, platform_redis, settings
):
    path = f"/actors/{actor['id']}"
    nonce_id = (await _nonce(client, path))["id"]
    sent = await anonymous.post(
        f"{path}/messages", params={"x-nonce": nonce_id, "x": "1"}, json={"message": "hi"}
    )
    assert sent.status_code == 200, sent.text
    prefix = settings.redis.key_prefix
    async with open_hub(platform_redis, namespace=prefix) as hub:
        mailbox = mailbox_of(hub, prefix, settings.stores.tenant, actor["id"])
        delivery = await mailbox.get(timeout=2)
        await delivery.ack()
    message = MailboxMessage.from_wire(delivery.message)
    assert message.environment == {"x": "1"}
    assert message.username == settings.auth.admin_user


async def test_a_nonce_acts_as_its_owner_and_no_more(
    client, tmp_path, platform_redis, settings, api_url, anonymous
):
    await push_bundle(client, tmp_path)
    alice = await user_client(platform_redis, settings, api_url, "alice")
    bob = await user_client(platform_redis, settings, api_url, "bob")
    try:
        actor = await create_actor(alice, name="alices")
        path = f"/actors/{actor['id']}"
        # Making a nonce needs UPDATE on the actor.
        await alice.post(f"{path}/permissions", json={"user": "bob", "level": "EXECUTE"})
        assert (await bob.post(f"{path}/nonces", json={})).status_code == 403
        assert (await bob.get(f"{path}/nonces")).status_code == 200
        await alice.post(f"{path}/permissions", json={"user": "bob", "level": "UPDATE"})
        nonce = await _nonce(bob, path, level="READ")
        assert (nonce["owner"], nonce["roles"]) == ("bob", ["user"])
        assert (await anonymous.get(path, params={"x-nonce": nonce["id"]})).status_code == 200
        # When its owner loses access, so does the nonce.
        await alice.post(f"{path}/permissions", json={"user": "bob", "level": "NONE"})
        assert (await anonymous.get(path, params={"x-nonce": nonce["id"]})).status_code == 403
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_alias_nonces_work_through_the_alias(client, actor, anonymous):
    made = await client.post("/actors/aliases", json={"alias": "jane", "actor_id": actor["id"]})
    assert made.status_code == 200, made.text
    assert (await client.get("/actors/aliases/jane/nonces")).json()["result"] == []
    refused = await client.post("/actors/aliases/jane/nonces", json={"level": "UPDATE"})
    assert refused.status_code == 400
    assert "['READ', 'EXECUTE']" in refused.json()["message"]
    nonce = await _nonce(client, "/actors/aliases/jane")
    assert (nonce["alias"], nonce["actor_id"], nonce["level"]) == ("jane", None, "EXECUTE")
    assert nonce["_links"]["self"].endswith(f"/actors/aliases/jane/nonces/{nonce['id']}")
    listed = (await client.get("/actors/aliases/jane/nonces")).json()["result"]
    assert [n["id"] for n in listed] == [nonce["id"]]
    assert (await client.get(f"/actors/{actor['id']}/nonces")).json()["result"] == []

    through_alias = await anonymous.get("/actors/jane", params={"x-nonce": nonce["id"]})
    assert through_alias.status_code == 200, through_alias.text
    assert through_alias.json()["result"]["id"] == actor["id"]
    sent = await anonymous.post(
        "/actors/jane/messages", params={"x-nonce": nonce["id"]}, json={"message": "hi"}
    )
    assert sent.status_code == 200, sent.text
    assert (
        await anonymous.get("/actors/aliases/jane", params={"x-nonce": nonce["id"]})
    ).status_code == 200
    # An alias nonce is redeemed through its alias, not the actor's id.
    by_id = await anonymous.get(f"/actors/{actor['id']}", params={"x-nonce": nonce["id"]})
    assert by_id.status_code == 403
    assert await _uses(client, "/actors/aliases/jane", nonce["id"]) == (3, -1)

    # Deleting the alias deletes its nonces: a new alias of that name does not revive them.
    assert (await client.delete("/actors/aliases/jane")).status_code == 200
    await client.post("/actors/aliases", json={"alias": "jane", "actor_id": actor["id"]})
    revived = await anonymous.get("/actors/jane", params={"x-nonce": nonce["id"]})
    assert revived.status_code == 401
    assert (await client.get("/actors/aliases/jane/nonces")).json()["result"] == []


async def test_alias_nonces_need_the_level_on_the_alias_and_its_actor(
    client, tmp_path, platform_redis, settings, api_url
):
    await push_bundle(client, tmp_path)
    alice = await user_client(platform_redis, settings, api_url, "alice")
    bob = await user_client(platform_redis, settings, api_url, "bob")
    try:
        actor = await create_actor(alice, name="alices")
        await alice.post("/actors/aliases", json={"alias": "jane", "actor_id": actor["id"]})
        await alice.post(
            "/actors/aliases/jane/permissions", json={"user": "bob", "level": "UPDATE"}
        )
        for call in (
            bob.get("/actors/aliases/jane/nonces"),
            bob.post("/actors/aliases/jane/nonces", json={}),
        ):
            assert (await call).status_code == 403
        await alice.post(
            f"/actors/{actor['id']}/permissions", json={"user": "bob", "level": "UPDATE"}
        )
        assert (await bob.post("/actors/aliases/jane/nonces", json={})).status_code == 200
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_the_openapi_document_offers_x_nonce_beside_the_bearer_token(client, api_url):
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["nonce"] == {"type": "apiKey", "in": "query", "name": "x-nonce"}
    operation = document["paths"]["/actors/{actor_id}/nonces"]["post"]
    assert operation["security"] == [{"bearer": []}, {"nonce": []}]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"level", "max_uses", "description"}
    assert body["additionalProperties"] is False
