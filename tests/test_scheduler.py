"""The scheduler on a real Valkey, with host records written straight into the registry."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import control_of
from abaco.actors.models import Actor, utcnow
from abaco.actors.states import WorkerStatus
from abaco.channels import open_hub
from abaco.control import (
    StartWorker,
    request_workers,
    scheduler_inbox,
    spawner_inbox,
    stop_worker,
)
from abaco.hosts import Host, open_hosts
from abaco.scheduler import choose_host, run_scheduler


@pytest.fixture
def fast(settings):
    return attrs.evolve(settings, scheduler=attrs.evolve(settings.scheduler, retry_interval=0.05))


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
def hosts(redis, fast):
    return open_hosts(redis, fast)


def host(host_id, *, workers=0, capacity=4, **fields):
    return Host(
        id=host_id,
        hostname=f"{host_id}.example",
        capacity=capacity,
        workers=workers,
        load=workers / capacity,
        **fields,
    )


async def new_actor(stores, **fields):
    actor = Actor(id=new_id(), name="a", owner="alice", image="org.example/a:1.0.0", **fields)
    await stores.actors.put(actor)
    return actor


async def eventually(check, timeout=10):
    """Wait until ``await check()`` is truthy; returns it."""
    with trio.fail_after(timeout):
        while True:
            if value := await check():
                return value
            await trio.sleep(0.02)


async def wait_placed(stores, worker_id):
    async def placed():
        worker = await stores.workers.get(worker_id)
        return worker if worker.host_id else None

    return await eventually(placed)


async def wait_gone(stores, worker_id):
    async def gone():
        return not await stores.workers.exists(worker_id)

    await eventually(gone)


async def wait_empty(queue):
    async def empty():
        return await queue.length() == 0

    await eventually(empty)


async def place(stores, hub, fast, actor, count=1):
    workers = await request_workers(stores, hub, fast.redis.key_prefix, actor, count)
    return [await wait_placed(stores, w.id) for w in workers]


async def test_the_least_loaded_host_is_chosen(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("busy", workers=2))
    await hosts.put(host("light", workers=1))
    actor = await new_actor(stores)
    [worker] = await place(stores, hub, fast, actor)
    assert (worker.host_id, worker.location, worker.status) == (
        "light",
        "light.example",
        WorkerStatus.REQUESTED,
    )
    inbox = spawner_inbox(hub, fast.redis.key_prefix, "light")
    delivery = await inbox.get(timeout=5)
    assert StartWorker.from_wire(delivery.message) == StartWorker(
        tenant=stores.tenant, actor_id=actor.id, worker_id=worker.id
    )
    light = await hosts.get("light")
    assert (light.workers, light.load) == (2, 0.5)  # the placement counts at once
    assert await spawner_inbox(hub, fast.redis.key_prefix, "busy").length() == 0


async def test_a_burst_spreads_over_equal_hosts(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("a", capacity=100))
    await hosts.put(host("b", capacity=100))
    actor = await new_actor(stores)
    placed = await place(stores, hub, fast, actor, count=10)
    assert Counter(w.host_id for w in placed) == {"a": 5, "b": 5}


def test_equals_are_chosen_at_random():
    now = utcnow()
    equals = [host("a"), host("b"), host("c", workers=1)]
    rng = random.Random(7)
    chosen = Counter(
        choose_host(
            equals,
            queue="default",
            labels=frozenset(),
            now=now,
            max_age=timedelta(seconds=6),
            rng=rng,
        ).id
        for _ in range(100)
    )
    assert set(chosen) == {"a", "b"}
    assert min(chosen.values()) > 20


async def test_a_host_hint_selects_hosts_with_that_label(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("plain"))
    await hosts.put(host("gpu", workers=3, labels=["gpu", "ssd"]))
    gpu_actor = await new_actor(stores, hints=["host:gpu", "sync"])
    plain_actor = await new_actor(stores, hints=["sync"])
    [on_gpu] = await place(stores, hub, fast, gpu_actor)
    [anywhere] = await place(stores, hub, fast, plain_actor)
    assert (on_gpu.host_id, anywhere.host_id) == ("gpu", "plain")


async def test_the_actor_queue_is_respected(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("default-host"))
    await hosts.put(host("big-host", workers=3, queue="big"))
    [worker] = await place(stores, hub, fast, await new_actor(stores, queue="big"))
    assert worker.host_id == "big-host"


async def test_stale_draining_and_full_hosts_are_skipped(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("stale", last_heartbeat=utcnow() - timedelta(hours=1)))
    await hosts.put(host("draining", draining=True))
    await hosts.put(host("full", workers=4))
    await hosts.put(host("alive", workers=3))
    [worker] = await place(stores, hub, fast, await new_actor(stores))
    assert worker.host_id == "alive"


async def test_with_no_fitting_host_the_request_waits_until_one_appears(
    scheduler, stores, hub, hosts, fast
):
    await hosts.put(host("cpu"))
    gpu_actor = await new_actor(stores, hints=["host:gpu"])
    [waiting] = await request_workers(stores, hub, fast.redis.key_prefix, gpu_actor, 1)
    # A waiting request holds up no other.
    [other] = await place(stores, hub, fast, await new_actor(stores))
    assert other.host_id == "cpu"
    await trio.sleep(10 * fast.scheduler.retry_interval)  # let it retry a few times
    still = await stores.workers.get(waiting.id)
    assert (still.host_id, still.status) == ("", WorkerStatus.REQUESTED)
    inbox = scheduler_inbox(hub, fast.redis.key_prefix)
    assert await inbox.length() == 1  # not acknowledged while it waits
    await hosts.put(host("gpu", labels=["gpu"]))
    assert (await wait_placed(stores, waiting.id)).host_id == "gpu"
    await wait_empty(inbox)


async def test_a_worker_stopped_before_placement_is_deleted(scheduler, stores, hub, fast, redis):
    actor = await new_actor(stores)
    [worker] = await request_workers(stores, hub, fast.redis.key_prefix, actor, 1)
    await stop_worker(stores, hub, fast.redis.key_prefix, worker.id, reason="not needed")
    await wait_gone(stores, worker.id)
    # The stop command it never read goes with it (one key per worker ever asked for).
    control = control_of(hub, fast.redis.key_prefix, stores.tenant, worker.id)
    assert not await redis.exists(control.address)


async def test_a_deleted_host_takes_its_spawner_queue_with_it(hub, hosts, fast, redis):
    await hosts.put(host("gone"))
    inbox = spawner_inbox(hub, fast.redis.key_prefix, "gone")
    await inbox.put({"kind": "never read"})
    assert await hosts.delete("gone") is True
    assert not await redis.exists(inbox.address)


async def test_a_worker_of_a_deleted_actor_is_deleted(scheduler, stores, hub, hosts, fast):
    await hosts.put(host("h"))
    actor = await new_actor(stores)
    await stores.actors.delete(actor.id)
    [worker] = await request_workers(stores, hub, fast.redis.key_prefix, actor, 1)
    await wait_gone(stores, worker.id)
    assert await spawner_inbox(hub, fast.redis.key_prefix, "h").length() == 0


async def test_two_schedulers_place_each_worker_once(redis, stores, hub, hosts, fast):
    await hosts.put(host("a", capacity=100))
    await hosts.put(host("b", capacity=100))
    actor = await new_actor(stores)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_scheduler, fast, redis)
        await nursery.start(run_scheduler, fast, redis)
        placed = await place(stores, hub, fast, actor, count=20)
        await wait_empty(scheduler_inbox(hub, fast.redis.key_prefix))
        nursery.cancel_scope.cancel()
    starts = [await spawner_inbox(hub, fast.redis.key_prefix, h).length() for h in ("a", "b")]
    assert sum(starts) == 20
    assert {w.host_id for w in placed} == {"a", "b"}
