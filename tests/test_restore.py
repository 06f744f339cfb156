"""Write-through to durable storage and the restore after Redis lost everything.

The API is the real one over HTTP, the drainer the real one, storage a real SQLite file
(and PostgreSQL when ABACO_TEST_POSTGRES_DSN names one); "losing Redis" is FLUSHDB of the
platform's database.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import attrs
import httpx
import pytest
import trio

from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.actors.models import PermissionLevel, to_dict
from abaco.actors.states import ExecutionStatus
from abaco.api import create_app, serve_api
from abaco.channels import open_hub
from abaco.control import known_tenants, scheduler_inbox
from abaco.errors import ChannelTimeout, NotFound
from abaco.janitor import JanitorPolicy, sweep
from abaco.persist_queue import EntityRecord, persist_queue_of, submit_records
from abaco.persistence import drain
from abaco.restore import restore
from abaco.storage import open_storage
from abaco.stores import Stores
from tests.api._helpers import create_actor, push_bundle
from tests.storage.conftest import BACKENDS, POSTGRES_DSN, _drop_table, _with_table

BINARY = bytes(range(256)) * 3


@pytest.fixture(params=BACKENDS)
async def storage(request, tmp_path):
    """Durable storage of its own: a new SQLite file, or a new PostgreSQL table."""
    if request.param == "sqlite":
        async with open_storage(f"sqlite:///{tmp_path / 'records.db'}") as opened:
            yield opened
        return
    table = f"abaco_test_{uuid.uuid4().hex}"
    try:
        async with open_storage(_with_table(POSTGRES_DSN, table)) as opened:
            yield opened
    finally:
        await trio.to_thread.run_sync(_drop_table, table)


async def _eventually(check, timeout=20.0, poll=0.05):
    for _ in range(int(timeout / poll)):
        if await check():
            return
        await trio.sleep(poll)
    raise AssertionError(f"not true after {timeout} s")


async def _drain_all(hub, settings, storage):
    """Run the real drainer until the persist queue is empty (every record stored)."""
    queue = persist_queue_of(hub, settings.redis.key_prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(drain, queue, storage)

        async def drained():
            return await queue.length() == 0

        await _eventually(drained)
        nursery.cancel_scope.cancel()


async def _send(client, actor_id, **request) -> str:
    response = await client.post(f"/actors/{actor_id}/messages", **request)
    assert response.status_code == 200, response.text
    return response.json()["result"]["execution_id"]


async def _take_all(mailbox) -> list[MailboxMessage]:
    """Every message in the mailbox, taken and acknowledged, in order."""
    taken = []
    while True:
        try:
            delivery = await mailbox.get(timeout=0.2)
        except ChannelTimeout:
            return taken
        taken.append(MailboxMessage.from_wire(delivery.message))
        await delivery.ack()


async def _finish_like_a_worker(hub, settings, stores, mailbox, execution_id):
    """Take the message and end its execution COMPLETE, handing the outcome on as the
    worker does (abaco.actors.worker: an ``outcome`` record of the execution's dict)."""
    delivery = await mailbox.get(timeout=5)
    assert delivery.message["execution_id"] == execution_id
    await stores.executions.move(execution_id, ExecutionStatus.RUNNING, worker_id="w1")
    finished = await stores.executions.move(execution_id, ExecutionStatus.COMPLETE)
    await delivery.ack()
    record = EntityRecord.of("outcome", finished.actor_id, finished.id, to_dict(finished))
    await submit_records(persist_queue_of(hub, settings.redis.key_prefix), [record])


@pytest.fixture
async def hub(platform_redis, settings):
    async with open_hub(platform_redis, namespace=settings.redis.key_prefix) as opened:
        yield opened


async def test_the_api_writes_actors_and_accepted_messages_through(
    client, hub, settings, storage, tmp_path
):
    await push_bundle(client, tmp_path)
    actor = await create_actor(client, description="first")
    actor_id = actor["id"]
    response = await client.post(
        f"/actors/{actor_id}/permissions", json={"user": "bob", "level": "READ"}
    )
    assert response.status_code == 200, response.text
    response = await client.put(f"/actors/{actor_id}", json={"description": "second"})
    assert response.status_code == 200, response.text
    text = await _send(client, actor_id, json={"message": "hello"}, params={"COLOR": "red"})
    binary = await _send(
        client,
        actor_id,
        content=BINARY,
        headers={"Content-Type": "application/octet-stream"},
    )
    await _drain_all(hub, settings, storage)

    (stored_actor,) = await storage.query(kind="named-descriptor")
    assert (stored_actor.group, stored_actor.id) == (settings.stores.tenant, actor_id)
    document = json.loads(stored_actor.json)
    assert document["deleted"] is False
    assert document["actor"]["description"] == "second"  # the latest write wins
    assert document["permissions"] == {actor["owner"]: "UPDATE", "bob": "READ"}

    messages = {r.id: json.loads(r.json) for r in await storage.query(kind="descriptor")}
    assert set(messages) == {text, binary}
    assert messages[text]["status"] == "SUBMITTED"
    assert messages[text]["message"]["body"] == "hello"
    assert messages[text]["message"]["environment"] == {"COLOR": "red"}
    assert messages[binary]["message"]["encoding"] == "base64"
    assert base64.b64decode(messages[binary]["message"]["body"]) == BINARY

    response = await client.delete(f"/actors/{actor_id}")
    assert response.status_code == 200, response.text
    await _drain_all(hub, settings, storage)
    (deleted,) = await storage.query(kind="named-descriptor")
    assert json.loads(deleted.json)["deleted"] is True


async def test_restore_brings_actors_and_unfinished_work_back_into_an_empty_redis(
    client, hub, platform_redis, settings, storage, tmp_path
):
    await push_bundle(client, tmp_path)
    actor = await create_actor(client)
    actor_id = actor["id"]
    await client.post(f"/actors/{actor_id}/permissions", json={"user": "bob", "level": "EXECUTE"})
    stores = Stores.open(platform_redis, settings)
    mailbox = mailbox_of(hub, settings.redis.key_prefix, settings.stores.tenant, actor_id)
    done = await _send(client, actor_id, json={"message": "first"})
    await _finish_like_a_worker(hub, settings, stores, mailbox, done)
    waiting_text = await _send(client, actor_id, json={"message": "second"}, params={"N": "2"})
    waiting_binary = await _send(
        client, actor_id, content=BINARY, headers={"Content-Type": "application/octet-stream"}
    )
    gone = await create_actor(client)
    assert (await client.delete(f"/actors/{gone['id']}")).status_code == 200
    await _drain_all(hub, settings, storage)

    await platform_redis.flushdb()  # Valkey lost everything
    report = await restore(settings, platform_redis, storage)

    assert (report.actors, report.requeued, report.history) == (1, 2, 1)
    assert report.summary() == "1 actor, 2 messages queued again, 1 finished execution"
    restored = await stores.actors.get(actor_id)
    assert restored.status == "SUBMITTED"
    assert restored.owner == actor["owner"]
    assert restored.image == actor["image"]
    with pytest.raises(NotFound):
        await stores.actors.get(gone["id"])
    assert await stores.permissions.all(actor_id) == {
        actor["owner"]: PermissionLevel.UPDATE,
        "bob": PermissionLevel.EXECUTE,
    }
    assert (await stores.executions.get(done)).status == "COMPLETE"
    for waiting in (waiting_text, waiting_binary):
        execution = await stores.executions.get(waiting)
        assert (execution.status, execution.worker_id) == ("SUBMITTED", None)
    # The API serves the restored actor as before.
    answer = await client.get(f"/actors/{actor_id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["id"] == actor_id
    # One worker asked for, the tenant known again, and the messages back, in order.
    assert await stores.workers.count(parent=actor_id) == 1
    assert await scheduler_inbox(hub, settings.redis.key_prefix).length() == 1
    assert await known_tenants(platform_redis, settings.redis.key_prefix) == {
        settings.stores.tenant
    }
    # Read by a hub opened after the flush, as a restarted worker's would be (a hub keeps
    # in mind the consumer groups it made, and FLUSHDB took them away).
    async with open_hub(platform_redis, namespace=settings.redis.key_prefix) as fresh:
        first, second = await _take_all(
            mailbox_of(fresh, settings.redis.key_prefix, settings.stores.tenant, actor_id)
        )
    assert (first.execution_id, first.body, first.content_type) == (waiting_text, "second", "str")
    assert first.environment == {"N": "2"}
    assert first.username == actor["owner"]
    assert (second.execution_id, second.body) == (waiting_binary, BINARY)
    assert second.content_type == "application/octet-stream"


async def test_restore_never_overwrites_live_state(
    client, hub, platform_redis, settings, storage, tmp_path
):
    await push_bundle(client, tmp_path)
    actor_id = (await create_actor(client))["id"]
    await _send(client, actor_id, json={"message": "one"})
    await _drain_all(hub, settings, storage)
    await platform_redis.flushdb()
    assert (await restore(settings, platform_redis, storage)).requeued == 1
    stores = Stores.open(platform_redis, settings)
    await stores.actors.update(actor_id, description="changed while live")

    again = await restore(settings, platform_redis, storage)

    assert again.skipped == "live"
    assert again.summary() == ""
    assert (await stores.actors.get(actor_id)).description == "changed while live"
    mailbox = mailbox_of(hub, settings.redis.key_prefix, settings.stores.tenant, actor_id)
    assert await mailbox.length() == 1
    assert await stores.workers.count(parent=actor_id) == 1


async def test_restore_with_nothing_stored_does_nothing(platform_redis, settings, storage):
    report = await restore(settings, platform_redis, storage)
    assert report.skipped == "empty"
    assert await known_tenants(platform_redis, settings.redis.key_prefix) == set()


async def test_purged_messages_are_not_run_again_after_a_restore(
    client, hub, platform_redis, settings, storage, tmp_path
):
    await push_bundle(client, tmp_path)
    actor_id = (await create_actor(client))["id"]
    purged = await _send(client, actor_id, json={"message": "never mind"})
    answer = await client.delete(f"/actors/{actor_id}/messages")
    assert answer.json()["result"]["purged"] == 1, answer.text
    await _drain_all(hub, settings, storage)
    await platform_redis.flushdb()

    report = await restore(settings, platform_redis, storage)

    assert (report.requeued, report.history) == (0, 1)
    execution = await Stores.open(platform_redis, settings).executions.get(purged)
    assert execution.status == "ABORTED"


async def test_write_back_keeps_actors_but_not_waiting_messages(
    hub, platform_redis, settings, storage, admin_token, tmp_path
):
    write_back = attrs.evolve(
        settings, persistence=attrs.evolve(settings.persistence, write_through=False)
    )
    async with (
        serve_api(create_app(write_back), "127.0.0.1", 0) as url,
        httpx.AsyncClient(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {admin_token}"}
        ) as client,
    ):
        await push_bundle(client, tmp_path)
        actor_id = (await create_actor(client))["id"]
        await _send(client, actor_id, json={"message": "lost with Redis"})
    await _drain_all(hub, settings, storage)
    assert await storage.count(kind="descriptor") == 0
    await platform_redis.flushdb()

    report = await restore(write_back, platform_redis, storage)

    assert (report.actors, report.requeued) == (1, 0)
    assert await Stores.open(platform_redis, settings).actors.exists(actor_id)


async def test_aborted_executions_are_not_run_again_after_a_restore(
    client, hub, platform_redis, settings, storage, tmp_path
):
    await push_bundle(client, tmp_path)
    actor_id = (await create_actor(client))["id"]
    aborted = await _send(client, actor_id, json={"message": "stop that"})
    answer = await client.delete(f"/actors/{actor_id}/executions/{aborted}")
    assert answer.status_code == 200, answer.text
    await _drain_all(hub, settings, storage)
    await platform_redis.flushdb()

    report = await restore(settings, platform_redis, storage)

    assert (report.requeued, report.history) == (0, 1)
    execution = await Stores.open(platform_redis, settings).executions.get(aborted)
    assert execution.status == "ABORTED"


async def test_the_janitor_deletes_a_message_with_its_execution(storage):
    # A message left behind by a deleted outcome would look unfinished to a restore.
    policy = JanitorPolicy(finished_longevity=3600, failed_longevity=7200)
    for execution_id, status in (("ok", "COMPLETE"), ("bad", "ERROR"), ("new", "RUNNING")):
        document = {"actor_id": "a1", "status": status}
        await storage.store(
            [
                EntityRecord.of("descriptor", "a1", execution_id, document),
                EntityRecord.of("outcome", "a1", execution_id, document),
            ]
        )
    await sweep(storage, policy, now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=7201))
    remaining = await storage.query(kind="descriptor")
    assert [r.id for r in remaining] == ["new"]
    assert sorted(r.id for r in await storage.query(kind="outcome")) == ["new", "ok"]


async def test_a_message_an_actor_sends_is_written_through_too(
    hub, platform_redis, settings, storage, tmp_path
):
    from abaco.actors.ids import new_id
    from abaco.actors.mailbox import submit
    from abaco.actors.models import Actor
    from tests.actors.test_worker import _bundle, start_worker, wait_execution

    stores = Stores.open(platform_redis, settings)
    sender, target = (
        Actor(id=new_id(), name=name, owner="alice", image="org.example/echo:1.0.0")
        for name in ("sender", "target")
    )
    for actor in (sender, target):
        await stores.actors.put(actor)
    mailbox = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, sender.id)
    async with trio.open_nursery() as nursery:
        worker = await start_worker(nursery, settings, platform_redis, sender, _bundle(tmp_path))
        execution = await submit(stores, mailbox, actor_id=sender.id, body=f"tell:{target.id}:hi")
        await wait_execution(stores, execution.id, ExecutionStatus.COMPLETE)
        worker.stopping.set()
    await _drain_all(hub, settings, storage)

    (sent,) = await storage.query(kind="descriptor", group=target.id)
    document = json.loads(sent.json)
    assert (document["actor_id"], document["message"]["body"]) == (target.id, "hi")
    assert document["message"]["username"] == ""


# `abaco up`, stopped, its Valkey data deleted, and started again ----------------------------


async def _stored_messages(state):
    async with open_storage(f"sqlite:///{state / 'records.db'}") as records:
        return await records.count(kind="descriptor")


@pytest.mark.slow
async def test_abaco_up_restores_actors_and_unfinished_work_after_losing_valkey(tmp_path):
    import secrets
    import shutil
    import signal

    from tests.e2e._steps import finished, result
    from tests.e2e.conftest import FAST, push_echo
    from tests.test_cli import _free_port, _healthy, _run_up, _stop

    state = tmp_path / "state"
    port = _free_port()
    token = secrets.token_urlsafe(16)
    env = {
        **FAST,
        "ABACO__REDIS__URL": "",
        "ABACO__STATE__DIR": str(state),
        "ABACO__API__PORT": str(port),
        "ABACO__AUTH__ADMIN_TOKEN": token,
        "ABACO__WORKER__STOP_DEADLINE": "1",
        "ABACO__LOGGING__LEVEL": "warning",
    }
    api = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as http:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                up = await nursery.start(_run_up, tmp_path, env)
            assert "restored" not in up.stdout.decode()
            await _healthy(api)
            await push_echo(http, tmp_path)
            actor = await result(
                await http.post(
                    "/actors", json={"image": "org.example/echo:1.0.0", "max_workers": 1}
                )
            )
            sent = []
            for message in ("sleep:2", "after the sleep"):
                answer = await http.post(
                    f"/actors/{actor['id']}/messages", json={"message": message}
                )
                sent.append((await result(answer))["execution_id"])

            async def both_stored():
                return await _stored_messages(state) == 2

            await _eventually(both_stored, timeout=30)
            assert await _stop(up, signal.SIGINT) == 0, up.output

        shutil.rmtree(state / "valkey")  # Valkey's data is gone; records.db is not

        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                up = await nursery.start(_run_up, tmp_path, env)
            assert "restored     1 actor, " in up.stdout.decode(), up.output
            await _healthy(api)
            restored = await result(await http.get(f"/actors/{actor['id']}"))
            assert restored["image"] == actor["image"]
            try:
                for execution_id in sent:
                    execution = await finished(http, actor["id"], execution_id, timeout=90)
                    assert execution["status"] == "COMPLETE", execution
            except BaseException:
                # Shown by pytest with the failure: where the platform got stuck.
                for path in ("", "/workers", "/executions"):
                    print((await http.get(f"/actors/{actor['id']}{path}")).text)
                print(up.output)
                raise
            logs = await result(await http.get(f"/actors/{actor['id']}/executions/{sent[1]}/logs"))
            assert "echo after the sleep" in logs["logs"]
            assert await _stop(up, signal.SIGINT) == 0, up.output
