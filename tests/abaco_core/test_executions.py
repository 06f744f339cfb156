"""Abaco's execution, message and log scenarios, and the actors they need.

A sequence, as in Abaco. Abaco's execution tests run against ``abaco_test_suite``,
registered by its registration tests; here this module registers its own (in tenants of
its own), with the default-environment, function and sleep-loop actors.
"""

from __future__ import annotations

import json
import marshal
import pickle

import pytest
import trio

from tests.abaco_core._bundles import ABACO_TEST, PY3_FUNC, SLEEP_LOOP, TEST
from tests.abaco_core._checks import (
    DEADLINE,
    basic_response_checks,
    check_actor_is_ready,
    execute_actor,
    get_actor_id,
    refused,
    register,
    wait_execution,
)
from tests.abaco_core.conftest import ADMIN

DEFAULT_ENV = {"default_env_key1": "default_env_value1", "default_env_key2": "default_env_value2"}


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor (ported in test_actors): abaco_test_suite."""
    await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)


async def test_register_actor_default_env(api):
    """Ports test_register_actor_default_env."""
    actor = await register(
        api.admin,
        image=TEST,
        name="abaco_test_suite_default_env",
        stateless=True,
        default_environment=DEFAULT_ENV,
        as_json=True,  # as Abaco's test sends it
    )
    assert actor["owner"] == ADMIN
    assert actor["default_environment"] == DEFAULT_ENV


async def test_register_actor_func(api):
    """Ports test_register_actor_func."""
    actor = await register(api.admin, image=PY3_FUNC, name="abaco_test_suite_func")
    assert actor["owner"] == ADMIN


async def test_register_actor_sleep_loop(api):
    """Ports test_register_actor_sleep_loop."""
    actor = await register(api.admin, image=SLEEP_LOOP, name="abaco_test_suite_sleep_loop")
    assert actor["owner"] == ADMIN


@pytest.mark.parametrize(
    "name",
    [
        "abaco_test_suite",
        "abaco_test_suite_default_env",
        "abaco_test_suite_func",
        "abaco_test_suite_sleep_loop",
    ],
)
async def test_actor_is_ready(api, name):
    """Ports test_default_env_actor_is_ready, test_func_actor_is_ready and
    test_sleep_loop_actor_is_ready (and test_basic_actor_is_ready again, for this module's
    abaco_test_suite)."""
    await check_actor_is_ready(api.admin, await get_actor_id(api.admin, name))


async def test_executions_empty_list(api):
    """Ports test_executions_empty_list and test_list_executions: no executions yet."""
    actor_id = await get_actor_id(api.admin)
    summary = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/executions"))
    assert summary["executions"] == []
    assert summary["ids"] == []
    assert summary["total_executions"] == 0


@pytest.mark.parametrize("path", ["executions", "messages"])
async def test_invalid_method_list(api, path):
    """Ports test_invalid_method_list_executions and test_invalid_method_list_messages."""
    actor_id = await get_actor_id(api.admin)
    refused(await api.admin.put(f"/actors/{actor_id}/{path}"), 405, "Invalid HTTP method")


async def test_list_messages(api):
    """Ports test_list_messages: an empty mailbox."""
    actor_id = await get_actor_id(api.admin)
    answer = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/messages"))
    assert answer["messages"] == 0


async def test_execute_basic_actor(api):
    """Ports test_execute_basic_actor: a form ``message`` runs to COMPLETE."""
    actor_id = await get_actor_id(api.admin)
    await execute_actor(api.admin, actor_id, data={"message": "testing execution"})


async def test_execute_default_env_actor(api):
    """Ports test_execute_default_env_actor: the default environment and Abaco's
    variables reach the execution."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_default_env")
    execution = await execute_actor(api.admin, actor_id, data={"message": "testing execution"})
    path = f"/actors/{actor_id}/executions/{execution['id']}/logs"
    logs = basic_response_checks(await api.admin.get(path))["logs"]
    for key, value in DEFAULT_ENV.items():
        assert f"{key}={value}" in logs
    for variable in ("_abaco_container_repo", "_abaco_worker_id", "_abaco_actor_name"):
        assert variable in logs
    assert f"_abaco_container_repo={TEST}" in logs
    assert "_abaco_actor_name=abaco_test_suite_default_env" in logs


def _f(a, b, c=1):
    return a + b + c


async def test_execute_func_actor(api):
    """Ports test_execute_func_actor: a function and its arguments as a binary message,
    its value back as the execution's result (pickle and marshal, not cloudpickle)."""
    call = {
        "code": marshal.dumps(_f.__code__),
        "defaults": _f.__defaults__,
        "args": [5, 7],
        "kwargs": {"c": 5},
    }
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_func")
    execution = await execute_actor(api.admin, actor_id, binary=pickle.dumps(call))
    path = f"/actors/{actor_id}/executions/{execution['id']}/results"
    answer = await api.admin.get(path)
    assert answer.status_code == 200
    assert pickle.loads(answer.content) == 17


async def test_execute_and_delete_sleep_loop_actor(api):
    """Ports test_execute_and_delete_sleep_loop_actor: a long execution is aborted once a
    worker has it. It ends ABORTED (issue 9; Abaco ended it COMPLETE)."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_sleep_loop")
    answer = await api.admin.post(
        f"/actors/{actor_id}/messages", json={"sleep": 1, "iterations": 999}
    )
    execution_id = basic_response_checks(answer)["execution_id"]
    path = f"/actors/{actor_id}/executions/{execution_id}"
    with trio.fail_after(DEADLINE):
        while True:
            if basic_response_checks(await api.admin.get(path))["worker_id"]:
                break
            await trio.sleep(0.1)
    stop = await api.admin.delete(path)
    assert stop.status_code == 200, stop.text
    assert "Issued force quit command for execution" in stop.json()["message"]
    aborted = await wait_execution(api.admin, actor_id, execution_id, "ABORTED")
    assert aborted["status_message"] == "Issued force quit command"


async def _first_execution(api) -> tuple[str, str]:
    actor_id = await get_actor_id(api.admin)
    summary = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/executions"))
    return actor_id, summary["executions"][0]["id"]


async def test_list_execution_details(api):
    """Ports test_list_execution_details."""
    actor_id, execution_id = await _first_execution(api)
    execution = basic_response_checks(
        await api.admin.get(f"/actors/{actor_id}/executions/{execution_id}")
    )
    assert execution["actor_id"] == actor_id
    for field in ("cpu", "executor", "id", "io", "runtime", "status"):
        assert field in execution
    assert execution["status"] == "COMPLETE"
    assert execution["id"] == execution_id


@pytest.mark.parametrize("tail", ["", "/logs"])
async def test_invalid_method_get_execution(api, tail):
    """Ports test_invalid_method_get_execution and test_invalid_method_get_execution_logs."""
    actor_id, execution_id = await _first_execution(api)
    answer = await api.admin.post(f"/actors/{actor_id}/executions/{execution_id}{tail}")
    refused(answer, 405, "Invalid HTTP method")


async def test_list_execution_logs(api):
    """Ports test_list_execution_logs: the message and Abaco's variables in the logs."""
    actor_id, execution_id = await _first_execution(api)
    path = f"/actors/{actor_id}/executions/{execution_id}/logs"
    logs = basic_response_checks(await api.admin.get(path))["logs"]
    assert "Contents of MSG: testing execution" in logs
    for variable in (
        "PATH",
        "_abaco_actor_id",
        "_abaco_api_server",
        "_abaco_actor_state",
        "_abaco_username",
        "_abaco_execution_id",
        "_abaco_Content_Type",
    ):
        assert f"\n{variable}=" in logs, variable
    assert f"_abaco_actor_id={actor_id}\n" in logs
    assert f"_abaco_username={ADMIN}\n" in logs
    assert "_abaco_Content_Type=str\n" in logs


async def test_execute_actor_json(api):
    """Ports test_execute_actor_json: a JSON body is the message."""
    actor_id = await get_actor_id(api.admin)
    data = {"key1": "value1", "key2": "value2"}
    execution = await execute_actor(api.admin, actor_id, json_data=data)
    path = f"/actors/{actor_id}/executions/{execution['id']}/logs"
    logs = basic_response_checks(await api.admin.get(path))["logs"]
    shown = logs.partition("Contents of MSG: ")[2].partition("\n")[0]
    assert json.loads(shown) == data
    assert "_abaco_Content_Type=application/json\n" in logs


async def test_execute_basic_actor_synchronous(api):
    """Ports test_execute_basic_actor_synchronous: the answer is the execution's logs."""
    actor_id = await get_actor_id(api.admin)
    answer = await api.admin.post(
        f"/actors/{actor_id}/messages",
        data={"message": "testing execution"},
        params={"_abaco_synchronous": "true"},
    )
    assert answer.status_code == 200, answer.text
    assert "Contents of MSG: testing execution" in answer.text
