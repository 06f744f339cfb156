"""The worker: one process per running worker of an actor.

It takes messages from the actor's mailbox one at a time and runs each as an isolated
execution (:mod:`abaco.actors.runners`), moving the execution SUBMITTED -> RUNNING ->
COMPLETE or ERROR, streaming its output into the execution's log as it comes, storing its
results, and acknowledging the message only once the record is stored. While it runs an
execution it renews its hold on the message; a worker that stops renewing (it died) loses
the message to another worker, which marks the first execution ERROR and runs the
message again as a new execution. A worker that lost a message this way does not
complete it. Finished executions go to the persist queue (outcome, log and result
records) for durable storage. The worker beats its heart into its record, and stops on a typed
:class:`~abaco.actors.mailbox.StopWorker` command on its control channel, on SIGTERM, when
its record disappears (the health supervisor took it for dead), or when the process that
started it (its spawner) goes away: it lets the current execution finish (up to
``stop_deadline``) and exits. The worker that first reaches READY makes its actor READY.

Run one directly: ``python -m abaco.actors.worker --actor ID [--worker ID]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from abaco._paths import runtime_dir
from abaco.actors._worker_process import WorkerProcess, environment_for
from abaco.actors.ids import new_id
from abaco.actors.mailbox import StopWorker, control_of, mailbox_of
from abaco.actors.models import Actor, Worker
from abaco.actors.mounts import grants_for
from abaco.actors.runners import (
    Runner,
    open_command_runner,
    open_python_runner,
)
from abaco.actors.states import ActorStatus, WorkerStatus, transition
from abaco.bundles.manifest import CommandRuntime, Manifest, parse_manifest
from abaco.channels import Hub, QueueChannel, open_hub
from abaco.config import Settings, config_file
from abaco.control import fail_actor
from abaco.errors import (
    AbacoError,
    BadRequest,
    InvalidTransition,
    NotFound,
    RunnerError,
)
from abaco.events import EventType, emit_actor_event
from abaco.logconfig import bind_ids, configure_logging
from abaco.stores import Stores

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from abaco.actors.sandbox import Grants
    from abaco.redis_client import Redis

__all__ = ["WorkerProcess", "environment_for", "main", "run_worker"]

_log = structlog.get_logger(__name__)

# Seconds between looks at whether the process that started the worker is still there.
_PARENT_POLL = 0.5

# Worker set-up steps, walked by a worker that starts on its own (no spawner before it).
_SETUP = (
    WorkerStatus.SPAWNER_SETUP,
    WorkerStatus.PULLING_IMAGE,
    WorkerStatus.CREATING_CONTAINER,
    WorkerStatus.UPDATING_STORE,
    WorkerStatus.READY,
)


def _open_runner(
    bundle_dir: Path,
    manifest: Manifest,
    work_root: Path,
    *,
    sandbox: bool,
    hide: list[Path],
    grants: Grants,
) -> AbstractAsyncContextManager[Runner]:
    runtime = manifest.runtime
    if isinstance(runtime, CommandRuntime):
        return open_command_runner(
            bundle_dir, runtime, work_root=work_root, sandbox=sandbox, hide=hide, grants=grants
        )
    return open_python_runner(
        bundle_dir,
        runtime,
        work_root=work_root,
        sandbox=sandbox,
        hide=hide,
        network=manifest.resources.network,
        grants=grants,
    )


@contextlib.asynccontextmanager
async def _started_runner(
    opening: AbstractAsyncContextManager[Runner], fail: Callable[[str], Awaitable[None]]
) -> AsyncIterator[Runner]:
    """The runner ``opening`` opens; if it cannot start the actor's code, ``fail`` the actor.

    A module that does not import (or a sandbox that does not start) fails every worker
    the same way: the actor goes to ERROR with the reason, as Abaco does when an image
    cannot start, instead of getting a new worker that fails again every health pass.
    """
    async with contextlib.AsyncExitStack() as stack:
        try:
            runner = await stack.enter_async_context(opening)
        except RunnerError as exc:
            _log.error("worker.runner_failed", error=str(exc))
            with trio.CancelScope(shield=True):
                await fail(f"Could not start a worker for this actor: {_in_brief(exc)}")
            raise
        yield runner


def _in_brief(error: Exception) -> str:
    """An error's first line and, for a traceback, its last line (what was raised)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


async def _register(
    stores: Stores, hub: Hub, key_prefix: str, actor: Actor, worker_id: str
) -> None:
    """Create the worker's record (unless a spawner did) and walk it to READY.

    Raises InvalidTransition (or NotFound) when the worker was told to stop meanwhile.
    """
    try:
        worker = await stores.workers.get(worker_id)
    except NotFound:
        worker = Worker(id=worker_id, actor_id=actor.id, tenant=actor.tenant, image=actor.image)
        await stores.workers.create(worker)
    position = _SETUP.index(worker.status) + 1 if worker.status in _SETUP else 0
    for status in _SETUP[position:]:
        await stores.workers.move(worker_id, status, pid=os.getpid(), ch_name=worker_id)
    await _actor_ready(stores, hub, key_prefix, actor.id)


async def _actor_ready(stores: Stores, hub: Hub, key_prefix: str, actor_id: str) -> None:
    """Move the actor SUBMITTED -> READY: it has a worker now (any other status stays).

    The move is reported as an ACTOR_READY event (:mod:`abaco.events`).
    """

    def ready(actor: Actor) -> Actor:
        if actor.status is not ActorStatus.SUBMITTED:
            raise InvalidTransition("actor", actor.status, ActorStatus.READY)
        return attrs.evolve(actor, status=transition(actor.status, ActorStatus.READY))

    with contextlib.suppress(InvalidTransition, NotFound):
        became_ready = await stores.actors.transaction(actor_id, ready)
        await emit_actor_event(hub, key_prefix, became_ready, EventType.ACTOR_READY)


async def _mark_stopped(stores: Stores, worker_id: str) -> None:
    """Walk the record to SHUTTING_DOWN from wherever it is (stop_worker may have begun)."""
    for status in (WorkerStatus.SHUTDOWN_REQUESTED, WorkerStatus.SHUTTING_DOWN):
        try:
            await stores.workers.move(worker_id, status)
        except InvalidTransition:
            continue
        except NotFound:
            return  # deleted: nothing left to record


async def _mark_failed(stores: Stores, worker_id: str) -> None:
    """Move the record to ERROR from wherever it is."""
    with contextlib.suppress(InvalidTransition, NotFound):
        await stores.workers.move(worker_id, WorkerStatus.ERROR)


async def run_worker(
    settings: Settings,
    redis: Redis,
    *,
    actor_id: str,
    worker_id: str,
    bundle_dir: Path,
    tenant: str | None = None,
    parent_pid: int | None = None,
    task_status: trio.TaskStatus[WorkerProcess] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a worker of ``actor_id`` on the unpacked bundle in ``bundle_dir`` until stopped.

    ``task_status.started`` gets the :class:`WorkerProcess`; set its ``stopping`` event
    to stop it gracefully. With ``parent_pid``, the worker also stops once this process's
    parent is no longer that process (the spawner died).
    """
    stores = Stores.open(redis, settings, tenant)
    actor = await stores.actors.get(actor_id)
    manifest = parse_manifest(await trio.Path(bundle_dir, "Manifest.json").read_bytes())
    options = settings.worker
    work_root = (Path(options.work_dir) if options.work_dir else runtime_dir() / "work") / worker_id
    config = config_file()
    hide = [settings.state.path(), *([config.absolute()] if config else [])]
    grants, left_out = grants_for(actor, options)  # mounts and privileged (abaco.actors.mounts)
    for problem in left_out:
        _log.warning("worker.grant_left_out", actor_id=actor_id, problem=problem)
    # Signals are caught from here on (not only once READY): a spawner killed while
    # the worker starts must not kill it half-way with SIGTERM's default action.
    with (
        bind_ids(actor_id=actor_id, worker_id=worker_id),
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
    ):
        async with (
            open_hub(
                redis, namespace=settings.redis.key_prefix, visibility=options.visibility
            ) as hub,
            _started_runner(
                _open_runner(
                    bundle_dir,
                    manifest,
                    work_root,
                    sandbox=options.sandbox,
                    hide=hide,
                    grants=grants,
                ),
                functools.partial(fail_actor, stores, hub, settings.redis.key_prefix, actor_id),
            ) as runner,
            trio.open_nursery() as nursery,
        ):
            try:
                await _register(stores, hub, settings.redis.key_prefix, actor, worker_id)
            except (InvalidTransition, NotFound) as exc:
                _log.info("worker.stopped_before_ready", error=str(exc))
                with trio.CancelScope(shield=True):
                    await _mark_stopped(stores, worker_id)
                nursery.cancel_scope.cancel()
                return
            process = WorkerProcess(settings, stores, actor, manifest, worker_id, runner, hub)
            await nursery.start(process.heartbeat)
            if parent_pid is not None:
                nursery.start_soon(_stop_when_orphaned, process, parent_pid)
            task_status.started(process)
            _log.info("worker.ready")
            mailbox = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, actor_id)
            nursery.start_soon(_stop_on_signal, process, signals)
            control = control_of(hub, settings.redis.key_prefix, stores.tenant, worker_id)
            nursery.start_soon(_stop_on_command, process, control)
            await process.serve_until_stopped(mailbox)
            with trio.CancelScope(shield=True):
                if parent_pid is not None and os.getppid() != parent_pid:
                    # Its spawner died: a failure, so that the health supervisor replaces it.
                    await _mark_failed(stores, worker_id)
                else:
                    await _mark_stopped(stores, worker_id)
                await _retire_orphaned_mailbox(stores, redis, actor_id, mailbox)
            nursery.cancel_scope.cancel()
        _log.info("worker.stopped")


async def _retire_orphaned_mailbox(
    stores: Stores, redis: Redis, actor_id: str, mailbox: QueueChannel
) -> None:
    """Delete the mailbox of a deleted actor, as the last of its workers stops.

    Deleting the actor purged it and asked its workers to stop; each one deletes it as it
    goes (one still reading starts it again, empty, and deletes it in turn), so no key
    is left behind per deleted actor.
    """
    if not await stores.actors.exists(actor_id):
        await redis.delete(mailbox.address)


async def _stop_on_signal(process: WorkerProcess, signals: AsyncIterator[int]) -> None:
    # Every signal is taken until the worker ends: a second SIGTERM must not kill it
    # mid-stop. A dying multi-threaded spawner sends its death signal once per thread.
    async for signum in signals:
        if not process.stopping.is_set():
            _log.info("worker.stop_requested", signal=signal.Signals(signum).name)
        process.stopping.set()


async def _stop_when_orphaned(process: WorkerProcess, parent_pid: int) -> None:
    # Not PR_SET_PDEATHSIG: trio starts children from a cached thread, and that signal
    # fires when the creating *thread* ends, which an idle cache thread does.
    while True:
        if os.getppid() != parent_pid:
            _log.warning("worker.parent_gone", parent_pid=parent_pid)
            process.stopping.set()
            return
        await trio.sleep(_PARENT_POLL)


async def _stop_on_command(process: WorkerProcess, control: QueueChannel) -> None:
    """Obey the worker's control channel: ``abort`` a run, or ``stop`` the worker."""
    while True:
        delivery = await control.get()
        await delivery.ack()
        command = delivery.message
        if isinstance(command, dict) and command.get("kind") == "abort":
            process.abort(str(command.get("execution_id", "")))
            continue
        try:
            stop = StopWorker.from_wire(command)
        except BadRequest as exc:
            _log.warning("worker.bad_command", error=str(exc))
            continue
        _log.info("worker.stop_requested", reason=stop.reason)
        process.stopping.set()
        return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m abaco.actors.worker", description="Run one worker of an actor."
    )
    parser.add_argument("--config", help="path of abaco.conf")
    parser.add_argument("--actor", required=True, help="the actor's id")
    parser.add_argument("--worker", default="", help="this worker's id (new when not given)")
    parser.add_argument("--tenant", default=None, help="the actor's tenant")
    parser.add_argument("--bundle-dir", required=True, help="the unpacked bundle")
    return parser


async def _main(settings: Settings, args: argparse.Namespace, parent_pid: int) -> None:
    from abaco.redis_client import open_configured_redis

    async with open_configured_redis(settings.redis) as redis:
        await run_worker(
            settings,
            redis,
            actor_id=args.actor,
            worker_id=args.worker or new_id(),
            bundle_dir=Path(args.bundle_dir),
            tenant=args.tenant,
            parent_pid=parent_pid,
        )


def main(argv: list[str] | None = None) -> None:
    """Run one worker (``python -m abaco.actors.worker``); needs ``[redis] url``."""
    from abaco.config import load_settings

    parent_pid = os.getppid()  # first thing: the parent must not die unnoticed in between
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        if not settings.redis.url:
            raise BadRequest("a worker needs the platform's Redis: set [redis] url")
        trio.run(_main, settings, args, parent_pid)
    except AbacoError as exc:
        raise SystemExit(f"worker: {exc}") from None


if __name__ == "__main__":
    main()
