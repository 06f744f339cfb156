"""Reading through to durable storage when Redis no longer holds an execution or its log."""

from __future__ import annotations

import pytest
import trio

from abaco.actors.models import Execution, to_dict, utcnow
from abaco.actors.states import ExecutionStatus
from abaco.channels import open_hub
from abaco.persist_queue import EntityRecord
from abaco.queries import serve_queries
from abaco.storage import open_storage
from abaco.stores import Stores
from tests.api._helpers import create_actor, push_bundle


@pytest.fixture
async def storage(tmp_path):
    async with open_storage(f"sqlite:///{tmp_path}/records.db") as opened:
        yield opened


@pytest.fixture
async def persistence(platform_redis, settings, storage):
    """A persistence actor answering queries from ``storage``."""
    async with open_hub(platform_redis) as hub, trio.open_nursery() as nursery:
        await nursery.start(serve_queries, hub, platform_redis, settings.redis.key_prefix, storage)
        yield
        nursery.cancel_scope.cancel()


async def test_an_execution_and_its_log_come_back_from_storage(
    client, tmp_path, platform_redis, settings, storage, persistence
):
    await push_bundle(client, tmp_path)
    actor = await create_actor(client)
    now = utcnow()
    execution = Execution(
        id=(await client.post(f"/actors/{actor['id']}/messages", json={"message": "x"})).json()[
            "result"
        ]["execution_id"],
        actor_id=actor["id"],
        status=ExecutionStatus.COMPLETE,
        start_time=now,
        finish_time=now,
        executor="admin",
    )
    # What a worker hands to the persist queue and a drainer stores, stored directly.
    await storage.store(
        [
            EntityRecord.of("outcome", actor["id"], execution.id, to_dict(execution)),
            EntityRecord.of("log", actor["id"], execution.id, {"logs": "kept for good\n"}),
        ]
    )
    stores = Stores.open(platform_redis, settings)
    await stores.executions.delete(execution.id)  # gone from Redis (expired, say)
    path = f"/actors/{actor['id']}/executions/{execution.id}"
    record = (await client.get(path)).json()["result"]
    assert (record["id"], record["status"]) == (execution.id, "COMPLETE")
    logs = (await client.get(f"{path}/logs")).json()["result"]
    assert logs["logs"] == "kept for good\n"
    # Another actor's id does not reach it; nor does a made-up id (answered at once).
    other = await create_actor(client)
    assert (await client.get(f"/actors/{other['id']}/executions/{execution.id}")).status_code == 404
    with trio.fail_after(1):
        assert (await client.get(f"/actors/{actor['id']}/executions/no-such")).status_code == 404


async def test_without_a_persistence_actor_a_missing_execution_is_a_404_in_bounded_time(
    client, tmp_path, settings
):
    await push_bundle(client, tmp_path)
    actor = await create_actor(client)
    from abaco.actors.ids import new_id

    with trio.fail_after(settings.persistence.query_timeout + 5):
        response = await client.get(f"/actors/{actor['id']}/executions/{new_id()}")
    assert response.status_code == 404
