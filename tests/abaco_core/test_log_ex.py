"""Abaco's log_ex scenarios: an actor's ``log_ex`` (seconds its executions' logs are kept)
is set at registration and changed by an update, and the logs really go when it ends.

A sequence, as in Abaco. Descriptions are sent as JSON with a number (Abaco's tests sent a
form with the text '16000'). Whether a log is still kept is seen through the log search,
which searches only the logs Redis still holds (README "Search").
"""

from __future__ import annotations

import trio

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    DEADLINE,
    basic_response_checks,
    check_actor_is_ready,
    get_actor_id,
    refused,
    register,
    wait_execution,
)

NAME = "abaco_log_ex_test"


async def test_register_with_log_ex(api):
    """Ports test_register_with_log_ex."""
    actor = await register(api.admin, image=ABACO_TEST, name=NAME, log_ex=16000)
    assert actor["log_ex"] == 16000


async def test_update_log_ex(api):
    """Ports test_update_log_ex."""
    actor_id = await get_actor_id(api.admin, NAME)
    update = {"image": ABACO_TEST, "log_ex": 20000}
    actor = basic_response_checks(await api.admin.put(f"/actors/{actor_id}", json=update))
    assert actor["image"] == ABACO_TEST
    assert actor["log_ex"] == 20000
    shown = basic_response_checks(await api.admin.get(f"/actors/{actor_id}"))
    assert shown["log_ex"] == 20000


async def test_log_ex_must_be_a_second_or_more(api):
    """Beyond Abaco's tests: a log_ex below one second is a 400 that names log_ex."""
    actor_id = await get_actor_id(api.admin, NAME)
    update = {"image": ABACO_TEST, "log_ex": 0}
    refused(await api.admin.put(f"/actors/{actor_id}", json=update), 400, "log_ex")
    answer = await api.admin.post("/actors", json={"image": ABACO_TEST, "log_ex": -5})
    refused(answer, 400, "log_ex")


async def _execute(api, actor_id: str, message: str) -> str:
    answer = await api.admin.post(f"/actors/{actor_id}/messages", data={"message": message})
    execution_id: str = basic_response_checks(answer)["execution_id"]
    await wait_execution(api.admin, actor_id, execution_id)
    return execution_id


async def _kept_logs(api, actor_id: str) -> set[str]:
    found = basic_response_checks(
        await api.admin.get("/actors/search/logs", params={"actor_id": actor_id})
    )
    return {record["execution_id"] for record in found["search"]}


async def test_logs_are_kept_for_log_ex(api):
    """Beyond Abaco's tests: a log is kept for the actor's log_ex as it is when the
    execution ends. With log_ex 20000 the first execution's log stays; after an update to
    one second (on the running worker, no new one), the next execution's log goes."""
    actor_id = await get_actor_id(api.admin, NAME)
    await check_actor_is_ready(api.admin, actor_id)
    kept = await _execute(api, actor_id, "kept for hours")
    assert await _kept_logs(api, actor_id) == {kept}

    workers_path = f"/actors/{actor_id}/workers"
    workers = {w["id"] for w in basic_response_checks(await api.admin.get(workers_path))}
    update = {"image": ABACO_TEST, "log_ex": 1}
    basic_response_checks(await api.admin.put(f"/actors/{actor_id}", json=update))
    await check_actor_is_ready(api.admin, actor_id)
    brief = await _execute(api, actor_id, "kept for a second")
    execution = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/executions/{brief}"))
    assert execution["worker_id"] in workers
    with trio.fail_after(DEADLINE):
        while True:
            if brief not in await _kept_logs(api, actor_id):
                break
            await trio.sleep(0.2)
    assert await _kept_logs(api, actor_id) == {kept}
