"""Storage on PostgreSQL through psycopg 3: JSONB documents, one table for every kind.

The table (``abaco_records`` unless configured) has the SQLite shape with native types::

    (kind text, id text, grp text, actor_id text, status text,
     stored_at timestamptz, json jsonb, PRIMARY KEY (kind, id))

with indexes on (kind, grp), (kind, actor_id), (kind, status) and (kind, stored_at, id).
JSONB normalizes documents (key order, whitespace), so a record read back is equal as
JSON, not byte for byte.

We use psycopg's blocking API on worker threads rather than its asyncio API, because
abaco runs on trio. A batch goes in with COPY into a temporary table and one
``INSERT ... SELECT ... ON CONFLICT (kind, id) DO UPDATE``: one round trip per batch
however large, where ``executemany`` would still send one statement per row.

The table can be named in the URL as ``?abaco_table=name`` or ``schema.name`` (tests use
a table of their own each); the parameter is taken out before psycopg sees the DSN.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql

from abaco.errors import BadRequest, StoreUnavailable
from abaco.persist_queue import EntityRecord
from abaco.storage.base import BlockingConnection, check_page, check_time, record_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

__all__ = ["DEFAULT_TABLE", "PostgresStorage", "open_postgres", "redact"]

T = TypeVar("T")

DEFAULT_TABLE = "abaco_records"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def redact(dsn: str) -> str:
    """``dsn`` without its password, fit for messages and logs."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            user = parts.username or ""
            return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
        return dsn
    return re.sub(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=***", dsn)


def _split_table(url: str) -> tuple[str, str]:
    """The DSN for psycopg and the table name taken out of its query string."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    table = next((value for key, value in query if key == "abaco_table"), DEFAULT_TABLE)
    rest = urlencode([(key, value) for key, value in query if key != "abaco_table"])
    return urlunsplit(parts._replace(query=rest)), table


class PostgresStorage:
    """A :class:`~abaco.storage.Storage` on one PostgreSQL table; see :func:`open_postgres`."""

    def __init__(self, dsn: str, table: str = DEFAULT_TABLE) -> None:
        if not _NAME.match(table):
            raise BadRequest(f"table name {table!r}: [schema.]name of letters, digits, _")
        self.dsn = dsn
        self.table = table
        self._ident = sql.Identifier(*table.split("."))
        self._conn = BlockingConnection(f"postgresql {redact(dsn)}")
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None
        self._healthy = False

    @contextlib.contextmanager
    def _mapped(self, where: str) -> Iterator[None]:
        """Map psycopg errors to our tree, naming the DSN without its password."""
        name = f"postgresql {redact(self.dsn)}: {where}"
        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            # Someone dropped the table under us: the store is unusable, not the query bad.
            raise StoreUnavailable(f"{name}: {exc}") from exc
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            raise BadRequest(f"{name}: {exc}") from exc
        except psycopg.Error as exc:
            # OperationalError (refused, gone, admin shutdown), InterfaceError (closed
            # connection) and the rest: the server cannot do it now.
            raise StoreUnavailable(f"{name}: {exc}") from exc

    def _index(self, suffix: str) -> sql.Identifier:
        return sql.Identifier(f"{self.table.rpartition('.')[2]}_{suffix}")

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection, (re)connecting first when it is missing or broken.

        Reconnecting here is what lets the drainer recover by itself after the server
        comes back: the next batch simply works.
        """
        if self._db is not None and not self._db.closed and not self._db.broken:
            return self._db
        if self._db is not None:
            self._db.close()
            self._db = None
        db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        try:
            with db.transaction():
                # Several drainers may start at once; the advisory lock keeps their
                # CREATE ... IF NOT EXISTS from racing on the catalogue.
                db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.table])
                db.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {t} (kind text NOT NULL, id text NOT NULL,"
                        " grp text NOT NULL, actor_id text, status text,"
                        " stored_at timestamptz NOT NULL, json jsonb NOT NULL,"
                        " PRIMARY KEY (kind, id))"
                    ).format(t=self._ident)
                )
                for suffix, columns in (
                    ("kind_grp", "kind, grp"),
                    ("kind_actor", "kind, actor_id"),
                    ("kind_status", "kind, status"),
                    ("kind_stored_at", "kind, stored_at, id"),
                ):
                    db.execute(
                        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c})").format(
                            i=self._index(suffix), t=self._ident, c=sql.SQL(columns)
                        )
                    )
            db.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS abaco_incoming"
                    " (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                ).format(t=self._ident)
            )
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    async def _run(self, where: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        def mapped() -> T:
            with self._mapped(where):
                return fn(self._connection())

        try:
            result = await self._conn.run(mapped)
        except StoreUnavailable:
            self._healthy = False
            raise
        self._healthy = True
        return result

    async def connect(self) -> None:
        """Connect and create the table now, so a wrong DSN fails at open time."""
        await self._run("connect", lambda db: None)

    async def store(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` in one transaction (see :class:`~abaco.storage.Storage`)."""
        stamp = datetime.now(UTC)
        rows = record_rows(records)
        if not rows:
            return
        upsert = sql.SQL(
            "INSERT INTO {t} (kind, id, grp, actor_id, status, stored_at, json)"
            " SELECT kind, id, grp, actor_id, status, stored_at, json FROM abaco_incoming"
            " ON CONFLICT (kind, id) DO UPDATE SET grp = excluded.grp,"
            " actor_id = excluded.actor_id, status = excluded.status,"
            " stored_at = excluded.stored_at, json = excluded.json"
        ).format(t=self._ident)

        def write(db: psycopg.Connection[Any]) -> None:
            with db.transaction():
                with db.cursor().copy(
                    "COPY abaco_incoming (kind, id, grp, actor_id, status, stored_at, json)"
                    " FROM STDIN"
                ) as copy:
                    for kind, rid, grp, actor_id, status, document in rows:
                        copy.write_row((kind, rid, grp, actor_id, status, stamp, document))
                db.execute(upsert)

        await self._run("store", write)

    def _where(
        self,
        kind: str,
        group: str | None = None,
        ids: Sequence[str] | None = None,
        actor_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: datetime | None = None,
    ) -> tuple[sql.Composable, list[Any]]:
        """A WHERE condition and its parameters for the filters given."""
        check_time("since", since)
        check_time("until", until)
        check_time("before", before)
        clauses: list[sql.Composable] = [sql.SQL("kind = %s")]
        params: list[Any] = [kind]
        for column, value in (("grp", group), ("actor_id", actor_id), ("status", status)):
            if value is not None:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if ids is not None:
            clauses.append(sql.SQL("id = ANY(%s)"))
            params.append(list(ids))
        for op, moment in ((">=", since), ("<", until), ("<", before)):
            if moment is not None:
                clauses.append(sql.SQL(f"stored_at {op} %s"))
                params.append(moment)
        return sql.SQL(" AND ").join(clauses), params

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
        where, params = self._where(kind, group, ids, actor_id, status, since, until)
        statement = sql.SQL(
            "SELECT kind, grp, id, json::text FROM {t} WHERE {w}"
            " ORDER BY stored_at, id LIMIT %s OFFSET %s"
        ).format(t=self._ident, w=where)
        rows = await self._run(
            "query", lambda db: db.execute(statement, [*params, limit, offset]).fetchall()
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
        where, params = self._where(kind, group, actor_id=actor_id, status=status)
        statement = sql.SQL("SELECT count(*) FROM {t} WHERE {w}").format(t=self._ident, w=where)
        row = await self._run("count", lambda db: db.execute(statement, params).fetchone())
        return int(row[0]) if row else 0

    async def delete_where(
        self,
        *,
        kind: str,
        group: str | None = None,
        before: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> int:
        """Delete matching records; how many (see :class:`~abaco.storage.Storage`)."""
        where, params = self._where(kind, group, ids, before=before)
        statement = sql.SQL("DELETE FROM {t} WHERE {w}").format(t=self._ident, w=where)
        return await self._run("delete", lambda db: db.execute(statement, params).rowcount)

    def is_connected(self) -> bool:
        """Open, connected, and the last operation reached the server."""
        db = self._db
        return (
            not self._conn.closed
            and self._healthy
            and db is not None
            and not db.closed
            and not db.broken
        )

    def is_idle(self) -> bool:
        """No operation in flight."""
        return self._conn.in_flight == 0

    async def aclose(self) -> None:
        """Close the connection; idempotent."""
        if self._conn.closed:
            return

        def close() -> None:
            if self._db is not None:
                self._db.close()

        await self._conn.run(close)
        self._conn.closed = True


@contextlib.asynccontextmanager
async def open_postgres(url: str) -> AsyncIterator[PostgresStorage]:
    """A :class:`PostgresStorage` on ``url`` (connected, table created), closed on exit.

    :class:`~abaco.errors.StoreUnavailable` when the server cannot be reached.
    """
    dsn, table = _split_table(url)
    storage = PostgresStorage(dsn, table)
    try:
        await storage.connect()
        yield storage
    finally:
        await storage.aclose()
