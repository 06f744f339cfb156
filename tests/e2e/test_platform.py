"""The platform end to end: separate processes, real HTTP, real workers in sandboxes."""

from __future__ import annotations

import trio

from tests.e2e._steps import finished, ready_actor, result, send, wait_workers


async def test_an_actor_from_a_pushed_bundle_runs_200_messages_with_logs_and_results(platform):
    http = platform.http
    actor = await ready_actor(http, max_workers=2)
    await result(await http.post(f"/actors/{actor['id']}/workers", json={"num": 2}))
    await wait_workers(http, actor["id"], 2)
    ids: list[str] = []

    async def sender(start: int) -> None:
        ids.extend([await send(http, actor["id"], f"m{i}") for i in range(start, 200, 8)])

    async with trio.open_nursery() as nursery:
        for start in range(8):
            nursery.start_soon(sender, start)
    assert len(set(ids)) == 200
    summary = await result(await http.get(f"/actors/{actor['id']}/executions?limit=1000"))
    assert summary["total_executions"] == 200
    for execution_id in ids:
        execution = await finished(http, actor["id"], execution_id, timeout=120)
        assert execution["status"] == "COMPLETE", execution
    # Logs and results, spot-checked with the message each execution got.
    by_message = {}
    for execution_id in ids[:20]:
        logs = await result(await http.get(f"/actors/{actor['id']}/executions/{execution_id}/logs"))
        message = logs["logs"].strip().removeprefix("echo ")
        by_message[message] = execution_id
        answer = await http.get(f"/actors/{actor['id']}/executions/{execution_id}/results")
        assert answer.content == f"result {message}".encode()
    assert len(by_message) == 20
    workers_used = {
        (await result(await http.get(f"/actors/{actor['id']}/executions/{e}")))["worker_id"]
        for e in ids[:50]
    }
    assert len(workers_used) == 2


async def test_a_synchronous_message_returns_the_result(platform):
    http = platform.http
    actor = await ready_actor(http)
    answer = await http.post(
        f"/actors/{actor['id']}/messages",
        json={"message": "now"},
        params={"_abaco_synchronous": "true"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.content == b"result now"
    assert answer.headers["content-type"] == "application/octet-stream"


async def test_aborting_a_running_execution_kills_the_run_and_frees_the_worker(platform):
    http = platform.http
    actor = await ready_actor(http)
    long = await send(http, actor["id"], "sleep:30")
    path = f"/actors/{actor['id']}/executions/{long}"
    with trio.fail_after(30):
        while True:
            if (await result(await http.get(path)))["status"] == "RUNNING":
                break
            await trio.sleep(0.05)
    answer = await http.delete(path)
    assert answer.json()["message"] == f"Issued force quit command for execution {long}."
    aborted = await finished(http, actor["id"], long)
    assert (aborted["status"], aborted["status_message"]) == (
        "ABORTED",
        "Issued force quit command",
    )
    with trio.fail_after(20):  # the worker is free again well before the 30 s sleep ends
        after = await finished(http, actor["id"], await send(http, actor["id"], "next"))
    assert after["status"] == "COMPLETE"
    assert after["worker_id"] == aborted["worker_id"]
