"""Cron end to end: cron actors as processes send scheduled messages that real workers run."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import trio

from abaco.cron import parse_time
from tests.e2e._steps import finished, ready_actor, result

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    import httpx

    from tests.e2e.conftest import Platform

#: Passes five times a second, and schedules that count in seconds.
CRON = {"ABACO__CRON__TICK": "0.2", "ABACO__CRON__ALLOW_SECONDS": "true"}


@contextlib.asynccontextmanager
async def cron_actors(platform: Platform, count: int) -> AsyncIterator[None]:
    """Run ``count`` cron actors as processes (``abaco cron``), as ``abaco up`` runs one."""
    env = {**os.environ, **platform.env}
    processes = [
        await trio.lowlevel.open_process([sys.executable, "-m", "abaco", "cron"], env=env)
        for _ in range(count)
    ]
    try:

        async def all_passed() -> bool:
            return len((await cron_status(platform.http))["instances"]) == count

        await eventually(all_passed, 30)
        yield
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Return once ``check()`` is true; TooSlowError after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.1)


async def cron_status(http: httpx.AsyncClient) -> dict:
    return await result(await http.get("/actors/cron"))


async def total_executions(http: httpx.AsyncClient, actor_id: str) -> int:
    summary = await result(await http.get(f"/actors/{actor_id}/executions?limit=1000"))
    return int(summary["total_executions"])


async def sent_at_least(http: httpx.AsyncClient, actor_id: str, count: int) -> bool:
    return await total_executions(http, actor_id) >= count


async def next_run(http: httpx.AsyncClient, actor_id: str) -> datetime:
    return parse_time((await result(await http.get(f"/actors/{actor_id}")))["cron_next_ex"])


def seconds_from_now(seconds: int) -> str:
    start = datetime.now(UTC) + timedelta(seconds=seconds)
    return start.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("platform", [CRON], indirect=True)
async def test_two_cron_actors_send_one_message_per_run_and_workers_run_them(platform):
    http = platform.http
    async with cron_actors(platform, 2):
        actor = await ready_actor(http, cron_schedule=f"{seconds_from_now(5)} + 1 second")
        first = parse_time(actor["cron_next_ex"])
        await eventually(lambda: sent_at_least(http, actor["id"], 5), 90)
    # Both cron actors stopped: count what they sent against the runs they went through.
    sent = await total_executions(http, actor["id"])
    runs = (await next_run(http, actor["id"]) - first) // timedelta(seconds=1)
    # One message per run at most (a run missed under load is skipped, never doubled).
    assert 5 <= sent <= runs
    listing = await result(await http.get(f"/actors/{actor['id']}/executions?limit=1000"))
    execution = await finished(http, actor["id"], listing["executions"][0]["id"], timeout=60)
    assert (execution["status"], execution["executor"]) == ("COMPLETE", "cron")
    logs = await result(await http.get(f"/actors/{actor['id']}/executions/{execution['id']}/logs"))
    assert logs["logs"].strip() == "echo This is your cron execution"


@pytest.mark.parametrize("platform", [CRON], indirect=True)
async def test_with_cron_off_runs_pass_without_messages_and_on_again_they_resume(platform):
    http = platform.http
    async with cron_actors(platform, 1):
        actor = await ready_actor(http, cron_schedule="now + 1 second")
        path = f"/actors/{actor['id']}"
        await eventually(lambda: sent_at_least(http, actor["id"], 1), 60)
        off = await result(await http.put(path, json={"cron_on": False}))
        assert off["cron_on"] is False
        turned_off_at = parse_time(off["cron_next_ex"])

        async def passed(seconds: int) -> bool:
            return await next_run(http, actor["id"]) >= turned_off_at + timedelta(seconds=seconds)

        # A message claimed just before the switch may still arrive: count from a later run.
        await eventually(lambda: passed(2), 60)
        before = await total_executions(http, actor["id"])
        await eventually(lambda: passed(5), 60)
        assert await total_executions(http, actor["id"]) == before
        await result(await http.put(path, json={"cron_on": True}))
        await eventually(lambda: sent_at_least(http, actor["id"], before + 1), 60)
