"""The supervisor as a loop (run_health) and as a process (python -m abaco.health)."""

from __future__ import annotations

import signal
import subprocess
import sys

import attrs
import trio

from abaco.actors.states import WorkerStatus
from abaco.control import remember_tenant
from abaco.health import run_health
from abaco.health.supervisor import reconcile_every
from abaco.stores import Stores
from tests.health._helpers import actor, ago, worker


def _fast(settings):
    return attrs.evolve(settings, health=attrs.evolve(settings.health, interval=0.02))


async def _gone(stores, worker_id):
    # Polling the record is the only way to see another process's (task's) repair.
    with trio.fail_after(10):
        while await stores.workers.exists(worker_id):  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_run_health_loops_until_cancelled(settings, redis, stores):
    await remember_tenant(redis, settings.redis.key_prefix, stores.tenant)
    a = actor()
    await stores.actors.create(a)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_health, _fast(settings), redis)
        for _ in range(2):  # a second dead worker, written later, is found by a later pass
            dead = worker(a.id, last_health_check_time=ago(3600))
            await stores.workers.create(dead)
            await _gone(stores, dead.id)
        nursery.cancel_scope.cancel()
    # Cancelled cleanly: no exception, and nothing left running (the nursery exited).


async def test_one_tenants_bad_record_does_not_stop_the_others_repairs(settings, redis, stores):
    prefix = settings.redis.key_prefix
    for tenant in ("aaa-broken", stores.tenant):
        await remember_tenant(redis, prefix, tenant)
    broken = Stores.open(redis, settings, "aaa-broken").workers
    await redis.hset(broken.key("w1"), {"_v": b"99", "_rev": b"1", "_parent": b""})
    await redis.zadd(f"{prefix}:aaa-broken:worker:_ids", {"w1": 0})
    dead = worker("gone-actor", WorkerStatus.SHUTTING_DOWN, last_health_check_time=ago(3600))
    await stores.workers.create(dead)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_health, _fast(settings), redis)
        await _gone(stores, dead.id)
        nursery.cancel_scope.cancel()


def test_the_scan_runs_about_once_per_visibility(settings):
    def every(interval, visibility):
        health = attrs.evolve(settings.health, interval=interval)
        options = attrs.evolve(settings.worker, visibility=visibility)
        return reconcile_every(attrs.evolve(settings, health=health, worker=options))

    assert every(1.0, 30.0) == 30
    assert every(0.7, 2.0) == 3
    assert every(60.0, 30.0) == 1


def _conf(tmp_path, url):
    path = tmp_path / "abaco.conf"
    path.write_text(
        f'[redis]\nurl = "{url}"\n[health]\ninterval = 0.05\n'
        f'[logging]\nformat = "json"\n[state]\ndir = "{tmp_path / "state"}"\n'
    )
    return str(path)


def test_the_command_needs_the_platforms_redis(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "abaco.health", "--config", _conf(tmp_path, "")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "[redis] url" in result.stderr


async def test_the_command_runs_and_stops_on_sigterm(tmp_path, settings):
    argv = [sys.executable, "-m", "abaco.health", "--config", _conf(tmp_path, settings.redis.url)]
    process = await trio.lowlevel.open_process(argv, stderr=subprocess.PIPE)
    assert process.stderr is not None
    try:
        seen = b""
        with trio.fail_after(30):
            while b"health.started" not in seen:
                chunk = await process.stderr.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stderr.aclose()
