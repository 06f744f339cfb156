"""Placement, failures and scaling, end to end: spawners and workers killed for real."""

from __future__ import annotations

import os
import signal

import pytest
import trio

from abaco.auth import Identity, Role, issue_token
from abaco.redis_client import open_redis
from tests._platform import ECHO_IMAGE, push_python_bundle
from tests.e2e._steps import (
    finished,
    ready_actor,
    result,
    send,
    wait_actor,
    wait_workers,
    workers,
)


async def test_new_workers_go_to_the_lighter_host(platform):
    http = platform.http
    busy = await ready_actor(http)
    await result(await http.post(f"/actors/{busy['id']}/workers", json={"num": 3}))
    placed = await wait_workers(http, busy["id"], 3)
    assert {w["host_id"] for w in placed} == {"host-a"}
    await platform.start_spawner("host-b")
    await trio.sleep(1.5)  # a load sample or two from each host
    fresh = await ready_actor(http)
    (worker,) = await wait_workers(http, fresh["id"], 1)
    assert worker["host_id"] == "host-b"


async def test_a_killed_spawners_workers_are_replaced_on_the_other_host(platform):
    http = platform.http
    actor = await ready_actor(http)
    await result(await http.post(f"/actors/{actor['id']}/workers", json={"num": 2}))
    before = await wait_workers(http, actor["id"], 2)
    assert {w["host_id"] for w in before} == {"host-a"}
    await platform.start_spawner("host-b")
    platform.kill_spawner("host-a")
    with trio.fail_after(60):
        while True:
            now = await workers(http, actor["id"])
            ready = [w for w in now if w["status"] in ("READY", "BUSY")]
            if len(ready) >= 1 and all(w["host_id"] == "host-b" for w in now):
                break
            await trio.sleep(0.2)
    execution = await finished(http, actor["id"], await send(http, actor["id"], "after"))
    assert execution["status"] == "COMPLETE"


async def test_a_worker_killed_mid_run_loses_no_message_and_leaves_nothing_running(platform):
    http = platform.http
    actor = await ready_actor(http)
    (worker,) = await wait_workers(http, actor["id"], 1)
    first = await send(http, actor["id"], "sleep:4")
    with trio.fail_after(30):
        while True:
            record = await result(await http.get(f"/actors/{actor['id']}/executions/{first}"))
            if record["status"] == "RUNNING":
                break
            await trio.sleep(0.05)
    os.kill(worker["pid"], signal.SIGKILL)
    ended = await finished(http, actor["id"], first, timeout=60)
    assert ended["status"] == "ERROR"
    with trio.fail_after(90):
        while True:
            summary = await result(await http.get(f"/actors/{actor['id']}/executions"))
            statuses = sorted(e["status"] for e in summary["executions"])
            if statuses == ["COMPLETE", "ERROR"]:
                break
            assert "ABORTED" not in statuses
            await trio.sleep(0.2)
    retry = next(e for e in summary["executions"] if e["status"] == "COMPLETE")
    logs = await result(await http.get(f"/actors/{actor['id']}/executions/{retry['id']}/logs"))
    assert logs["logs"].strip() == "echo sleep:4"


@pytest.mark.parametrize("platform", [{"ABACO__HEALTH__IDLE_TIMEOUT": "3"}], indirect=True)
async def test_workers_grow_with_the_mailbox_and_shrink_when_idle(platform):
    http = platform.http
    actor = await ready_actor(http, max_workers=3)
    ids = [await send(http, actor["id"], "sleep:1") for _ in range(12)]
    most = 0
    with trio.fail_after(90):
        for execution_id in ids:
            while True:
                most = max(most, len(await workers(http, actor["id"])))
                record = await result(
                    await http.get(f"/actors/{actor['id']}/executions/{execution_id}")
                )
                if record["status"] == "COMPLETE":
                    break
                await trio.sleep(0.1)
    assert 1 < most <= 3
    with trio.fail_after(60):
        while True:
            if len(await workers(http, actor["id"])) <= 1:
                break
            await trio.sleep(0.2)


async def test_permissions_across_processes(platform):
    settings = platform.settings()
    async with open_redis(settings.redis.url) as redis:
        tokens = {
            user: await issue_token(redis, settings, Identity(user, "default", Role.USER))
            for user in ("owner", "reader", "runner", "updater", "stranger")
        }

    def as_user(user):
        return {"Authorization": f"Bearer {tokens[user]}"}

    http = platform.http
    response = await http.post(
        "/actors", json={"image": "org.example/echo:1.0.0"}, headers=as_user("owner")
    )
    actor = await result(response)
    path = f"/actors/{actor['id']}"
    for user, level in (("reader", "READ"), ("runner", "EXECUTE"), ("updater", "UPDATE")):
        grant = await http.post(
            f"{path}/permissions", json={"user": user, "level": level}, headers=as_user("owner")
        )
        assert grant.status_code == 200
    expected = {
        "owner": (200, 200, 200),
        "reader": (200, 403, 403),
        "runner": (200, 200, 403),
        "updater": (200, 200, 200),
        "stranger": (403, 403, 403),
    }
    for user, codes in expected.items():
        read = await http.get(path, headers=as_user(user))
        run = await http.post(f"{path}/messages", json={"message": "hi"}, headers=as_user(user))
        update = await http.put(path, json={"description": user}, headers=as_user(user))
        assert (read.status_code, run.status_code, update.status_code) == codes, user


async def test_an_actor_whose_module_does_not_import_goes_to_error_until_updated(
    platform, tmp_path
):
    http = platform.http
    broken = await push_python_bundle(
        http, tmp_path, "org.example/broken:1.0.0", b"raise ImportError('this module is broken')\n"
    )
    actor = await result(await http.post("/actors", json={"image": broken}))
    failed = await wait_actor(http, actor["id"], "ERROR", timeout=30)
    assert failed["status_message"].startswith("Could not start a worker for this actor: ")
    assert failed["status_message"].endswith("ImportError: this module is broken")
    # No crash loop: once the failed worker is reaped, an actor in ERROR gets no new
    # workers (before, it got one every health pass).
    with trio.fail_after(10):
        while True:
            if not await workers(http, actor["id"]):
                break
            await trio.sleep(0.1)
    for _ in range(10):
        assert await workers(http, actor["id"]) == []
        await trio.sleep(0.3)
    # A message sent meanwhile waits in the mailbox, and runs once the actor is mended.
    waiting = await send(http, actor["id"], "after the fix")
    mended = await http.put(f"/actors/{actor['id']}", json={"image": ECHO_IMAGE})
    assert mended.status_code == 200, mended.text
    await wait_actor(http, actor["id"], "READY")
    assert (await finished(http, actor["id"], waiting))["status"] == "COMPLETE"
