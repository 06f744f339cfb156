"""The janitor's rules on real storage."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

from abaco.janitor import JanitorPolicy, run_janitor, sweep
from abaco.persist_queue import EntityRecord
from abaco.storage import open_storage

POLICY = JanitorPolicy(finished_longevity=3600, failed_longevity=7200)


def _execution(execution_id, status, results=0):
    records = [
        EntityRecord.of("outcome", "a1", execution_id, {"actor_id": "a1", "status": status}),
        EntityRecord.of("log", "a1", execution_id, {"logs": "text"}),
    ]
    records += [
        EntityRecord.of("result", "a1", f"{execution_id}:{i}", {"execution_id": execution_id})
        for i in range(results)
    ]
    return records


@pytest.fixture
async def storage(tmp_path):
    async with open_storage(f"sqlite:///{tmp_path}/records.db") as opened:
        await opened.store(_execution("ok", "COMPLETE", results=2))
        await opened.store(_execution("bad", "ERROR", results=2))
        yield opened


def _later(seconds):
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


async def _ids(storage, kind):
    return sorted(r.id for r in await storage.query(kind=kind, limit=1000))


async def test_young_records_are_kept(storage):
    report = await sweep(storage, POLICY)
    assert (report.logs, report.executions, report.results) == (0, 0, 0)
    assert await _ids(storage, "log") == ["bad", "ok"]


async def test_finished_executions_lose_their_logs_but_keep_record_and_results(storage):
    report = await sweep(storage, POLICY, now=_later(3601))
    assert (report.logs, report.executions, report.results) == (1, 0, 0)
    assert await _ids(storage, "log") == ["bad"]
    assert await _ids(storage, "outcome") == ["bad", "ok"]
    assert await _ids(storage, "result") == ["bad:0", "bad:1", "ok:0", "ok:1"]


async def test_failed_executions_are_deleted_whole_after_their_longevity(storage):
    report = await sweep(storage, POLICY, now=_later(7201))
    assert (report.logs, report.executions, report.results) == (2, 1, 2)
    assert await _ids(storage, "outcome") == ["ok"]
    assert await _ids(storage, "result") == ["ok:0", "ok:1"]
    assert await _ids(storage, "log") == []


async def test_sweeping_twice_or_with_two_janitors_is_harmless(storage):
    later = _later(7201)
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(lambda: sweep(storage, POLICY, now=later))
    again = await sweep(storage, POLICY, now=later)
    assert (again.logs, again.executions, again.results) == (0, 0, 0)
    assert await _ids(storage, "outcome") == ["ok"]


async def test_many_failed_executions_are_swept_in_pages(tmp_path):
    async with open_storage(f"sqlite:///{tmp_path}/many.db") as storage:
        for i in range(30):
            await storage.store(_execution(f"e{i:02}", "ERROR", results=1))
        report = await sweep(storage, POLICY, now=_later(7201), page=7)
        assert (report.logs, report.executions, report.results) == (30, 30, 30)
        assert await storage.count(kind="result") == 0


async def test_the_janitor_actor_sweeps_on_its_interval(storage):
    zero = JanitorPolicy(finished_longevity=0, failed_longevity=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_janitor(storage, zero, interval=0.05, task_status=task_status)
        )
        with trio.fail_after(10):
            while True:
                if await storage.count(kind="outcome") == 1:
                    break
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert await _ids(storage, "outcome") == ["ok"]
