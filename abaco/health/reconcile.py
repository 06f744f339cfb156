"""The reconciliation scan: repairs drift between the records and what actually runs.

EverBEEN's safety net. The scan finds RUNNING executions whose worker record is gone
and that started more than ``2 x [worker] visibility`` ago, and moves them to ERROR
("the worker was lost").

One exception keeps messages safe. A RUNNING execution's message stays in the mailbox
until it is acknowledged, and acknowledging comes after the execution is finished. So
while the actor's mailbox still holds messages, the lost execution's message may be
among them, and the worker that retakes it will mark this attempt ERROR and run the
message again. Were the scan to mark it first, that worker would take the message for
done and drop it. So the scan only acts when the actor is gone or its mailbox is empty.

(Worker records of actors that no longer exist are stopped, and stopping or failed ones
that stay silent are deleted, by :mod:`abaco.health.recovery` in every pass.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from abaco.actors.mailbox import mailbox_of
from abaco.actors.states import ExecutionStatus
from abaco.errors import InvalidTransition, NotFound
from abaco.health.context import all_records
from abaco.health.heartbeats import age
from abaco.logconfig import bind_ids

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from abaco.actors.models import Execution
    from abaco.health.context import Health, PassReport
    from abaco.stores import Stores

__all__ = ["LOST_MESSAGE", "execution_is_lost", "reconcile_executions"]

_log = structlog.get_logger(__name__)

#: The status message of an execution the scan moves to ERROR.
LOST_MESSAGE = "the worker was lost"


def execution_is_lost(
    execution: Execution, now: datetime, deadline: float, *, worker_exists: bool
) -> bool:
    """Whether ``execution`` is RUNNING on a worker that is gone, for over ``deadline`` s."""
    if execution.status is not ExecutionStatus.RUNNING or worker_exists:
        return False
    started = execution.start_time or execution.message_received_time
    return age(started, now) > deadline


async def reconcile_executions(
    health: Health, stores: Stores, now: datetime, *, actors: Collection[str], report: PassReport
) -> None:
    """Move the tenant's lost executions to ERROR (see the module's rules)."""
    workers = {w.id for w in await all_records(stores.workers)}
    backlog: dict[str, int] = {}
    for execution in await all_records(stores.executions):
        lost = execution_is_lost(
            execution,
            now,
            health.deadlines.execution,
            worker_exists=execution.worker_id in workers,
        )
        if not lost:
            continue
        actor_id = execution.actor_id
        if actor_id in actors:
            if actor_id not in backlog:
                mailbox = mailbox_of(health.hub, health.key_prefix, stores.tenant, actor_id)
                backlog[actor_id] = await mailbox.length()
            if backlog[actor_id]:
                continue  # its message may still be there, to be retaken and run again
        with bind_ids(actor_id=actor_id, execution_id=execution.id):
            try:
                await stores.executions.move(
                    execution.id,
                    ExecutionStatus.ERROR,
                    finish_time=now,
                    status_message=f"{LOST_MESSAGE} (worker {execution.worker_id})",
                )
            except (InvalidTransition, NotFound):
                continue  # another supervisor, or the retaking worker, got there first
            _log.warning("health.lost_execution", worker_id=execution.worker_id)
            report.add(lost_executions=1)
