"""The cron actor's passes on a real Valkey: what is due is sent once, however many pass."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.actors.models import Actor
from abaco.api.cron import instances
from abaco.channels import open_hub
from abaco.control import remember_tenant
from abaco.cron import CRON_MESSAGE
from abaco.cron_actor import CRON_USER, TickReport, run_cron, tick_once
from abaco.stores import Stores

NOW = datetime(2024, 3, 5, 7, 42, 13, tzinfo=UTC)


@pytest.fixture
async def hub(redis, settings):
    async with open_hub(redis, namespace=settings.redis.key_prefix) as opened:
        yield opened


async def scheduled(redis, settings, *, tenant=None, **fields) -> Actor:
    """An actor stored with cron fields, in a tenant the cron visits."""
    stores = Stores.open(redis, settings, tenant)
    actor = Actor(id=new_id(), name="c", owner="alice", image="x/y:1", tenant=stores.tenant)
    actor = attrs.evolve(actor, **fields)
    await stores.actors.create(actor)
    await remember_tenant(redis, settings.redis.key_prefix, stores.tenant)
    return actor


async def cron_executions(stores: Stores, actor_id: str) -> list:
    page = await stores.executions.list(parent=actor_id, limit=1000)
    return [e for e in page.items if e.executor == CRON_USER]


async def test_a_due_run_is_sent_as_abacos_cron_message_and_the_next_run_set(
    redis, settings, hub, stores
):
    actor = await scheduled(
        redis, settings, cron_schedule="now + 1 hour", cron_on=True, cron_next_ex="2024-3-5 7"
    )
    report = await tick_once(settings, redis, hub, now=NOW)
    assert report == TickReport(sent=1)
    [execution] = await cron_executions(stores, actor.id)
    assert execution.status.name == "SUBMITTED"
    mailbox = mailbox_of(hub, settings.redis.key_prefix, stores.tenant, actor.id)
    [delivery] = await mailbox.get_many(10, timeout=1)
    message = MailboxMessage.from_wire(delivery.message)
    assert (message.body, message.content_type, message.username) == (
        CRON_MESSAGE,
        "str",
        CRON_USER,
    )
    assert message.execution_id == execution.id
    assert (await stores.actors.get(actor.id)).cron_next_ex == "2024-3-5 8"
    # A first worker was asked for, as a POST would.
    assert await stores.workers.count(parent=actor.id) == 1
    # Not due again within the hour.
    assert await tick_once(settings, redis, hub, now=NOW) == TickReport()


async def test_many_passes_at_once_send_one_message_per_run(redis, settings, hub, stores):
    actor = await scheduled(
        redis,
        settings,
        cron_schedule="now + 1 minute",
        cron_on=True,
        cron_next_ex="2024-3-5 7:42",
    )
    reports: list[TickReport] = []

    async def one_pass() -> None:
        reports.append(await tick_once(settings, redis, hub, now=NOW))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one_pass)
    assert sum(r.sent for r in reports) == 1
    assert sum(r.lost for r in reports) == 7
    assert len(await cron_executions(stores, actor.id)) == 1
    assert (await stores.actors.get(actor.id)).cron_next_ex == "2024-3-5 7:43"


async def test_runs_missed_while_no_cron_ran_are_sent_once_and_the_schedule_resumes(
    redis, settings, hub, stores
):
    actor = await scheduled(
        redis,
        settings,
        cron_schedule="2024-03-01 00 + 6 hours",
        cron_on=True,
        cron_next_ex="2024-3-1 0",
    )
    assert (await tick_once(settings, redis, hub, now=NOW)).sent == 1
    assert len(await cron_executions(stores, actor.id)) == 1
    assert (await stores.actors.get(actor.id)).cron_next_ex == "2024-3-5 12"


async def test_with_cron_off_a_due_run_is_passed_over_and_nothing_sent(
    redis, settings, hub, stores
):
    """Abaco's cron moves cron_next_ex on when cron_on is false, sending nothing."""
    actor = await scheduled(
        redis, settings, cron_schedule="*/5 * * * *", cron_on=False, cron_next_ex="2024-3-5 7:40"
    )
    assert await tick_once(settings, redis, hub, now=NOW) == TickReport(passed=1)
    assert await cron_executions(stores, actor.id) == []
    assert (await stores.actors.get(actor.id)).cron_next_ex == "2024-3-5 7:45"


async def test_actors_without_a_due_run_are_left_alone(redis, settings, hub, stores):
    later = await scheduled(
        redis, settings, cron_schedule="now + 1 hour", cron_on=True, cron_next_ex="2024-3-5 8"
    )
    plain = await scheduled(redis, settings)
    assert await tick_once(settings, redis, hub, now=NOW) == TickReport()
    assert (await stores.actors.get(later.id)).cron_next_ex == "2024-3-5 8"
    assert (await stores.actors.get(plain.id)).cron_next_ex is None


async def test_every_known_tenant_is_visited(redis, settings, hub):
    fields = {"cron_schedule": "now + 1 day", "cron_on": True, "cron_next_ex": "2024-3-5 0"}
    first = await scheduled(redis, settings, tenant="tacc", **fields)
    second = await scheduled(redis, settings, tenant="sd2e", **fields)
    assert (await tick_once(settings, redis, hub, now=NOW)).sent == 2
    for actor in (first, second):
        assert len(await cron_executions(Stores.open(redis, settings, actor.tenant), actor.id)) == 1


async def test_a_full_mailbox_loses_the_run_but_not_the_schedule(redis, settings, hub, stores):
    tight = attrs.evolve(settings, api=attrs.evolve(settings.api, max_queued_messages=1))
    actor = await scheduled(
        redis, tight, cron_schedule="now + 1 minute", cron_on=True, cron_next_ex="2024-3-5 7:41"
    )
    assert (await tick_once(tight, redis, hub, now=NOW)).sent == 1
    later = NOW.replace(minute=43)
    assert await tick_once(tight, redis, hub, now=later) == TickReport(failed=1)
    assert len(await cron_executions(stores, actor.id)) == 1
    assert (await stores.actors.get(actor.id)).cron_next_ex == "2024-3-5 7:44"


async def test_a_running_cron_notes_its_passes_and_removes_its_entry_when_stopped(redis, settings):
    fast = attrs.evolve(settings, cron=attrs.evolve(settings.cron, tick=0.05))
    prefix = fast.redis.key_prefix
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_cron(fast, redis, instance_id="one", task_status=task_status)
        )
        with trio.fail_after(10):
            while True:
                if await instances(redis, prefix):
                    break
                await trio.sleep(0.02)
        [noted] = await instances(redis, prefix)
        assert (noted["id"], noted["tick"], noted["sent"]) == ("one", 0.05, 0)
        nursery.cancel_scope.cancel()
    assert await instances(redis, prefix) == []
