"""The spawner daemon with the scheduler, real worker processes and a real repository."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import mailbox_of, submit
from abaco.actors.models import Actor, Worker
from abaco.actors.states import ActorStatus, ExecutionStatus, WorkerStatus
from abaco.channels import open_hub
from abaco.config import load_settings
from abaco.control import StartWorker, request_workers, spawner_inbox, stop_worker
from abaco.errors import BadRequest, NotFound
from abaco.hosts import open_hosts
from abaco.scheduler import run_scheduler
from abaco.spawner import run_spawner
from tests.api.test_repository import _build

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "org.example/hello:1.0.0"
ECHO = b"""
import os, time

def handle(message):
    if message.startswith("sleep:"):
        print("sleeping", flush=True)
        time.sleep(float(message[6:]))
    print("echo:", message, "from", os.environ["_abaco_worker_id"], flush=True)
"""


@pytest.fixture
def fast(settings, redis, api_url, monkeypatch):
    """Short heartbeats and deadlines, also for the worker processes (they read the env)."""
    overrides = {
        "ABACO__REDIS__URL": redis.url,  # the server under test (Valkey or the system Redis)
        "ABACO__STATE__DIR": settings.state.dir,
        "ABACO__FETCHER__REPOSITORY_URL": api_url,
        "ABACO__WORKER__HEARTBEAT": "0.2",
        "ABACO__WORKER__STOP_DEADLINE": "2",
        "ABACO__SPAWNER__HEARTBEAT": "0.2",
        "ABACO__SPAWNER__DRAIN_DEADLINE": "5",
        "ABACO__SPAWNER__LABELS": "ssd,test",
        "ABACO__SPAWNER__CAPACITY": "3",
        "ABACO__SCHEDULER__RETRY_INTERVAL": "0.05",
    }
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.fixture
async def bundle(client, tmp_path):
    response = await client.put(
        "/bundles/org.example/hello/1.0.0", content=_build(tmp_path, body=ECHO)
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def hub(redis, fast):
    async with open_hub(redis, namespace=fast.redis.key_prefix) as opened:
        yield opened


@pytest.fixture
async def scheduler(redis, fast):
    async with trio.open_nursery() as nursery:
        await nursery.start(run_scheduler, fast, redis)
        yield
        nursery.cancel_scope.cancel()


@pytest.fixture
async def spawner(redis, fast, scheduler):
    async with trio.open_nursery() as nursery:
        running = await nursery.start(run_spawner, fast, redis)
        yield running
        running.drain()


async def new_actor(stores, image=IMAGE):
    actor = Actor(id=new_id(), name="hello", owner="alice", image=image)
    await stores.actors.put(actor)
    return actor


async def eventually(check, timeout=30):
    """Wait until ``await check()`` is truthy; returns it."""
    with trio.fail_after(timeout):
        while True:
            if value := await check():
                return value
            await trio.sleep(0.05)


async def wait_worker(stores, worker_id, *statuses):
    async def check():
        try:
            worker = await stores.workers.get(worker_id)
        except NotFound:
            return None
        return worker if worker.status in statuses else None

    return await eventually(check)


async def wait_gone(stores, worker_id):
    async def gone():
        return not await stores.workers.exists(worker_id)

    await eventually(gone)


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_dead(pid):
    async def dead():
        return not alive(pid)

    await eventually(dead)


async def start_one(stores, hub, fast, actor):
    [requested] = await request_workers(stores, hub, fast.redis.key_prefix, actor, 1)
    return await wait_worker(stores, requested.id, WorkerStatus.READY)


async def test_a_worker_is_placed_started_runs_messages_and_stops(
    spawner, bundle, stores, hub, fast
):
    actor = await new_actor(stores)
    worker = await start_one(stores, hub, fast, actor)
    assert worker.host_id == spawner.host.id
    assert alive(worker.pid)

    async def actor_ready():
        # The worker moves its actor to READY just after its own record reaches READY.
        return (await stores.actors.get(actor.id)).status is ActorStatus.READY

    await eventually(actor_ready)

    box = mailbox_of(hub, fast.redis.key_prefix, stores.tenant, actor.id)
    execution = await submit(stores, box, actor_id=actor.id, body="hi")

    async def complete():
        found = await stores.executions.get(execution.id)
        return found if found.status is ExecutionStatus.COMPLETE else None

    await eventually(complete)
    assert (await stores.logs.read(execution.id)).text == f"echo: hi from {worker.id}\n"

    await stop_worker(stores, hub, fast.redis.key_prefix, worker.id, reason="test")
    await wait_gone(stores, worker.id)
    await wait_dead(worker.pid)


async def test_the_host_registers_samples_its_load_and_comes_back(spawner, bundle, redis, fast):
    hosts = open_hosts(redis, fast)
    host = await hosts.get(spawner.host.id)
    assert (host.queue, host.labels, host.capacity, host.pid) == (
        "default",
        ["ssd", "test"],
        3,
        os.getpid(),
    )

    async def sampled_again():
        return (await hosts.get(host.id)).last_heartbeat > host.last_heartbeat

    await eventually(sampled_again)
    await hosts.delete(host.id)  # as the health supervisor does with a host it took for dead
    await eventually(lambda: hosts.exists(host.id))


async def test_the_load_sample_counts_workers(spawner, bundle, stores, hub, redis, fast):
    hosts = open_hosts(redis, fast)
    await start_one(stores, hub, fast, await new_actor(stores))

    async def one_worker():
        found = await hosts.get(spawner.host.id)
        return found if found.workers == 1 else None

    sample = await eventually(one_worker)
    assert sample.load == pytest.approx(1 / 3)


async def test_a_missing_bundle_fails_the_worker_and_the_actor(spawner, stores, hub, fast):
    actor = await new_actor(stores, image="org.example/nothing:1.0.0")
    [worker] = await request_workers(stores, hub, fast.redis.key_prefix, actor, 1)
    await wait_gone(stores, worker.id)

    async def failed():
        found = await stores.actors.get(actor.id)
        return found if found.status is ActorStatus.ERROR else None

    broken = await eventually(failed)
    assert "no bundle org.example/nothing:1.0.0" in broken.status_message
    inbox = spawner_inbox(hub, fast.redis.key_prefix, spawner.host.id)
    await eventually(lambda: _is_zero(inbox.length()))


async def _is_zero(length):
    return await length == 0


async def test_a_killed_worker_process_loses_its_record(spawner, bundle, stores, hub, fast):
    worker = await start_one(stores, hub, fast, await new_actor(stores))
    os.kill(worker.pid, signal.SIGKILL)
    await wait_gone(stores, worker.id)


async def test_a_worker_stopped_before_it_starts_is_dropped(spawner, stores, hub, fast):
    actor = await new_actor(stores)
    worker = Worker(id=new_id(), actor_id=actor.id, host_id=spawner.host.id, image=actor.image)
    await stores.workers.create(worker)
    await stop_worker(stores, hub, fast.redis.key_prefix, worker.id)
    start = StartWorker(tenant=stores.tenant, actor_id=actor.id, worker_id=worker.id)
    inbox = spawner_inbox(hub, fast.redis.key_prefix, spawner.host.id)
    await inbox.put(start.to_wire())
    await wait_gone(stores, worker.id)
    await eventually(lambda: _is_zero(inbox.length()))
    assert (await stores.actors.get(actor.id)).status is ActorStatus.SUBMITTED


async def test_a_worker_placed_elsewhere_is_left_alone(spawner, stores, hub, fast):
    actor = await new_actor(stores)
    worker = Worker(id=new_id(), actor_id=actor.id, host_id="another-host", image=actor.image)
    await stores.workers.create(worker)
    start = StartWorker(tenant=stores.tenant, actor_id=actor.id, worker_id=worker.id)
    inbox = spawner_inbox(hub, fast.redis.key_prefix, spawner.host.id)
    await inbox.put(start.to_wire())
    await eventually(lambda: _is_zero(inbox.length()))
    assert (await stores.workers.get(worker.id)).status is WorkerStatus.REQUESTED


async def test_a_drain_kills_workers_that_outlast_its_deadline(
    redis, fast, scheduler, bundle, stores, hub, monkeypatch
):
    monkeypatch.setenv("ABACO__WORKER__STOP_DEADLINE", "60")  # the workers would wait long
    impatient = attrs.evolve(fast, spawner=attrs.evolve(fast.spawner, drain_deadline=0.5))
    actor = await new_actor(stores)
    with trio.fail_after(50):  # less than the 60 s the worker would wait by itself
        async with trio.open_nursery() as nursery:
            spawner = await nursery.start(run_spawner, impatient, redis)
            worker = await start_one(stores, hub, fast, actor)
            box = mailbox_of(hub, fast.redis.key_prefix, stores.tenant, actor.id)
            execution = await submit(stores, box, actor_id=actor.id, body="sleep:60")

            async def sleeping():
                return "sleeping" in (await stores.logs.read(execution.id)).text

            await eventually(sleeping)
            spawner.drain()
    assert not alive(worker.pid)
    assert not await stores.workers.exists(worker.id)
    assert not await open_hosts(redis, fast).exists(spawner.host.id)


# -- the abaco-spawner command ----------------------------------------------------------


async def _open_spawner_process(host_id):
    command = Path(sys.executable).with_name("abaco-spawner")  # the console script
    # A drain deadline longer than the tests wait: the workers must stop on request.
    env = {**os.environ, "ABACO__SPAWNER__DRAIN_DEADLINE": "120"}
    return await trio.lowlevel.open_process(
        [command, "--host-id", host_id, "--queue", "cli", "--capacity", "2"], cwd=ROOT, env=env
    )


async def test_sigterm_drains_the_host(scheduler, bundle, stores, hub, redis, fast):
    host_id = new_id()
    process = await _open_spawner_process(host_id)
    try:
        hosts = open_hosts(redis, fast)
        host = await eventually(lambda: _get_or_none(hosts, host_id))
        assert (host.queue, host.capacity) == ("cli", 2)
        actor = Actor(id=new_id(), name="hello", owner="alice", image=IMAGE, queue="cli")
        await stores.actors.put(actor)
        worker = await start_one(stores, hub, fast, actor)
        assert worker.host_id == host_id
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
        assert not alive(worker.pid)
        assert not await hosts.exists(host_id)
        assert not await stores.workers.exists(worker.id)
    finally:
        process.kill()
        await process.wait()


async def test_workers_do_not_outlive_a_killed_spawner(scheduler, bundle, stores, hub, fast):
    host_id = new_id()
    process = await _open_spawner_process(host_id)
    worker = None
    try:
        actor = Actor(id=new_id(), name="hello", owner="alice", image=IMAGE, queue="cli")
        await stores.actors.put(actor)
        worker = await start_one(stores, hub, fast, actor)
        process.kill()
        await process.wait()
        await wait_worker(stores, worker.id, WorkerStatus.ERROR)
        await wait_dead(worker.pid)
    finally:
        process.kill()
        await process.wait()
        if worker is not None and alive(worker.pid):
            os.kill(worker.pid, signal.SIGKILL)


async def _get_or_none(store, record_id):
    try:
        return await store.get(record_id)
    except NotFound:
        return None


def test_flags_override_the_settings(settings):
    from abaco.spawner.daemon import _parser, _with_flags

    args = _parser().parse_args(["--queue", "gpu", "--labels", "gpu,big", "--capacity", "8"])
    options = _with_flags(settings, args).spawner
    assert (options.queue, options.labels, options.capacity) == ("gpu", "gpu,big", 8)
    assert _with_flags(settings, _parser().parse_args([])).spawner == settings.spawner
    with pytest.raises(BadRequest, match="capacity"):
        _with_flags(settings, _parser().parse_args(["--capacity", "-1"]))


def test_exit_reasons_name_the_code_or_the_signal():
    from abaco.spawner.host import exit_reason

    assert exit_reason(3 << 8) == "exited with code 3"
    assert exit_reason(signal.SIGKILL) == "was killed by SIGKILL"
