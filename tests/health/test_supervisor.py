"""One pass of the supervisor (check_once) on real Redis, from records written directly."""

from __future__ import annotations

import attrs
import trio

from abaco.actors.mailbox import StopWorker, control_of, mailbox_of, submit
from abaco.actors.states import ActorStatus, ExecutionStatus, WorkerStatus
from abaco.control import remember_tenant
from abaco.health import check_once, open_health
from abaco.health.context import all_records
from abaco.health.locks import actor_lock, lock_key
from abaco.stores import Stores
from tests.health._helpers import actor, ago, host, placed, running, worker


async def _statuses(stores, actor_id=None):
    return sorted(str(w.status) for w in await all_records(stores.workers, parent=actor_id))


async def _backlog(health, stores, actor_id, count):
    mailbox = mailbox_of(health.hub, health.key_prefix, stores.tenant, actor_id)
    for i in range(count):
        await submit(stores, mailbox, actor_id=actor_id, body=f"m{i}")


# -- dead hosts -----------------------------------------------------------------------------


async def test_a_stale_host_loses_its_record_and_workers_which_are_replaced(health, stores, hosts):
    await hosts.put(host("dead", heartbeat_age=3600))
    await hosts.put(host("live"))
    a = actor()
    await stores.actors.create(a)
    lost = [worker(a.id, host_id="dead"), worker(a.id, WorkerStatus.BUSY, host_id="dead")]
    stopping = worker(a.id, WorkerStatus.SHUTDOWN_REQUESTED, host_id="dead")
    kept = worker(a.id, host_id="live")
    orphan = worker("gone-actor", host_id="dead")
    for w in [*lost, stopping, kept, orphan]:
        await stores.workers.create(w)

    report = await check_once(health)

    assert [h.id for h in await all_records(hosts)] == ["live"]
    remaining = {w.id: w for w in await all_records(stores.workers)}
    assert not {w.id for w in [*lost, stopping, orphan]} & set(remaining)
    assert kept.id in remaining
    commands = await placed(health.hub, health.key_prefix)
    assert len(commands) == 2
    assert {(c.tenant, c.actor_id) for c in commands} == {(stores.tenant, a.id)}
    for command in commands:
        assert remaining[command.worker_id].status is WorkerStatus.REQUESTED
    assert (report.dead_hosts, report.dead_workers, report.replaced) == (1, 4, 2)


async def test_a_host_with_a_fresh_heartbeat_is_kept(health, stores, hosts):
    await hosts.put(host("h1", heartbeat_age=1))
    a = actor()
    await stores.actors.create(a)
    await stores.workers.create(worker(a.id, host_id="h1"))
    await check_once(health)
    assert [h.id for h in await all_records(hosts)] == ["h1"]
    assert await _statuses(stores) == ["READY"]
    assert await placed(health.hub, health.key_prefix) == []


async def test_replacements_for_a_dead_host_stay_within_the_actors_bound(health, stores, hosts):
    await hosts.put(host("dead", heartbeat_age=3600))
    a = actor(max_workers=2)
    await stores.actors.create(a)
    await stores.workers.create(worker(a.id, host_id="dead"))
    await stores.workers.create(worker(a.id, host_id="dead"))
    await stores.workers.create(worker(a.id, WorkerStatus.REQUESTED))  # not placed yet
    await check_once(health)
    assert len(await placed(health.hub, health.key_prefix)) == 1
    assert await _statuses(stores) == ["REQUESTED", "REQUESTED"]


# -- dead workers ---------------------------------------------------------------------------


async def test_a_stale_ready_worker_is_deleted(health, stores, hosts):
    await hosts.put(host("h1"))
    a = actor()
    await stores.actors.create(a)
    stale = worker(a.id, host_id="h1", last_health_check_time=ago(3600))
    fresh = worker(a.id, host_id="h1")
    await stores.workers.create(stale)
    await stores.workers.create(fresh)
    report = await check_once(health)
    assert [w.id for w in await all_records(stores.workers)] == [fresh.id]
    assert report.dead_workers == 1
    # An empty mailbox and an idle worker left: the autoscaler asks for nobody.
    assert await placed(health.hub, health.key_prefix) == []


async def test_a_dead_busy_worker_is_replaced_when_its_message_needs_one(health, stores, hosts):
    a = actor()
    await stores.actors.create(a)
    dead = worker(a.id, WorkerStatus.BUSY, last_health_check_time=ago(3600))
    await stores.workers.create(dead)
    await _backlog(health, stores, a.id, 1)  # the message it was running, not acknowledged
    report = await check_once(health)
    assert not await stores.workers.exists(dead.id)
    assert (report.dead_workers, report.scaled_up) == (1, 1)
    assert [c.actor_id for c in await placed(health.hub, health.key_prefix)] == [a.id]


async def test_a_busy_worker_with_a_fresh_heartbeat_and_a_long_execution_is_kept(
    health, stores, hosts
):
    await hosts.put(host("h1"))
    a = actor()
    await stores.actors.create(a)
    busy = worker(a.id, WorkerStatus.BUSY, host_id="h1", create_time=ago(7 * 86400))
    await stores.workers.create(busy)
    execution = running(a.id, busy.id, started_age=6 * 86400)
    await stores.executions.create(execution)
    await _backlog(health, stores, a.id, 1)

    report = await check_once(health)

    assert (await stores.workers.get(busy.id)).status is WorkerStatus.BUSY
    assert (await stores.executions.get(execution.id)).status is ExecutionStatus.RUNNING
    assert (report.dead_workers, report.lost_executions) == (0, 0)


async def test_a_worker_stuck_in_set_up_on_a_gone_host_is_replaced(health, stores):
    a = actor()
    await stores.actors.create(a)
    stuck = worker(a.id, WorkerStatus.PULLING_IMAGE, host_id="gone", create_time=ago(3600))
    young = worker(a.id, WorkerStatus.PULLING_IMAGE, host_id="gone")
    unplaced = worker(a.id, WorkerStatus.REQUESTED, create_time=ago(3600))
    for w in (stuck, young, unplaced):
        await stores.workers.create(w)
    await check_once(health)
    remaining = {w.id for w in await all_records(stores.workers)}
    assert stuck.id not in remaining
    assert {young.id, unplaced.id} <= remaining
    commands = await placed(health.hub, health.key_prefix)
    assert [c.worker_id for c in commands] == sorted(remaining - {young.id, unplaced.id})


async def test_workers_of_a_deleted_actor_are_stopped_then_their_records_deleted(health, stores):
    orphan = worker("gone-actor")
    old = worker("gone-actor", WorkerStatus.SHUTTING_DOWN, last_health_check_time=ago(3600))
    await stores.workers.create(orphan)
    await stores.workers.create(old)
    report = await check_once(health)
    assert (await stores.workers.get(orphan.id)).status is WorkerStatus.SHUTDOWN_REQUESTED
    delivery = await control_of(health.hub, health.key_prefix, stores.tenant, orphan.id).get(
        timeout=5
    )
    assert StopWorker.from_wire(delivery.message).reason
    assert not await stores.workers.exists(old.id)
    assert (report.orphans_stopped, report.stale_workers) == (1, 1)


# -- autoscaling ----------------------------------------------------------------------------


async def test_a_backlog_scales_up_to_max_workers_and_never_above(health, stores):
    a = actor(max_workers=3)
    await stores.actors.create(a)
    await stores.workers.create(worker(a.id, WorkerStatus.BUSY))
    await _backlog(health, stores, a.id, 5)
    reports = [await check_once(health) for _ in range(3)]
    assert [r.scaled_up for r in reports] == [2, 0, 0]
    assert await _statuses(stores, a.id) == ["BUSY", "REQUESTED", "REQUESTED"]
    assert len(await placed(health.hub, health.key_prefix)) == 2


async def test_an_actor_without_workers_gets_one_for_a_message(health, stores):
    a = actor()
    await stores.actors.create(a)
    assert (await check_once(health)).scaled_up == 0
    await _backlog(health, stores, a.id, 1)
    assert (await check_once(health)).scaled_up == 1
    assert await _statuses(stores, a.id) == ["REQUESTED"]


async def test_a_submitted_actor_gets_its_first_worker_and_an_actor_in_error_none(health, stores):
    submitted = actor(status=ActorStatus.SUBMITTED)
    failed = actor(status=ActorStatus.ERROR)
    await stores.actors.create(submitted)
    await stores.actors.create(failed)
    await _backlog(health, stores, failed.id, 3)
    await check_once(health)
    await check_once(health)
    assert await _statuses(stores, submitted.id) == ["REQUESTED"]
    assert await _statuses(stores, failed.id) == []


async def test_an_idle_worker_past_the_timeout_is_asked_to_stop(health, stores):
    a = actor()
    await stores.actors.create(a)
    idle = worker(a.id, create_time=ago(7200), last_execution_time=ago(3600))
    recent = worker(a.id, create_time=ago(7200), last_execution_time=ago(10))
    await stores.workers.create(idle)
    await stores.workers.create(recent)
    report = await check_once(health)
    assert report.scaled_down == 1
    assert (await stores.workers.get(idle.id)).status is WorkerStatus.SHUTDOWN_REQUESTED
    assert (await stores.workers.get(recent.id)).status is WorkerStatus.READY
    control = control_of(health.hub, health.key_prefix, stores.tenant, idle.id)
    delivery = await control.get(timeout=5)
    assert StopWorker.from_wire(delivery.message).reason
    assert await control_of(health.hub, health.key_prefix, stores.tenant, recent.id).length() == 0


async def test_idle_workers_are_kept_while_the_mailbox_holds_messages(health, stores):
    a = actor()
    await stores.actors.create(a)
    idle = worker(a.id, create_time=ago(7200))
    await stores.workers.create(idle)
    await _backlog(health, stores, a.id, 1)
    assert (await check_once(health)).scaled_down == 0
    assert (await stores.workers.get(idle.id)).status is WorkerStatus.READY


async def test_a_sync_actor_keeps_its_last_worker_warm(health, stores, settings):
    a = actor(hints=["sync"])
    await stores.actors.create(a)
    workers = [worker(a.id, create_time=ago(1000 + i)) for i in range(3)]
    for w in workers:
        await stores.workers.create(w)
    assert (await check_once(health)).scaled_down == 2
    assert await _statuses(stores, a.id) == ["READY", "SHUTDOWN_REQUESTED", "SHUTDOWN_REQUESTED"]
    # Past sync_idle_timeout, the last one goes too.
    sync_timeout = attrs.evolve(settings.health, sync_idle_timeout=500.0)
    async with open_health(attrs.evolve(settings, health=sync_timeout), health.redis) as other:
        assert (await check_once(other)).scaled_down == 1
    assert await _statuses(stores, a.id) == ["SHUTDOWN_REQUESTED"] * 3


# -- reconciliation -------------------------------------------------------------------------


async def test_a_running_execution_whose_worker_vanished_is_marked_lost_after_the_bound(
    health, stores
):
    a = actor()
    await stores.actors.create(a)
    bound = health.deadlines.execution
    old = running(a.id, "vanished", started_age=bound + 5)
    young = running(a.id, "vanished", started_age=bound - 5)
    await stores.executions.create(old)
    await stores.executions.create(young)

    assert (await check_once(health, reconcile=False)).lost_executions == 0
    report = await check_once(health)

    lost = await stores.executions.get(old.id)
    assert lost.status is ExecutionStatus.ERROR
    assert "the worker was lost" in lost.status_message
    assert lost.finish_time is not None
    assert (await stores.executions.get(young.id)).status is ExecutionStatus.RUNNING
    assert report.lost_executions == 1


async def test_a_lost_execution_waits_while_its_message_may_still_be_retaken(health, stores):
    a = actor()
    await stores.actors.create(a)
    old = running(a.id, "vanished", started_age=health.deadlines.execution + 5)
    await stores.executions.create(old)
    await _backlog(health, stores, a.id, 1)
    assert (await check_once(health)).lost_executions == 0
    assert (await stores.executions.get(old.id)).status is ExecutionStatus.RUNNING


async def test_running_executions_of_a_deleted_actor_are_marked_lost(health, stores):
    await _backlog(health, stores, "gone-actor", 1)
    old = running("gone-actor", "vanished", started_age=health.deadlines.execution + 5)
    await stores.executions.create(old)
    assert (await check_once(health)).lost_executions == 1
    assert (await stores.executions.get(old.id)).status is ExecutionStatus.ERROR


# -- tenants and concurrency ----------------------------------------------------------------


async def test_every_known_tenant_is_visited(health, redis, settings):
    other = Stores.open(redis, settings, "other")
    await remember_tenant(redis, settings.redis.key_prefix, "other")
    stale = worker("gone-actor", last_health_check_time=ago(3600))
    await other.workers.create(stale)
    unknown = Stores.open(redis, settings, "unknown")
    await unknown.workers.create(worker("gone-actor"))
    await check_once(health)
    assert (await other.workers.get(stale.id)).status is WorkerStatus.SHUTDOWN_REQUESTED
    assert await _statuses(unknown) == ["READY"]


async def test_parallel_passes_do_not_double_replacements_beyond_the_bound(
    settings, redis, stores, hosts
):
    await remember_tenant(redis, settings.redis.key_prefix, stores.tenant)
    await hosts.put(host("dead", heartbeat_age=3600))
    a = actor(max_workers=3)
    b = actor(max_workers=4)
    await stores.actors.create(a)
    await stores.actors.create(b)
    for _ in range(3):
        await stores.workers.create(worker(a.id, host_id="dead"))
    await _backlog_direct(settings, redis, stores, b.id, 10)

    async with open_health(settings, redis) as one, open_health(settings, redis) as two:
        reports = []

        async def check(health):
            reports.append(await check_once(health))

        async with trio.open_nursery() as nursery:
            for health in (one, two, one, two):
                nursery.start_soon(check, health)
        commands = await placed(one.hub, one.key_prefix)

    assert await _statuses(stores, a.id) == ["REQUESTED"] * 3
    assert await _statuses(stores, b.id) == ["REQUESTED"] * 4
    assert len(commands) == 7
    assert sum(r.replaced for r in reports) == 3
    assert sum(r.scaled_up for r in reports) == 4


async def _backlog_direct(settings, redis, stores, actor_id, count):
    async with open_health(settings, redis) as health:
        await _backlog(health, stores, actor_id, count)


async def test_an_actor_locked_by_another_supervisor_is_not_scaled(health, stores):
    a = actor()
    await stores.actors.create(a)
    await _backlog(health, stores, a.id, 2)
    key = lock_key(health.key_prefix, stores.tenant, a.id)
    async with actor_lock(health.redis, key) as held:
        assert held
        assert (await check_once(health)).scaled_up == 0
    assert (await check_once(health)).scaled_up == 2
