"""Abaco's events scenarios: link cycles, links, webhooks, and the events they carry.

A sequence, as in Abaco, with actors registered by forms as Abaco's tests register them.
The package's platform runs ``abaco events`` as a process, and lets webhooks reach this
host (``[events] webhook_allowed_networks``), so that, as in Abaco's test, a webhook can
be another actor's messages URL with a nonce. The echoing actors print a JSON message as
its JSON text (Abaco's printed a Python dict), so logs are checked by decoding it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from abaco.events.links import has_cycles
from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    DEADLINE,
    TERMINAL,
    basic_response_checks,
    check_actor_is_ready,
    execute_actor,
    get_actor_id,
    refused,
)

CYCLE = "this update would result in a cycle of linked actors"


@pytest.mark.parametrize(
    ("links", "cyclic"),
    [
        pytest.param({"A": "B", "B": "C", "C": "D"}, False, id="test_has_cycles_1"),
        pytest.param({"A": "B", "B": "A", "C": "D"}, True, id="test_has_cycles_2"),
        pytest.param(
            {"A": "B", "B": "C", "C": "D", "D": "E", "E": "H", "H": "B"},
            True,
            id="test_has_cycles_3",
        ),
        pytest.param(
            {
                "A": "B",
                "B": "C",
                "D": "E",
                "E": "H",
                "H": "J",
                "I": "J",
                "K": "J",
                "L": "M",
                "M": "J",
            },
            False,
            id="test_has_cycles_4",
        ),
        pytest.param({"A": "B", "B": "C", "C": "C"}, True, id="test_has_cycles_5"),
    ],
)
def test_has_cycles(links, cyclic):
    """Ports test_has_cycles_1 to test_has_cycles_5: unit tests of the cycle check, as
    Abaco's were (of its controllers.has_cycles); the API's use of it is below."""
    assert has_cycles(links) is cyclic


async def _create(http, **fields: Any) -> dict[str, Any]:
    actor: dict[str, Any] = basic_response_checks(await http.post("/actors", data=fields))
    return actor


async def _ended_executions(http, actor_id: str, count: int) -> list[dict[str, Any]]:
    """The actor's executions once at least ``count`` of them have all ended."""
    path = f"/actors/{actor_id}/executions"
    with trio.fail_after(DEADLINE):
        while True:
            found: list[dict[str, Any]] = basic_response_checks(await http.get(path))["executions"]
            if len(found) >= count and all(e["status"] in TERMINAL for e in found):
                return found
            await trio.sleep(0.1)


async def _event_of(http, actor_id: str, execution_id: str) -> dict[str, Any]:
    """The event an echoing actor got as its message, from the execution's logs."""
    path = f"/actors/{actor_id}/executions/{execution_id}/logs"
    logs = basic_response_checks(await http.get(path))["logs"]
    event: dict[str, Any] = json.loads(logs.partition("Contents of MSG: ")[2].partition("\n")[0])
    return event


def check_event_logs(event: dict[str, Any]) -> None:
    """Abaco's check_event_logs."""
    for field in ("event_time_utc", "event_time_display", "actor_id"):
        assert event[field], field


async def test_create_event_link_actor(api):
    """Ports test_create_event_link_actor."""
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_event-link", "stateless": False}
    await _create(api.admin, **data)


async def test_create_actor_with_link(api):
    """Ports test_create_actor_with_link."""
    link_actor_id = await get_actor_id(api.admin, "abaco_test_suite_event-link")
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_event", "link": link_actor_id}
    assert (await _create(api.admin, **data))["link"] == link_actor_id


async def test_create_actor_with_webhook(api):
    """Ports test_create_actor_with_webhook: the webhook is another actor's messages URL
    with a nonce; that actor's first execution is the ACTOR_READY of the new actor."""
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_event-webhook", "stateless": False}
    target = await _create(api.admin, **data)
    nonce = basic_response_checks(await api.admin.post(f"/actors/{target['id']}/nonces"))["id"]
    webhook = f"{api.world.running.api_url}/actors/{target['id']}/messages?x-nonce={nonce}"
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_event-2", "webhook": webhook}
    event_actor = await _create(api.admin, **data)
    (ready_run,) = await _ended_executions(api.admin, target["id"], 1)
    assert ready_run["status"] == "COMPLETE"
    event = await _event_of(api.admin, target["id"], ready_run["id"])
    assert event["event_type"] == "ACTOR_READY"
    assert event["actor_id"] == event_actor["id"]
    assert event["_abaco_webhook"] == webhook
    check_event_logs(event)


async def test_execute_event_actor(api):
    """Ports test_execute_event_actor: the linked actor runs once per event of the first,
    ACTOR_READY and, for the execution, EXECUTION_STARTED (which Abaco declared but never
    sent) and EXECUTION_COMPLETE."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_event")
    await check_actor_is_ready(api.admin, actor_id)
    execution = await execute_actor(api.admin, actor_id, data={"message": "testing events"})
    link_actor_id = await get_actor_id(api.admin, "abaco_test_suite_event-link")
    runs = await _ended_executions(api.admin, link_actor_id, 3)
    assert all(run["status"] == "COMPLETE" for run in runs), runs
    events = [await _event_of(api.admin, link_actor_id, run["id"]) for run in runs]
    by_type = {event["event_type"]: event for event in events}
    assert set(by_type) == {"ACTOR_READY", "EXECUTION_STARTED", "EXECUTION_COMPLETE"}
    assert by_type["EXECUTION_COMPLETE"]["execution_id"] == execution["id"]
    assert by_type["EXECUTION_STARTED"]["execution_id"] == execution["id"]
    for event in events:
        assert event["actor_id"] == actor_id
        check_event_logs(event)


async def _chain(api, data: dict[str, Any], first_link: str | None) -> list[str]:
    """Five actors, each linked to the one before (the first to ``first_link``)."""
    ids: list[str] = []
    link = first_link
    for _ in range(5):
        fields = {**data, "link": link} if link else data
        link = (await _create(api.admin, **fields))["id"]
        ids.append(link)
    return ids


async def _delete(api, ids: list[str]) -> None:
    # Each linked actor runs for each event of the next: gone, they send none down the chain.
    for actor_id in ids:
        basic_response_checks(await api.admin.delete(f"/actors/{actor_id}"))


async def test_cant_create_link_with_cycle(api):
    """Ports test_cant_create_link_with_cycle: a chain of six; linking its second to its
    last closes a cycle (400, Abaco's message)."""
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_create_link"}
    base = (await _create(api.admin, **data))["id"]
    ids = await _chain(api, data, base)
    answer = await api.admin.put(f"/actors/{ids[0]}", data={**data, "link": ids[4]})
    refused(answer, 400, CYCLE)
    assert basic_response_checks(await api.admin.get(f"/actors/{ids[0]}"))["link"] == base
    await _delete(api, [base, *ids])


async def test_cant_update_link_with_cycle(api):
    """Ports test_cant_update_link_with_cycle: the same, on a chain hanging off
    event-link."""
    link_actor_id = await get_actor_id(api.admin, "abaco_test_suite_event-link")
    data = {"image": ABACO_TEST, "name": "abaco_test_suite_event"}
    ids = await _chain(api, data, link_actor_id)
    answer = await api.admin.put(f"/actors/{ids[0]}", data={**data, "link": ids[4]})
    refused(answer, 400, CYCLE)
    await _delete(api, ids)
