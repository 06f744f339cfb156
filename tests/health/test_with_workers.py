"""The supervisor next to real worker processes: a live worker stays, a paused one is replaced."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import mailbox_of, submit
from abaco.actors.states import ExecutionStatus, WorkerStatus
from abaco.actors.worker import run_worker
from abaco.channels import open_hub
from abaco.control import PlaceWorker, remember_tenant, scheduler_inbox
from abaco.errors import NotFound
from abaco.health import run_health
from abaco.health.context import all_records
from tests.health._helpers import actor as make_actor

ROOT = Path(__file__).resolve().parents[2]

SLOW_ONCE = """
import os, time

def handle(message):
    kind, marker = message.split(":", 1)
    if kind == "sleep":
        time.sleep(float(marker))
    elif not os.path.exists(marker):
        open(marker, "w").close()
        print("first attempt: sleeping", flush=True)
        time.sleep(60)
    print("done", message, flush=True)
"""

pytestmark = pytest.mark.slow


def _bundle(root: Path) -> Path:
    bundle = root / "bundle"
    (bundle / "slow").mkdir(parents=True)
    (bundle / "slow" / "__init__.py").write_text("")
    (bundle / "slow" / "main.py").write_text(SLOW_ONCE)
    manifest = {
        "spec": "abaco.bundle/v1",
        "name": "org.example/slow",
        "version": "1.0.0",
        "runtime": {"type": "python", "entry_point": "slow.main:handle"},
        "content_sha256": "0" * 64,
    }
    (bundle / "Manifest.json").write_text(json.dumps(manifest))
    return bundle


@pytest.fixture
def fast(settings):
    """Heartbeats every 0.3 s, dead after 5 missed (1.5 s); messages retaken after 1 s."""
    worker = attrs.evolve(settings.worker, heartbeat=0.3, visibility=1.0, sandbox=False)
    health = attrs.evolve(settings.health, interval=0.05, missed_heartbeats=5)
    return attrs.evolve(settings, worker=worker, health=health)


async def _until(check, timeout=30):
    with trio.fail_after(timeout):
        while not (found := await check()):  # noqa: ASYNC110  (another process changes it)
            await trio.sleep(0.05)
    return found


async def _status(stores, record_id, *statuses, store="executions"):
    async def check():
        try:
            record = await getattr(stores, store).get(record_id)
        except NotFound:
            return None
        return record if record.status in statuses else None

    return await _until(check)


async def test_a_worker_running_a_long_execution_is_not_taken_for_dead(
    fast, redis, stores, tmp_path
):
    actor = make_actor()
    await stores.actors.create(actor)
    await remember_tenant(redis, fast.redis.key_prefix, stores.tenant)
    async with open_hub(redis) as hub, trio.open_nursery() as nursery:
        await nursery.start(run_health, fast, redis)
        process = await nursery.start(
            lambda task_status: run_worker(
                fast,
                redis,
                actor_id=actor.id,
                worker_id=new_id(),
                bundle_dir=_bundle(tmp_path),
                task_status=task_status,
            )
        )
        mailbox = mailbox_of(hub, fast.redis.key_prefix, stores.tenant, actor.id)
        # Three heartbeat deadlines long: only the heartbeat says the worker is alive.
        execution = await submit(stores, mailbox, actor_id=actor.id, body="sleep:4.5")
        await _status(stores, execution.id, ExecutionStatus.COMPLETE)
        assert await stores.workers.exists(process.worker_id)
        await _status(stores, process.worker_id, WorkerStatus.READY, store="workers")
        assert await scheduler_inbox(hub, fast.redis.key_prefix).length() == 0
        process.stopping.set()
        await _status(stores, process.worker_id, WorkerStatus.SHUTTING_DOWN, store="workers")
        nursery.cancel_scope.cancel()


async def test_a_paused_worker_is_replaced_and_its_message_runs_again(
    fast, redis, stores, tmp_path
):
    prefix = fast.redis.key_prefix
    actor = make_actor()
    await stores.actors.create(actor)
    await remember_tenant(redis, prefix, stores.tenant)
    bundle = _bundle(tmp_path)
    paused_id = new_id()
    env = {
        **os.environ,
        "ABACO__REDIS__URL": redis.url,
        "ABACO__STATE__DIR": str(tmp_path / "state"),
        "ABACO__WORKER__HEARTBEAT": "0.3",
        "ABACO__WORKER__VISIBILITY": "1.0",
        "ABACO__WORKER__SANDBOX": "false",
        # Once resumed, it lets the execution it still runs go on this long, then exits.
        "ABACO__WORKER__STOP_DEADLINE": "2.0",
    }
    argv = [sys.executable, "-m", "abaco.actors.worker", "--actor", actor.id]
    argv += ["--worker", paused_id, "--bundle-dir", str(bundle)]
    paused = await trio.lowlevel.open_process(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its executions go with it at the end
    )
    try:
        async with open_hub(redis) as hub, trio.open_nursery() as nursery:
            await _status(stores, paused_id, WorkerStatus.READY, store="workers")
            await nursery.start(run_health, fast, redis)
            mailbox = mailbox_of(hub, prefix, stores.tenant, actor.id)
            first = await submit(
                stores, mailbox, actor_id=actor.id, body=f"once:{tmp_path / 'marker'}"
            )
            await _status(stores, first.id, ExecutionStatus.RUNNING)
            # Paused only once the attempt runs (and has left its marker), not before.
            with trio.fail_after(30):
                async with contextlib.aclosing(stores.logs.follow(first.id, poll_ms=100)) as log:
                    async for chunk in log:
                        if "first attempt" in chunk:
                            break
            paused.send_signal(signal.SIGSTOP)

            # The supervisor deletes the silent worker and asks for another for the message.
            async def gone():
                return not await stores.workers.exists(paused_id)

            await _until(gone)
            inbox = scheduler_inbox(hub, prefix)
            delivery = await inbox.get(timeout=30)
            command = PlaceWorker.from_wire(delivery.message)
            await delivery.ack()
            assert command.actor_id == actor.id
            # Standing in for the scheduler and spawner: start the requested worker.
            replacement = await nursery.start(
                lambda task_status: run_worker(
                    fast,
                    redis,
                    actor_id=actor.id,
                    worker_id=command.worker_id,
                    bundle_dir=bundle,
                    task_status=task_status,
                )
            )
            failed = await _status(stores, first.id, ExecutionStatus.ERROR)
            assert paused_id in failed.status_message

            async def completed():
                executions = await all_records(stores.executions, parent=actor.id)
                done = [e for e in executions if e.status is ExecutionStatus.COMPLETE]
                return done[0] if done else None

            assert (await _until(completed)).worker_id == replacement.worker_id
            # Resumed, the paused worker finds its record gone and stops by itself.
            paused.send_signal(signal.SIGCONT)
            with trio.fail_after(30):
                await paused.wait()
            # Nothing more was asked of the scheduler: one worker covered the backlog.
            assert await inbox.length() == 0
            replacement.stopping.set()
            await _status(
                stores, replacement.worker_id, WorkerStatus.SHUTTING_DOWN, store="workers"
            )
            nursery.cancel_scope.cancel()
    finally:
        if paused.returncode is None:
            os.killpg(paused.pid, signal.SIGKILL)
            await paused.wait()
