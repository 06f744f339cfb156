"""The persistence actor: drains the persist queue into durable storage, in batches.

Any number can run at once: the queue gives each record to one drainer, and storage
writes are idempotent by record id, so a record delivered twice is stored once. A batch
is acknowledged only after the storage took it; when the storage refuses or is down, the
batch stays unacknowledged and comes back (to this drainer after half the visibility
timeout, or to another if this one died), so nothing is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from abaco.errors import BadRequest, ChannelTimeout, StoreError
from abaco.persist_queue import EntityRecord

if TYPE_CHECKING:
    from abaco.channels import Delivery, QueueChannel
    from abaco.storage.base import Storage

__all__ = ["DrainerStatistics", "drain"]

_log = structlog.get_logger(__name__)


@attrs.define
class DrainerStatistics:
    """What one drainer has done."""

    stored: int = 0
    batches: int = 0
    failed_batches: int = 0
    dropped: int = 0


async def _take_batch(queue: QueueChannel, batch_size: int, linger: float) -> list[Delivery]:
    """Wait for one record, then take what else is there or arrives within ``linger``."""
    batch = await queue.get_many(batch_size, timeout=1.0)
    with trio.move_on_after(linger):
        while len(batch) < batch_size:
            batch += await queue.get_many(batch_size - len(batch), timeout=linger)
    return batch


async def drain(
    queue: QueueChannel,
    storage: Storage,
    *,
    batch_size: int = 100,
    linger: float = 0.05,
    retry_delay: float = 1.0,
    statistics: DrainerStatistics | None = None,
    task_status: trio.TaskStatus[DrainerStatistics] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Move records from ``queue`` into ``storage`` until cancelled."""
    stats = statistics or DrainerStatistics()
    task_status.started(stats)
    while True:
        try:
            batch = await _take_batch(queue, batch_size, linger)
        except ChannelTimeout:
            continue
        records: list[EntityRecord] = []
        for delivery in batch:
            try:
                records.append(EntityRecord.from_wire(delivery.message))
            except BadRequest as exc:
                # Nobody can ever store it: drop it rather than block the queue.
                _log.warning("persistence.dropped_record", error=str(exc))
                stats.dropped += 1
        try:
            await storage.store(records)
        except StoreError as exc:
            stats.failed_batches += 1
            _log.warning("persistence.storage_refused", records=len(records), error=str(exc))
            await trio.sleep(retry_delay)  # the batch comes back: it was not acknowledged
            continue
        await batch[0].channel.hub.ack_many(batch)
        stats.stored += len(records)
        stats.batches += 1
