"""Heartbeat deadlines and the verdict on each worker: pure functions, no I/O.

A spawner's load samples are its host's heartbeat (``Host.last_heartbeat``); a worker
beats into its record (``last_health_check_time``). Something that missed
``[health] missed_heartbeats`` beats in a row is taken for dead. Time is always passed
in (``now``), so every rule here is a plain function of records and a clock reading.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from abaco.actors.states import WorkerStatus

if TYPE_CHECKING:
    from datetime import datetime

    from abaco.actors.models import Worker
    from abaco.config import Settings
    from abaco.hosts import Host

__all__ = [
    "RUNNING",
    "SETTING_UP",
    "STOPPING",
    "Deadlines",
    "HostState",
    "WorkerVerdict",
    "age",
    "host_is_dead",
    "judge_worker",
    "last_sign_of_life",
]

#: Statuses of a worker that is being set up by its spawner (not judged by heartbeat).
SETTING_UP = frozenset(
    {
        WorkerStatus.REQUESTED,
        WorkerStatus.SPAWNER_SETUP,
        WorkerStatus.PULLING_IMAGE,
        WorkerStatus.CREATING_CONTAINER,
        WorkerStatus.UPDATING_STORE,
    }
)
#: Statuses of a worker process that takes messages and beats its heart.
RUNNING = frozenset({WorkerStatus.READY, WorkerStatus.BUSY})
#: Statuses of a worker on its way out (or out): not live, not counted by the autoscaler.
STOPPING = frozenset(
    {WorkerStatus.SHUTDOWN_REQUESTED, WorkerStatus.SHUTTING_DOWN, WorkerStatus.ERROR}
)

# A worker stuck in set-up is given this many host-deadlines: a bundle download may take
# a while, and replacing a worker that was merely slow would double it.
_SETUP_FACTOR = 10


@attrs.frozen(kw_only=True)
class Deadlines:
    """How many seconds may pass before the supervisor acts, for each thing it watches."""

    #: Since a host's last heartbeat, before the host is dead.
    host: float
    #: Since a READY or BUSY worker's last heartbeat, before it is dead.
    worker: float
    #: Since a worker's creation, before a worker in set-up whose host is gone is replaced;
    #: also how long a stopping or failed worker's record may outlive its last heartbeat.
    setup: float
    #: Since a RUNNING execution started, before it counts as lost when its worker is gone.
    execution: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Deadlines:
        """The deadlines ``settings`` imply (see ``[health]``, ``[worker]``, ``[spawner]``)."""
        missed = settings.health.missed_heartbeats
        host = missed * settings.spawner.heartbeat
        return cls(
            host=host,
            worker=missed * settings.worker.heartbeat,
            setup=_SETUP_FACTOR * host,
            # A reclaimed message is retaken within one visibility (plus the half one a
            # consumer waits between full takes); twice leaves the worker room to do it.
            execution=2 * settings.worker.visibility,
        )


class HostState(enum.Enum):
    """What the supervisor knows about the host a worker was placed on."""

    #: The worker has no host yet (the scheduler has not placed it).
    UNPLACED = "unplaced"
    ALIVE = "alive"
    #: Found dead in this pass (its record is being deleted now).
    DIED = "died"
    #: No record: it died earlier, or its spawner went away.
    GONE = "gone"


class WorkerVerdict(enum.Enum):
    """What the supervisor does with one worker record."""

    KEEP = "keep"
    #: Its host died: fail it, delete it, and ask for a replacement if it was live.
    HOST_DIED = "host_died"
    #: READY or BUSY without a heartbeat for too long: fail it and delete it.
    DEAD = "dead"
    #: Stuck in set-up on a host that is gone: fail it, delete it, replace it.
    STUCK = "stuck"
    #: Live, but its actor no longer exists: ask it to stop.
    ORPHAN = "orphan"
    #: Stopping or failed, and silent for a long time: delete the record.
    STALE = "stale"


def age(since: datetime, now: datetime) -> float:
    """Seconds from ``since`` to ``now`` (negative when ``since`` is in the future)."""
    return (now - since).total_seconds()


def host_is_dead(host: Host, now: datetime, deadlines: Deadlines) -> bool:
    """Whether ``host`` missed too many heartbeats."""
    return age(host.last_heartbeat, now) > deadlines.host


def last_sign_of_life(worker: Worker) -> datetime:
    """The worker's last heartbeat, or its creation when it never beat."""
    return worker.last_health_check_time or worker.create_time


def judge_worker(
    worker: Worker,
    now: datetime,
    deadlines: Deadlines,
    *,
    host: HostState,
    actor_exists: bool,
) -> WorkerVerdict:
    """Decide what to do with ``worker`` (see :class:`WorkerVerdict`).

    Idle time alone never condemns a worker: a long execution keeps beating and is kept.
    """
    if host is HostState.DIED:
        return WorkerVerdict.HOST_DIED
    if worker.status in STOPPING:
        silent = age(last_sign_of_life(worker), now) > deadlines.setup
        return WorkerVerdict.STALE if silent else WorkerVerdict.KEEP
    if not actor_exists:
        return WorkerVerdict.ORPHAN
    if worker.status in RUNNING:
        silent = age(last_sign_of_life(worker), now) > deadlines.worker
        return WorkerVerdict.DEAD if silent else WorkerVerdict.KEEP
    if host is HostState.GONE and age(worker.create_time, now) > deadlines.setup:
        return WorkerVerdict.STUCK
    return WorkerVerdict.KEEP
