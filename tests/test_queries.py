"""Storage queries through the query queue, with the client's two timeouts."""

from __future__ import annotations

import pytest
import trio

from abaco.channels import open_hub
from abaco.errors import BadRequest
from abaco.persist_queue import EntityRecord
from abaco.queries import Query, QueryTimeout, ask, serve_queries
from abaco.storage import open_storage


@pytest.fixture
async def storage(tmp_path):
    async with open_storage(f"sqlite:///{tmp_path}/records.db") as opened:
        await opened.store(
            [
                EntityRecord.of("outcome", "a1", f"e{i}", {"actor_id": "a1", "status": status})
                for i, status in enumerate(["COMPLETE", "ERROR", "COMPLETE"])
            ]
        )
        yield opened


async def test_a_query_is_answered_from_storage(redis, settings, storage):
    prefix = settings.redis.key_prefix
    async with open_hub(redis) as hub, trio.open_nursery() as nursery:
        await nursery.start(serve_queries, hub, redis, prefix, storage)
        found = await ask(hub, redis, prefix, Query(kind="outcome", filters={"status": "COMPLETE"}))
        nursery.cancel_scope.cancel()
    assert [r.id for r in found] == ["e0", "e2"]


async def test_a_query_nobody_takes_is_withdrawn_within_the_query_timeout(redis, settings, storage):
    prefix = settings.redis.key_prefix
    async with open_hub(redis) as hub:
        # Bounded by the query timeout, not a hang (fail_after only guards the test run).
        with (
            trio.fail_after(30),
            pytest.raises(QueryTimeout, match="no persistence actor took the query"),
        ):
            await ask(hub, redis, prefix, Query(kind="outcome"), query_timeout=0.3)
        # A persistence actor that comes later finds it withdrawn and does not answer it.
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_queries, hub, redis, prefix, storage)
            found = await ask(hub, redis, prefix, Query(kind="outcome"))
            nursery.cancel_scope.cancel()
    assert len(found) == 3


class _SlowStorage:
    def __init__(self, storage, delay):
        self._storage, self._delay = storage, delay

    async def query(self, **kw):
        await trio.sleep(self._delay)
        return await self._storage.query(**kw)


async def test_a_query_taken_but_not_answered_in_time_is_a_timeout(redis, settings, storage):
    prefix = settings.redis.key_prefix
    async with open_hub(redis) as hub, trio.open_nursery() as nursery:
        await nursery.start(serve_queries, hub, redis, prefix, _SlowStorage(storage, 2.0))
        with pytest.raises(QueryTimeout, match=r"taken but not answered within 0\.3 s"):
            await ask(
                hub, redis, prefix, Query(kind="outcome"), query_timeout=1.0, processing_timeout=0.3
            )
        nursery.cancel_scope.cancel()


async def test_a_failing_query_says_why(redis, settings, storage):
    prefix = settings.redis.key_prefix
    async with open_hub(redis) as hub, trio.open_nursery() as nursery:
        await nursery.start(serve_queries, hub, redis, prefix, storage)
        with pytest.raises(BadRequest, match="the query failed"):
            await ask(hub, redis, prefix, Query(kind="outcome", filters={"limit": -5}))
        nursery.cancel_scope.cancel()


def test_unknown_filters_are_refused():
    with pytest.raises(BadRequest, match="unknown query filters"):
        Query(kind="outcome", filters={"colour": "red"})
