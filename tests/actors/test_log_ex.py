"""An actor's ``log_ex``: its executions' logs expire after that many seconds.

The worker runs for real (a real bundle, a real Valkey); what is checked is the time to
live Valkey holds for the log's keys. Abaco's test_register_with_log_ex and
test_update_log_ex (the API side) are ported at the end.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import mailbox_of, submit
from abaco.actors.models import Actor
from abaco.actors.states import ExecutionStatus
from abaco.channels import open_hub
from tests.actors.test_worker import _bundle, start_worker, wait_execution
from tests.api._helpers import create_actor, push_bundle

LIMIT = 60


@pytest.fixture
def limited_settings(settings):
    fast = attrs.evolve(settings.worker, heartbeat=0.2, visibility=1.0, stop_deadline=2.0)
    stores = attrs.evolve(settings.stores, log_ex_limit=LIMIT)
    return attrs.evolve(settings, worker=fast, stores=stores)


async def _log_ttl_ms(redis, stores, execution_id):
    namespace = stores.actors.key("").removesuffix("actor:")
    return await redis.pttl(f"{namespace}logs:{execution_id}")


async def test_logs_expire_after_the_actor_s_log_ex(redis, stores, limited_settings, tmp_path):
    actor = Actor(id=new_id(), name="echo", owner="alice", image="org.example/echo:1.0.0", log_ex=7)
    await stores.actors.put(actor)
    async with open_hub(redis) as hub, trio.open_nursery() as nursery:
        mailbox = mailbox_of(hub, limited_settings.redis.key_prefix, stores.tenant, actor.id)
        worker = await start_worker(nursery, limited_settings, redis, actor, _bundle(tmp_path))

        first = await submit(stores, mailbox, actor_id=actor.id, body="one")
        await wait_execution(stores, first.id, ExecutionStatus.COMPLETE)
        assert (await stores.logs.read(first.id)).text.startswith("echo: one")
        assert 0 < await _log_ttl_ms(redis, stores, first.id) <= 7_000

        # An update reaches the running worker; a log_ex over the limit is cut to it.
        await stores.actors.update(actor.id, log_ex=100_000)
        second = await submit(stores, mailbox, actor_id=actor.id, body="two")
        await wait_execution(stores, second.id, ExecutionStatus.COMPLETE)
        assert 7_000 < await _log_ttl_ms(redis, stores, second.id) <= LIMIT * 1000

        # Without log_ex, the store's default ([stores] log_expiry, longer than LIMIT here).
        await stores.actors.update(actor.id, log_ex=None)
        third = await submit(stores, mailbox, actor_id=actor.id, body="three")
        await wait_execution(stores, third.id, ExecutionStatus.COMPLETE)
        default_ms = limited_settings.stores.log_expiry * 1000
        assert LIMIT * 1000 < await _log_ttl_ms(redis, stores, third.id) <= default_ms
        worker.stopping.set()


async def test_a_log_without_output_expires_too(redis, stores):
    execution_id = new_id()
    await stores.logs.finish(execution_id, expiry=5)
    assert (await stores.logs.read(execution_id)).complete
    assert 0 < await _log_ttl_ms(redis, stores, execution_id) <= 5_000


async def test_expiry_for_follows_abaco_s_limits(stores):
    logs = stores.logs
    assert logs.expiry_for(None) == logs.expiry
    assert logs.expiry_for(16000) == min(16000, logs.max_expiry)
    assert logs.expiry_for(10**9) == logs.max_expiry


async def test_register_and_update_log_ex(client, tmp_path):
    """Ports test_register_with_log_ex and test_update_log_ex; 0 and below are refused."""
    await push_bundle(client, tmp_path)
    actor = await create_actor(client, name="abaco_log_ex_test", log_ex=16000)
    assert actor["log_ex"] == 16000
    response = await client.put(f"/actors/{actor['id']}", json={"log_ex": 20000})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["log_ex"] == 20000
    response = await client.put(f"/actors/{actor['id']}", json={"log_ex": 0})
    assert response.status_code == 400, response.text
    assert "log_ex" in response.json()["message"]
