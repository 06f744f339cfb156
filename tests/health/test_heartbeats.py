"""Deadlines and verdicts: pure functions of records and a clock reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from abaco.actors.models import Worker
from abaco.actors.states import WorkerStatus
from abaco.health.heartbeats import (
    RUNNING,
    SETTING_UP,
    STOPPING,
    Deadlines,
    HostState,
    WorkerVerdict,
    host_is_dead,
    judge_worker,
)
from abaco.hosts import Host

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DEADLINES = Deadlines(host=6.0, worker=15.0, setup=60.0, execution=60.0)


def _at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def _worker(status, *, beat_age=None, created_age=0.0, host_id="h1") -> Worker:
    return Worker(
        id="w1",
        actor_id="a1",
        status=status,
        host_id=host_id,
        create_time=_at(created_age),
        last_health_check_time=None if beat_age is None else _at(beat_age),
    )


def _judge(worker, host=HostState.ALIVE, actor_exists=True):
    return judge_worker(worker, NOW, DEADLINES, host=host, actor_exists=actor_exists)


def test_deadlines_follow_the_settings(settings):
    health = attrs.evolve(settings.health, missed_heartbeats=4)
    worker = attrs.evolve(settings.worker, heartbeat=2.5, visibility=7.0)
    spawner = attrs.evolve(settings.spawner, heartbeat=0.5)
    changed = attrs.evolve(settings, health=health, worker=worker, spawner=spawner)
    assert Deadlines.from_settings(changed) == Deadlines(
        host=2.0, worker=10.0, setup=20.0, execution=14.0
    )


def test_the_status_groups_split_every_worker_status():
    assert set(WorkerStatus) == SETTING_UP | RUNNING | STOPPING
    assert len(SETTING_UP) + len(RUNNING) + len(STOPPING) == len(WorkerStatus)


@pytest.mark.parametrize(("age", "dead"), [(0.0, False), (6.0, False), (6.01, True), (600, True)])
def test_a_host_is_dead_after_its_missed_heartbeats(age, dead):
    host = Host(id="h1", hostname="h1", last_heartbeat=_at(age))
    assert host_is_dead(host, NOW, DEADLINES) is dead


@pytest.mark.parametrize("status", sorted(RUNNING))
def test_a_running_worker_is_dead_only_when_its_heartbeat_is_old(status):
    assert _judge(_worker(status, beat_age=14.0, created_age=3600)) is WorkerVerdict.KEEP
    assert _judge(_worker(status, beat_age=15.5)) is WorkerVerdict.DEAD


def test_a_worker_that_never_beat_is_judged_by_its_creation():
    assert _judge(_worker(WorkerStatus.READY, created_age=5)) is WorkerVerdict.KEEP
    assert _judge(_worker(WorkerStatus.READY, created_age=16)) is WorkerVerdict.DEAD


@given(busy_for=st.floats(min_value=0, max_value=10**7), beat_age=st.floats(0, 15.0))
def test_a_long_execution_that_keeps_beating_is_never_dead(busy_for, beat_age):
    worker = _worker(WorkerStatus.BUSY, beat_age=beat_age, created_age=busy_for + beat_age)
    assert _judge(worker) is WorkerVerdict.KEEP


@given(status=st.sampled_from(sorted(WorkerStatus)), beat_age=st.floats(0, 10**6))
def test_every_worker_on_a_host_that_died_is_lost_with_it(status, beat_age):
    assert _judge(_worker(status, beat_age=beat_age), HostState.DIED) is WorkerVerdict.HOST_DIED


@pytest.mark.parametrize("status", sorted(SETTING_UP))
def test_a_worker_in_set_up_is_not_judged_by_heartbeat(status):
    # Old and silent, but on a live host (or not placed yet): the spawner is on it.
    assert _judge(_worker(status, created_age=3600)) is WorkerVerdict.KEEP
    unplaced = _worker(status, created_age=3600, host_id="")
    assert _judge(unplaced, HostState.UNPLACED) is WorkerVerdict.KEEP


@pytest.mark.parametrize("status", sorted(SETTING_UP))
def test_a_worker_stuck_in_set_up_on_a_gone_host_is_replaced_after_a_generous_bound(status):
    assert _judge(_worker(status, created_age=59), HostState.GONE) is WorkerVerdict.KEEP
    assert _judge(_worker(status, created_age=61), HostState.GONE) is WorkerVerdict.STUCK


@pytest.mark.parametrize("status", sorted(SETTING_UP | RUNNING))
def test_a_live_worker_whose_actor_is_gone_is_an_orphan(status):
    assert _judge(_worker(status), actor_exists=False) is WorkerVerdict.ORPHAN


@pytest.mark.parametrize("status", sorted(STOPPING))
def test_a_stopping_worker_is_left_alone_until_it_stays_silent_long(status):
    assert _judge(_worker(status, beat_age=59), actor_exists=False) is WorkerVerdict.KEEP
    assert _judge(_worker(status, beat_age=61)) is WorkerVerdict.STALE
