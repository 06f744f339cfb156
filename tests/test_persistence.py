"""The persistence drainer with a real queue and real storage."""

from __future__ import annotations

import pytest
import trio

from abaco.channels import open_hub
from abaco.errors import StoreUnavailable
from abaco.persist_queue import EntityRecord, persist_queue_of, submit_records
from abaco.persistence import drain
from abaco.storage import open_storage


def _records(n, start=0):
    return [
        EntityRecord.of("outcome", "actor1", f"e{i}", {"n": i}) for i in range(start, start + n)
    ]


async def _eventually(check, timeout=20):
    """Wait until ``await check()`` is true (state in Redis or the database: poll it)."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.05)


async def _wait_stored(storage, count):
    async def stored():
        return await storage.count(kind="outcome") >= count

    await _eventually(stored)


async def _wait_drained(queue):
    async def drained():
        return await queue.length() == 0

    await _eventually(drained)


async def test_records_are_drained_into_storage_exactly_once(redis, settings, tmp_path):
    async with (
        open_hub(redis, visibility=0.5) as hub,
        open_storage(f"sqlite:///{tmp_path}/records.db") as storage,
        trio.open_nursery() as nursery,
    ):
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        await submit_records(queue, _records(250))
        await submit_records(queue, _records(10))  # the same ids again: stored once
        for _ in range(2):  # two drainers at once are safe
            await nursery.start(drain, queue, storage)
        await _wait_stored(storage, 250)
        await _wait_drained(queue)
        assert await storage.count(kind="outcome") == 250
        nursery.cancel_scope.cancel()


class _FlakyStorage:
    """Real storage behind a switch that makes it refuse, as a database that is down."""

    def __init__(self, storage):
        self._storage = storage
        self.down = True

    async def store(self, records):
        if self.down:
            raise StoreUnavailable("the database is down (test switch)")
        await self._storage.store(records)


async def test_records_wait_in_the_queue_while_storage_is_down(redis, settings, tmp_path):
    async with (
        open_hub(redis, visibility=0.5) as hub,
        open_storage(f"sqlite:///{tmp_path}/records.db") as storage,
        trio.open_nursery() as nursery,
    ):
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        flaky = _FlakyStorage(storage)
        stats = await nursery.start(
            lambda task_status: drain(queue, flaky, retry_delay=0.1, task_status=task_status)
        )
        await submit_records(queue, _records(50))

        async def refused_twice():
            return stats.failed_batches >= 2

        await _eventually(refused_twice)
        assert await queue.length() == 50
        assert await storage.count(kind="outcome") == 0
        flaky.down = False
        await _wait_stored(storage, 50)
        await _wait_drained(queue)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("junk", [None, "text", {"kind": "nope"}])
async def test_a_record_that_is_not_one_is_dropped_not_stuck(redis, settings, tmp_path, junk):
    async with (
        open_hub(redis) as hub,
        open_storage(f"sqlite:///{tmp_path}/records.db") as storage,
        trio.open_nursery() as nursery,
    ):
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        await queue.put(junk)
        await submit_records(queue, _records(1))
        stats = await nursery.start(drain, queue, storage)
        await _wait_stored(storage, 1)
        assert stats.dropped == 1
        nursery.cancel_scope.cancel()


async def test_a_drainer_killed_with_sigkill_loses_nothing(redis, settings, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    storage_url = f"sqlite:///{tmp_path}/records.db"
    env = {
        **os.environ,
        "ABACO__REDIS__URL": redis.url,
        "ABACO__STATE__DIR": str(tmp_path / "state"),
        "ABACO__WORKER__VISIBILITY": "1.0",
        "ABACO__PERSISTENCE__STORAGE_URL": storage_url,
        "ABACO__PERSISTENCE__BATCH_SIZE": "50",
    }
    async with (
        open_hub(redis, visibility=1.0) as hub,
        open_storage(storage_url) as storage,
    ):
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        await submit_records(queue, _records(3000))
        doomed = await trio.lowlevel.open_process(
            [sys.executable, "-m", "abaco", "persistence"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            async def some_stored():
                return await storage.count(kind="outcome") > 0

            await _eventually(some_stored)  # it is draining: kill it mid-way
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
        finally:
            doomed.kill()
            await doomed.wait()
        async with trio.open_nursery() as nursery:
            await nursery.start(drain, queue, storage)
            await _wait_stored(storage, 3000)
            await _wait_drained(queue)
            nursery.cancel_scope.cancel()
        assert await storage.count(kind="outcome") == 3000
