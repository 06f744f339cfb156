"""The worker with real bundles, real processes and a real Valkey."""

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
from abaco.actors.mailbox import StopWorker, control_of, mailbox_of, prepare, submit
from abaco.actors.models import Actor
from abaco.actors.states import ActorStatus, ExecutionStatus, WorkerStatus
from abaco.actors.worker import run_worker
from abaco.channels import open_hub
from abaco.control import stop_worker
from abaco.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]

ECHO = """
import os, sys, time
from abaco.actors import context

def handle(message):
    if message.startswith("results"):
        for part in ("one", "two", "three"):
            context.send_result(part.encode())
    elif message == "fail":
        print("about to fail", flush=True)
        raise SystemExit(3)
    elif message == "count":
        state = context.get_state() or {"count": 0}
        context.set_state({"count": state["count"] + 1})
    elif message.startswith("tell:"):
        _, target, text = message.split(":", 2)
        print("sent as", context.send_message(target, text), flush=True)
    elif message.startswith("slow-once:"):
        marker = message.split(":", 1)[1]
        if not os.path.exists(marker):
            open(marker, "w").close()
            print("first attempt: sleeping", flush=True)
            time.sleep(60)
    print("echo:", message, "from", os.environ["_abaco_actor_id"], flush=True)
"""


def _bundle(root: Path, source: str = ECHO) -> Path:
    bundle = root / "bundle"
    (bundle / "echo").mkdir(parents=True)
    (bundle / "echo" / "__init__.py").write_text("")
    (bundle / "echo" / "main.py").write_text(source)
    manifest = {
        "spec": "abaco.bundle/v1",
        "name": "org.example/echo",
        "version": "1.0.0",
        "runtime": {"type": "python", "entry_point": "echo.main:handle"},
        "content_sha256": "0" * 64,
    }
    (bundle / "Manifest.json").write_text(json.dumps(manifest))
    return bundle


async def wait_execution(stores, execution_id, *statuses, timeout=30):
    """Wait until the execution is in one of ``statuses``; returns it."""
    with trio.fail_after(timeout):
        while True:
            execution = await stores.executions.get(execution_id)
            if execution.status in statuses:
                return execution
            await trio.sleep(0.05)


async def start_worker(nursery, settings, redis, actor, bundle, worker_id=None):
    """Start a worker in ``nursery``; returns its WorkerProcess once it is READY."""
    return await nursery.start(
        lambda task_status: run_worker(
            settings,
            redis,
            actor_id=actor.id,
            worker_id=worker_id or new_id(),
            bundle_dir=bundle,
            task_status=task_status,
        )
    )


@pytest.fixture
async def actor(stores):
    record = Actor(id=new_id(), name="echo", owner="alice", image="org.example/echo:1.0.0")
    await stores.actors.put(record)
    return record


@pytest.fixture
def worker_settings(settings):
    fast = attrs.evolve(settings.worker, heartbeat=0.2, visibility=1.0, stop_deadline=2.0)
    return attrs.evolve(settings, worker=fast)


@pytest.fixture
async def worker(redis, stores, actor, worker_settings, tmp_path):
    async with trio.open_nursery() as nursery:
        process = await start_worker(nursery, worker_settings, redis, actor, _bundle(tmp_path))
        yield process
        process.stopping.set()


@pytest.fixture
async def mailbox(redis, stores, actor, settings):
    async with open_hub(redis) as hub:
        yield mailbox_of(hub, settings.redis.key_prefix, stores.tenant, actor.id)


async def test_a_message_becomes_a_complete_execution_with_logs(worker, stores, mailbox, actor):
    execution = await submit(stores, mailbox, actor_id=actor.id, body="hello")
    done = await wait_execution(
        stores, execution.id, ExecutionStatus.COMPLETE, ExecutionStatus.ERROR
    )
    assert done.status is ExecutionStatus.COMPLETE, done.status_message
    assert done.exit_code == 0
    assert done.worker_id == worker.worker_id
    assert done.start_time is not None
    assert done.finish_time is not None
    logs = await stores.logs.read(execution.id)
    assert logs.text == f"echo: hello from {actor.id}\n"
    assert logs.complete
    assert await mailbox.length() == 0


async def test_a_message_that_comes_before_its_record_waits_for_it(worker, stores, mailbox, actor):
    # The API writes the record and the message at once: the message may win the race.
    execution, message = prepare(stores.tenant, actor_id=actor.id, body="early")
    await mailbox.put(message.to_wire())
    await trio.sleep(0.2)
    await stores.executions.create(execution)
    done = await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
    assert done.worker_id == worker.worker_id
    # One that never gets a record is dropped after a while, and the worker goes on.
    _, orphan = prepare(stores.tenant, actor_id=actor.id, body="orphan")
    await mailbox.put(orphan.to_wire())
    after = await submit(stores, mailbox, actor_id=actor.id, body="after")
    await wait_execution(stores, after.id, ExecutionStatus.COMPLETE)
    assert await mailbox.length() == 0


async def test_results_are_kept_in_order(worker, stores, mailbox, actor):
    execution = await submit(stores, mailbox, actor_id=actor.id, body="results")
    await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
    assert [await stores.results.pop(execution.id) for _ in range(4)] == [
        b"one",
        b"two",
        b"three",
        None,
    ]


async def test_a_failing_actor_ends_in_error_with_its_exit_code(worker, stores, mailbox, actor):
    execution = await submit(stores, mailbox, actor_id=actor.id, body="fail")
    done = await wait_execution(
        stores, execution.id, ExecutionStatus.ERROR, ExecutionStatus.COMPLETE
    )
    assert done.status is ExecutionStatus.ERROR
    assert done.exit_code == 3
    assert "about to fail" in (await stores.logs.read(execution.id)).text


async def test_many_messages_are_run_one_at_a_time(worker, stores, mailbox, actor):
    executions = [await submit(stores, mailbox, actor_id=actor.id, body=f"m{i}") for i in range(10)]
    for i, execution in enumerate(executions):
        await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
        assert (await stores.logs.read(execution.id)).text.startswith(f"echo: m{i} ")
    starts = [(await stores.executions.get(e.id)).start_time for e in executions]
    assert starts == sorted(starts)


async def test_the_worker_record_is_ready_and_its_heart_beats(worker, stores):
    record = await stores.workers.get(worker.worker_id)
    assert record.status is WorkerStatus.READY
    first = record.last_health_check_time
    await trio.sleep(0.5)
    assert (await stores.workers.get(worker.worker_id)).last_health_check_time > first


async def test_a_stopped_worker_finishes_and_says_so(
    redis, stores, actor, worker_settings, tmp_path
):
    worker_id = new_id()
    async with trio.open_nursery() as nursery:
        process = await start_worker(
            nursery, worker_settings, redis, actor, _bundle(tmp_path), worker_id=worker_id
        )
        process.stopping.set()
    assert (await stores.workers.get(worker_id)).status is WorkerStatus.SHUTTING_DOWN


async def test_the_last_worker_of_a_deleted_actor_deletes_its_mailbox(
    redis, stores, mailbox, actor, worker_settings, tmp_path
):
    bundle = _bundle(tmp_path)
    async with trio.open_nursery() as nursery:
        process = await start_worker(nursery, worker_settings, redis, actor, bundle)
        await submit(stores, mailbox, actor_id=actor.id, body="hello")
        process.stopping.set()
    assert await redis.exists(mailbox.address)  # the actor lives: its mailbox stays
    async with trio.open_nursery() as nursery:
        process = await start_worker(nursery, worker_settings, redis, actor, bundle)
        await stores.actors.delete(actor.id)
        process.stopping.set()
    assert not await redis.exists(mailbox.address)


async def test_a_worker_killed_mid_execution_loses_no_message(
    redis, stores, mailbox, actor, worker_settings, tmp_path
):
    bundle = _bundle(tmp_path)
    env = {
        **os.environ,
        "ABACO__REDIS__URL": redis.url,
        "ABACO__STATE__DIR": str(tmp_path / "state"),
        "ABACO__WORKER__VISIBILITY": "1.0",
        "ABACO__WORKER__SANDBOX": "false",  # the marker file lives outside any sandbox
    }
    argv = [sys.executable, "-m", "abaco.actors.worker", "--actor", actor.id]
    doomed = await trio.lowlevel.open_process(
        [*argv, "--bundle-dir", str(bundle)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        marker = tmp_path / "attempted"
        first = await submit(stores, mailbox, actor_id=actor.id, body=f"slow-once:{marker}")
        running = await wait_execution(stores, first.id, ExecutionStatus.RUNNING)
        with trio.fail_after(30):
            async with contextlib.aclosing(stores.logs.follow(first.id, poll_ms=100)) as chunks:
                async for chunk in chunks:
                    if "first attempt" in chunk:
                        break
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
    finally:
        doomed.kill()
        await doomed.wait()
    # Another worker takes the message once the dead one stops renewing it.
    async with trio.open_nursery() as nursery:
        process = await start_worker(
            nursery,
            attrs.evolve(
                worker_settings, worker=attrs.evolve(worker_settings.worker, sandbox=False)
            ),
            redis,
            actor,
            bundle,
        )
        failed = await wait_execution(stores, first.id, ExecutionStatus.ERROR)
        assert f"worker {running.worker_id} stopped during the execution" in failed.status_message
        retry_id = failed.status_message.rsplit(" ", 1)[1]
        retried = await wait_execution(stores, retry_id, ExecutionStatus.COMPLETE)
        assert retried.worker_id == process.worker_id
        process.stopping.set()
    assert await mailbox.length() == 0


async def test_a_stop_command_lets_the_current_execution_finish(
    redis, stores, mailbox, actor, worker_settings, tmp_path, settings
):
    worker_id = new_id()
    async with trio.open_nursery() as nursery:
        await start_worker(
            nursery, worker_settings, redis, actor, _bundle(tmp_path), worker_id=worker_id
        )
        execution = await submit(stores, mailbox, actor_id=actor.id, body="last one")
        await wait_execution(
            stores, execution.id, ExecutionStatus.RUNNING, ExecutionStatus.COMPLETE
        )
        async with open_hub(redis) as hub:
            control = control_of(hub, settings.redis.key_prefix, stores.tenant, worker_id)
            await control.put(StopWorker(reason="scale down").to_wire())
    assert (await stores.executions.get(execution.id)).status is ExecutionStatus.COMPLETE
    assert (await stores.workers.get(worker_id)).status is WorkerStatus.SHUTTING_DOWN


async def test_a_stateful_actor_keeps_its_state_across_executions(
    redis, stores, mailbox, worker_settings, tmp_path
):
    stateful = Actor(
        id=new_id(), name="counter", owner="alice", image="org.example/echo:1.0.0", stateless=False
    )
    await stores.actors.put(stateful)
    async with trio.open_nursery() as nursery, open_hub(redis) as hub:
        process = await start_worker(nursery, worker_settings, redis, stateful, _bundle(tmp_path))
        box = mailbox_of(hub, worker_settings.redis.key_prefix, stores.tenant, stateful.id)
        for _ in range(3):
            execution = await submit(stores, box, actor_id=stateful.id, body="count")
            await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
        process.stopping.set()
    assert await stores.state.get(stateful.id) == {"count": 3}


async def test_a_stateless_actor_cannot_set_state(worker, stores, mailbox, actor):
    execution = await submit(stores, mailbox, actor_id=actor.id, body="count")
    await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
    assert await stores.state.get(actor.id) == {}
    assert "is stateless" in (await stores.logs.read(execution.id)).text


async def test_an_actor_sends_a_message_to_another(worker, stores, mailbox, actor, settings, redis):
    other = Actor(id=new_id(), name="other", owner="alice", image="org.example/echo:1.0.0")
    await stores.actors.put(other)
    execution = await submit(stores, mailbox, actor_id=actor.id, body=f"tell:{other.id}:hi there")
    await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
    sent_as = (await stores.logs.read(execution.id)).text.split("sent as ", 1)[1].split()[0]
    assert (await stores.executions.get(sent_as)).actor_id == other.id
    async with open_hub(redis) as hub:
        box = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, other.id)
        delivery = await box.get(timeout=5)
        await delivery.ack()
    assert delivery.message["body"] == "hi there"
    assert delivery.message["execution_id"] == sent_as


async def test_a_message_to_a_missing_actor_is_reported_in_the_log(worker, stores, mailbox, actor):
    execution = await submit(stores, mailbox, actor_id=actor.id, body="tell:nobody:hi")
    await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
    assert "no actor 'nobody'" in (await stores.logs.read(execution.id)).text


async def test_finished_executions_go_to_the_persist_queue(worker, stores, actor, redis, settings):
    from abaco.persist_queue import EntityRecord, persist_queue_of

    async with open_hub(redis) as hub:
        box = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, actor.id)
        execution = await submit(stores, box, actor_id=actor.id, body="results")
        await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        records = []
        for _ in range(5):
            delivery = await queue.get(timeout=5)
            records.append(EntityRecord.from_wire(delivery.message))
            await delivery.ack()
    assert [(r.kind, r.group) for r in records] == [
        ("outcome", actor.id),
        ("log", actor.id),
        ("result", actor.id),
        ("result", actor.id),
        ("result", actor.id),
    ]
    assert json.loads(records[0].json)["status"] == "COMPLETE"
    assert [r.id for r in records[2:]] == [f"{execution.id}:{i}" for i in range(3)]


async def test_the_first_ready_worker_makes_its_actor_ready(worker, stores, actor):
    assert (await stores.actors.get(actor.id)).status is ActorStatus.READY


async def test_a_ready_worker_leaves_an_actor_in_error_alone(
    redis, stores, worker_settings, tmp_path
):
    broken = Actor(
        id=new_id(),
        name="broken",
        owner="alice",
        image="org.example/echo:1.0.0",
        status=ActorStatus.ERROR,
        status_message="its workers keep dying",
    )
    await stores.actors.put(broken)
    async with trio.open_nursery() as nursery:
        process = await start_worker(nursery, worker_settings, redis, broken, _bundle(tmp_path))
        process.stopping.set()
    assert (await stores.actors.get(broken.id)).status is ActorStatus.ERROR


async def test_a_worker_whose_record_is_deleted_stops(
    redis, stores, actor, worker_settings, tmp_path
):
    worker_id = new_id()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await start_worker(
                nursery, worker_settings, redis, actor, _bundle(tmp_path), worker_id=worker_id
            )
            await stores.workers.delete(worker_id)
        # The nursery ends only once the worker stopped by itself.
    assert not await stores.workers.exists(worker_id)  # and it did not write it back


async def test_stop_worker_stops_a_running_worker(
    redis, stores, mailbox, actor, worker_settings, tmp_path, settings
):
    worker_id = new_id()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, open_hub(redis) as hub:
            await start_worker(
                nursery, worker_settings, redis, actor, _bundle(tmp_path), worker_id=worker_id
            )
            await stop_worker(stores, hub, settings.redis.key_prefix, worker_id, reason="enough")
            # A message that comes in now runs before the worker stops; nothing breaks.
            execution = await submit(stores, mailbox, actor_id=actor.id, body="late")
    assert (await stores.workers.get(worker_id)).status is WorkerStatus.SHUTTING_DOWN
    late = await stores.executions.get(execution.id)
    assert late.status in (ExecutionStatus.SUBMITTED, ExecutionStatus.COMPLETE)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _wait_worker(stores, worker_id, *statuses, timeout=30):
    with trio.fail_after(timeout):
        while True:
            with contextlib.suppress(NotFound):
                worker = await stores.workers.get(worker_id)
                if worker.status in statuses:
                    return worker
            await trio.sleep(0.05)


# Starts its arguments as a process of its own, then waits to be killed.
_LAUNCHER = "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)"


async def test_a_worker_whose_parent_dies_stops(redis, stores, actor, tmp_path):
    env = {
        **os.environ,
        "ABACO__REDIS__URL": redis.url,
        "ABACO__STATE__DIR": str(tmp_path / "state"),
        "ABACO__WORKER__HEARTBEAT": "0.2",
    }
    worker_id = new_id()
    argv = [sys.executable, "-m", "abaco.actors.worker", "--actor", actor.id]
    argv += ["--worker", worker_id, "--bundle-dir", str(_bundle(tmp_path))]
    launcher = await trio.lowlevel.open_process(
        [sys.executable, "-c", _LAUNCHER, *argv], cwd=ROOT, env=env
    )
    pid = None
    try:
        ready = await _wait_worker(stores, worker_id, WorkerStatus.READY)
        pid = ready.pid
        assert pid
        assert _alive(pid)
        launcher.kill()  # SIGKILL: the parent cannot tell its child anything
        await launcher.wait()
        await _wait_worker(stores, worker_id, WorkerStatus.ERROR)
        with trio.fail_after(30):
            while True:
                if not _alive(pid):
                    break
                await trio.sleep(0.05)
    finally:
        launcher.kill()
        await launcher.wait()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
