"""Actor configs over real HTTP: CRUD, secrets encrypted at rest, permissions, bad input,
and an execution that sees its configs (a real worker running a real bundle).

Ports of Abaco's config tests (``tests/test_abaco_core.py``) say which in their docstring.
"""

from __future__ import annotations

import json
import os
import stat

import attrs
import pytest
import trio

from abaco.actor_configs import decrypt, encrypt
from abaco.actors.ids import new_id
from abaco.actors.worker import run_worker
from abaco.auth import Role
from abaco.config import load_settings
from abaco.errors import ConfigError
from abaco.stores import Stores
from tests.api._helpers import create_actor, push_bundle, user_client


@pytest.fixture
async def actor(client, tmp_path):
    await push_bundle(client, tmp_path)
    return await create_actor(client, name="hello")


@pytest.fixture
async def users(platform_redis, settings, api_url):
    """alice and bob (plain users) and carol (limited), each with a client."""
    made = {}
    for name, role in (("alice", Role.USER), ("bob", Role.USER), ("carol", Role.LIMITED)):
        made[name] = await user_client(platform_redis, settings, api_url, name, role)
    yield made
    for http in made.values():
        await http.aclose()


def _config(name="the_config", actors="", value="my value", is_secret=False, **extra):
    return {"name": name, "value": value, "actors": actors, "is_secret": is_secret, **extra}


async def _create(http, **fields):
    response = await http.post("/actors/configs", json=_config(**fields))
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_config_routes_are_in_openapi_and_are_not_actor_routes(client, actor):
    listed = await client.get("/actors/configs")
    assert listed.status_code == 200, listed.text
    assert listed.json()["result"] == []
    for path in ("/actors/configs/nothing", "/actors/configs/nothing/permissions"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["message"] == "No config found: nothing."
    document = (await client.get("/openapi.json")).json()
    for path in (
        "/actors/configs",
        "/actors/configs/{config_name}",
        "/actors/configs/{config_name}/permissions",
    ):
        assert path in document["paths"]
    post = document["paths"]["/actors/configs"]["post"]["requestBody"]
    schema = post["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "value", "actors", "is_secret"}


async def test_a_config_is_created_read_listed_updated_and_deleted(client, actor):
    """Ports test_register_config, test_get_configs, test_get_specific_config and
    test_update_config (without test_register_config's stray ``image`` field, which strict
    parsing refuses)."""
    other = await create_actor(client, name="other")
    made = await _create(client, actors=actor["id"])
    assert made == {
        "name": "the_config",
        "value": "my value",
        "actors": actor["id"],
        "is_secret": False,
    }
    assert (await client.get("/actors/configs/the_config")).json()["result"] == made
    assert (await client.get("/actors/configs")).json()["result"] == [made]

    both = f"{actor['id']},{other['id']}"
    updated = await client.put(
        "/actors/configs/the_config",
        json={"name": "the_config", "value": "new value", "actors": both, "is_secret": True},
    )
    assert updated.status_code == 200, updated.text
    result = updated.json()["result"]
    assert (result["is_secret"], result["actors"]) == (True, both)
    assert result["value"] != "new value"

    deleted = await client.delete("/actors/configs/the_config")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["message"] == "Actor config the_config deleted successfully."
    assert (await client.get("/actors/configs/the_config")).status_code == 404
    assert (await client.get("/actors/configs/the_config/permissions")).status_code == 404
    assert (await client.get("/actors/configs")).json()["result"] == []
    assert (await client.delete("/actors/configs/the_config")).status_code == 404


async def test_a_secret_is_encrypted_at_rest_and_never_shown(
    client, actor, platform_redis, settings
):
    """Ports test_register_secret_config: the answer says is_secret, and (beyond Abaco's
    test) the value is neither in Redis nor in any answer, only its ciphertext."""
    made = await _create(client, name="another_config", actors=actor["id"], is_secret=True)
    assert made["is_secret"] is True
    assert made["name"] == "another_config"
    stores = Stores.open(platform_redis, settings)
    raw = await platform_redis.hgetall(stores.configs.key("another_config"))
    assert raw, "the config is stored under the documented key"
    assert all(b"my value" not in v for v in raw.values())
    stored = json.loads(raw[b"value"])
    assert decrypt(settings, stored) == "my value"
    for path in ("/actors/configs/another_config", "/actors/configs"):
        response = await client.get(path)
        assert "my value" not in response.text
    assert (await client.get("/actors/configs/another_config")).json()["result"]["value"] == stored
    # The key was made on first use, readable by its owner only.
    key_file = settings.state.path() / "config-key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


async def test_a_configured_key_is_used_and_a_bad_one_refused(settings, tmp_path):
    key = "A" * 43 + "="  # 32 bytes of url-safe base64
    keyed = attrs.evolve(settings, auth=attrs.evolve(settings.auth, config_key=key))
    token = encrypt(keyed, "s3cret")
    assert decrypt(keyed, token) == "s3cret"
    assert not (settings.state.path() / "config-key").exists()
    with pytest.raises(ConfigError, match="another key"):
        decrypt(settings, token)  # the state dir's key is another key
    with pytest.raises(ConfigError, match="config_key"):
        load_settings(environ={"ABACO__AUTH__CONFIG_KEY": "not-a-key"})


async def test_a_config_may_name_several_actors_and_aliases(client, actor):
    """Ports test_register_config_multiple_actors (with an alias besides)."""
    other = await create_actor(client, name="abaco_test_suite_default_env")
    alias = await client.post("/actors/aliases", json={"alias": "jane", "actor_id": other["id"]})
    assert alias.status_code == 200, alias.text
    made = await _create(
        client, name="a_multi_actor_config", actors=f"{actor['id']},{other['id']}", is_secret=True
    )
    assert made["actors"] == f"{actor['id']},{other['id']}"
    spaced = await _create(client, name="spaced", actors=f" {actor['id']} , jane,jane")
    assert spaced["actors"] == f"{actor['id']},jane"


async def test_a_config_for_an_unknown_actor_is_refused(client, actor):
    """Ports test_register_with_nonexistent_actor."""
    response = await client.post(
        "/actors/configs", json=_config(actors=f"{actor['id']},henry", is_secret=True)
    )
    assert response.status_code == 404
    assert response.json()["message"] == "No actor or alias found with id: henry."
    assert (await client.get("/actors/configs")).json()["result"] == []


async def test_a_limited_user_registers_a_config_on_its_own_actor(users, tmp_path, client):
    """Ports test_register_config_limited_headers."""
    await push_bundle(client, tmp_path)
    carol = users["carol"]
    own = await create_actor(carol, name="carols")
    made = await _create(carol, name="limited_config", actors=own["id"], is_secret=True)
    assert made["is_secret"] is True


async def test_an_update_with_abacos_camel_case_field_is_refused(client, actor):
    """Ports test_update_config_limited_headers: Abaco answered 400 because ``isSecret``
    is not a field in snake case; strict parsing refuses it by name."""
    await _create(client, actors=actor["id"])
    response = await client.put(
        "/actors/configs/the_config",
        json={"name": "the_config", "value": "my value", "isSecret": True, "actors": actor["id"]},
    )
    assert response.status_code == 400
    assert "isSecret" in response.json()["message"]


async def test_other_users_cannot_read_or_change_a_config_until_it_is_shared(
    users, tmp_path, client
):
    await push_bundle(client, tmp_path)
    alice, bob = users["alice"], users["bob"]
    own = await create_actor(alice, name="alices")
    made = await _create(alice, name="shared", actors=own["id"])
    path = "/actors/configs/shared"
    body = _config(name="shared", actors=own["id"], value="changed")

    assert (await bob.get(path)).status_code == 403
    assert (await bob.get(f"{path}/permissions")).status_code == 403
    assert (await bob.put(path, json=body)).status_code == 403
    assert (await bob.delete(path)).status_code == 403
    assert (await bob.get("/actors/configs")).json()["result"] == []
    refused = await bob.post(f"{path}/permissions", json={"user": "bob", "level": "UPDATE"})
    assert refused.status_code == 403

    granted = await alice.post(f"{path}/permissions", json={"user": "bob", "level": "READ"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["result"] == {"alice": "UPDATE", "bob": "READ"}
    assert (await bob.get(path)).json()["result"] == made
    assert (await bob.get("/actors/configs")).json()["result"] == [made]
    assert (await bob.get(f"{path}/permissions")).json()["result"] == {
        "alice": "UPDATE",
        "bob": "READ",
    }
    assert (await bob.put(path, json=body)).status_code == 403
    assert (await bob.delete(path)).status_code == 403
    # An admin may do anything; a share with ABACO_WORLD reaches everyone.
    assert (await client.get(path)).status_code == 200
    await alice.post(f"{path}/permissions", json={"user": "bob", "level": "NONE"})
    assert (await bob.get(path)).status_code == 403
    await alice.post(f"{path}/permissions", json={"user": "ABACO_WORLD", "level": "READ"})
    assert (await bob.get(path)).status_code == 200
    assert (await alice.put(path, json=body)).json()["result"]["value"] == "changed"


async def test_attaching_needs_update_on_each_actor_or_alias(users, tmp_path, client):
    await push_bundle(client, tmp_path)
    alice, bob = users["alice"], users["bob"]
    alices = await create_actor(alice, name="alices")
    bobs = await create_actor(bob, name="bobs")
    assert (
        await alice.post("/actors/aliases", json={"alias": "al", "actor_id": alices["id"]})
    ).status_code == 200

    for actors in (alices["id"], f"{bobs['id']},{alices['id']}", "al"):
        refused = await bob.post("/actors/configs", json=_config(actors=actors))
        assert refused.status_code == 403, actors
        assert "UPDATE access" in refused.json()["message"]
    await alice.post(
        f"/actors/{alices['id']}/permissions", json={"user": "bob", "level": "EXECUTE"}
    )
    assert (await bob.post("/actors/configs", json=_config(actors=alices["id"]))).status_code == 403
    await alice.post(f"/actors/{alices['id']}/permissions", json={"user": "bob", "level": "UPDATE"})
    await _create(bob, actors=f"{bobs['id']},{alices['id']}")
    # The alias has permissions of its own, as in Abaco: UPDATE on its actor is not enough.
    refused = await bob.put("/actors/configs/the_config", json=_config(actors="al"))
    assert refused.status_code == 403
    await alice.post("/actors/aliases/al/permissions", json={"user": "bob", "level": "UPDATE"})
    moved = await bob.put("/actors/configs/the_config", json=_config(actors="al"))
    assert moved.status_code == 200, moved.text
    # Alice may not take over a config by naming it again: a 400 with Abaco's message.
    again = await alice.post("/actors/configs", json=_config(actors=alices["id"]))
    assert again.status_code == 400
    assert again.json()["message"] == (
        "Config the_config already exists; please choose another name for your config"
    )


def _bad(**fields):
    """A config body with ``fields`` changed; ACTOR stands for the test actor's id."""
    return json.dumps({**_config(actors="ACTOR"), **fields}).encode()


def _without(field):
    return json.dumps({k: v for k, v in _config(actors="ACTOR").items() if k != field}).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "body is empty"),
        (b"{not json", "Unable to process the JSON description"),
        (b"[]", "expected a JSON object"),
        (_bad(image="abacosamples/test"), "unknown fields ['image']"),
        (_bad(is_secret="true"), "expected a boolean"),
        (_bad(value=1), "expected a string"),
        (_bad(actors=["ACTOR"]), "expected a string"),
        (_without("is_secret"), "Missing required field: is_secret"),
        (_without("name"), "Missing required field: name"),
        (_without("value"), "Missing required field: value"),
        (_without("actors"), "Missing required field: actors"),
        (_bad(name="logs"), "reserved word"),
        (_bad(name="two words"), "letters, digits"),
        (_bad(name="a/b"), "letters, digits"),
        (_bad(name="_ids"), "letters, digits"),
        (_bad(name=""), "letters, digits"),
        (_bad(actors=""), "actors parameter"),
        (_bad(actors="ACTOR,,ACTOR"), "actors parameter"),
        (_bad(actors="a:b"), "actors parameter"),
    ],
)
async def test_bad_input_is_a_400_naming_the_problem(client, actor, body, says):
    body = body.replace(b"ACTOR", actor["id"].encode())
    response = await client.post(
        "/actors/configs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert (await client.get("/actors/configs")).json()["result"] == []


async def test_bad_updates_are_refused_and_change_nothing(client, actor):
    made = await _create(client, actors=actor["id"])
    path = "/actors/configs/the_config"
    renamed = await client.put(path, json=_config(name="other", actors=actor["id"]))
    assert renamed.status_code == 400
    assert "cannot be changed" in renamed.json()["message"]
    missing = await client.put(path, json={"value": "v", "actors": actor["id"]})
    assert missing.status_code == 400
    assert "Missing required field: is_secret" in missing.json()["message"]
    unknown = await client.put(path, json=_config(actors=f"{actor['id']},nobody"))
    assert unknown.status_code == 404
    bad_level = await client.post(f"{path}/permissions", json={"user": "bob", "level": "ALL"})
    assert bad_level.status_code == 400
    assert "Invalid permission level" in bad_level.json()["message"]
    assert (await client.get(path)).json()["result"] == made
    absent = await client.put("/actors/configs/nothing", json=_config(actors=actor["id"]))
    assert absent.status_code == 404


# -- an execution sees its configs ---------------------------------------------------------

ENV_SOURCE = """
import json, os

def handle(message):
    keys = sorted(k for k in os.environ if k.startswith("_abaco_") or k == "_actor_configs")
    print(json.dumps({k: os.environ[k] for k in keys}), flush=True)
"""


def _bundle_dir(root):
    bundle = root / "env-bundle"
    (bundle / "hello").mkdir(parents=True)
    (bundle / "hello" / "__init__.py").write_text("")
    (bundle / "hello" / "main.py").write_text(ENV_SOURCE)
    manifest = {
        "spec": "abaco.bundle/v1",
        "name": "org.example/hello",
        "version": "1.0.0",
        "runtime": {"type": "python", "entry_point": "hello.main:handle"},
        "content_sha256": "0" * 64,
    }
    (bundle / "Manifest.json").write_text(json.dumps(manifest))
    return bundle


async def _finished(client, actor_id, execution_id):
    with trio.fail_after(60):
        while True:
            path = f"/actors/{actor_id}/executions/{execution_id}"
            record = (await client.get(path)).json()["result"]
            if record["status"] in ("COMPLETE", "ERROR"):
                assert record["status"] == "COMPLETE", record
                logs = await client.get(f"{path}/logs")
                return json.loads(logs.json()["result"]["logs"])
            await trio.sleep(0.1)


async def test_an_execution_sees_its_configs_and_abacos_variables(
    client, actor, settings, platform_redis, tmp_path
):
    other = await create_actor(client, name="other")
    alias = await client.post("/actors/aliases", json={"alias": "jane", "actor_id": actor["id"]})
    assert alias.status_code == 200, alias.text
    await _create(client, name="direct", actors=actor["id"], value="plain value")
    await _create(client, name="through_alias", actors="jane", value="via jane")
    await _create(
        client, name="secret", actors=f"{other['id']},jane", value="s3cret", is_secret=True
    )
    await _create(client, name="elsewhere", actors=other["id"], value="not for hello")

    sent = await client.post(f"/actors/{actor['id']}/messages", json={"message": "hi"})
    assert sent.status_code == 200, sent.text
    execution_id = sent.json()["result"]["execution_id"]
    async with trio.open_nursery() as nursery:
        worker = await nursery.start(
            lambda task_status: run_worker(
                settings,
                platform_redis,
                actor_id=actor["id"],
                worker_id=new_id(),
                bundle_dir=_bundle_dir(tmp_path),
                task_status=task_status,
            )
        )
        try:
            env = await _finished(client, actor["id"], execution_id)
        finally:
            worker.stopping.set()

    assert json.loads(env["_actor_configs"]) == {
        "direct": "plain value",
        "through_alias": "via jane",
        "secret": "s3cret",
    }
    tenant = settings.stores.tenant
    assert env["_abaco_jwt_header_name"] == f"X-Jwt-Assertion-{tenant}".title()
    assert env["_abaco_actor_name"] == "hello"
    assert env["_abaco_actor_dbid"] == f"{tenant}_{actor['id']}"
    assert env["_abaco_actor_revision"] == str(actor["revision"])
    assert env["_abaco_container_repo"] == actor["image"]
    assert env["_abaco_execution_id"] == execution_id


async def test_configs_are_per_tenant(client, actor, platform_redis, settings, api_url):
    await _create(client, actors=actor["id"])
    other = await user_client(platform_redis, settings, api_url, "admin2", Role.ADMIN, "tenant2")
    try:
        assert (await other.get("/actors/configs")).json()["result"] == []
        assert (await other.get("/actors/configs/the_config")).status_code == 404
        # The other tenant's actor ids do not exist here either.
        refused = await other.post("/actors/configs", json=_config(actors=actor["id"]))
        assert refused.status_code == 404
        theirs = await create_actor(other, name="theirs")
        made = await _create(other, actors=theirs["id"], value="tenant2 value")
        assert made["value"] == "tenant2 value"
    finally:
        await other.aclose()
    assert (await client.get("/actors/configs/the_config")).json()["result"]["value"] == "my value"
