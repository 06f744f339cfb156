"""The autoscaling policy: an actor's workers and mailbox length in, a plan out. No I/O.

Rules (``bound`` is the actor's ``max_workers``, else ``[health] max_workers``; a
stateful actor has at most one worker):

- **Live** workers are those not stopping (``SHUTDOWN_REQUESTED``, ``SHUTTING_DOWN``,
  ``ERROR``): set-up, READY and BUSY ones.
- **Waiting** messages are the mailbox's unacknowledged messages less one per BUSY worker
  (each BUSY worker holds the message it runs).
- **Grow** in proportion to the backlog: request ``waiting - idle - starting`` more
  workers (workers in set-up are capacity on its way), never beyond ``bound - live``. An
  actor with no worker and a non-empty mailbox therefore gets one at once, and a READY
  actor whose messages all have an idle worker gets none.
- A SUBMITTED actor with no live worker gets one (its first).
- **Shrink** only with an empty mailbox: a READY worker idle for longer than
  ``idle_timeout`` (since its last execution, or its creation) is stopped, most idle
  first. An actor hinted ``sync`` keeps its last live worker until that one has been idle
  for ``sync_idle_timeout``.
- Beyond the bound (the bound was lowered, or two requests raced), the most idle READY
  workers are stopped until the actor is back within it, whatever its mailbox holds.
- An actor in ERROR is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from abaco.actors.states import ActorStatus, WorkerStatus
from abaco.health.heartbeats import SETTING_UP, STOPPING, age

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from abaco.actors.models import Actor, Worker
    from abaco.config import Settings

__all__ = [
    "SYNC_HINT",
    "Census",
    "ScalePlan",
    "ScalePolicy",
    "idle_for",
    "plan_scaling",
    "worker_bound",
    "workers_to_add",
    "workers_to_stop",
]

#: An actor hint that keeps the actor's last worker warm (for synchronous messages).
SYNC_HINT = "sync"


@attrs.frozen(kw_only=True)
class ScalePolicy:
    """The ``[health]`` settings the autoscaler follows."""

    #: Workers per actor when the actor sets no ``max_workers``.
    max_workers: int
    #: Seconds a READY worker may stay idle before it is stopped.
    idle_timeout: float
    #: Seconds the last worker of a ``sync`` actor may stay idle.
    sync_idle_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ScalePolicy:
        """The policy of ``settings.health``."""
        health = settings.health
        return cls(
            max_workers=health.max_workers,
            idle_timeout=health.idle_timeout,
            sync_idle_timeout=health.sync_idle_timeout,
        )


@attrs.frozen(kw_only=True)
class Census:
    """How an actor's workers stand."""

    #: Not stopping: starting + idle + busy.
    live: int
    #: READY: waiting for a message.
    idle: int
    #: BUSY: running one message each.
    busy: int
    #: In a set-up status: on their way.
    starting: int

    @classmethod
    def of(cls, workers: Iterable[Worker]) -> Census:
        """Count ``workers`` by status."""
        statuses = [w.status for w in workers]
        return cls(
            live=sum(s not in STOPPING for s in statuses),
            idle=statuses.count(WorkerStatus.READY),
            busy=statuses.count(WorkerStatus.BUSY),
            starting=sum(s in SETTING_UP for s in statuses),
        )


@attrs.frozen
class ScalePlan:
    """What the autoscaler does for one actor in one pass."""

    #: Workers to request.
    grow: int = 0
    #: Ids of workers to stop.
    stop: tuple[str, ...] = ()


def worker_bound(actor: Actor, default_max: int) -> int:
    """The most live workers ``actor`` may have."""
    bound = default_max if actor.max_workers is None else actor.max_workers
    return bound if actor.stateless else min(bound, 1)


def idle_for(worker: Worker, now: datetime) -> float:
    """Seconds since ``worker`` last finished an execution (or was created)."""
    last = worker.last_execution_time
    since = worker.create_time if last is None else max(last, worker.create_time)
    return age(since, now)


def workers_to_add(census: Census, bound: int, mailbox_length: int) -> int:
    """How many workers to request for the backlog (see the module's rules)."""
    waiting = max(0, mailbox_length - census.busy)
    wanted = waiting - census.idle - census.starting
    return max(0, min(wanted, bound - census.live))


def workers_to_stop(
    workers: Iterable[Worker],
    bound: int,
    mailbox_length: int,
    now: datetime,
    policy: ScalePolicy,
    *,
    sync: bool,
) -> tuple[str, ...]:
    """The ids of the READY workers to stop, most idle first (see the module's rules)."""
    workers = list(workers)
    live = Census.of(workers).live
    idle = sorted(
        (w for w in workers if w.status is WorkerStatus.READY),
        key=lambda w: idle_for(w, now),
        reverse=True,
    )
    stop: list[str] = []
    for worker in idle:
        remaining = live - len(stop)
        if remaining > bound:
            stop.append(worker.id)
            continue
        if mailbox_length > 0:
            break
        # Sorted most idle first: once one is not idle long enough, none after it is.
        limit = policy.sync_idle_timeout if sync and remaining == 1 else policy.idle_timeout
        if idle_for(worker, now) <= limit:
            break
        stop.append(worker.id)
    return tuple(stop)


def plan_scaling(
    actor: Actor,
    workers: Iterable[Worker],
    mailbox_length: int,
    now: datetime,
    policy: ScalePolicy,
) -> ScalePlan:
    """What to do for ``actor`` given its ``workers`` and its mailbox's length."""
    workers = list(workers)
    census = Census.of(workers)
    bound = worker_bound(actor, policy.max_workers)
    if actor.status is ActorStatus.SUBMITTED:
        return ScalePlan(grow=1 if census.live == 0 and bound > 0 else 0)
    if actor.status is not ActorStatus.READY:
        return ScalePlan()
    sync = SYNC_HINT in actor.hints
    return ScalePlan(
        grow=workers_to_add(census, bound, mailbox_length),
        stop=workers_to_stop(workers, bound, mailbox_length, now, policy, sync=sync),
    )
