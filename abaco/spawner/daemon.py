"""The spawner daemon (``abaco-spawner``): one per host, it starts and reaps worker processes.

It registers its host in the host registry (:mod:`abaco.hosts`) and writes a load sample
into it every ``[spawner] heartbeat`` seconds; the samples are its heartbeat, and if the
health supervisor deleted the record after a pause, the next sample registers the host
again. It takes :class:`~abaco.control.StartWorker` commands from its host's queue. For
each it walks the worker's record through SPAWNER_SETUP, PULLING_IMAGE (the actor's bundle,
through the host's :class:`~abaco.spawner.fetcher.BundleCache`, kept from eviction while
the worker runs) and CREATING_CONTAINER, then starts ``python -m abaco.actors.worker``,
which takes the record on to READY. A command is acknowledged once its worker process
runs. A worker that cannot be set up fails: its record moves to ERROR and is deleted, and
its actor moves to ERROR with the reason. A worker told to stop meanwhile is dropped.

One task per worker waits for its process: when it exits, a record that is not
SHUTTING_DOWN moves to ERROR (the exit code or signal is logged), and the record is
deleted. Workers stop when the spawner dies, even by SIGKILL: each gets SIGTERM from
``PR_SET_PDEATHSIG`` (see :mod:`abaco.spawner.host`), and watches its parent as well.

:meth:`Spawner.drain` (SIGTERM or SIGINT to ``abaco-spawner``) marks the host draining,
stops taking commands (those not started stay unacknowledged, for the health supervisor),
asks every worker to stop, waits up to ``[spawner] drain_deadline`` seconds, kills what is
left, and deletes the host's record.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from abaco.actors._process import Child
from abaco.actors.states import WorkerStatus, transition
from abaco.bundles import BundleId
from abaco.bundles.manifest import parse_manifest
from abaco.channels import open_hub
from abaco.config import load_settings
from abaco.control import StartWorker, fail_actor, spawner_inbox, stop_worker
from abaco.errors import AbacoError, Aborted, BadRequest, InvalidTransition, NotFound, WireError
from abaco.hosts import Host, open_hosts
from abaco.logconfig import bind_ids, configure_logging
from abaco.spawner.host import (
    end_process,
    exit_reason,
    launch_worker,
    load_sample,
    new_host,
    open_cache,
)
from abaco.stores import Stores

if TYPE_CHECKING:
    from abaco.actors.models import Worker
    from abaco.channels import Delivery, Hub
    from abaco.config import Settings
    from abaco.redis_client import Redis
    from abaco.spawner.fetcher import BundleCache, FetchedBundle

__all__ = ["Spawner", "main", "run_spawner"]

_log = structlog.get_logger(__name__)


class _Dropped(AbacoError):
    """The worker is not this spawner's to start any more (stopped, deleted, moved)."""


@attrs.define(eq=False)
class _Child:
    """A worker this spawner is setting up or running."""

    command: StartWorker
    stores: Stores
    #: Cancelled to abandon the set-up when the host drains before the process starts.
    setup: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    process: Child | None = None


class Spawner:
    """A running spawner; :func:`run_spawner` hands it out once the host is registered."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        hub: Hub,
        host: Host,
        cache: BundleCache,
        config: Path | None,
    ) -> None:
        self.host = host
        self._settings = settings
        self._redis = redis
        self._hub = hub
        self._cache = cache
        self._config = config
        self._prefix = settings.redis.key_prefix
        self._hosts = open_hosts(redis, settings)
        self._children: dict[str, _Child] = {}
        # Deliveries being handled: one in set-up comes back on this consumer's takes.
        self._held: set[bytes] = set()
        self._drain_requested = trio.Event()
        self._draining = False
        self._all_gone = trio.Event()

    @property
    def workers(self) -> int:
        """Workers this host is setting up or running."""
        return len(self._children)

    def drain(self) -> None:
        """Ask the spawner to drain and end (what SIGTERM does)."""
        self._drain_requested.set()

    # -- the host record ----------------------------------------------------------------

    def _sample(self) -> dict[str, object]:
        return load_sample(len(self._children), self.host.capacity, draining=self._draining)

    async def register(self) -> None:
        """Write the host's record afresh."""
        self.host = attrs.evolve(self.host, **self._sample())  # type: ignore[arg-type]
        await self._hosts.put(self.host)

    async def _beat(self) -> None:
        try:
            await self._hosts.update(self.host.id, **self._sample())
        except NotFound:
            _log.warning("spawner.host_reregistered", reason="its record was deleted")
            await self.register()

    async def beat_forever(self) -> None:
        """Write a load sample every heartbeat until cancelled."""
        while True:
            await trio.sleep(self._settings.spawner.heartbeat)
            await self._beat()

    # -- commands -----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Spawner] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Take commands and run workers until drained."""
        async with trio.open_nursery() as workers:
            async with trio.open_nursery() as intake:
                intake.start_soon(self._take_commands, workers)
                task_status.started(self)
                await self._drain_requested.wait()
                self._draining = True
                with contextlib.suppress(NotFound):
                    await self._hosts.update(self.host.id, draining=True)
                intake.cancel_scope.cancel()
            await self._stop_workers()

    async def _take_commands(self, workers: trio.Nursery) -> None:
        inbox = spawner_inbox(self._hub, self._prefix, self.host.id)
        while True:
            try:
                delivery = await inbox.get()
            except WireError:
                continue  # dropped by the hub: nobody could read it
            if delivery.delivery_id in self._held:
                continue
            try:
                command = StartWorker.from_wire(delivery.message)
            except BadRequest as exc:
                _log.warning("spawner.bad_command", error=str(exc))
                await delivery.ack()
                continue
            if command.worker_id in self._children:
                await _ack(delivery)  # the same command twice: the first is being handled
                continue
            child = _Child(command, Stores.open(self._redis, self._settings, command.tenant))
            self._children[command.worker_id] = child
            self._held.add(delivery.delivery_id)
            workers.start_soon(self._run_child, delivery, child)

    async def _run_child(self, delivery: Delivery, child: _Child) -> None:
        command = child.command
        try:
            with bind_ids(actor_id=command.actor_id, worker_id=command.worker_id):
                async with contextlib.AsyncExitStack() as stack:
                    with child.setup:
                        async with delivery.renewing():
                            fetched = await self._set_up(child, stack)
                    if child.setup.cancelled_caught:
                        _log.info("spawner.setup_abandoned", reason="the host is draining")
                        return
                    if fetched is None:
                        await _ack(delivery)
                    elif await self._start(delivery, child, fetched):
                        await self._watch(child)
        finally:
            self._held.discard(delivery.delivery_id)
            self._children.pop(command.worker_id, None)
            if self._draining and not self._children:
                self._all_gone.set()

    async def _set_up(
        self, child: _Child, stack: contextlib.AsyncExitStack
    ) -> FetchedBundle | None:
        """Walk the record to CREATING_CONTAINER and fetch the bundle; None if not to start."""
        stores, command = child.stores, child.command
        try:
            await self._claim(stores, command.worker_id)
            actor = await stores.actors.get(command.actor_id)
            await _step(stores, command.worker_id, WorkerStatus.PULLING_IMAGE)
            fetched = await stack.enter_async_context(
                self._cache.using(BundleId.parse(actor.image))
            )
            manifest = await trio.Path(fetched.path, "Manifest.json").read_bytes()
            parse_manifest(manifest)
            await _step(stores, command.worker_id, WorkerStatus.CREATING_CONTAINER)
        except _Dropped as exc:
            _log.info("spawner.worker_dropped", reason=str(exc))
            await _delete_if_stopping(stores, command.worker_id)
            return None
        except (AbacoError, OSError) as exc:
            await self._fail(child, f"worker could not start on host {self.host.id}: {exc}")
            return None
        return fetched

    async def _claim(self, stores: Stores, worker_id: str) -> None:
        """REQUESTED -> SPAWNER_SETUP, if the scheduler placed the worker here."""

        def claim(worker: Worker) -> Worker:
            if worker.host_id != self.host.id:
                raise _Dropped(f"placed on host {worker.host_id!r}, not here")
            status = transition(worker.status, WorkerStatus.SPAWNER_SETUP)
            return attrs.evolve(worker, status=status, location=self.host.hostname)

        try:
            await stores.workers.transaction(worker_id, claim)
        except (InvalidTransition, NotFound) as exc:
            raise _Dropped(str(exc)) from exc

    async def _fail(self, child: _Child, message: str) -> None:
        """Fail the worker and its actor, and delete the worker's record."""
        stores, command = child.stores, child.command
        with contextlib.suppress(InvalidTransition, NotFound):
            await stores.workers.move(command.worker_id, WorkerStatus.ERROR)
        await fail_actor(stores, self._hub, self._prefix, command.actor_id, message)
        await stores.workers.delete(command.worker_id)
        _log.error("spawner.worker_failed", status_message=message)

    async def _start(self, delivery: Delivery, child: _Child, fetched: FetchedBundle) -> bool:
        """Start the worker process and acknowledge the command; False if it did not start."""
        try:
            child.process = launch_worker(child.command, fetched.path, self._config)
        except OSError as exc:
            await self._fail(child, f"cannot start the worker process: {exc}")
            await _ack(delivery)
            return False
        _log.info("spawner.worker_started", pid=child.process.pid)
        await _ack(delivery)
        if self._draining:  # it started while the drain asked the others to stop
            await self._stop(child)
        return True

    async def _watch(self, child: _Child) -> None:
        """Wait for the worker process to end (ending it if this task is cancelled); reap it."""
        process = child.process
        if process is None:
            return
        try:
            status = await process.wait()
        finally:
            if process.status is None:  # cancelled: the spawner is failing
                await end_process(process, self._settings.spawner.drain_deadline)
        await self._reap(child, exit_reason(status))

    async def _reap(self, child: _Child, how: str) -> None:
        stores, worker_id = child.stores, child.command.worker_id
        try:
            worker = await stores.workers.get(worker_id)
        except NotFound:
            _log.info("spawner.worker_exited", how=how)
            return
        if worker.status is WorkerStatus.SHUTTING_DOWN:
            _log.info("spawner.worker_exited", how=how)
        else:
            with contextlib.suppress(InvalidTransition, NotFound):
                await stores.workers.move(worker_id, WorkerStatus.ERROR)
            _log.warning(
                "spawner.worker_died",
                status_message=f"the worker process {how} while {worker.status}",
            )
        await stores.workers.delete(worker_id)

    # -- draining -----------------------------------------------------------------------

    async def _stop(self, child: _Child) -> None:
        reason = f"host {self.host.id} is draining"
        await stop_worker(child.stores, self._hub, self._prefix, child.command.worker_id, reason)

    async def _stop_workers(self) -> None:
        """Ask every worker to stop, give them the drain deadline, kill the rest."""
        _log.info("spawner.draining", workers=len(self._children))
        for child in list(self._children.values()):
            if child.process is None:
                child.setup.cancel()
            else:
                await self._stop(child)
        if not self._children:
            return
        with trio.move_on_after(self._settings.spawner.drain_deadline):
            await self._all_gone.wait()
        for child in self._children.values():
            if child.process is not None and child.process.status is None:
                _log.warning("spawner.worker_killed", worker_id=child.command.worker_id)
                child.process.signal(signal.SIGKILL)


async def _ack(delivery: Delivery) -> None:
    try:
        await delivery.ack()
    except Aborted:
        _log.warning("spawner.ack_refused")


async def _step(stores: Stores, worker_id: str, status: WorkerStatus) -> None:
    try:
        await stores.workers.move(worker_id, status)
    except (InvalidTransition, NotFound) as exc:
        raise _Dropped(str(exc)) from exc


async def _delete_if_stopping(stores: Stores, worker_id: str) -> None:
    """Delete the record of a worker told to stop before it started."""
    with contextlib.suppress(NotFound):
        worker = await stores.workers.get(worker_id)
        if worker.status is WorkerStatus.SHUTDOWN_REQUESTED:
            await stores.workers.delete(worker_id)


async def run_spawner(
    settings: Settings,
    redis: Redis,
    *,
    host_id: str | None = None,
    config: Path | None = None,
    task_status: trio.TaskStatus[Spawner] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run this host's spawner until drained (:meth:`Spawner.drain`).

    ``host_id`` names the host (a new id when None); ``config`` is passed on to workers
    as ``--config``. ``task_status.started`` gets the :class:`Spawner` once its host is
    registered.
    """
    host = new_host(settings, host_id)
    cache = open_cache(settings)
    await cache.load()
    with structlog.contextvars.bound_contextvars(host_id=host.id):
        async with open_hub(redis, namespace=settings.redis.key_prefix) as hub:
            spawner = Spawner(settings, redis, hub, host, cache, config)
            await spawner.register()
            _log.info(
                "spawner.registered",
                queue=host.queue,
                labels=host.labels,
                capacity=host.capacity,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(spawner.beat_forever)
                await spawner.run(task_status=task_status)
                nursery.cancel_scope.cancel()
            await open_hosts(redis, settings).delete(host.id)
        _log.info("spawner.stopped")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abaco-spawner",
        description=(
            "The per-host spawner: registers this host, publishes its load, and starts and "
            "stops worker processes on command. SIGTERM drains it."
        ),
    )
    parser.add_argument("--config", help="path of abaco.conf (default: $ABACO_CONF, ./abaco.conf)")
    parser.add_argument("--host-id", help="this host's id (default: a new one)")
    parser.add_argument("--queue", help="the spawner pool this host serves ([spawner] queue)")
    parser.add_argument("--labels", help="comma-separated host labels ([spawner] labels)")
    parser.add_argument(
        "--capacity",
        type=int,
        help="most workers on this host; 0: four per CPU ([spawner] capacity)",
    )
    return parser


def _with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    flags = {
        name: value
        for name, value in (
            ("queue", args.queue),
            ("labels", args.labels),
            ("capacity", args.capacity),
        )
        if value is not None
    }
    try:
        return attrs.evolve(settings, spawner=attrs.evolve(settings.spawner, **flags))
    except ValueError as exc:
        raise BadRequest(f"abaco-spawner: {exc}") from exc


async def _main(settings: Settings, host_id: str | None, config: Path | None) -> None:
    from abaco.redis_client import open_configured_redis

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_configured_redis(settings.redis) as redis, trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[Spawner]) -> None:
                await run_spawner(
                    settings, redis, host_id=host_id, config=config, task_status=task_status
                )
                nursery.cancel_scope.cancel()

            spawner: Spawner = await nursery.start(run)
            async for signum in signals:
                _log.info("spawner.stopping", signal=signal.Signals(signum).name)
                spawner.drain()


def main(argv: list[str] | None = None) -> None:
    """Run the ``abaco-spawner`` command line; needs ``[redis] url``."""
    args = _parser().parse_args(argv)
    try:
        settings = _with_flags(load_settings(args.config), args)
        configure_logging(settings.logging.level, settings.logging.format)
        if not settings.redis.url:
            raise BadRequest("the spawner needs the platform's Redis: set [redis] url")
        config = Path(args.config).absolute() if args.config else None
        trio.run(functools.partial(_main, settings, args.host_id, config))
    except AbacoError as exc:
        raise SystemExit(f"abaco-spawner: {exc}") from None
