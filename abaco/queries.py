"""Queries of durable storage, answered by the persistence actors (EverBEEN's query queue).

A client that needs history Redis no longer holds puts a query on the query queue and
waits, with two timeouts of its own:

- ``query_timeout``: if no persistence actor has taken the query by then, the client
  withdraws it (atomically: a query is either withdrawn or taken, never both) and gets
  :class:`QueryTimeout` saying nobody took it;
- ``processing_timeout``: once taken, the answer must arrive within this; otherwise
  :class:`QueryTimeout` saying it was not answered in time.

Keys (``P`` is the key prefix)::

    P:queries                 stream  the query queue (a queue channel)
    P:query:ID                string  "pending" | "taken" | "withdrawn"
    P:answer:ID               list    the answer (one frame in the channels' wire form)

State and answers expire after five times the two timeouts together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from abaco import _wire
from abaco.actors.ids import new_id
from abaco.channels import QueueChannel, Transport
from abaco.errors import BadRequest, ChannelTimeout, StoreError
from abaco.persist_queue import EntityRecord

if TYPE_CHECKING:
    from abaco.channels import Hub
    from abaco.redis_client import Redis
    from abaco.storage.base import Storage

__all__ = ["Query", "QueryTimeout", "ask", "serve_queries"]

_log = structlog.get_logger(__name__)

_FILTERS = frozenset({"group", "ids", "actor_id", "status", "limit", "offset"})


class QueryTimeout(StoreError):
    """A storage query got no answer in time; the message says which timeout passed."""


@attrs.frozen(kw_only=True)
class Query:
    """One question for durable storage: records of a kind, filtered."""

    kind: str
    filters: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        unknown = set(self.filters) - _FILTERS
        if unknown:
            raise BadRequest(f"unknown query filters {sorted(unknown)}; use {sorted(_FILTERS)}")


def _queue(hub: Hub, prefix: str) -> QueueChannel:
    channel: QueueChannel = hub.bind(QueueChannel(Transport.REDIS, f"{prefix}:queries"))
    return channel


async def ask(
    hub: Hub,
    redis: Redis,
    prefix: str,
    query: Query,
    *,
    query_timeout: float = 5.0,
    processing_timeout: float = 30.0,
) -> list[EntityRecord]:
    """Ask the persistence actors; raises :class:`QueryTimeout` per the two timeouts."""
    query_id = new_id()
    expiry_ms = int(5 * (query_timeout + processing_timeout) * 1000)
    state_key, answer_key = f"{prefix}:query:{query_id}", f"{prefix}:answer:{query_id}"
    await redis.set(state_key, b"pending", ttl_ms=expiry_ms)
    await _queue(hub, prefix).put(
        {"id": query_id, "kind": query.kind, "filters": query.filters, "expiry_ms": expiry_ms}
    )
    frame = await _wait_answer(redis, answer_key, query_timeout)
    if frame is None:
        withdrawn = await redis.script("query_claim")([state_key], ["withdrawn", expiry_ms])
        if withdrawn:
            raise QueryTimeout(f"no persistence actor took the query within {query_timeout} s")
        frame = await _wait_answer(redis, answer_key, processing_timeout)
        if frame is None:
            raise QueryTimeout(
                f"the query was taken but not answered within {processing_timeout} s"
            )
    answer = _wire.decode(frame)
    if "error" in answer:
        raise BadRequest(f"the query failed: {answer['error']}")
    return [EntityRecord(**record) for record in answer["records"]]


async def _wait_answer(redis: Redis, key: str, timeout: float) -> bytes | None:
    with trio.move_on_after(timeout):
        while True:
            # BLPOP takes whole seconds at least on old servers: wait in short slices.
            frame = await redis.blpop(key, min(timeout, 0.5))
            if frame is not None:
                return frame
    return None


async def serve_queries(
    hub: Hub,
    redis: Redis,
    prefix: str,
    storage: Storage,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer queries from the query queue until cancelled (any number may run)."""
    queue = _queue(hub, prefix)
    task_status.started()
    while True:
        try:
            delivery = await queue.get(timeout=1.0)
        except ChannelTimeout:
            continue
        await delivery.ack()
        message = delivery.message
        if not isinstance(message, dict) or "id" not in message:
            _log.warning("queries.bad_query")
            continue
        query_id, expiry_ms = str(message["id"]), int(message.get("expiry_ms", 60_000))
        state_key = f"{prefix}:query:{query_id}"
        if not await redis.script("query_claim")([state_key], ["taken", expiry_ms]):
            continue  # withdrawn by its client, or expired
        try:
            records = await storage.query(kind=str(message["kind"]), **message["filters"])
            answer: dict[str, Any] = {"records": [attrs.asdict(r) for r in records]}
        except (StoreError, BadRequest, TypeError) as exc:
            answer = {"error": str(exc)}
        await redis.rpush(f"{prefix}:answer:{query_id}", _wire.encode(answer), ttl_ms=expiry_ms)
