"""The scheduler: chooses the host on which each new worker runs.

It takes :class:`~abaco.control.PlaceWorker` commands from its inbox, a durable queue that
every scheduler instance shares (each command goes to one of them). For each, it reads the
worker's record and its actor, keeps the hosts of the actor's ``queue`` that carry the
labels the actor's hints ask for (``host:LABEL``), have room, are not draining and beat
their heart recently, and picks the least loaded, at random among equals. It writes the
host into the worker's record, counts the placement against the host (so a burst of
placements spreads before the host's next load sample), and sends the host's spawner a
:class:`~abaco.control.StartWorker`.

When no host fits, the command WAITs: it stays unacknowledged (renewed, so no other
scheduler takes it, while a scheduler that dies hands it on) and is tried again every
``[scheduler] retry_interval`` seconds, without holding up other commands.

Run it with ``python -m abaco.scheduler [--config PATH]``.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from abaco._component import run_component
from abaco.actors.models import utcnow
from abaco.actors.states import WorkerStatus
from abaco.channels import open_hub
from abaco.control import PlaceWorker, StartWorker, scheduler_inbox, spawner_inbox
from abaco.errors import AbacoError, Aborted, BadRequest, NotFound, WireError
from abaco.hosts import Host, open_hosts, required_labels
from abaco.logconfig import bind_ids
from abaco.stores import Stores

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from abaco.actors.models import Worker
    from abaco.channels import Delivery, Hub, QueueChannel
    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = ["choose_host", "main", "run_scheduler"]

_log = structlog.get_logger(__name__)

_PAGE = 100
# Loads are sums of 1/capacity steps; float rounding must not make equals unequal.
_SAME_LOAD = 1e-9


def choose_host(
    hosts: Iterable[Host],
    *,
    queue: str,
    labels: frozenset[str],
    now: datetime,
    max_age: timedelta,
    rng: random.Random | None = None,
) -> Host | None:
    """The least loaded live host that fits, at random among equals; None when none fits.

    A host is live when its last heartbeat is at most ``max_age`` old.
    """
    candidates = [h for h in hosts if h.fits(queue, labels) and now - h.last_heartbeat <= max_age]
    if not candidates:
        return None
    lightest = min(h.load for h in candidates)
    equals = [h for h in candidates if h.load <= lightest + _SAME_LOAD]
    return (rng or random).choice(equals)


class _Changed(AbacoError):
    """The worker's record left REQUESTED while it was being placed."""


class _Scheduler:
    """One scheduler instance: its hub, the host registry, the commands it holds."""

    def __init__(self, settings: Settings, redis: Redis, hub: Hub) -> None:
        self._settings = settings
        self._redis = redis
        self._hub = hub
        self._prefix = settings.redis.key_prefix
        self._hosts = open_hosts(redis, settings)
        self._max_age = timedelta(
            seconds=settings.health.missed_heartbeats * settings.spawner.heartbeat
        )
        # One placement decision at a time, so each sees the one before it counted.
        self._deciding = trio.Lock()
        # Deliveries being handled: a waiting one comes back on this consumer's takes.
        self._held: set[bytes] = set()

    async def serve(
        self, inbox: QueueChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Take commands until cancelled, each handled in its own task."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    delivery = await inbox.get()
                except WireError:
                    continue  # dropped by the hub: nobody could read it
                if delivery.delivery_id in self._held:
                    continue
                self._held.add(delivery.delivery_id)
                nursery.start_soon(self._handle, delivery)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            try:
                command = PlaceWorker.from_wire(delivery.message)
            except BadRequest as exc:
                _log.warning("scheduler.bad_command", error=str(exc))
                await delivery.ack()
                return
            with bind_ids(actor_id=command.actor_id, worker_id=command.worker_id):
                async with delivery.renewing():
                    await self._place_until_done(command)
                try:
                    await delivery.ack()
                except Aborted:
                    # We were too slow and another scheduler took it: it will find it placed.
                    _log.warning("scheduler.ack_refused")
        finally:
            self._held.discard(delivery.delivery_id)

    async def _place_until_done(self, command: PlaceWorker) -> None:
        said = ""
        while True:
            try:
                reason = await self._try_place(command)
            except (_Changed, NotFound):
                continue  # the record or the host changed under us: look again at once
            if reason is None:
                return
            if reason != said:
                _log.info("scheduler.waiting", reason=reason)
                said = reason
            await trio.sleep(self._settings.scheduler.retry_interval)

    async def _try_place(self, command: PlaceWorker) -> str | None:
        """Place the worker, or drop the command; returns why it waits if no host fits."""
        stores = Stores.open(self._redis, self._settings, command.tenant)
        try:
            worker = await stores.workers.get(command.worker_id)
        except NotFound:
            _log.info("scheduler.worker_gone")
            return None
        if worker.status is WorkerStatus.SHUTDOWN_REQUESTED:
            await stores.workers.delete(worker.id)
            _log.info("scheduler.stopped_before_placement")
            return None
        if worker.status is not WorkerStatus.REQUESTED:
            return None  # placed already: this command was delivered twice
        try:
            actor = await stores.actors.get(command.actor_id)
        except NotFound:
            await stores.workers.delete(worker.id)
            _log.info("scheduler.actor_gone")
            return None
        labels = required_labels(actor.hints)
        async with self._deciding:
            hosts = await self._all_hosts()
            host = choose_host(
                hosts, queue=actor.queue, labels=labels, now=utcnow(), max_age=self._max_age
            )
            if host is None:
                return _why_waiting(actor.queue, labels, len(hosts))

            def assign(record: Worker) -> Worker:
                if record.status is not WorkerStatus.REQUESTED:
                    raise _Changed(f"worker {record.id} is {record.status} now")
                return attrs.evolve(record, host_id=host.id, location=host.hostname)

            await stores.workers.transaction(worker.id, assign)
            await self._hosts.increment(host.id, "workers", 1)
            load = await self._hosts.increment(host.id, "load", 1 / host.capacity)
        start = StartWorker(tenant=command.tenant, actor_id=actor.id, worker_id=worker.id)
        await spawner_inbox(self._hub, self._prefix, host.id).put(start.to_wire())
        _log.info("scheduler.placed", host_id=host.id, load=load)
        return None

    async def _all_hosts(self) -> list[Host]:
        hosts: list[Host] = []
        cursor: str | None = None
        while True:
            page = await self._hosts.list(cursor=cursor, limit=_PAGE)
            hosts += page.items
            if page.next_cursor is None:
                return hosts
            cursor = page.next_cursor


def _why_waiting(queue: str, labels: frozenset[str], registered: int) -> str:
    wanted = f" with labels {', '.join(sorted(labels))}" if labels else ""
    return (
        f"no live host in queue {queue!r}{wanted} has room "
        f"({registered} host{'' if registered == 1 else 's'} registered)"
    )


async def run_scheduler(
    settings: Settings,
    redis: Redis,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Place workers on hosts until cancelled."""
    prefix = settings.redis.key_prefix
    async with open_hub(redis, namespace=prefix) as hub:
        scheduler = _Scheduler(settings, redis, hub)
        _log.info("scheduler.serving")
        await scheduler.serve(scheduler_inbox(hub, prefix), task_status=task_status)


def main(argv: list[str] | None = None) -> None:
    """Run the scheduler (``python -m abaco.scheduler``); needs ``[redis] url``."""
    run_component(
        "scheduler",
        run_scheduler,
        argv,
        prog="python -m abaco.scheduler",
        description="Place new workers on hosts.",
        needs="the scheduler",
    )


if __name__ == "__main__":
    main()
