"""The storage extension point: what a durable store of entity records must do.

A :class:`Storage` keeps :class:`~abaco.persist_queue.EntityRecord` s (EverBEEN's Object
Repository). It knows no user types: it stores the JSON text, the entity id, the group,
the time it was stored, and two fields lifted out of the JSON at write time
(``actor_id`` and ``status``, present on executions) so the API can filter on them
without parsing every document.

Implementations wrap blocking drivers. :class:`BlockingConnection` is the shared
machinery: it runs each driver call on a worker thread through
``trio.to_thread.run_sync`` under a :class:`trio.Lock`, so one connection is owned by one
thread at a time, and it counts calls in flight for :meth:`Storage.is_idle`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import trio

from abaco.errors import BadRequest, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from abaco.persist_queue import EntityRecord

__all__ = [
    "BlockingConnection",
    "RecordRow",
    "Storage",
    "check_page",
    "check_time",
    "record_rows",
]

T = TypeVar("T")

#: One row as written: kind, id, group, actor_id, status, json.
RecordRow = tuple[str, str, str, "str | None", "str | None", str]


@runtime_checkable
class Storage(Protocol):
    """A durable store of entity records, keyed by ``(kind, id)``.

    Every method but :meth:`is_connected` and :meth:`is_idle` may raise
    :class:`~abaco.errors.StoreUnavailable` (the database is down, unreachable or closed)
    or :class:`~abaco.errors.BadRequest` (the records or the query do not validate).
    """

    async def store(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` in one transaction.

        Idempotent by ``(kind, id)``: storing a record again keeps one row, and the later
        JSON, group and stored-at time win.
        """
        ...

    async def query(
        self,
        *,
        kind: str,
        group: str | None = None,
        ids: Sequence[str] | None = None,
        actor_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[EntityRecord]:
        """Records of ``kind`` matching every filter given, by stored time then id.

        ``since`` is inclusive and ``until`` exclusive; both must be timezone-aware.
        """
        ...

    async def count(
        self,
        *,
        kind: str,
        group: str | None = None,
        actor_id: str | None = None,
        status: str | None = None,
    ) -> int:
        """How many records of ``kind`` match every filter given."""
        ...

    async def delete_where(
        self,
        *,
        kind: str,
        group: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete records of ``kind`` matching every filter given; the number deleted.

        ``before`` compares with the stored-at time (exclusive) and must be timezone-aware.
        """
        ...

    def is_connected(self) -> bool:
        """Whether the last contact with the database worked and the storage is open."""
        ...

    def is_idle(self) -> bool:
        """Whether no operation is in flight (the janitor prefers such windows)."""
        ...

    async def aclose(self) -> None:
        """Close the connection; later calls raise :class:`~abaco.errors.StoreUnavailable`."""
        ...


def _extract(document: str) -> tuple[str | None, str | None]:
    """``actor_id`` and ``status`` of a JSON object, when present and strings."""
    try:
        value = json.loads(document)
    except ValueError as exc:
        raise BadRequest(f"record JSON does not parse: {exc}") from exc
    if not isinstance(value, dict):
        return None, None
    actor_id, status = value.get("actor_id"), value.get("status")
    return (
        actor_id if isinstance(actor_id, str) else None,
        status if isinstance(status, str) else None,
    )


def record_rows(records: Sequence[EntityRecord]) -> list[RecordRow]:
    """The rows to write for ``records``; :class:`BadRequest` when a JSON does not parse.

    Within one batch the last record with a given ``(kind, id)`` wins, as it would across
    batches; collapsing here also keeps PostgreSQL's ``ON CONFLICT`` from seeing one key
    twice in a statement.
    """
    rows: dict[tuple[str, str], RecordRow] = {}
    for record in records:
        actor_id, status = _extract(record.json)
        rows[record.kind, record.id] = (
            record.kind,
            record.id,
            record.group,
            actor_id,
            status,
            record.json,
        )
    return list(rows.values())


def check_time(name: str, value: datetime | None) -> None:
    """:class:`BadRequest` unless ``value`` is None or timezone-aware.

    A naive datetime would be read in the server's local zone by one backend and as UTC by
    the other, so we refuse it rather than guess.
    """
    if value is not None and value.utcoffset() is None:
        raise BadRequest(f"{name} must be a timezone-aware datetime")


def check_page(limit: int, offset: int) -> None:
    """:class:`BadRequest` for a negative limit or offset."""
    if limit < 0 or offset < 0:
        raise BadRequest(f"limit and offset must be >= 0, not {limit} and {offset}")


class BlockingConnection:
    """Runs calls on a blocking driver connection from trio, one at a time.

    Each call goes to a worker thread; the lock makes sure no two threads ever use the
    connection at once (sqlite3 and psycopg connections are not meant to be shared
    between concurrent threads). ``in_flight`` counts callers waiting or running.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = trio.Lock()
        self._in_flight = 0
        self.closed = False

    @property
    def in_flight(self) -> int:
        """Calls waiting for the connection or running on it."""
        return self._in_flight

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread while holding the connection.

        Cancellation waits for the thread to finish (trio's default): abandoning it would
        leave the connection in use by a thread while the lock is already released.
        """
        self._in_flight += 1
        try:
            async with self._lock:
                if self.closed:
                    raise StoreUnavailable(f"{self._name}: storage is closed")
                return await trio.to_thread.run_sync(fn)
        finally:
            self._in_flight -= 1
