"""The embedded default storage: one SQLite file, in WAL mode.

WAL lets readers (API queries) run while the drainer writes, and ``synchronous=NORMAL``
is durable against process crashes in WAL mode, losing at most the last transactions on
a power cut, which the persist queue can replay since writes are idempotent.

One table holds every kind::

    records(kind, id, grp, actor_id, status, stored_at, json, PRIMARY KEY (kind, id))

``stored_at`` is seconds since the epoch (UTC) as a REAL, so range filters are numeric
comparisons; ``grp`` because ``group`` is an SQL keyword.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import trio

from abaco.errors import BadRequest, StoreUnavailable
from abaco.persist_queue import EntityRecord
from abaco.storage.base import BlockingConnection, check_page, check_time, record_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence
    from datetime import datetime

__all__ = ["SqliteStorage", "open_sqlite", "sqlite_path"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    grp TEXT NOT NULL,
    actor_id TEXT,
    status TEXT,
    stored_at REAL NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS records_kind_grp ON records (kind, grp);
CREATE INDEX IF NOT EXISTS records_kind_actor ON records (kind, actor_id);
CREATE INDEX IF NOT EXISTS records_kind_status ON records (kind, status);
CREATE INDEX IF NOT EXISTS records_kind_stored_at ON records (kind, stored_at, id);
"""

_UPSERT = """
INSERT INTO records (kind, id, grp, actor_id, status, stored_at, json)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, id) DO UPDATE SET
    grp = excluded.grp, actor_id = excluded.actor_id, status = excluded.status,
    stored_at = excluded.stored_at, json = excluded.json
"""


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///abs/path``, ``sqlite://rel/path`` or ``sqlite:/abs/path``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise BadRequest(f"not a sqlite URL: {url!r}")
    # sqlite:///abs -> netloc "" and path "/abs"; sqlite://rel/x -> netloc "rel", path "/x".
    raw = parts.netloc + parts.path
    if not raw:
        raise BadRequest(f"sqlite URL without a path: {url!r}")
    return Path(unquote(raw))


@contextlib.contextmanager
def _mapped(where: str) -> Iterator[None]:
    """Map sqlite3 and OS errors to our tree, naming the file."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
        raise BadRequest(f"{where}: {exc}") from exc
    except (sqlite3.Error, OSError) as exc:
        # OperationalError ("database is locked", "unable to open database file", "disk
        # I/O error"), DatabaseError ("file is not a database") and a closed connection
        # are all the database being unusable now, not the caller's input being wrong.
        raise StoreUnavailable(f"{where}: {exc}") from exc


def _where(
    kind: str,
    group: str | None = None,
    ids: Sequence[str] | None = None,
    actor_id: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: datetime | None = None,
) -> tuple[str, list[Any]]:
    """A WHERE clause and its parameters for the filters given."""
    check_time("since", since)
    check_time("until", until)
    check_time("before", before)
    clauses: list[str] = ["kind = ?"]
    params: list[Any] = [kind]
    for column, value in (("grp", group), ("actor_id", actor_id), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if ids is not None:
        # One placeholder per id: SQLite allows 32766 variables, more than a page of ids.
        clauses.append(f"id IN ({', '.join('?' * len(ids))})")
        params.extend(ids)
    for op, moment in ((">=", since), ("<", until), ("<", before)):
        if moment is not None:
            clauses.append(f"stored_at {op} ?")
            params.append(moment.timestamp())
    return " AND ".join(clauses), params


class SqliteStorage:
    """A :class:`~abaco.storage.Storage` on one SQLite file. Open with :func:`open_sqlite`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._conn = BlockingConnection(f"sqlite {path}")
        self._healthy = True

    @classmethod
    def _connect(cls, path: Path) -> sqlite3.Connection:
        with _mapped(f"sqlite {path}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: calls hop between worker threads, but never two at
            # once (BlockingConnection's lock). isolation_level=None: we BEGIN ourselves.
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
            return db

    async def _run(self, where: str, fn: Callable[[], T]) -> T:
        def mapped() -> T:
            with _mapped(f"sqlite {self.path}: {where}"):
                return fn()

        try:
            result = await self._conn.run(mapped)
        except StoreUnavailable:
            self._healthy = False
            raise
        self._healthy = True
        return result

    async def store(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` in one transaction (see :class:`~abaco.storage.Storage`)."""
        stamp = time.time()
        rows = [(*row[:5], stamp, row[5]) for row in record_rows(records)]
        if not rows:
            return

        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_UPSERT, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        await self._run("store", write)

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
        """Matching records by stored time then id (see :class:`~abaco.storage.Storage`)."""
        check_page(limit, offset)
        where, params = _where(kind, group, ids, actor_id, status, since, until)
        sql = (
            f"SELECT kind, grp, id, json FROM records WHERE {where} "
            "ORDER BY stored_at, id LIMIT ? OFFSET ?"
        )
        rows = await self._run(
            "query", lambda: self._db.execute(sql, [*params, limit, offset]).fetchall()
        )
        return [EntityRecord(kind=k, group=g, id=i, json=j) for k, g, i, j in rows]

    async def count(
        self,
        *,
        kind: str,
        group: str | None = None,
        actor_id: str | None = None,
        status: str | None = None,
    ) -> int:
        """How many records match (see :class:`~abaco.storage.Storage`)."""
        where, params = _where(kind, group, actor_id=actor_id, status=status)
        sql = f"SELECT count(*) FROM records WHERE {where}"
        row = await self._run("count", lambda: self._db.execute(sql, params).fetchone())
        return int(row[0])

    async def delete_where(
        self,
        *,
        kind: str,
        group: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete matching records; how many (see :class:`~abaco.storage.Storage`)."""
        where, params = _where(kind, group, ids, before=before)
        sql = f"DELETE FROM records WHERE {where}"
        return await self._run("delete", lambda: self._db.execute(sql, params).rowcount)

    def is_connected(self) -> bool:
        """Open, and the last operation reached the file."""
        return not self._conn.closed and self._healthy

    def is_idle(self) -> bool:
        """No operation in flight."""
        return self._conn.in_flight == 0

    async def aclose(self) -> None:
        """Close the file; idempotent."""
        if not self._conn.closed:
            await self._conn.run(self._db.close)
            self._conn.closed = True


@contextlib.asynccontextmanager
async def open_sqlite(url: str) -> AsyncIterator[SqliteStorage]:
    """A :class:`SqliteStorage` on the file of ``url``, closed on exit.

    :class:`~abaco.errors.StoreUnavailable` when the file cannot be created or opened.
    """
    path = sqlite_path(url)
    # The connect itself is blocking file I/O; run it off the trio thread too.
    db = await trio.to_thread.run_sync(SqliteStorage._connect, path)
    storage = SqliteStorage(path, db)
    try:
        yield storage
    finally:
        await storage.aclose()
