"""The life cycles of actors, workers and executions, one transition table each.

Every status change in the platform goes through :func:`transition`, which returns the
new status or raises :class:`~abaco.errors.InvalidTransition`. Stores apply it inside
their compare-and-set, so two processes racing to move a record cannot both win, and a
late writer (say, a spawner that did not notice its worker was told to shut down) gets
an error instead of silently undoing the other's change.

The tables below are the documentation: each status maps to the statuses it may move to,
and a status that maps to nothing is terminal.

The status names are Abaco's (plus EverBEEN's WAITING, SCHEDULED and ABORTED for
executions). Since they are ``StrEnum`` members, ``ActorStatus.READY == "READY" ==
WorkerStatus.READY``; that is why every function here checks types, and passing a status
of one machine to another, or a plain string, is a ``TypeError``.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from abaco.errors import InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ACTOR_TRANSITIONS",
    "EXECUTION_TRANSITIONS",
    "WORKER_TRANSITIONS",
    "ActorStatus",
    "ExecutionStatus",
    "WorkerStatus",
    "allowed",
    "initial",
    "is_terminal",
    "machine_name",
    "transition",
]


class ActorStatus(enum.StrEnum):
    """Where an actor is in its life cycle."""

    SUBMITTED = "SUBMITTED"
    READY = "READY"
    ERROR = "ERROR"


class WorkerStatus(enum.StrEnum):
    """Where a worker is in its life cycle."""

    REQUESTED = "REQUESTED"
    SPAWNER_SETUP = "SPAWNER_SETUP"
    PULLING_IMAGE = "PULLING_IMAGE"
    CREATING_CONTAINER = "CREATING_CONTAINER"
    UPDATING_STORE = "UPDATING_STORE"
    READY = "READY"
    BUSY = "BUSY"
    SHUTDOWN_REQUESTED = "SHUTDOWN_REQUESTED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    ERROR = "ERROR"


class ExecutionStatus(enum.StrEnum):
    """Where an execution is in its life cycle."""

    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    ABORTED = "ABORTED"


Status = TypeVar("Status", ActorStatus, WorkerStatus, ExecutionStatus)

_A = ActorStatus
_W = WorkerStatus
_E = ExecutionStatus

# An actor has no terminal status: deleting it removes the record. An update (new image,
# environment, ...) sends it back to SUBMITTED from anywhere, including SUBMITTED itself
# when the user updates again before the first update settled. The health supervisor
# moves it to ERROR when its workers cannot be started or keep dying, and back to READY
# once they run again; an update is the user's way out of ERROR.
ACTOR_TRANSITIONS: Mapping[ActorStatus, frozenset[ActorStatus]] = MappingProxyType(
    {
        _A.SUBMITTED: frozenset({_A.READY, _A.ERROR, _A.SUBMITTED}),
        _A.READY: frozenset({_A.ERROR, _A.SUBMITTED}),
        _A.ERROR: frozenset({_A.READY, _A.SUBMITTED}),
    }
)

# A worker walks the spawner's set-up steps in order, then alternates between READY and
# BUSY. A shutdown may be requested at any live status (the actor was deleted or updated,
# or the autoscaler wants fewer workers); a spawner still setting the worker up then
# fails to take its next step and stops. Any live status may fail into ERROR.
# SHUTTING_DOWN is terminal: the process has been told to stop and a stop that hangs is
# finished with SIGKILL, so there is nothing left to record before the record is deleted.
# ERROR is terminal too: a failed worker is never revived, the health supervisor asks
# for a new one instead.
WORKER_TRANSITIONS: Mapping[WorkerStatus, frozenset[WorkerStatus]] = MappingProxyType(
    {
        _W.REQUESTED: frozenset({_W.SPAWNER_SETUP, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.SPAWNER_SETUP: frozenset({_W.PULLING_IMAGE, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.PULLING_IMAGE: frozenset({_W.CREATING_CONTAINER, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.CREATING_CONTAINER: frozenset({_W.UPDATING_STORE, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.UPDATING_STORE: frozenset({_W.READY, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.READY: frozenset({_W.BUSY, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.BUSY: frozenset({_W.READY, _W.SHUTDOWN_REQUESTED, _W.ERROR}),
        _W.SHUTDOWN_REQUESTED: frozenset({_W.SHUTTING_DOWN, _W.ERROR}),
        _W.SHUTTING_DOWN: frozenset(),
        _W.ERROR: frozenset(),
    }
)

# An execution is SUBMITTED when its message is accepted. A worker may claim it at once
# (RUNNING), or the scheduler may place it (SCHEDULED) or park it until a host fits
# (WAITING); a scheduled execution whose host went away goes back to WAITING.
# ABORTED means the user or the platform cancelled it (actor deleted, message cancelled).
# COMPLETE, ERROR and ABORTED are terminal. In particular RUNNING -> SUBMITTED is not
# allowed: when a worker dies mid-execution, the health supervisor marks that execution
# ERROR and the reclaimed message is delivered again as a new attempt with its own record,
# so a finished record never changes under a reader's feet.
EXECUTION_TRANSITIONS: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = MappingProxyType(
    {
        _E.SUBMITTED: frozenset({_E.WAITING, _E.SCHEDULED, _E.RUNNING, _E.ABORTED, _E.ERROR}),
        _E.WAITING: frozenset({_E.SCHEDULED, _E.ABORTED}),
        _E.SCHEDULED: frozenset({_E.RUNNING, _E.WAITING, _E.ABORTED, _E.ERROR}),
        _E.RUNNING: frozenset({_E.COMPLETE, _E.ERROR, _E.ABORTED}),
        _E.COMPLETE: frozenset(),
        _E.ERROR: frozenset(),
        _E.ABORTED: frozenset(),
    }
)


class _Machine(NamedTuple):
    name: str
    initial: Any
    table: Mapping[Any, frozenset[Any]]


_MACHINES: Mapping[type, _Machine] = MappingProxyType(
    {
        ActorStatus: _Machine("actor", ActorStatus.SUBMITTED, ACTOR_TRANSITIONS),
        WorkerStatus: _Machine("worker", WorkerStatus.REQUESTED, WORKER_TRANSITIONS),
        ExecutionStatus: _Machine("execution", ExecutionStatus.SUBMITTED, EXECUTION_TRANSITIONS),
    }
)


def _machine(status: object) -> _Machine:
    # type() and not isinstance(): StrEnum members also pass as plain str, so a status of
    # the wrong machine must be caught by its exact class.
    machine = _MACHINES.get(type(status))
    if machine is None:
        raise TypeError(f"not an actor, worker or execution status: {status!r}")
    return machine


def machine_name(status: ActorStatus | WorkerStatus | ExecutionStatus) -> str:
    """The name of the life cycle ``status`` belongs to: actor, worker or execution."""
    return _machine(status).name


def initial(kind: type[Status]) -> Status:
    """The status a new record of this kind starts in."""
    if kind not in _MACHINES:
        raise TypeError(f"not a status type: {kind!r}")
    first: Status = _MACHINES[kind].initial
    return first


def allowed(current: Status) -> frozenset[Status]:
    """The statuses that ``current`` may move to; empty when it is terminal."""
    table: Mapping[Status, frozenset[Status]] = _machine(current).table
    return table[current]


def is_terminal(status: ActorStatus | WorkerStatus | ExecutionStatus) -> bool:
    """Whether nothing may follow ``status``."""
    return not _machine(status).table[status]


def transition(current: Status, target: Status) -> Status:
    """Return ``target`` if the table lets ``current`` move to it.

    Raises InvalidTransition if it may not, and TypeError if the two statuses are not
    of the same machine.
    """
    name, _, table = _machine(current)
    if type(target) is not type(current):
        raise TypeError(f"{name} status {current!r} cannot move to {target!r}")
    if target not in table[current]:
        raise InvalidTransition(name, str(current), str(target))
    return target
