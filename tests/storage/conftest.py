"""Fixtures: one storage per backend, on a fresh file or a fresh PostgreSQL table.

SQLite always runs. PostgreSQL runs when ABACO_TEST_POSTGRES_DSN names a server; when it
is set but the server cannot be reached, the fixture fails (it never skips), so CI cannot
silently lose the PostgreSQL half of the suite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from abaco.storage import Storage, open_storage

POSTGRES_DSN = os.environ.get("ABACO_TEST_POSTGRES_DSN", "")

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_DSN else [])


def _with_table(dsn: str, table: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}abaco_table={table}"


def _drop_table(table: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as db:
        db.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
async def storage_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL for a storage of its own: a new file, or a new table dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'records.sqlite'}"
        return
    table = f"abaco_test_{uuid.uuid4().hex}"
    try:
        yield _with_table(POSTGRES_DSN, table)
    finally:
        await trio.to_thread.run_sync(_drop_table, table)


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    """An open storage on ``storage_url``."""
    async with open_storage(storage_url) as opened:
        yield opened


@pytest.fixture
def unreachable_url(backend: str, tmp_path: Path) -> str:
    """A URL of the backend's kind whose database cannot be reached or created."""
    if backend == "sqlite":
        # A path under a regular file: no directory can be made there, even as root.
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return f"sqlite:///{blocker / 'records.sqlite'}"
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    return "postgresql://postgres:secret@127.0.0.1:1/test"
