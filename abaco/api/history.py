"""Reading through to durable storage: what Redis no longer holds, the persistence actors may.

Execution records and logs are drained into durable storage as they finish; logs expire
from Redis after ``[stores] log_expiry``. When a record or log is missing here, the API
asks the persistence actors (:func:`abaco.queries.ask`), with the two timeouts of
``[persistence]``. Ids that are not ours are answered at once, never queried.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog

from abaco.actors.ids import is_valid_id
from abaco.actors.models import Execution, from_dict
from abaco.api.context import hub, redis, settings
from abaco.queries import Query, QueryTimeout, ask

if TYPE_CHECKING:
    from abaco.persist_queue import EntityRecord

__all__ = ["stored_execution", "stored_log"]

_log = structlog.get_logger(__name__)


async def _one(kind: str, group: str, record_id: str) -> EntityRecord | None:
    if not is_valid_id(record_id):
        return None
    options = settings()
    try:
        records = await ask(
            hub(),
            redis(),
            options.redis.key_prefix,
            Query(kind=kind, filters={"ids": [record_id], "group": group}),
            query_timeout=options.persistence.query_timeout,
            processing_timeout=options.persistence.processing_timeout,
        )
    except QueryTimeout as exc:
        _log.warning("api.history_unavailable", kind=kind, id=record_id, error=str(exc))
        return None
    return records[0] if records else None


async def stored_execution(actor_id: str, execution_id: str) -> Execution | None:
    """The execution's record from durable storage, if it is there."""
    record = await _one("outcome", actor_id, execution_id)
    return None if record is None else from_dict(Execution, json.loads(record.json))


async def stored_log(actor_id: str, execution_id: str) -> str | None:
    """The execution's log from durable storage, if it is there."""
    record = await _one("log", actor_id, execution_id)
    return None if record is None else str(json.loads(record.json)["logs"])
