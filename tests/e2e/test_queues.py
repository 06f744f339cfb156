"""Custom queues end to end: an actor's ``queue`` names the spawner pool that serves it.

Ports test_create_actor_with_custom_queue_name, test_actor_uses_custom_queue,
test_actor_with_default_queue and test_2_actors_with_different_queues of Abaco's
tests/test_abaco_core.py (the last two are empty there): spawners started with
``--queue special`` take only the workers of actors in ``special``, and the
``platform`` fixture's spawner (``host-a``, no ``--queue``) only those of ``default``.
"""

from __future__ import annotations

import trio

from tests.e2e._steps import TERMINAL, ready_actor, result, send, wait_actor, wait_workers, workers
from tests.e2e.conftest import ECHO_IMAGE

SPECIAL = "special"


async def _finished(http, actor_id, execution_id):
    with trio.fail_after(60):
        while True:
            execution = await result(
                await http.get(f"/actors/{actor_id}/executions/{execution_id}")
            )
            if execution["status"] in TERMINAL:
                return execution
            await trio.sleep(0.1)


async def test_actors_run_only_on_the_spawners_of_their_queue(platform):
    http = platform.http
    created = await result(
        await http.post("/actors", json={"image": ECHO_IMAGE, "queue": SPECIAL, "stateless": False})
    )
    assert created["queue"] == SPECIAL
    default = await ready_actor(http)
    assert default["queue"] == "default"
    [default_worker] = await wait_workers(http, default["id"], 1)
    assert default_worker["host_id"] == "host-a"
    # No spawner serves "special" yet: its worker waits, unplaced, beside a busy default pool.
    [waiting] = await workers(http, created["id"])
    assert (waiting["status"], waiting["host_id"]) == ("REQUESTED", "")
    assert (await result(await http.get(f"/actors/{created['id']}")))["status"] == "SUBMITTED"

    await platform.start_spawner("host-s", queue=SPECIAL)
    await wait_actor(http, created["id"], "READY")
    [special_worker] = await wait_workers(http, created["id"], 1)
    assert special_worker["host_id"] == "host-s"

    # Each actor's executions run on its own pool.
    for actor_id, host in ((created["id"], "host-s"), (default["id"], "host-a")):
        execution = await _finished(http, actor_id, await send(http, actor_id, "hello"))
        assert execution["status"] == "COMPLETE"
        worker = await result(
            await http.get(f"/actors/{actor_id}/workers/{execution['worker_id']}")
        )
        assert worker["host_id"] == host

    # More workers of the default actor all go to the default pool.
    scaled = await http.post(f"/actors/{default['id']}/workers", json={"num": 3})
    assert scaled.status_code == 200, scaled.text
    placed = await wait_workers(http, default["id"], 3)
    assert {w["host_id"] for w in placed} == {"host-a"}
