"""Abaco's custom queue scenarios: an actor's ``queue`` names the spawner pool that runs
its workers.

The package runs one spawner for the default queue (``host-a``) and one for ``special``
(``host-special``); a worker's ``host_id`` says where it runs. Abaco's test of this
(test_actor_uses_custom_queue) was marked xfail and read its command channel; this one
looks at the workers.
"""

from __future__ import annotations

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    get_actor_id,
    refused,
    register,
    wait_execution,
    wait_workers,
)
from tests.abaco_core.conftest import DEFAULT_HOST, SPECIAL_HOST, SPECIAL_QUEUE

LIVE = frozenset({"READY", "BUSY"})


async def _hosts(api, actor_id: str, count: int) -> set[str]:
    return {w["host_id"] for w in await wait_workers(api.admin, actor_id, count, LIVE)}


async def test_create_actor_with_custom_queue_name(api):
    """Ports test_create_actor_with_custom_queue_name (and a limited user may not set a
    queue: 403 with Abaco's message)."""
    actor = await register(
        api.admin,
        image=ABACO_TEST,
        name="abaco_test_suite_queue1_actor1",
        stateless=False,
        queue=SPECIAL_QUEUE,
    )
    assert actor["queue"] == SPECIAL_QUEUE
    fields = {"image": ABACO_TEST, "name": "limited_queue", "queue": SPECIAL_QUEUE}
    refused(await api.limited.post("/actors", json=fields), 403, "can set queue")


async def test_actor_uses_custom_queue(api):
    """Ports test_actor_uses_custom_queue: the special actor's workers run on the special
    queue's host, even while the default queue is busy with another actor's workers."""
    busy = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite_statelesss")
    answer = await api.admin.post(f"/actors/{busy['id']}/workers", json={"num": 5})
    basic_response_checks(answer)
    special = await get_actor_id(api.admin, "abaco_test_suite_queue1_actor1")
    await check_actor_is_ready(api.admin, special)
    assert await _hosts(api, special, 1) == {SPECIAL_HOST}
    assert await _hosts(api, busy["id"], 5) == {DEFAULT_HOST}


async def test_actor_with_default_queue(api):
    """Ports test_actor_with_default_queue (empty in Abaco): an actor without a queue is
    on the default queue, and runs on its host."""
    actor = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite_default_queue")
    assert actor["queue"] == "default"
    await check_actor_is_ready(api.admin, actor["id"])
    assert await _hosts(api, actor["id"], 1) == {DEFAULT_HOST}


async def test_2_actors_with_different_queues(api):
    """Ports test_2_actors_with_different_queues (empty in Abaco): two actors, one per
    queue, each run a message on their own queue's host."""
    for name, host in (
        ("abaco_test_suite_queue1_actor1", SPECIAL_HOST),
        ("abaco_test_suite_default_queue", DEFAULT_HOST),
    ):
        actor_id = await get_actor_id(api.admin, name)
        answer = await api.admin.post(f"/actors/{actor_id}/messages", data={"message": "hi"})
        execution_id = basic_response_checks(answer)["execution_id"]
        execution = await wait_execution(api.admin, actor_id, execution_id)
        workers = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/workers"))
        by_id = {w["id"]: w["host_id"] for w in workers}
        assert by_id[execution["worker_id"]] == host
