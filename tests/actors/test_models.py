"""Records: defaults, validation, and exact round trips through plain values."""

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import cattrs
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from abaco.actors.models import (
    DEFAULT_TENANT,
    Actor,
    Alias,
    Execution,
    Nonce,
    Permission,
    PermissionLevel,
    Worker,
    converter,
    fields_of,
    from_dict,
    to_dict,
    utcnow,
)
from abaco.actors.states import ActorStatus, ExecutionStatus, WorkerStatus
from abaco.errors import BadRequest

RECORDS = [Actor, Worker, Execution, Nonce, Alias, Permission]

texts = st.text(max_size=12)
optional_texts = st.none() | texts
moments = st.datetimes(timezones=st.just(UTC))
optional_moments = st.none() | moments
counts = st.integers(0, 2**63 - 1)
optional_counts = st.none() | counts
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
levels = st.sampled_from([PermissionLevel.READ, PermissionLevel.EXECUTE, PermissionLevel.UPDATE])

actors = st.builds(
    Actor,
    id=texts,
    name=texts,
    owner=texts,
    image=texts,
    description=texts,
    default_environment=st.dictionaries(texts, texts, max_size=4),
    status=st.sampled_from(ActorStatus),
    status_message=texts,
    stateless=st.booleans(),
    type=st.sampled_from(["none", "bin"]),
    token=st.booleans(),
    hints=st.lists(texts, max_size=4),
    link=texts,
    webhook=texts,
    max_workers=optional_counts,
    mem_limit=optional_texts,
    max_cpus=optional_counts,
    use_container_uid=st.booleans(),
    privileged=st.booleans(),
    queue=texts,
    log_ex=optional_counts,
    cron_schedule=optional_texts,
    cron_on=st.booleans(),
    cron_next_ex=optional_texts,
    mounts=st.lists(st.dictionaries(texts, texts, max_size=3), max_size=3),
    uid=optional_texts,
    gid=optional_texts,
    revision=st.integers(1, 2**63 - 1),
    tenant=texts,
    api_server=texts,
    create_time=moments,
    last_update_time=moments,
)
workers = st.builds(
    Worker,
    id=texts,
    actor_id=texts,
    tenant=texts,
    ch_name=texts,
    status=st.sampled_from(WorkerStatus),
    location=texts,
    host_id=texts,
    image=texts,
    pid=optional_counts,
    create_time=moments,
    last_execution_time=optional_moments,
    last_health_check_time=optional_moments,
)
executions = st.builds(
    Execution,
    id=texts,
    actor_id=texts,
    worker_id=optional_texts,
    executor=texts,
    status=st.sampled_from(ExecutionStatus),
    message_received_time=moments,
    start_time=optional_moments,
    finish_time=optional_moments,
    final_state=st.none() | st.dictionaries(texts, json_values, max_size=4),
    runtime=counts,
    cpu=counts,
    io=counts,
    exit_code=st.none() | st.integers(-(2**63), 2**63 - 1),
    status_message=texts,
    tenant=texts,
)


@st.composite
def nonces(draw):
    target = draw(st.sampled_from(["actor_id", "alias"]))
    max_uses = draw(st.integers(-1, 2**31))
    current_uses = draw(st.integers(0, max(max_uses, 0) if max_uses >= 0 else 2**31))
    return Nonce(
        id=draw(texts),
        owner=draw(texts),
        **{target: draw(texts)},
        tenant=draw(texts),
        level=draw(levels),
        max_uses=max_uses,
        current_uses=current_uses,
        create_time=draw(moments),
        last_use_time=draw(optional_moments),
        description=draw(texts),
        roles=draw(st.lists(texts, max_size=4)),
        api_server=draw(texts),
    )


aliases = st.builds(
    Alias, alias=texts, actor_id=texts, owner=texts, tenant=texts, description=texts
)
permissions = st.builds(
    Permission,
    resource_id=texts,
    user=texts,
    level=st.sampled_from(PermissionLevel),
    tenant=texts,
)
records = st.one_of(actors, workers, executions, nonces(), aliases, permissions)


# -- round trips ---------------------------------------------------------------------------


@given(records)
def test_round_trip_through_the_converter(record):
    plain = converter.unstructure(record)
    assert converter.structure(plain, type(record)) == record
    assert from_dict(type(record), to_dict(record)) == record


@given(records)
def test_plain_form_survives_json_and_msgpack(record):
    plain = to_dict(record)
    assert json.loads(json.dumps(plain)) == plain
    assert msgpack.unpackb(msgpack.packb(plain)) == plain
    assert from_dict(type(record), json.loads(json.dumps(plain))) == record


@given(records)
def test_plain_form_holds_only_plain_types(record):
    def plain(value):
        if isinstance(value, dict):
            return all(type(k) is str and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return value is None or type(value) in (str, int, bool)

    assert plain(to_dict(record))


def test_datetimes_are_iso_8601_with_z():
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    actor = Actor(id="a", name="n", owner="o", image="i", create_time=moment)
    plain = to_dict(actor)
    assert plain["create_time"] == plain["last_update_time"] == "2024-05-06T07:08:09.123456Z"
    assert plain["status"] == "SUBMITTED"


def test_other_offsets_are_read_as_utc():
    plain = to_dict(Actor(id="a", name="n", owner="o", image="i"))
    plain["create_time"] = "2024-05-06T12:08:09+05:00"
    created = from_dict(Actor, plain).create_time
    assert created == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert created.utcoffset() == timedelta(0)


def test_levels_travel_by_name():
    permission = Permission(resource_id="a", user="u", level=PermissionLevel.EXECUTE)
    assert to_dict(permission) == {
        "resource_id": "a",
        "user": "u",
        "level": "EXECUTE",
        "tenant": DEFAULT_TENANT,
    }


# -- rejection -----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", [actors, workers, executions, nonces(), aliases, permissions])
@given(data=st.data())
def test_unknown_keys_are_rejected(strategy, data):
    record = data.draw(strategy)
    plain = {**to_dict(record), "surprise": 1}
    with pytest.raises(cattrs.BaseValidationError):
        converter.structure(plain, type(record))
    with pytest.raises(BadRequest, match="surprise"):
        from_dict(type(record), plain)


def actor_dict(**changes):
    return {**to_dict(Actor(id="a", name="n", owner="o", image="i")), **changes}


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"name": None}, "name"),
        ({"hints": "abc"}, "hints"),
        ({"default_environment": {"A": 1}}, "default_environment"),
        ({"mounts": [{"host_path": 5}]}, "mounts"),
        ({"status": "RUNNING"}, "status"),
        ({"status": "ready"}, "status"),
        ({"stateless": "false"}, "stateless"),
        ({"revision": "2"}, "revision"),
        ({"revision": True}, "revision"),
        ({"revision": 0}, "revision"),
        ({"max_workers": -1}, "max_workers"),
        ({"type": "json"}, "type"),
        ({"create_time": "2024-05-06T07:08:09"}, "create_time"),
        ({"create_time": "yesterday"}, "create_time"),
        ({"create_time": 1715000000}, "create_time"),
    ],
)
def test_bad_fields_are_rejected_by_name(changes, where):
    with pytest.raises(BadRequest, match=where):
        from_dict(Actor, actor_dict(**changes))


def test_missing_fields_are_named():
    with pytest.raises(BadRequest, match=r"\$\.owner"):
        from_dict(Alias, {"alias": "x", "actor_id": "a"})


def test_non_mapping_is_rejected():
    with pytest.raises(BadRequest, match="expected an object"):
        from_dict(Alias, ["alias", "x"])  # type: ignore[arg-type]


# -- construction --------------------------------------------------------------------------


def test_minimal_actor_has_abaco_defaults():
    actor = Actor(id="a", name="n", owner="o", image="i")
    assert actor.status is ActorStatus.SUBMITTED
    assert actor.stateless is True
    assert actor.type == "none"
    assert actor.queue == "default"
    assert actor.revision == 1
    assert actor.hints == []
    assert actor.mounts == []
    assert actor.default_environment == {}
    assert actor.tenant == DEFAULT_TENANT
    assert actor.last_update_time == actor.create_time
    assert actor.create_time.tzinfo is not None


def test_default_collections_are_not_shared():
    first = Actor(id="a", name="n", owner="o", image="i")
    second = Actor(id="b", name="n", owner="o", image="i")
    assert first.hints is not second.hints


def test_records_are_frozen():
    actor = Actor(id="a", name="n", owner="o", image="i")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        actor.status = ActorStatus.READY  # type: ignore[misc]
    assert attrs.evolve(actor, status=ActorStatus.READY).status is ActorStatus.READY


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (Actor, {"id": "a", "name": "n", "owner": "o", "image": "i", "status": "READY"}),
        (Actor, {"id": "a", "name": "n", "owner": "o", "image": "i", "status": WorkerStatus.READY}),
        (
            Actor,
            {
                "id": "a",
                "name": "n",
                "owner": "o",
                "image": "i",
                "create_time": datetime(2024, 1, 1),
            },
        ),
        (
            Actor,
            {
                "id": "a",
                "name": "n",
                "owner": "o",
                "image": "i",
                "create_time": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))),
            },
        ),
        (Worker, {"id": "w", "actor_id": "a", "status": ExecutionStatus.RUNNING}),
        (Worker, {"id": "w", "actor_id": "a", "pid": -1}),
        (Execution, {"id": "e", "actor_id": "a", "runtime": -1}),
        (Execution, {"id": "e", "actor_id": "a", "finish_time": datetime(2024, 1, 1)}),
        (Nonce, {"id": "n", "owner": "o"}),
        (Nonce, {"id": "n", "owner": "o", "actor_id": "a", "alias": "x"}),
        (Nonce, {"id": "n", "owner": "o", "actor_id": "a", "level": PermissionLevel.NONE}),
        (Nonce, {"id": "n", "owner": "o", "actor_id": "a", "level": "READ"}),
        (Nonce, {"id": "n", "owner": "o", "actor_id": "a", "max_uses": -2}),
        (Nonce, {"id": "n", "owner": "o", "actor_id": "a", "max_uses": 3, "remaining_uses": 1}),
        (Permission, {"resource_id": "a", "user": "u", "level": 2}),
    ],
)
def test_validators(cls, kwargs):
    with pytest.raises((TypeError, ValueError)):
        cls(**kwargs)


def test_nonce_counts_its_remaining_uses():
    assert Nonce(id="n", owner="o", actor_id="a").remaining_uses == -1
    assert Nonce(id="n", owner="o", alias="x", max_uses=5, current_uses=2).remaining_uses == 3
    assert Nonce(id="n", owner="o", alias="x").level is PermissionLevel.EXECUTE


def test_permission_levels_are_ordered():
    assert PermissionLevel.NONE < PermissionLevel.READ < PermissionLevel.EXECUTE
    assert PermissionLevel.EXECUTE < PermissionLevel.UPDATE
    assert str(PermissionLevel.UPDATE) == "UPDATE"


def test_fields_use_abaco_names():
    assert fields_of(Execution) == (
        "id",
        "actor_id",
        "worker_id",
        "executor",
        "status",
        "message_received_time",
        "start_time",
        "finish_time",
        "final_state",
        "runtime",
        "cpu",
        "io",
        "exit_code",
        "status_message",
        "tenant",
    )
    assert {"default_environment", "stateless", "max_workers", "cron_next_ex", "log_ex"} <= set(
        fields_of(Actor)
    )


@pytest.mark.parametrize("cls", RECORDS)
def test_every_record_has_a_schema_version_and_a_docstring(cls):
    assert cls.SCHEMA_VERSION == 1
    assert "SCHEMA_VERSION" not in fields_of(cls)
    assert cls.__doc__
    assert "\n" not in cls.__doc__.strip()


def test_utcnow_is_aware():
    now = utcnow()
    assert now.utcoffset() == timedelta(0)
