"""Records/s drained from the persist queue into SQLite and PostgreSQL, next to raw inserts.

For each storage and batch size (1, 100, 1000): fill the persist queue with N execution
records (on a fresh embedded Valkey), then time one drainer moving them all into the
storage. Next to it, in the same run, the same rows written straight through the storage
in one call (the storage's own floor) and through the raw driver (``sqlite3``
``executemany`` / psycopg ``COPY``).

Run: ``.venv/bin/python bench/persistence.py [--n 5000] [--postgres DSN]``; PostgreSQL
rows are measured when ``--postgres`` or ``ABACO_TEST_POSTGRES_DSN`` names a server.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import trio

from abaco.channels import open_hub
from abaco.config import load_settings
from abaco.persist_queue import EntityRecord, persist_queue_of, submit_records
from abaco.persistence import drain
from abaco.redis_client import open_redis
from abaco.storage import open_storage
from abaco.valkey import EmbeddedValkey
from bench._machine import machine


def _records(n: int, run: str) -> list[EntityRecord]:
    return [
        EntityRecord.of(
            "outcome",
            "actor1",
            f"{run}-{i}",
            {"id": f"{run}-{i}", "actor_id": "actor1", "status": "COMPLETE", "runtime": i},
        )
        for i in range(n)
    ]


async def _drained(url: str, storage_url: str, n: int, batch: int) -> float:
    """Seconds one drainer takes to move n queued records into the storage."""
    async with (
        open_redis(url) as redis,
        open_hub(redis, namespace=f"bench{uuid.uuid4().hex[:8]}") as hub,
        open_storage(storage_url) as storage,
    ):
        queue = persist_queue_of(hub, hub.namespace)
        await submit_records(queue, _records(n, uuid.uuid4().hex[:8]))
        before = await storage.count(kind="outcome")
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: drain(queue, storage, batch_size=batch, task_status=task_status)
            )
            while True:  # the records are in another process's database: poll it
                if await storage.count(kind="outcome") >= before + n:
                    break
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        return time.perf_counter() - start


async def _direct(storage_url: str, n: int) -> float:
    """Seconds the storage takes to store n records in one call."""
    records = _records(n, uuid.uuid4().hex[:8])
    async with open_storage(storage_url) as storage:
        start = time.perf_counter()
        await storage.store(records)
        return time.perf_counter() - start


def _raw_sqlite(path: Path, n: int) -> float:
    rows = [(r.kind, r.id, r.group, r.json) for r in _records(n, uuid.uuid4().hex[:8])]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS raw (kind, id, grp, json, PRIMARY KEY (kind, id))")
    start = time.perf_counter()
    with db:
        db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?)", rows)
    took = time.perf_counter() - start
    db.close()
    return took


def _raw_postgres(dsn: str, n: int) -> float:
    import psycopg

    rows = [(r.kind, r.id, r.group, r.json) for r in _records(n, uuid.uuid4().hex[:8])]
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (kind text, id text, grp text, doc jsonb)")
        try:
            start = time.perf_counter()
            with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return time.perf_counter() - start
        finally:
            conn.execute(f"DROP TABLE {table}")


async def _run(url: str, n: int, targets: dict[str, str], tmp: Path) -> None:
    print(f"{'storage':10} {'path':22} {'records/s':>10}")
    for name, storage_url in targets.items():
        for batch in (1, 100, 1000):
            count = min(n, 1000) if batch == 1 else n  # batch 1 is slow: fewer records
            took = await _drained(url, storage_url, count, batch)
            print(f"{name:10} {'drain, batch ' + str(batch):22} {count / took:10,.0f}")
        took = await _direct(storage_url, n)
        print(f"{name:10} {'storage.store(all)':22} {n / took:10,.0f}")
        if name == "sqlite":
            raw = await trio.to_thread.run_sync(_raw_sqlite, tmp / "raw.db", n)
            print(f"{name:10} {'raw executemany':22} {n / raw:10,.0f}")
        else:
            raw = await trio.to_thread.run_sync(_raw_postgres, targets["postgresql"], n)
            print(f"{name:10} {'raw COPY':22} {n / raw:10,.0f}")


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="records per measurement")
    parser.add_argument("--postgres", default=os.environ.get("ABACO_TEST_POSTGRES_DSN", ""))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        targets = {"sqlite": f"sqlite:///{root}/records.db"}
        if args.postgres:
            targets["postgresql"] = args.postgres
        load_settings(environ={})  # fail early on a broken abaco.conf
        with EmbeddedValkey(root / "valkey", appendfsync="everysec") as server:
            trio.run(_run, server.url, args.n, targets, root)


if __name__ == "__main__":
    main()
