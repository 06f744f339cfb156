"""Abaco's actor config scenarios: register, list, get and update configs, secret or not.

A sequence, as in Abaco, with bodies sent as Abaco's tests send them (mostly forms).
Attaching a config needs UPDATE on each actor it names (Abaco meant to check that, but
dropped the answer), so the limited user's config names its own actor.
"""

from __future__ import annotations

import json

from tests.abaco_core._bundles import ABACO_TEST, TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    execute_actor,
    get_actor_id,
    refused,
    register,
)


async def test_register_actors(api):
    """Setup as Abaco's test_register_actor and test_register_actor_default_env (ported in
    test_actors and test_executions): the actors the configs name."""
    await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)
    await register(api.admin, image=TEST, name="abaco_test_suite_default_env")
    await register(api.limited, image=TEST, name="abaco_test_suite_limited_user")


async def test_register_config(api):
    """Ports test_register_config (JSON, as Abaco's; without its stray ``image``, which a
    strict description refuses)."""
    actor_id = await get_actor_id(api.admin)
    fields = {"name": "the_config", "value": "my value", "actors": actor_id, "is_secret": False}
    result = basic_response_checks(await api.admin.post("/actors/configs", json=fields))
    assert result["is_secret"] is False
    assert result["name"] == "the_config"
    assert result["value"] == "my value"


async def test_register_secret_config(api):
    """Ports test_register_secret_config: a secret is shown as its ciphertext only."""
    actor_id = await get_actor_id(api.admin)
    fields = {"name": "another_config", "value": "my value", "actors": actor_id, "is_secret": True}
    result = basic_response_checks(await api.admin.post("/actors/configs", data=fields))
    assert result["is_secret"] is True
    assert result["name"] == "another_config"
    assert result["value"] != "my value"


async def test_register_config_multiple_actors(api):
    """Ports test_register_config_multiple_actors."""
    actor_id = await get_actor_id(api.admin)
    actor_id2 = await get_actor_id(api.admin, "abaco_test_suite_default_env")
    fields = {
        "name": "a_multi_actor_config",
        "value": "my value",
        "actors": f"{actor_id},{actor_id2}",
        "is_secret": True,
    }
    result = basic_response_checks(await api.admin.post("/actors/configs", data=fields))
    assert result["actors"] == f"{actor_id},{actor_id2}"


async def test_register_with_nonexistent_actor(api):
    """Ports test_register_with_nonexistent_actor: 404 naming the actor."""
    fields = {"name": "another_config", "value": "my value", "actors": "henry", "is_secret": True}
    answer = await api.admin.post("/actors/configs", data=fields)
    refused(answer, 404, "No actor or alias found with id: henry.")


async def test_cant_register_same_config_name(api):
    """Abaco's uniqueness check behind the config tests: a taken name is a 400 with
    Abaco's message."""
    actor_id = await get_actor_id(api.admin)
    fields = {"name": "the_config", "value": "other", "actors": actor_id, "is_secret": False}
    answer = await api.admin.post("/actors/configs", data=fields)
    message = "Config the_config already exists; please choose another name for your config"
    assert refused(answer, 400)["message"] == message


async def test_get_configs(api):
    """Ports test_get_configs."""
    configs = basic_response_checks(await api.admin.get("/actors/configs"))
    assert {c["name"] for c in configs} == {"the_config", "another_config", "a_multi_actor_config"}


async def test_get_specific_config(api):
    """Ports test_get_specific_config."""
    result = basic_response_checks(await api.admin.get("/actors/configs/the_config"))
    assert result["is_secret"] is False
    assert result["name"] == "the_config"


async def test_register_config_limited_headers(api):
    """Ports test_register_config_limited_headers, on the limited user's own actor (403 on
    the admin's: attaching needs UPDATE on the actor)."""
    fields = {"name": "limited_config", "value": "my value", "is_secret": True}
    admins = await get_actor_id(api.admin)
    answer = await api.limited.post("/actors/configs", data={**fields, "actors": admins})
    refused(answer, 403, "you do not have UPDATE access to the actor or alias")
    own = await get_actor_id(api.limited, "abaco_test_suite_limited_user")
    answer = await api.limited.post("/actors/configs", data={**fields, "actors": own})
    assert basic_response_checks(answer)["name"] == "limited_config"


async def test_update_config(api):
    """Ports test_update_config: now secret, and on two actors."""
    actor_id = await get_actor_id(api.admin)
    actor_id2 = await get_actor_id(api.admin, "abaco_test_suite_default_env")
    fields = {
        "name": "the_config",
        "value": "my value",
        "actors": f"{actor_id},{actor_id2}",
        "is_secret": True,
    }
    result = basic_response_checks(await api.admin.put("/actors/configs/the_config", data=fields))
    assert result["is_secret"] is True
    assert result["actors"] == f"{actor_id},{actor_id2}"


async def test_update_config_limited_headers(api):
    """Ports test_update_config_limited_headers: the limited user has no access to the
    config (403; Abaco answered 400, for its camel-case ``isSecret``), and that body is a
    400 for its owner too (``isSecret`` is no field)."""
    actor_id = await get_actor_id(api.admin)
    fields = {"name": "the_config", "value": "my value", "isSecret": True, "actors": actor_id}
    answer = await api.limited.put("/actors/configs/the_config", data=fields)
    refused(answer, 403, "You do not have sufficient access to this actor config.")
    answer = await api.admin.put("/actors/configs/the_config", data=fields)
    refused(answer, 400, "unknown fields ['isSecret']")


async def test_an_execution_sees_its_configs(api):
    """Beyond Abaco's tests: a worker (its own process) gives an execution its configs in
    ``_actor_configs``, secrets decrypted."""
    actor_id = await get_actor_id(api.admin)
    await check_actor_is_ready(api.admin, actor_id)
    execution = await execute_actor(api.admin, actor_id, data={"message": "configs"})
    path = f"/actors/{actor_id}/executions/{execution['id']}/logs"
    logs = basic_response_checks(await api.admin.get(path))["logs"]
    shown = logs.partition("\n_actor_configs=")[2].partition("\n")[0]
    assert json.loads(shown) == {
        "the_config": "my value",
        "another_config": "my value",
        "a_multi_actor_config": "my value",
    }
