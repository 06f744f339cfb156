"""The typed stores against a real server: operations, pagination, expiry, concurrency."""

from __future__ import annotations

import attrs
import pytest
import trio

from abaco.actors.ids import new_id
from abaco.actors.mailbox import control_of
from abaco.actors.models import Actor, Alias, Execution, PermissionLevel, Worker
from abaco.actors.states import ActorStatus, ExecutionStatus
from abaco.channels import open_hub
from abaco.errors import BadRequest, Conflict, NotFound, SchemaError
from abaco.stores import Stores


def _actor(**kw) -> Actor:
    fields = {"id": new_id(), "name": "echo", "owner": "alice", "image": "demo/echo:1.0"}
    fields.update(kw)
    return Actor(**fields)


async def test_put_then_get_returns_an_equal_record(stores: Stores):
    actor = _actor(default_environment={"A": "1"}, hints=["sync"], max_workers=3)
    revision = await stores.actors.put(actor)
    assert revision == 1
    assert await stores.actors.get(actor.id) == actor


async def test_get_of_unknown_id_raises_not_found(stores: Stores):
    with pytest.raises(NotFound, match="no actor with id 'nope'"):
        await stores.actors.get("nope")


async def test_create_refuses_an_existing_id_and_keeps_the_first(stores: Stores):
    actor = _actor()
    await stores.actors.create(actor)
    with pytest.raises(Conflict, match="exists already"):
        await stores.actors.create(attrs.evolve(actor, name="other"))
    assert (await stores.actors.get(actor.id)).name == "echo"


async def test_update_sets_fields_atomically_and_bumps_the_revision(stores: Stores):
    actor = _actor()
    await stores.actors.put(actor)
    updated = await stores.actors.update(
        actor.id, status=ActorStatus.READY, status_message="ok", hints=["a", "b"]
    )
    assert updated == attrs.evolve(
        actor, status=ActorStatus.READY, status_message="ok", hints=["a", "b"]
    )
    assert await stores.actors.get(actor.id) == updated
    _, revision = await stores.actors.get_with_revision(actor.id)
    assert revision == 2


async def test_update_rejects_unknown_fields_and_bad_types_and_stores_nothing(stores: Stores):
    actor = _actor()
    await stores.actors.put(actor)
    with pytest.raises(BadRequest, match="no updatable field 'colour'"):
        await stores.actors.update(actor.id, colour="red")
    with pytest.raises(BadRequest, match=r"Actor\.max_workers: bad value"):
        await stores.actors.update(actor.id, max_workers="many")
    with pytest.raises(BadRequest, match="no updatable field 'id'"):
        await stores.actors.update(actor.id, id="other")
    assert await stores.actors.get(actor.id) == actor


async def test_update_of_a_missing_record_raises_not_found(stores: Stores):
    with pytest.raises(NotFound):
        await stores.actors.update("missing", name="x")


async def test_increment_adds_atomically(stores: Stores):
    execution = Execution(id=new_id(), actor_id="a1")
    await stores.executions.put(execution)
    assert await stores.executions.increment(execution.id, "io", 5) == 5
    assert await stores.executions.increment(execution.id, "io") == 6
    assert (await stores.executions.get(execution.id)).io == 6
    with pytest.raises(BadRequest, match="is an int"):
        await stores.executions.increment(execution.id, "io", 0.5)
    with pytest.raises(BadRequest, match="not a number field"):
        await stores.executions.increment(execution.id, "status")


async def test_delete_removes_the_record_and_its_index_entries(stores: Stores):
    execution = Execution(id=new_id(), actor_id="a1")
    await stores.executions.put(execution)
    assert await stores.executions.count(parent="a1") == 1
    assert await stores.executions.delete(execution.id) is True
    assert await stores.executions.delete(execution.id) is False
    assert await stores.executions.count() == 0
    assert await stores.executions.count(parent="a1") == 0
    assert not await stores.executions.exists(execution.id)


async def test_a_deleted_worker_takes_its_control_queue_with_it(redis, settings, stores: Stores):
    worker = Worker(id=new_id(), actor_id="a1", tenant=stores.tenant)
    await stores.workers.put(worker)
    async with open_hub(redis) as hub:
        control = control_of(hub, settings.redis.key_prefix, stores.tenant, worker.id)
        await control.put({"kind": "stop"})
        assert await redis.exists(control.address)
        assert await stores.workers.delete(worker.id) is True
        assert not await redis.exists(control.address)
        # A worker still reading it (paused while it was deleted) goes on, from empty.
        await control.put({"kind": "late"})
        assert (await control.get(timeout=1)).message == {"kind": "late"}


async def test_list_pages_through_every_record_in_id_order(stores: Stores):
    ids = [new_id() for _ in range(23)]
    for record_id in reversed(ids):
        await stores.actors.put(_actor(id=record_id))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await stores.actors.list(cursor=cursor, limit=5)
        seen += [a.id for a in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(ids) == ids
    assert pages == 5
    assert await stores.actors.count() == 23


async def test_list_by_parent_only_shows_that_parents_records(stores: Stores):
    for actor_id, n in (("a1", 3), ("a2", 2)):
        for _ in range(n):
            await stores.executions.put(Execution(id=new_id(), actor_id=actor_id))
    page = await stores.executions.list(parent="a1")
    assert {e.actor_id for e in page.items} == {"a1"}
    assert len(page.items) == 3
    assert page.next_cursor is None
    assert await stores.executions.count(parent="a2") == 2
    assert await stores.executions.count() == 5


async def test_list_rejects_a_zero_limit(stores: Stores):
    with pytest.raises(BadRequest):
        await stores.actors.list(limit=0)


async def test_records_put_with_a_ttl_expire_and_leave_the_listing(stores: Stores):
    keep = _actor()
    await stores.actors.put(keep)
    for _ in range(3):
        await stores.actors.put(_actor(), ttl=0.05)
    assert await stores.actors.count() == 4
    await trio.sleep(0.2)
    page = await stores.actors.list(limit=2)
    # The first page examined two expired ids; following the cursor reaches the live one.
    found = list(page.items)
    while page.next_cursor is not None:
        page = await stores.actors.list(cursor=page.next_cursor, limit=2)
        found += page.items
    assert found == [keep]
    assert await stores.actors.count() == 1


async def test_expire_makes_an_existing_record_expire(stores: Stores):
    actor = _actor()
    await stores.actors.put(actor)
    await stores.actors.expire(actor.id, 0.05)
    await trio.sleep(0.2)
    assert not await stores.actors.exists(actor.id)
    with pytest.raises(NotFound):
        await stores.actors.expire("missing", 1)


async def test_compare_and_set_refuses_a_stale_revision(stores: Stores):
    actor = _actor()
    await stores.actors.put(actor)
    _, revision = await stores.actors.get_with_revision(actor.id)
    await stores.actors.update(actor.id, description="someone else")
    with pytest.raises(Conflict, match="changed"):
        await stores.actors.compare_and_set(attrs.evolve(actor, name="mine"), revision)
    assert (await stores.actors.get(actor.id)).description == "someone else"


async def test_fifty_concurrent_transactions_on_one_record_lose_none(stores: Stores):
    execution = Execution(id=new_id(), actor_id="a1")
    await stores.executions.put(execution)

    async def bump() -> None:
        await stores.executions.transaction(
            execution.id, lambda e: attrs.evolve(e, cpu=e.cpu + 1, io=e.io + 2)
        )

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(bump)
    final = await stores.executions.get(execution.id)
    assert (final.cpu, final.io) == (50, 100)


async def test_fifty_concurrent_increments_lose_none(stores: Stores):
    execution = Execution(id=new_id(), actor_id="a1")
    await stores.executions.put(execution)
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(stores.executions.increment, execution.id, "runtime", 1)
    assert (await stores.executions.get(execution.id)).runtime == 50


async def test_transaction_gives_up_with_conflict_when_it_always_loses(stores: Stores, settings):
    actor = _actor()
    await stores.actors.put(actor)

    async def meddle(a: Actor) -> Actor:
        await stores.actors.update(a.id, description="interference")
        return attrs.evolve(a, name="never")

    with pytest.raises(Conflict, match="gave up after"):
        await stores.actors.transaction(actor.id, meddle)


async def test_transaction_may_not_change_the_id(stores: Stores):
    actor = _actor()
    await stores.actors.put(actor)
    with pytest.raises(BadRequest):
        await stores.actors.transaction(actor.id, lambda a: attrs.evolve(a, id="other"))


async def test_a_record_of_a_newer_schema_is_refused_not_misread(stores: Stores, redis):
    actor = _actor()
    await stores.actors.put(actor)
    await redis.hset(stores.actors.key(actor.id), {"_v": b"99"})
    with pytest.raises(SchemaError, match="schema version 99"):
        await stores.actors.get(actor.id)


async def test_tenants_do_not_see_each_others_records(redis, settings):
    one = Stores.open(redis, settings, "one")
    two = Stores.open(redis, settings, "two")
    actor = _actor()
    await one.actors.put(actor)
    with pytest.raises(NotFound):
        await two.actors.get(actor.id)
    assert await two.actors.count() == 0
    assert one.actors.key(actor.id).startswith(f"{settings.redis.key_prefix}:one:actor:")


async def test_a_tenant_name_with_a_colon_is_refused(redis, settings):
    with pytest.raises(BadRequest, match="tenant"):
        Stores.open(redis, settings, "a:b")


async def test_workers_aliases_and_nonces_round_trip(stores: Stores):
    worker = Worker(id=new_id(), actor_id="a1")
    alias = Alias(alias="my.alias", actor_id="a1", owner="alice")
    await stores.workers.put(worker)
    await stores.aliases.create(alias)
    assert await stores.workers.get(worker.id) == worker
    assert await stores.aliases.get("my.alias") == alias
    with pytest.raises(Conflict):
        await stores.aliases.create(alias)
    assert [w.id for w in (await stores.workers.list(parent="a1")).items] == [worker.id]


async def test_permissions_grant_change_and_revoke(stores: Stores):
    await stores.permissions.grant("a1", "bob", PermissionLevel.READ)
    await stores.permissions.grant("a1", "carol", PermissionLevel.UPDATE)
    assert await stores.permissions.level("a1", "bob") == PermissionLevel.READ
    await stores.permissions.grant("a1", "bob", PermissionLevel.EXECUTE)
    assert await stores.permissions.all("a1") == {
        "bob": PermissionLevel.EXECUTE,
        "carol": PermissionLevel.UPDATE,
    }
    await stores.permissions.grant("a1", "bob", PermissionLevel.NONE)
    assert await stores.permissions.level("a1", "bob") == PermissionLevel.NONE
    await stores.permissions.delete("a1")
    assert await stores.permissions.all("a1") == {}


async def test_logs_append_read_and_keep_the_tail(stores: Stores):
    logs = stores.logs
    execution_id = new_id()
    await logs.append(execution_id, "hello ")
    await logs.append(execution_id, "world\n")
    text = await logs.read(execution_id)
    assert (text.text, text.dropped_bytes, text.complete) == ("hello world\n", 0, False)
    big = "x" * logs.max_bytes
    await logs.append(execution_id, "tail")
    await logs.append(execution_id, big)
    kept = await logs.read(execution_id)
    assert kept.text == big
    assert kept.dropped_bytes == len("hello world\ntail")


async def test_logs_expire(stores: Stores, redis):
    execution_id = new_id()
    await stores.logs.append(execution_id, "line\n", expiry=1)
    ttl = await redis.pttl(f"{stores.actors.key('x').rsplit(':actor:', 1)[0]}:logs:{execution_id}")
    assert 0 < ttl <= 1000


async def test_a_follower_sees_lines_while_they_are_written(stores: Stores):
    execution_id = new_id()
    seen: list[str] = []

    async def follow() -> None:
        seen.extend([chunk async for chunk in stores.logs.follow(execution_id, poll_ms=50)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        for i in range(3):
            await stores.logs.append(execution_id, f"line {i}\n")
            await trio.sleep(0.02)
        await stores.logs.finish(execution_id)
    assert "".join(seen) == "line 0\nline 1\nline 2\n"
    assert (await stores.logs.read(execution_id)).complete


async def test_execution_status_round_trips_as_its_abaco_name(stores: Stores, redis):
    execution = Execution(id=new_id(), actor_id="a1", status=ExecutionStatus.RUNNING)
    await stores.executions.put(execution)
    raw = await redis.hgetall(stores.executions.key(execution.id))
    assert raw[b"status"] == b'"RUNNING"'
    assert raw[b"_v"] == b"1"


async def test_move_follows_the_transition_table(stores: Stores):
    from abaco.errors import InvalidTransition

    execution = Execution(id=new_id(), actor_id="a1")
    await stores.executions.put(execution)
    running = await stores.executions.move(execution.id, ExecutionStatus.RUNNING, worker_id="w1")
    assert (running.status, running.worker_id) == (ExecutionStatus.RUNNING, "w1")
    with pytest.raises(InvalidTransition, match="RUNNING to SUBMITTED"):
        await stores.executions.move(execution.id, ExecutionStatus.SUBMITTED)
    done = await stores.executions.move(execution.id, ExecutionStatus.COMPLETE, exit_code=0)
    assert (await stores.executions.get(execution.id)) == done


async def test_of_two_racing_moves_only_one_wins(stores: Stores):
    from abaco.errors import InvalidTransition

    execution = Execution(id=new_id(), actor_id="a1", status=ExecutionStatus.RUNNING)
    await stores.executions.put(execution)
    outcomes = []

    async def finish(status):
        try:
            await stores.executions.move(execution.id, status)
            outcomes.append(status)
        except InvalidTransition:
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish, ExecutionStatus.COMPLETE)
        nursery.start_soon(finish, ExecutionStatus.ABORTED)
    assert sorted(map(str, outcomes)).count("refused") == 1
    final = await stores.executions.get(execution.id)
    assert final.status in outcomes


async def test_results_come_back_first_in_first_out(stores: Stores):
    execution_id = new_id()
    for data in (b"one", b"two", b"\x00three"):
        await stores.results.push(execution_id, data)
    assert await stores.results.count(execution_id) == 3
    assert [await stores.results.pop(execution_id) for _ in range(4)] == [
        b"one",
        b"two",
        b"\x00three",
        None,
    ]
