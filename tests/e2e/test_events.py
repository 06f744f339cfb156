"""Events through the real platform: links run the linked actor, webhooks get real POSTs.

The platform's own events component (``abaco events``) delivers; the executions run on a
real spawner and worker.
"""

from __future__ import annotations

import json

import pytest
import trio

from tests._receiver import open_receiver
from tests.e2e._steps import TERMINAL, finished, ready_actor, result, send, wait_actor
from tests.e2e.conftest import ECHO_IMAGE


async def _executions(http, actor_id: str) -> list[dict]:
    answer = await result(await http.get(f"/actors/{actor_id}/executions"))
    return list(answer["executions"])


async def _ended_executions(http, actor_id: str, count: int, timeout: float = 90) -> list[dict]:
    """The actor's executions once ``count`` of them have ended."""
    with trio.fail_after(timeout):
        while True:
            found = await _executions(http, actor_id)
            if len(found) >= count and all(e["status"] in TERMINAL for e in found):
                return found
            await trio.sleep(0.2)


async def _event_in_logs(http, actor_id: str, execution_id: str) -> dict:
    """The event the echo actor printed (``echo {JSON}``) in one execution's log."""
    answer = await result(await http.get(f"/actors/{actor_id}/executions/{execution_id}/logs"))
    line = next(line for line in answer["logs"].splitlines() if line.startswith("echo "))
    event: dict = json.loads(line[len("echo ") :])
    return event


def _check_event_fields(event: dict) -> None:
    """Abaco's check_event_logs."""
    for field in ("event_time_utc", "event_time_display", "actor_id", "tenant_id"):
        assert event[field], field


async def test_execute_event_actor(platform):
    """Ports Abaco's test_create_event_link_actor, test_create_actor_with_link and
    test_execute_event_actor: the linked actor runs once per event of the first, with the
    event as its (JSON) message."""
    http = platform.http
    link = await ready_actor(http, name="abaco_test_suite_event-link", stateless=False)
    actor = await result(
        await http.post(
            "/actors",
            json={"image": ECHO_IMAGE, "name": "abaco_test_suite_event", "link": link["id"]},
        )
    )
    await wait_actor(http, actor["id"], "READY")
    # First the actor's ACTOR_READY.
    (ready_run,) = await _ended_executions(http, link["id"], 1)
    assert ready_run["status"] == "COMPLETE"
    ready = await _event_in_logs(http, link["id"], ready_run["id"])
    assert (ready["event_type"], ready["actor_id"]) == ("ACTOR_READY", actor["id"])
    _check_event_fields(ready)
    # Then one execution of the first actor: started and complete.
    execution_id = await send(http, actor["id"], "testing events execution")
    assert (await finished(http, actor["id"], execution_id))["status"] == "COMPLETE"
    runs = await _ended_executions(http, link["id"], 3)
    events = [await _event_in_logs(http, link["id"], run["id"]) for run in runs]
    by_type = {event["event_type"]: event for event in events}
    assert set(by_type) == {"ACTOR_READY", "EXECUTION_STARTED", "EXECUTION_COMPLETE"}
    complete = by_type["EXECUTION_COMPLETE"]
    assert (complete["execution_id"], complete["status"], complete["exit_code"]) == (
        execution_id,
        "COMPLETE",
        0,
    )
    assert by_type["EXECUTION_STARTED"]["execution_id"] == execution_id
    for event in events:
        _check_event_fields(event)
    # The linked actor's executions were sent by "Abaco Event".
    for run in runs:
        record = await result(await http.get(f"/actors/{link['id']}/executions/{run['id']}"))
        assert record["executor"] == "Abaco Event"


@pytest.mark.parametrize(
    "platform",
    [{"ABACO__EVENTS__WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}],
    indirect=True,
)
async def test_create_actor_with_webhook(platform):
    """Ports Abaco's test_create_actor_with_webhook, with a real local receiver instead of
    another actor's messages URL: ACTOR_READY, then EXECUTION_STARTED and
    EXECUTION_COMPLETE of an execution, each with Abaco's fields."""
    http = platform.http
    async with open_receiver("ok") as receiver:
        actor = await ready_actor(http, name="abaco_test_suite_event-2", webhook=receiver.url)
        await receiver.wait_until(lambda r: bool(r.of_type("ACTOR_READY")))
        execution_id = await send(http, actor["id"], "hello webhook")
        await receiver.wait_until(
            lambda r: bool(r.of_type("EXECUTION_STARTED") and r.of_type("EXECUTION_COMPLETE"))
        )
    (ready,) = receiver.of_type("ACTOR_READY")
    (started,) = receiver.of_type("EXECUTION_STARTED")
    (complete,) = receiver.of_type("EXECUTION_COMPLETE")
    for event in (ready, started, complete):
        _check_event_fields(event)
        assert event["actor_id"] == actor["id"]
        assert event["tenant_id"] == actor["tenant"]
        assert event["actor_dbid"] == f"{actor['tenant']}_{actor['id']}"
        assert event["_abaco_webhook"] == receiver.url
        assert (event["_abaco_username"], event["_abaco_Content_Type"]) == (
            "Abaco Event",
            "application/json",
        )
        assert event["_abaco_api_server"] == platform.api_url
    assert "status_message" in ready
    assert (started["execution_id"], started["status"]) == (execution_id, "RUNNING")
    assert (complete["execution_id"], complete["status"], complete["exit_code"]) == (
        execution_id,
        "COMPLETE",
        0,
    )
    assert started["event_time_utc"] <= complete["event_time_utc"]
