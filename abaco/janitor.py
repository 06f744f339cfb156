"""The janitor: deletes old records from durable storage (EverBEEN's janitor rules).

- An execution that finished well (COMPLETE) and was stored more than
  ``finished_longevity`` seconds ago keeps its record and results but loses its log.
- One that failed (ERROR) and was stored more than ``failed_longevity`` seconds ago is
  deleted whole: record, log and results.
- Either way its accepted message (the ``descriptor`` the API wrote through for
  :mod:`abaco.restore`) goes with the log: once the outcome is stored it is not needed,
  and it must not outlive a deleted outcome, or a restore would run the message again.

Deleting what is already gone does nothing, so several janitors may run at once. A
janitor sweeps only while the storage is idle, and tries again at the next interval.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

if TYPE_CHECKING:
    from abaco.storage.base import Storage

__all__ = ["JanitorPolicy", "SweepReport", "run_janitor", "sweep"]

_log = structlog.get_logger(__name__)


@attrs.frozen(kw_only=True)
class JanitorPolicy:
    """How long records are kept, in seconds."""

    finished_longevity: float
    failed_longevity: float


@attrs.frozen
class SweepReport:
    """What one sweep deleted."""

    logs: int
    executions: int
    results: int


async def _results_of(storage: Storage, group: str, executions: set[str], page: int) -> list[str]:
    """The ids of the result records of ``executions`` (all of one actor, ``group``)."""
    found: list[str] = []
    offset = 0
    while True:
        batch = await storage.query(kind="result", group=group, limit=page, offset=offset)
        found += [r.id for r in batch if json.loads(r.json).get("execution_id") in executions]
        if len(batch) < page:
            return found
        offset += page


async def sweep(
    storage: Storage, policy: JanitorPolicy, *, now: dt.datetime | None = None, page: int = 500
) -> SweepReport:
    """Apply the rules once; returns what was deleted."""
    now = now or dt.datetime.now(dt.UTC)
    finished_before = now - dt.timedelta(seconds=policy.finished_longevity)
    failed_before = now - dt.timedelta(seconds=policy.failed_longevity)
    logs = executions = results = 0
    offset = 0
    while True:  # finished: the records stay, so page with an offset
        finished = await storage.query(
            kind="outcome", status="COMPLETE", until=finished_before, limit=page, offset=offset
        )
        if finished:
            logs += await storage.delete_where(kind="log", ids=[r.id for r in finished])
            await storage.delete_where(kind="descriptor", ids=[r.id for r in finished])
        if len(finished) < page:
            break
        offset += page
    while True:  # failed: each page is deleted, so the next page starts at the top again
        failed = await storage.query(
            kind="outcome", status="ERROR", until=failed_before, limit=page
        )
        if not failed:
            break
        ids = [r.id for r in failed]
        for group in {r.group for r in failed}:
            of_group = {r.id for r in failed if r.group == group}
            result_ids = await _results_of(storage, group, of_group, page)
            if result_ids:
                results += await storage.delete_where(kind="result", ids=result_ids)
        logs += await storage.delete_where(kind="log", ids=ids)
        # Before the outcome: a descriptor left without its outcome would run again.
        await storage.delete_where(kind="descriptor", ids=ids)
        executions += await storage.delete_where(kind="outcome", ids=ids)
    return SweepReport(logs, executions, results)


async def run_janitor(
    storage: Storage,
    policy: JanitorPolicy,
    *,
    interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Sweep every ``interval`` seconds, when the storage is idle, until cancelled."""
    task_status.started()
    while True:
        if storage.is_idle():
            report = await sweep(storage, policy)
            _log.info("janitor.swept", **attrs.asdict(report))
        else:
            _log.info("janitor.storage_busy_skipped")
        await trio.sleep(interval)
