"""Abaco's cron scenarios: register and update actors with a ``cron_schedule``.

A sequence, as in Abaco, with bodies sent as Abaco's tests send them. The package's
platform runs ``abaco cron`` as a process (a pass every half second), so beyond Abaco's
tests a due schedule is seen to run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    DEADLINE,
    basic_response_checks,
    get_actor_id,
    refused,
    register,
    wait_execution,
)

#: Abaco's schedule of test_update_cron, whose runs are all far ahead.
LATER = "2078-09-6 20 + 3 months"


async def test_register_actor_with_cron(api):
    """Ports test_register_actor_with_cron ("tomorrow", in UTC as Abaco's clock is)."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    schedule = f"{tomorrow} 23 + 6 hours"
    fields = {"image": ABACO_TEST, "name": "abaco_test_suite_cron", "cron_schedule": schedule}
    actor = await register(api.admin, as_json=True, **fields)
    assert actor["cron_schedule"] == schedule
    assert actor["cron_on"] is True


async def test_register_actor_with_incorrect_cron(api):
    """Ports test_register_actor_with_incorrect_cron: 400, with Abaco's message."""
    fields = {
        "image": ABACO_TEST,
        "name": "abaco_test_suite_cron",
        "cron_schedule": "2020-06-21 14 + 6 flimflams",
    }
    answer = await api.admin.post("/actors", data=fields)
    refused(answer, 400, "flimflams is an invalid unit of time")


async def test_update_cron(api):
    """Ports test_update_cron."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_cron")
    fields = {"image": ABACO_TEST, "stateless": False, "cron_schedule": LATER}
    result = basic_response_checks(await api.admin.put(f"/actors/{actor_id}", data=fields))
    assert result["cron_schedule"] == LATER
    assert result["cron_next_ex"] == "2078-9-6 20"


async def test_update_cron_switch(api):
    """Ports test_update_cron_switch: ``cron_on`` false turns the schedule off."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_cron")
    fields = {"image": ABACO_TEST, "stateless": False, "cron_schedule": LATER, "cron_on": False}
    result = basic_response_checks(await api.admin.put(f"/actors/{actor_id}", data=fields))
    assert result["image"] == ABACO_TEST
    assert result["cron_on"] is False


async def test_a_due_schedule_runs(api):
    """Beyond Abaco's tests: ``now + 1 day`` is due at once; the cron process sends
    Abaco's cron message (from the user ``cron``) and a worker runs it, once."""
    actor = await register(
        api.admin, image=ABACO_TEST, name="abaco_test_suite_cron_now", cron_schedule="now + 1 day"
    )
    path = f"/actors/{actor['id']}/executions"
    with trio.fail_after(DEADLINE):
        while True:
            listed = basic_response_checks(await api.admin.get(path))
            if listed["executions"]:
                break
            await trio.sleep(0.1)
    (first,) = listed["executions"]
    execution = await wait_execution(api.admin, actor["id"], first["id"])
    assert execution["executor"] == "cron"
    logs = basic_response_checks(await api.admin.get(f"{path}/{first['id']}/logs"))["logs"]
    assert "Contents of MSG: This is your cron execution\n" in logs
    status = basic_response_checks(await api.admin.get("/actors/cron"))
    assert status["instances"], status
    (scheduled,) = [a for a in status["actors"] if a["id"] == actor["id"]]
    assert scheduled["cron_on"] is True
    # The next run is a day on: nothing more was sent.
    listed = basic_response_checks(await api.admin.get(path))
    assert [e["id"] for e in listed["executions"]] == [first["id"]]
