"""Recovery: dead hosts and dead, stuck, orphaned or stale workers.

Every change is a compare-and-set on the record, re-judged on the fresh record inside
the transaction: of several supervisors acting on one worker only one fails it (the
others get :class:`~abaco.errors.InvalidTransition` or find it gone, and treat it as
done), and only that one asks for its replacement. A worker that beat its heart since
the listing is reprieved.

A failed worker's record is deleted right after it moves to ERROR; if its process is
alive but paused, it stops by itself when it finds its record gone. Its in-flight
message needs nothing from here: the mailbox's visibility timeout hands it to another
worker, which records the lost attempt and runs the message again.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import attrs
import structlog

from abaco.actors.states import WorkerStatus, is_terminal, transition
from abaco.control import stop_worker
from abaco.errors import InvalidTransition, NotFound
from abaco.health.context import all_records
from abaco.health.heartbeats import (
    HostState,
    WorkerVerdict,
    host_is_dead,
    judge_worker,
    last_sign_of_life,
)
from abaco.logconfig import bind_ids

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from datetime import datetime

    from abaco.actors.models import Worker
    from abaco.health.context import Health, PassReport
    from abaco.hosts import Host
    from abaco.stores import Stores

__all__ = ["host_state", "reap_dead_hosts", "repair_workers"]

_log = structlog.get_logger(__name__)

# What a failed worker's ERROR means, by verdict (the record is deleted just after, so
# these go to the log rather than into it).
_WHY = {
    WorkerVerdict.HOST_DIED: "its host {host} died",
    WorkerVerdict.DEAD: "it missed its heartbeats (last sign of life {last})",
    WorkerVerdict.STUCK: "it was stuck in {status} and its host {host} is gone",
}
_EVENT = {
    WorkerVerdict.HOST_DIED: "health.host_worker_lost",
    WorkerVerdict.DEAD: "health.dead_worker",
    WorkerVerdict.STUCK: "health.stuck_worker",
}


_ASKED_TO_STOP = frozenset({WorkerStatus.SHUTDOWN_REQUESTED, WorkerStatus.SHUTTING_DOWN})


class _Reprieved(Exception):
    """The fresh record no longer earns the verdict (it beat its heart meanwhile)."""


async def reap_dead_hosts(
    health: Health, hosts: Iterable[Host], now: datetime, report: PassReport
) -> set[str]:
    """Delete the record of every host of ``hosts`` that missed its heartbeats; return their ids.

    A host deleted by another supervisor meanwhile is among them, so that its workers
    are still recovered at once.
    """
    died: set[str] = set()
    for host in hosts:
        if not host_is_dead(host, now, health.deadlines):
            continue
        try:
            fresh = await health.hosts.get(host.id)
        except NotFound:
            died.add(host.id)
            continue
        if not host_is_dead(fresh, now, health.deadlines):
            continue  # its spawner beat since the listing
        died.add(host.id)
        if await health.hosts.delete(host.id):
            _log.warning(
                "health.dead_host",
                host_id=host.id,
                hostname=host.hostname,
                last_heartbeat=host.last_heartbeat.isoformat(),
            )
            report.add(dead_hosts=1)
    return died


def host_state(worker: Worker, died: Collection[str], alive: Collection[str]) -> HostState:
    """Where ``worker``'s host stands, given the hosts that ``died`` and those ``alive``."""
    if not worker.host_id:
        return HostState.UNPLACED
    if worker.host_id in died:
        return HostState.DIED
    return HostState.ALIVE if worker.host_id in alive else HostState.GONE


async def repair_workers(
    health: Health,
    stores: Stores,
    now: datetime,
    *,
    died: Collection[str],
    alive: Collection[str],
    actors: Collection[str],
    report: PassReport,
) -> Counter[str]:
    """Judge every worker of the tenant and act; return replacements owed, per actor id."""
    owed: Counter[str] = Counter()

    def verdict_of(worker: Worker) -> WorkerVerdict:
        return judge_worker(
            worker,
            now,
            health.deadlines,
            host=host_state(worker, died, alive),
            actor_exists=worker.actor_id in actors,
        )

    for worker in await all_records(stores.workers):
        verdict = verdict_of(worker)
        if verdict is WorkerVerdict.KEEP:
            continue
        with bind_ids(actor_id=worker.actor_id, worker_id=worker.id):
            if verdict is WorkerVerdict.ORPHAN:
                await stop_worker(
                    stores, health.hub, health.key_prefix, worker.id, reason="its actor is gone"
                )
                _log.warning("health.orphan_worker", status=str(worker.status))
                report.add(orphans_stopped=1)
            elif verdict is WorkerVerdict.STALE:
                if await _delete_if(stores, worker.id, _still(verdict_of, verdict)):
                    _log.info("health.stale_worker", status=str(worker.status))
                    report.add(stale_workers=1)
            elif await _fail(stores, worker, _still(verdict_of, verdict)):
                _log.warning(
                    _EVENT[verdict],
                    status=str(worker.status),
                    status_message=_WHY[verdict].format(
                        host=worker.host_id,
                        status=worker.status,
                        last=last_sign_of_life(worker).isoformat(),
                    ),
                )
                report.add(dead_workers=1)
                # A dead worker's replacement is the autoscaler's call (its rule sees the
                # backlog); a worker lost with its host, or stuck, is replaced one for one.
                # A worker that failed (ERROR: e.g. it saw its spawner die) is replaced;
                # one that was asked to stop is not.
                replace = verdict is not WorkerVerdict.DEAD and worker.status not in _ASKED_TO_STOP
                if replace and worker.actor_id in actors:
                    owed[worker.actor_id] += 1
    return owed


def _still(
    verdict_of: Callable[[Worker], WorkerVerdict], verdict: WorkerVerdict
) -> Callable[[Worker], bool]:
    """Whether a fresh copy of a worker still earns ``verdict``."""
    return lambda fresh: verdict_of(fresh) is verdict


async def _fail(stores: Stores, worker: Worker, still: Callable[[Worker], bool]) -> bool:
    """Move the worker to ERROR and delete it; True when this call did it."""
    if is_terminal(worker.status):
        # Nothing left to record (SHUTTING_DOWN or ERROR): whoever deletes it, did it.
        return await _delete_if(stores, worker.id, still)

    def failed(fresh: Worker) -> Worker:
        if not still(fresh):
            raise _Reprieved
        return attrs.evolve(fresh, status=transition(fresh.status, WorkerStatus.ERROR))

    try:
        await stores.workers.transaction(worker.id, failed)
    except (_Reprieved, InvalidTransition, NotFound):
        return False
    await stores.workers.delete(worker.id)
    return True


async def _delete_if(stores: Stores, worker_id: str, still: Callable[[Worker], bool]) -> bool:
    """Delete the worker's record if its fresh copy still earns the verdict."""
    try:
        fresh = await stores.workers.get(worker_id)
    except NotFound:
        return False
    return still(fresh) and await stores.workers.delete(worker_id)
