"""One worker's loop: take a message from the mailbox, run it as an execution, record it.

:class:`WorkerProcess` is what :func:`abaco.actors.worker.run_worker` serves the mailbox
with once the worker is READY: for each message it moves the execution to RUNNING (reading
what the run needs at the same time), runs it while renewing the message, stores its
results, outcome and log, hands it to the persist queue and acknowledges the message last.
It also beats the worker's heart and obeys abort and stop requests.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import json
from base64 import b64encode
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from abaco.actor_configs import CONFIGS_VARIABLE, environment_value, execution_configs
from abaco.actors._execution_log import ExecutionLog
from abaco.actors.context import MESSAGE_TAG, STATE_TAG
from abaco.actors.ids import new_id
from abaco.actors.mailbox import MailboxMessage, mailbox_of, submit
from abaco.actors.models import Actor, Execution, to_dict, utcnow
from abaco.actors.runners import (
    ExecutionSpec,
    Runner,
)
from abaco.actors.sandbox import Limits
from abaco.actors.states import ExecutionStatus, WorkerStatus
from abaco.bundles.manifest import Manifest
from abaco.channels import Delivery, Hub, QueueChannel
from abaco.config import Settings
from abaco.errors import (
    Aborted,
    BadRequest,
    ChannelTimeout,
    InvalidTransition,
    NotFound,
)
from abaco.events import EventType, emit_execution_event
from abaco.logconfig import bind_ids
from abaco.persist_queue import EntityRecord, persist_queue_of, submit_records
from abaco.restore import persist_message
from abaco.stores import Stores

if TYPE_CHECKING:
    from abaco.actors.runners import ExecutionOutcome


__all__ = ["WorkerProcess", "environment_for"]

_log = structlog.get_logger(__name__)

# How long a message waits for its execution's record (written at the same time).
_RECORD_WAIT = 2.0


def environment_for(
    actor: Actor,
    execution: Execution,
    message: MailboxMessage,
    worker_id: str,
    state: Any,
    configs: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one execution, as Abaco gives it.

    The actor's ``default_environment`` first, then the message's own variables, then
    the platform's ``_abaco_*`` variables and the actor's ``configs`` (name -> value, as
    :func:`abaco.actor_configs.execution_configs` finds them), which neither may override.
    """
    text = message.body if isinstance(message.body, str) else ""
    return {
        **actor.default_environment,
        **message.environment,
        "MSG": text,
        "_abaco_Content_Type": message.content_type,
        "_abaco_execution_id": execution.id,
        "_abaco_actor_id": actor.id,
        "_abaco_actor_name": actor.name,
        "_abaco_actor_dbid": f"{actor.tenant}_{actor.id}",
        "_abaco_actor_revision": str(actor.revision),
        "_abaco_container_repo": actor.image,
        "_abaco_worker_id": worker_id,
        "_abaco_username": message.username,
        "_abaco_api_server": actor.api_server,
        "_abaco_actor_state": json.dumps(state),
        # Abaco's value is the header its JWT came in, as Flask spells it: X-Jwt-Assertion-Sd2E.
        "_abaco_jwt_header_name": f"X-Jwt-Assertion-{actor.tenant.replace('_', '-')}".title(),
        CONFIGS_VARIABLE: environment_value(configs or {}),
    }


def _limits(actor: Actor, manifest: Manifest) -> Limits:
    memory = manifest.resources.memory_bytes
    if actor.mem_limit:
        memory = _parse_bytes(actor.mem_limit)
    cpu = None if actor.max_cpus is None else max(1, actor.max_cpus) * 3600
    return Limits(memory_bytes=memory, cpu_seconds=cpu)


def _parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise BadRequest(f"mem_limit {text!r}: a size such as 512m or 2g") from None


@attrs.define
class _Context:
    """What an execution reads besides its message: the actor now, its state, its configs."""

    actor: Actor
    state: Any = attrs.Factory(dict)
    configs: dict[str, str] = attrs.Factory(dict)


@attrs.define
class WorkerProcess:
    """What one worker needs while it runs; made by :func:`run_worker`."""

    settings: Settings
    stores: Stores
    actor: Actor
    manifest: Manifest
    worker_id: str
    runner: Runner
    hub: Hub
    stopping: trio.Event = attrs.field(factory=trio.Event)
    #: The execution running now and the scope that cancels it (for aborts).
    running: tuple[str, trio.CancelScope] | None = None

    def abort(self, execution_id: str) -> None:
        """Kill the run of ``execution_id`` if it is the one running (the API recorded ABORTED)."""
        if self.running is not None and self.running[0] == execution_id:
            _log.info("worker.aborting", execution_id=execution_id)
            self.running[1].cancel()

    async def _set_worker(self, status: WorkerStatus, **fields: Any) -> None:
        try:
            await self.stores.workers.move(self.worker_id, status, **fields)
        except InvalidTransition as exc:
            # Told to stop (SHUTDOWN_REQUESTED) while running: finish, then stop.
            _log.info("worker.stop_noticed", error=str(exc))
            self.stopping.set()
        except NotFound:
            self._record_gone()

    async def _fresh_actor(self) -> Actor:
        """The actor as it is now: an update that keeps the workers (environment, limits,
        log_ex, link, webhook) applies from the next execution on."""
        try:
            return await self.stores.actors.get(self.actor.id)
        except NotFound:
            return self.actor  # deleted meanwhile: this worker is being stopped

    def _record_gone(self) -> None:
        if not self.stopping.is_set():
            _log.warning(
                "worker.record_gone",
                reason="the worker's record was deleted (the health supervisor took it for dead)",
            )
        self.stopping.set()

    async def heartbeat(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write ``last_health_check_time`` every ``heartbeat`` s; stop once the record is gone.

        Started (``task_status``) once the first beat is written.
        """
        alive = await self._beat()
        task_status.started()
        while alive:
            await trio.sleep(self.settings.worker.heartbeat)
            alive = await self._beat()

    async def _beat(self) -> bool:
        try:
            await self.stores.workers.update(self.worker_id, last_health_check_time=utcnow())
        except NotFound:
            self._record_gone()
            return False
        return True

    async def serve(self, mailbox: QueueChannel) -> None:
        """Take and run messages until asked to stop (the current one is finished first)."""
        while not self.stopping.is_set():
            try:
                delivery = await mailbox.get(timeout=1.0)
            except ChannelTimeout:
                continue
            await self._handle(delivery)

    async def serve_until_stopped(self, mailbox: QueueChannel) -> None:
        """Serve; once asked to stop, give the current execution ``stop_deadline`` seconds."""
        async with trio.open_nursery() as nursery:

            async def serve_then_stop() -> None:
                await self.serve(mailbox)
                nursery.cancel_scope.cancel()

            nursery.start_soon(serve_then_stop)
            await self.stopping.wait()
            nursery.cancel_scope.deadline = trio.current_time() + self.settings.worker.stop_deadline

    async def _handle(self, delivery: Delivery) -> None:
        try:
            message = MailboxMessage.from_wire(delivery.message)
        except BadRequest as exc:
            _log.warning("worker.bad_message", error=str(exc))
            await delivery.ack()  # nobody could ever run it
            return
        # What the run reads goes out with the move to RUNNING: one wait, not two (the
        # reads are wasted only when the message needs no run).
        context: list[_Context] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_context, context)
            execution = await self._start(message)
        if execution is None:
            await delivery.ack()
            return
        with bind_ids(execution_id=execution.id):
            if await self._run(delivery, message, execution, context[0]):
                await self._ack(delivery, execution.id)

    async def _read_context(self, into: list[_Context]) -> None:
        """Read what an execution needs besides its message into ``into``, all at once."""
        context = _Context(self.actor)

        async def read_actor() -> None:
            context.actor = await self._fresh_actor()

        async def read_state() -> None:
            if not self.actor.stateless:
                context.state = await self.stores.state.get(self.actor.id)

        async def read_configs() -> None:
            context.configs = await execution_configs(self.stores, self.settings, self.actor)

        async with trio.open_nursery() as nursery:
            for read in (read_actor, read_state, read_configs):
                nursery.start_soon(read)
        into.append(context)

    async def _start(self, message: MailboxMessage) -> Execution | None:
        """Move the message's execution to RUNNING on this worker; None when it needs no run.

        The move comes first, without a read: it fails only for an execution that ran
        already. A terminal one needs no run (only its acknowledgement was lost); a RUNNING
        one lost its worker mid-run, so that attempt failed and the message runs again as a
        new execution.
        """
        executions = self.stores.executions
        try:
            return await self._move_running_once_recorded(message.execution_id)
        except NotFound:
            _log.warning("worker.no_execution", execution_id=message.execution_id)
            return None
        except InvalidTransition:
            pass
        try:
            execution = await executions.get(message.execution_id)
        except NotFound:
            return None
        if execution.status is not ExecutionStatus.RUNNING:
            return None
        retry = Execution(id=new_id(), actor_id=execution.actor_id, tenant=execution.tenant)
        await executions.create(retry)
        await executions.move(
            execution.id,
            ExecutionStatus.ERROR,
            finish_time=utcnow(),
            status_message=(
                f"worker {execution.worker_id} stopped during the execution; "
                f"the message runs again as execution {retry.id}"
            ),
        )
        return await self._move_running(retry.id)

    async def _move_running_once_recorded(self, execution_id: str) -> Execution:
        """Move the execution to RUNNING, waiting a moment for its record if it is missing.

        The API writes the record and the message at once, so the message may come first
        by a moment. A record still missing after ``_RECORD_WAIT`` seconds never comes
        (the execution was deleted, or its sender failed half-way): NotFound.
        """
        delay = 0.001
        deadline = trio.current_time() + _RECORD_WAIT
        while True:
            try:
                return await self._move_running(execution_id)
            except NotFound:
                if trio.current_time() + delay > deadline:
                    raise
            await trio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _move_running(self, execution_id: str) -> Execution:
        return await self.stores.executions.move(
            execution_id, ExecutionStatus.RUNNING, worker_id=self.worker_id, start_time=utcnow()
        )

    async def _run(
        self, delivery: Delivery, message: MailboxMessage, execution: Execution, context: _Context
    ) -> bool:
        """Run one execution; returns whether the message still needs acknowledging.

        It does not when the run acknowledged it (it ended, or was aborted), nor when
        another worker took the message over (this one was presumed dead).
        """
        async with trio.open_nursery() as marking:
            # The worker's BUSY mark is for people reading its record: the run need not
            # wait for it (only READY, after the run, must come after it).
            marking.start_soon(self._set_worker, WorkerStatus.BUSY)
            spec, log, actor = await self._prepare(execution, message, context)
            outcome, lost = await self._execute(delivery, execution, spec, log)
        if lost or outcome is None:
            await log.finish()
            if lost:
                _log.warning("worker.lost_message", execution_id=execution.id)
                return False
            # Aborted through the API: the record says ABORTED already, _abandon acked.
            await self._set_worker(WorkerStatus.READY, last_execution_time=utcnow())
            return False
        # Results first: a synchronous sender, woken by the log's end, finds them in place.
        # The outcome and the log's end go out together (one wait for the disk, not two);
        # a reader woken by the log's end before the outcome lands reads the record again.
        await self._keep_results(execution, message, outcome, log)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.finish)
            finished = await self._record_outcome(execution, outcome)
        # Writes that do not depend on each other go out together: with an fsync on every
        # write, each wait for the disk costs more than the write itself.
        async with trio.open_nursery() as nursery:
            if finished is not None:
                nursery.start_soon(self._persist, finished, outcome, log)
                nursery.start_soon(self._report, finished, EventType.EXECUTION_COMPLETE, actor)
            nursery.start_soon(
                functools.partial(
                    self._set_worker, WorkerStatus.READY, last_execution_time=utcnow()
                )
            )
        # Last: a message is acknowledged only once its outcome is stored and on its way
        # to durable storage (a restore would run it again otherwise).
        await self._ack(delivery, execution.id)
        return False

    async def _report(self, execution: Execution, event: EventType, actor: Actor) -> None:
        """Queue ``event`` for the execution (if its actor has a link or webhook)."""
        await emit_execution_event(
            self.stores, self.hub, self.settings.redis.key_prefix, execution, event, actor=actor
        )

    async def _prepare(
        self, execution: Execution, message: MailboxMessage, context: _Context
    ) -> tuple[ExecutionSpec, ExecutionLog, Actor]:
        """The run's spec and log, once the execution is RUNNING; reports its start."""
        stores, actor = self.stores, context.actor
        await self._report(execution, EventType.EXECUTION_STARTED, actor)
        spec = ExecutionSpec(
            execution_id=execution.id,
            environment=environment_for(
                actor, execution, message, self.worker_id, context.state, context.configs
            ),
            message=message.body if isinstance(message.body, bytes) else message.body.encode(),
            content_type=message.content_type,
            timeout=self.settings.worker.execution_timeout,
            limits=_limits(actor, self.manifest),
            network=self.manifest.resources.network,
        )
        log = ExecutionLog(stores.logs, execution.id, stores.logs.expiry_for(actor.log_ex))
        return spec, log, actor

    async def _execute(
        self, delivery: Delivery, execution: Execution, spec: ExecutionSpec, log: ExecutionLog
    ) -> tuple[ExecutionOutcome | None, bool]:
        """Run the execution while renewing the message; its outcome (None when aborted)
        and whether the message was lost to another worker meanwhile."""
        # Incremental: a character split across two chunks still decodes whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        async def write_log(chunk: bytes) -> None:
            text = decoder.decode(chunk)
            if text:
                await log.append(text)

        lost = False
        outcome: ExecutionOutcome | None = None
        async with trio.open_nursery() as nursery:

            async def renew() -> None:
                nonlocal lost
                while True:
                    await trio.sleep(self.settings.worker.visibility / 3)
                    try:
                        await delivery.renew()
                    except Aborted:
                        lost = True  # another worker has it now: stop this run
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(renew)
            self.running = (execution.id, nursery.cancel_scope)
            try:
                outcome = await self.runner.run(spec, write_log)
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    await self._abandon(delivery, execution, log)
                raise
            finally:
                self.running = None
            nursery.cancel_scope.cancel()
        return outcome, lost

    async def _record_outcome(
        self, execution: Execution, outcome: ExecutionOutcome
    ) -> Execution | None:
        """Move the execution to how it ended; None if it was aborted (or failed) meanwhile."""
        try:
            return await self.stores.executions.move(
                execution.id,
                ExecutionStatus(outcome.status),
                finish_time=utcnow(),
                runtime=round(outcome.runtime),
                cpu=round(outcome.cpu * 1e9),  # nanoseconds, as Abaco reports Docker's CPU use
                io=outcome.io,
                exit_code=outcome.exit_code,
                status_message=outcome.status_message,
                final_state={"max_rss": outcome.max_rss, "killed": outcome.killed},
            )
        except InvalidTransition:
            # Aborted (or failed by the health supervisor) as it finished: that stands.
            _log.info("worker.finished_too_late", execution_id=execution.id)
            return None

    async def _keep_results(
        self,
        execution: Execution,
        message: MailboxMessage,
        outcome: ExecutionOutcome,
        log: ExecutionLog,
    ) -> None:
        """Store the results in order, then apply what the execution asked of the platform."""
        for result in outcome.results:
            await self.stores.results.push(execution.id, result)
        for tag, payload in outcome.requests:
            await self._carry_out(message, tag, payload, log)

    async def _ack(self, delivery: Delivery, execution_id: str) -> None:
        try:
            await delivery.ack()
        except Aborted:
            _log.warning("worker.ack_refused", execution_id=execution_id)

    async def _persist(
        self, execution: Execution, outcome: ExecutionOutcome, log: ExecutionLog
    ) -> None:
        """Hand the execution's records to the persist queue, for durable storage."""
        records = [
            EntityRecord.of("outcome", execution.actor_id, execution.id, to_dict(execution)),
            EntityRecord.of(
                "log",
                execution.actor_id,
                execution.id,
                {"logs": log.text, "dropped_bytes": log.dropped_bytes},
            ),
        ]
        records += [
            EntityRecord.of(
                "result",
                execution.actor_id,
                f"{execution.id}:{index}",
                {"execution_id": execution.id, "index": index, "base64": b64encode(r).decode()},
            )
            for index, r in enumerate(outcome.results)
        ]
        await submit_records(persist_queue_of(self.hub, self.settings.redis.key_prefix), records)

    async def _carry_out(
        self, message: MailboxMessage, tag: bytes, payload: bytes, log: ExecutionLog
    ) -> None:
        """Apply what an execution asked of the platform (set_state, send_message)."""
        stores = self.stores
        try:
            request = json.loads(payload)
            if tag == STATE_TAG:
                if self.actor.stateless:
                    raise BadRequest(f"actor {self.actor.id} is stateless: its state is ignored")
                await stores.state.set(self.actor.id, request)
            elif tag == MESSAGE_TAG:
                target = str(request["actor_id"])
                if not await stores.actors.exists(target):
                    raise BadRequest(f"no actor {target!r} to send a message to")
                sent = await submit(
                    stores,
                    mailbox_of(self.hub, self.settings.redis.key_prefix, stores.tenant, target),
                    actor_id=target,
                    body=str(request["message"]),
                    username=message.username,
                    execution_id=str(request["execution_id"]),
                )
                await persist_message(  # write-through, as the API does (abaco.restore)
                    self.hub,
                    self.settings,
                    sent,
                    body=str(request["message"]),
                    content_type="str",
                    environment={},
                    username=message.username,
                )
        except (BadRequest, ValueError, KeyError, TypeError) as exc:
            await log.append(f"[abaco: {tag[7:].decode()}: {exc}]\n")

    async def _abandon(self, delivery: Delivery, execution: Execution, log: ExecutionLog) -> None:
        """The run was cut short: end the execution, keep nothing RUNNING, release the message.

        Past the stop deadline the execution ends ERROR; aborted through the API it is
        ABORTED already and stays so. Either way the message is done with (acknowledged),
        unless another worker reclaimed it.
        """
        with contextlib.suppress(InvalidTransition):
            await self.stores.executions.move(
                execution.id,
                ExecutionStatus.ERROR,
                finish_time=utcnow(),
                status_message="the worker was stopped before the execution finished",
            )
        await log.finish()  # after the outcome, which a synchronous sender then finds
        try:
            await delivery.ack()
        except Aborted as exc:
            _log.warning("worker.abandon_failed", error=str(exc))
