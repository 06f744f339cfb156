"""The autoscaling policy: workers and a mailbox length in, a plan out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abaco.actors.models import Actor, Worker
from abaco.actors.states import ActorStatus, WorkerStatus
from abaco.health.autoscale import (
    Census,
    ScalePlan,
    ScalePolicy,
    plan_scaling,
    worker_bound,
    workers_to_add,
)
from abaco.health.heartbeats import STOPPING

NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = ScalePolicy(max_workers=8, idle_timeout=300.0, sync_idle_timeout=3600.0)


def _at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def _actor(status=ActorStatus.READY, **fields) -> Actor:
    return Actor(id="a1", name="a", owner="o", image="i", status=status, **fields)


def _worker(worker_id, status=WorkerStatus.READY, *, idle=0.0, created_age=None) -> Worker:
    return Worker(
        id=worker_id,
        actor_id="a1",
        status=status,
        create_time=_at(idle if created_age is None else created_age),
        last_execution_time=None if created_age is None else _at(idle),
    )


def test_the_bound_is_the_actors_own_else_the_platforms_and_one_when_stateful():
    assert worker_bound(_actor(), 8) == 8
    assert worker_bound(_actor(max_workers=3), 8) == 3
    assert worker_bound(_actor(max_workers=0), 8) == 0
    assert worker_bound(_actor(stateless=False), 8) == 1
    assert worker_bound(_actor(stateless=False, max_workers=5), 8) == 1


def test_the_census_counts_set_up_workers_as_live_and_stopping_ones_not():
    workers = [_worker(str(i), s) for i, s in enumerate(WorkerStatus)]
    census = Census.of(workers)
    assert census == Census(live=len(WorkerStatus) - len(STOPPING), idle=1, busy=1, starting=5)


def test_a_backlog_with_one_busy_worker_grows_to_the_bound_and_no_further():
    workers = [_worker("w1", WorkerStatus.BUSY)]
    plan = plan_scaling(_actor(max_workers=3), workers, 5, NOW, POLICY)
    assert plan == ScalePlan(grow=2)
    # The next pass counts the two requested workers (still in set-up) as live.
    workers += [_worker("w2", WorkerStatus.REQUESTED), _worker("w3", WorkerStatus.REQUESTED)]
    assert plan_scaling(_actor(max_workers=3), workers, 5, NOW, POLICY) == ScalePlan()


def test_growth_is_proportional_to_the_backlog():
    # 4 messages: 1 runs on the busy worker, 1 has an idle worker, 1 a starting one.
    workers = [_worker("b", WorkerStatus.BUSY), _worker("r"), _worker("s", WorkerStatus.REQUESTED)]
    assert plan_scaling(_actor(), workers, 4, NOW, POLICY).grow == 1


def test_an_actor_without_workers_gets_one_at_once_for_one_message():
    assert plan_scaling(_actor(), [], 1, NOW, POLICY).grow == 1


def test_no_backlog_no_growth():
    assert plan_scaling(_actor(), [], 0, NOW, POLICY) == ScalePlan()
    busy = [_worker("b", WorkerStatus.BUSY)]
    assert plan_scaling(_actor(), busy, 1, NOW, POLICY) == ScalePlan()


def test_a_submitted_actor_without_live_workers_gets_its_first():
    assert plan_scaling(_actor(ActorStatus.SUBMITTED), [], 0, NOW, POLICY).grow == 1
    stopping = [_worker("w", WorkerStatus.SHUTTING_DOWN)]
    assert plan_scaling(_actor(ActorStatus.SUBMITTED), stopping, 0, NOW, POLICY).grow == 1
    starting = [_worker("w", WorkerStatus.REQUESTED)]
    assert plan_scaling(_actor(ActorStatus.SUBMITTED), starting, 9, NOW, POLICY) == ScalePlan()


def test_an_actor_in_error_is_left_alone():
    idle = [_worker("w", idle=10**5)]
    assert plan_scaling(_actor(ActorStatus.ERROR), idle, 0, NOW, POLICY) == ScalePlan()
    assert plan_scaling(_actor(ActorStatus.ERROR), [], 9, NOW, POLICY) == ScalePlan()


def test_idle_workers_past_the_timeout_stop_most_idle_first():
    workers = [_worker("young", idle=10), _worker("old", idle=400), _worker("older", idle=900)]
    assert plan_scaling(_actor(), workers, 0, NOW, POLICY).stop == ("older", "old")


def test_idle_time_counts_from_the_last_execution():
    worker = _worker("w", idle=10, created_age=10**5)
    assert plan_scaling(_actor(), [worker], 0, NOW, POLICY) == ScalePlan()


def test_busy_and_starting_workers_are_never_stopped_for_idleness():
    workers = [_worker("b", WorkerStatus.BUSY, idle=10**5), _worker("s", WorkerStatus.REQUESTED)]
    assert plan_scaling(_actor(), workers, 0, NOW, POLICY).stop == ()


def test_nothing_stops_for_idleness_while_the_mailbox_holds_messages():
    workers = [_worker("b", WorkerStatus.BUSY), _worker("old", idle=10**5)]
    assert plan_scaling(_actor(), workers, 2, NOW, POLICY).stop == ()


def test_a_sync_actor_keeps_its_last_worker_warm_until_the_sync_timeout():
    sync = _actor(hints=["sync"])
    workers = [_worker("old", idle=900), _worker("older", idle=1000)]
    assert plan_scaling(sync, workers, 0, NOW, POLICY).stop == ("older",)
    assert plan_scaling(sync, [_worker("old", idle=900)], 0, NOW, POLICY).stop == ()
    assert plan_scaling(sync, [_worker("old", idle=3601)], 0, NOW, POLICY).stop == ("old",)
    # Another live worker (busy) means the idle one is not the last.
    busy = _worker("b", WorkerStatus.BUSY)
    assert plan_scaling(sync, [busy, _worker("old", idle=900)], 0, NOW, POLICY).stop == ("old",)


def test_workers_beyond_the_bound_stop_even_with_a_backlog():
    workers = [_worker("r1", idle=5), _worker("r2", idle=50), _worker("b", WorkerStatus.BUSY)]
    plan = plan_scaling(_actor(stateless=False), workers, 3, NOW, POLICY)
    assert plan == ScalePlan(stop=("r2", "r1"))


_statuses = st.sampled_from(sorted(WorkerStatus))


@given(
    statuses=st.lists(_statuses, max_size=12),
    bound=st.integers(0, 10),
    length=st.integers(0, 50),
)
def test_growth_never_passes_the_bound_and_serves_only_a_real_backlog(statuses, bound, length):
    census = Census.of(_worker(str(i), s) for i, s in enumerate(statuses))
    grow = workers_to_add(census, bound, length)
    assert grow >= 0
    if grow:
        assert census.live + grow <= bound
        assert length - census.busy > census.idle + census.starting
        assert census.idle + census.starting + grow <= length - census.busy


@given(
    workers=st.lists(st.tuples(_statuses, st.floats(0, 10**5), st.booleans()), max_size=10),
    length=st.integers(0, 5),
    max_workers=st.integers(0, 6),
    sync=st.booleans(),
    stateless=st.booleans(),
)
def test_a_plan_never_grows_and_shrinks_at_once_and_stops_only_idle_workers(
    workers, length, max_workers, sync, stateless
):
    records = [
        _worker(str(i), status, idle=idle, created_age=idle + 1 if ran else None)
        for i, (status, idle, ran) in enumerate(workers)
    ]
    actor = _actor(max_workers=max_workers, hints=["sync"] if sync else [], stateless=stateless)
    plan = plan_scaling(actor, records, length, NOW, POLICY)
    assert not (plan.grow and plan.stop)
    by_id = {w.id: w for w in records}
    assert all(by_id[i].status is WorkerStatus.READY for i in plan.stop)
    assert len(set(plan.stop)) == len(plan.stop)
    live_after = Census.of(records).live - len(plan.stop) + plan.grow
    bound = worker_bound(actor, POLICY.max_workers)
    if plan.stop and length:
        assert live_after >= bound  # with a backlog, only the surplus goes
    if sync and plan.stop and live_after == 0:
        assert all(
            (NOW - (w.last_execution_time or w.create_time)).total_seconds() > 3600
            for w in records
            if w.id in plan.stop
        )


@pytest.mark.parametrize("length", [0, 1, 7])
def test_stopped_workers_never_take_a_sync_actor_below_one_early(length):
    sync = _actor(hints=["sync"])
    workers = [_worker(f"w{i}", idle=1000 + i) for i in range(3)]
    plan = plan_scaling(sync, workers, length, NOW, POLICY)
    assert len(plan.stop) == (2 if length == 0 else 0)
