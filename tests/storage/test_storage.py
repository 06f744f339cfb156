"""The Storage contract, run over every backend (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from abaco.errors import BadRequest, StoreUnavailable
from abaco.persist_queue import EntityRecord
from abaco.storage import Storage, open_storage, storage_factories
from abaco.storage.postgres import redact
from abaco.storage.sqlite import sqlite_path


def rec(kind="log", group="actor-1", rid="r1", **document):
    return EntityRecord.of(kind, group, rid, document or {"n": rid})


def docs(records):
    return [(r.kind, r.group, r.id, json.loads(r.json)) for r in records]


async def test_storage_satisfies_the_protocol(storage):
    assert isinstance(storage, Storage)


async def test_store_then_query_by_kind_group_and_ids(storage):
    await storage.store(
        [
            rec("log", "a", "1"),
            rec("log", "a", "2"),
            rec("log", "b", "3"),
            rec("result", "a", "1"),
        ]
    )
    assert [r.id for r in await storage.query(kind="log")] == ["1", "2", "3"]
    assert [r.id for r in await storage.query(kind="log", group="a")] == ["1", "2"]
    assert [r.id for r in await storage.query(kind="log", ids=["3", "1", "9"])] == ["1", "3"]
    assert await storage.query(kind="log", ids=[]) == []
    assert docs(await storage.query(kind="result")) == [("result", "a", "1", {"n": "1"})]
    assert await storage.query(kind="outcome") == []


async def test_restore_is_idempotent_and_the_later_json_wins(storage):
    await storage.store([rec(rid="x", step=1)])
    await storage.store([rec(rid="x", step=2), rec(rid="x", step=3)])
    await storage.store([rec(group="moved", rid="x", step=4)])
    assert docs(await storage.query(kind="log")) == [("log", "moved", "x", {"step": 4})]
    assert await storage.count(kind="log") == 1


async def test_limit_and_offset_page_in_stored_time_then_id_order(storage):
    await storage.store([rec(rid=f"b{i:02}") for i in range(10)])
    await storage.store([rec(rid="a-later")])  # a later batch sorts after, despite its id
    everything = [r.id for r in await storage.query(kind="log", limit=100)]
    assert everything == [f"b{i:02}" for i in range(10)] + ["a-later"]
    assert [r.id for r in await storage.query(kind="log", limit=3, offset=9)] == [
        "b09",
        "a-later",
    ]
    assert await storage.query(kind="log", limit=0) == []
    with pytest.raises(BadRequest):
        await storage.query(kind="log", limit=-1)


async def test_since_and_until_filter_on_stored_time(storage):
    await storage.store([rec(rid="old")])
    await trio.sleep(0.05)
    middle = datetime.now(UTC)
    await trio.sleep(0.05)
    await storage.store([rec(rid="new")])
    assert [r.id for r in await storage.query(kind="log", since=middle)] == ["new"]
    assert [r.id for r in await storage.query(kind="log", until=middle)] == ["old"]
    with pytest.raises(BadRequest):
        await storage.query(kind="log", since=datetime.now())  # naive: refused


async def test_count_by_kind_and_group(storage):
    await storage.store([rec("log", "a", "1"), rec("log", "b", "2"), rec("result", "a", "3")])
    assert await storage.count(kind="log") == 2
    assert await storage.count(kind="log", group="a") == 1
    assert await storage.count(kind="evaluation") == 0


async def test_delete_where_by_kind_group_ids_and_before(storage):
    await storage.store([rec("log", "a", "1"), rec("log", "a", "2"), rec("log", "b", "3")])
    await storage.store([rec("result", "a", "1")])
    assert await storage.delete_where(kind="log", ids=["2", "nope"]) == 1
    assert await storage.delete_where(kind="log", group="b") == 1
    assert [r.id for r in await storage.query(kind="log")] == ["1"]

    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    await storage.store([rec("descriptor", "a", "d1")])
    assert await storage.delete_where(kind="log", before=cutoff - timedelta(hours=1)) == 0
    assert await storage.delete_where(kind="log", before=cutoff) == 1
    assert await storage.count(kind="result") == 1  # other kinds untouched
    assert await storage.delete_where(kind="result", group="a", ids=[]) == 0
    assert await storage.delete_where(kind="result") == 1


async def test_actor_id_and_status_are_lifted_out_for_filtering(storage):
    await storage.store(
        [
            rec("outcome", "a1", "e1", actor_id="a1", status="COMPLETE"),
            rec("outcome", "a1", "e2", actor_id="a1", status="FAILED"),
            rec("outcome", "a2", "e3", actor_id="a2", status="COMPLETE"),
            rec("outcome", "a2", "e4", actor_id=7, status=None),  # not strings: not lifted
        ]
    )
    by_actor = await storage.query(kind="outcome", actor_id="a1")
    assert [r.id for r in by_actor] == ["e1", "e2"]
    done = await storage.query(kind="outcome", status="COMPLETE")
    assert [r.id for r in done] == ["e1", "e3"]
    assert await storage.count(kind="outcome", actor_id="a2", status="COMPLETE") == 1
    # A re-store with a new status moves the record between filters.
    await storage.store([rec("outcome", "a1", "e2", actor_id="a1", status="COMPLETE")])
    assert await storage.count(kind="outcome", status="FAILED") == 0


async def test_json_that_does_not_parse_is_a_bad_request(storage):
    bad = EntityRecord(kind="log", group="a", id="x", json="{not json")
    with pytest.raises(BadRequest):
        await storage.store([rec(rid="ok"), bad])
    assert await storage.count(kind="log") == 0  # nothing of the batch was written


async def test_ten_thousand_records_in_one_batch(storage):
    records = [rec("log", f"g{i % 7}", f"r{i:05}", i=i, status="S") for i in range(10_000)]
    with trio.fail_after(60):
        await storage.store(records)
    assert await storage.count(kind="log") == 10_000
    assert await storage.count(kind="log", group="g3") == len(range(3, 10_000, 7))
    page = await storage.query(kind="log", limit=5, offset=9_995)
    assert [r.id for r in page] == [f"r{i:05}" for i in range(9_995, 10_000)]


async def test_concurrent_stores_from_several_tasks(storage):
    async def writer(task: int) -> None:
        for batch in range(5):
            await storage.store([rec("log", f"t{task}", f"t{task}-{batch}-{i}") for i in range(20)])
            # Overlapping ids across tasks: the upserts must not deadlock or duplicate.
            await storage.store([rec("result", "shared", f"s{batch}-{i}") for i in range(20)])

    async with trio.open_nursery() as nursery:
        for task in range(8):
            nursery.start_soon(writer, task)
    assert await storage.count(kind="log") == 8 * 5 * 20
    assert await storage.count(kind="result") == 5 * 20
    assert storage.is_idle()


async def test_is_connected_and_is_idle(storage):
    assert storage.is_connected()
    assert storage.is_idle()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(storage.store, [rec(rid=f"r{i}") for i in range(10_000)])
        # Returns once the store task is parked on its worker thread (10,000 rows keep
        # that thread busy far longer than this takes).
        await trio.testing.wait_all_tasks_blocked()
        assert not storage.is_idle()
    assert storage.is_idle()
    await storage.aclose()
    assert not storage.is_connected()
    with pytest.raises(StoreUnavailable, match="closed"):
        await storage.count(kind="log")
    await storage.aclose()  # idempotent


async def test_unreachable_database_is_store_unavailable(unreachable_url):
    with pytest.raises(StoreUnavailable) as caught:
        async with open_storage(unreachable_url):
            pass  # pragma: no cover
    assert "secret" not in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_reopening_keeps_what_was_stored(storage_url):
    async with open_storage(storage_url) as first:
        await first.store([rec(rid="kept")])
    async with open_storage(storage_url) as second:
        assert [r.id for r in await second.query(kind="log")] == ["kept"]


def test_unknown_scheme_is_a_bad_request():
    with pytest.raises(BadRequest, match="mongodb"):
        open_storage("mongodb://localhost/x")
    assert {"sqlite", "postgresql"} <= set(storage_factories())


def test_sqlite_url_forms():
    assert str(sqlite_path("sqlite:///var/lib/abaco/r.db")) == "/var/lib/abaco/r.db"
    assert str(sqlite_path("sqlite://state/r.db")) == "state/r.db"
    with pytest.raises(BadRequest):
        sqlite_path("sqlite://")


def test_redact_hides_the_password():
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "pw" not in redact("host=h password=pw dbname=db")


async def test_a_dropped_connection_fails_once_then_reconnects(storage, backend):
    """The server ends our session (as on a restart): one StoreUnavailable, then recovery."""
    if backend != "postgresql":
        return  # SQLite has no server connection to lose
    await storage.store([rec(rid="before")])
    db = storage._db  # the live psycopg connection

    def terminate() -> None:
        import psycopg

        from tests.storage.conftest import POSTGRES_DSN

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [db.info.backend_pid])

    await trio.to_thread.run_sync(terminate)
    with pytest.raises(StoreUnavailable):
        await storage.count(kind="log")
    assert not storage.is_connected()
    await storage.store([rec(rid="after")])
    assert [r.id for r in await storage.query(kind="log")] == ["before", "after"]
    assert storage.is_connected()
