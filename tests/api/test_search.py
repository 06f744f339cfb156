"""Search over real HTTP: ``/actors/search/{actors,workers,executions,logs}``.

Actors are made through the API by two users; their executions, workers and logs are
written through the stores, as workers would write them (no spawner is needed to search).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from abaco.actors.ids import new_id
from abaco.actors.models import Execution
from abaco.actors.states import ExecutionStatus
from abaco.auth import Role
from abaco.stores import Stores
from tests.api._helpers import create_actor, push_bundle, user_client

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# (owner, name, executions as (status, runtime, minutes after T0), log text)
PLAN = {
    "alice": (
        "alpha",
        [
            (ExecutionStatus.COMPLETE, 5, 0, "alpha says hello\n"),
            (ExecutionStatus.COMPLETE, 15, 10, "alpha counts 1 2 3\n"),
            (ExecutionStatus.ERROR, 25, 20, "Traceback: alpha failed\n"),
        ],
    ),
    "bob": (
        "bravo",
        [
            (ExecutionStatus.COMPLETE, 35, 30, "bravo says hello\n"),
            (ExecutionStatus.RUNNING, 0, 40, "bravo is working\n"),
        ],
    ),
}


@pytest.fixture
async def users(platform_redis, settings, api_url):
    made = {
        name: await user_client(platform_redis, settings, api_url, name, role)
        for name, role in (
            ("alice", Role.USER),
            ("bob", Role.PRIVILEGED),
            ("carol", Role.LIMITED),
        )
    }
    yield made
    for http in made.values():
        await http.aclose()


@pytest.fixture
async def world(client, users, tmp_path, platform_redis, settings):
    """Two actors (alice's alpha, bob's bravo), each with executions, logs and the worker
    its creation requested."""
    await push_bundle(client, tmp_path)
    st = Stores.open(platform_redis, settings)
    made = {}
    for owner, (name, executions) in PLAN.items():
        actor = await create_actor(users[owner], name=name, description=f"{name} of {owner}")
        ids = []
        for status, runtime, minutes, log in executions:
            received = T0 + timedelta(minutes=minutes)
            execution = Execution(
                id=new_id(),
                actor_id=actor["id"],
                executor=owner,
                status=status,
                message_received_time=received,
                start_time=received + timedelta(seconds=1),
                finish_time=None
                if status is ExecutionStatus.RUNNING
                else received + timedelta(seconds=2),
                runtime=runtime,
                final_state={"max_rss": runtime * 1000, "killed": False},
                tenant=settings.stores.tenant,
            )
            await st.executions.create(execution)
            await st.logs.append(execution.id, log)
            ids.append(execution.id)
        made[owner] = {"actor": actor, "executions": ids}
    return made


async def _search(http, kind, query="", status=200):
    response = await http.get(f"/actors/search/{kind}{'?' + query if query else ''}")
    assert response.status_code == status, response.text
    body = response.json()
    if status != 200:
        assert body["status"] == "error"
        return body["message"]
    return body["result"]


def _ids(result):
    return [r["id"] for r in result["search"]]


async def test_executions_details(client, world):
    """Ports test_search_executions_details: metadata, fields, internals hidden."""
    result = await _search(client, "executions")
    assert result["_metadata"] == {
        "count_returned": 5,
        "record_limit": 100,
        "records_skipped": 0,
        "total_count": 5,
    }
    first = result["search"][0]
    for field in ("_links", "executor", "id", "io", "runtime", "status", "actor_id"):
        assert field in first
    for hidden in ("_id", "permissions", "api_server", "tenant"):
        assert hidden not in first
    assert first["_links"]["logs"].endswith(f"/executions/{first['id']}/logs")
    # Id order, which is creation order.
    assert _ids(result) == world["alice"]["executions"] + world["bob"]["executions"]


async def test_actors_details(client, world):
    """Ports test_search_actors_details."""
    result = await _search(client, "actors")
    assert result["_metadata"]["total_count"] == 2
    first = result["search"][0]
    for field in ("_links", "description", "gid", "hints", "link", "mounts", "name", "owner",
                  "privileged", "status", "token", "image", "create_time"):  # fmt: skip
        assert field in first
    for hidden in ("_id", "permissions", "api_server", "executions", "tenant", "db_id"):
        assert hidden not in first
    assert first["_links"]["self"].endswith(f"/actors/{world['alice']['actor']['id']}")


async def test_workers_details(client, world):
    """Ports test_search_workers_details."""
    result = await _search(client, "workers")
    assert result["_metadata"]["total_count"] == 2
    assert {"status", "id", "actor_id", "ch_name"} <= set(result["search"][0])
    assert "tenant" not in result["search"][0]
    owners = {w["actor_id"] for w in result["search"]}
    assert owners == {world["alice"]["actor"]["id"], world["bob"]["actor"]["id"]}
    found = await _search(client, "workers", "status=REQUESTED")
    assert found["_metadata"]["total_count"] == 2


async def test_logs_details(client, world):
    """Ports test_search_logs_details."""
    result = await _search(client, "logs")
    assert result["_metadata"]["total_count"] == 5
    first = result["search"][0]
    assert first["logs"] == "alpha says hello\n"
    assert first["execution_id"] == world["alice"]["executions"][0]
    assert first["_links"]["self"].endswith(f"/executions/{first['execution_id']}/logs")
    assert first["_links"]["owner"].endswith("/profiles/v2/alice")
    for hidden in ("_id", "permissions", "tenant", "exp"):
        assert hidden not in first
    found = await _search(client, "logs", "logs.like=Traceback")
    assert [r["execution_id"] for r in found["search"]] == [world["alice"]["executions"][2]]
    hello = await _search(client, "logs", "search=hello")
    assert hello["_metadata"]["total_count"] == 2


async def test_each_user_sees_only_what_they_may_read(client, users, world):
    """Ports test_search_permissions_priv and test_search_permissions_limited."""
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    expected = {
        "alice": (1, 3, 1, 3),
        "bob": (1, 2, 1, 2),
        "carol": (0, 0, 0, 0),
    }
    for name, http in (("alice", alice), ("bob", bob), ("carol", carol)):
        counts = [
            (await _search(http, kind))["_metadata"]["total_count"]
            for kind in ("actors", "executions", "workers", "logs")
        ]
        assert tuple(counts) == expected[name], name
    assert _ids(await _search(alice, "executions")) == world["alice"]["executions"]

    # Sharing alpha with bob (READ) lets him find its records; sharing with everyone, carol.
    alpha = world["alice"]["actor"]["id"]
    shared = await alice.post(f"/actors/{alpha}/permissions", json={"user": "bob", "level": "READ"})
    assert shared.status_code == 200, shared.text
    assert (await _search(bob, "executions"))["_metadata"]["total_count"] == 5
    assert (await _search(carol, "actors"))["_metadata"]["total_count"] == 0
    await alice.post(f"/actors/{alpha}/permissions", json={"user": "ABACO_WORLD", "level": "READ"})
    assert (await _search(carol, "executions"))["_metadata"]["total_count"] == 3
    assert (await _search(carol, "logs"))["_metadata"]["total_count"] == 3


async def test_datetime_conditions(client, world):
    """Ports test_search_datetime (start_time standing in for final_state.StartedAt)."""
    assert len((await _search(client, "executions", "start_time.gt=2000-05:00"))["search"]) == 5
    query = "start_time.gt=2000-01-01T01:00:00.000Z"
    assert len((await _search(client, "executions", query))["search"]) == 5
    assert (
        len((await _search(client, "executions", "start_time.lt=2000-01-01T01:00"))["search"]) == 0
    )
    query = "message_received_time.between=2000-01-01T01:00,2200-12-30T23:59:59.999Z"
    assert len((await _search(client, "executions", query))["search"]) == 5
    query = "create_time.between=2000-01-01,2200-01-01"
    assert len((await _search(client, "actors", query))["search"]) == 2
    # Precise bounds: the executions received at T0+10 and T0+20 minutes, in any zone.
    query = "message_received_time.between=2024-05-01T12:05Z,2024-05-01T14:25:00%2B02:00"
    found = await _search(client, "executions", query)
    assert _ids(found) == world["alice"]["executions"][1:]
    assert _ids(await _search(client, "executions", "finish_time=none")) == [
        world["bob"]["executions"][1]
    ]


async def test_exactsearch_and_search(client, world):
    """Ports test_search_exactsearch_search."""
    found = await _search(client, "actors", "exactsearch=bravo of bob")
    assert [a["name"] for a in found["search"]] == ["bravo"]
    found = await _search(client, "actors", "search=nothing bravo")
    assert [a["name"] for a in found["search"]] == ["bravo"]
    # More of the words first: both hold "of", only alpha holds "alpha".
    found = await _search(client, "actors", "search=of alpha")
    assert [a["name"] for a in found["search"]] == ["alpha", "bravo"]
    found = await _search(client, "actors", "exactsearch=NOTATHINGWORD")
    assert found["search"] == []


async def test_in_and_nin(client, world):
    """Ports test_search_in_nin."""
    query = 'status.in=["COMPLETE", "RUNNING"]'
    assert (await _search(client, "executions", query))["_metadata"]["total_count"] == 4
    query = "status.nin=['COMPLETE', 'RUNNING']"
    found = await _search(client, "executions", query)
    assert [e["status"] for e in found["search"]] == ["ERROR"]
    query = "runtime.in=[5, 35]"
    assert (await _search(client, "executions", query))["_metadata"]["total_count"] == 2


async def test_eq_and_neq(client, world):
    """Ports test_search_eq_neq."""
    assert len((await _search(client, "actors", "name=alpha"))["search"]) == 1
    assert len((await _search(client, "actors", "name.eq=alpha"))["search"]) == 1
    assert len((await _search(client, "actors", "name.neq=alpha"))["search"]) == 1
    assert len((await _search(client, "executions", "status=COMPLETE"))["search"]) == 3
    assert len((await _search(client, "executions", "final_state.killed=false"))["search"]) == 5
    assert len((await _search(client, "actors", "stateless=true"))["search"]) == 2


async def test_like_and_nlike(client, world):
    """Ports test_search_like_nlike."""
    assert len((await _search(client, "actors", "description.like=of%20ali"))["search"]) == 1
    assert len((await _search(client, "actors", "description.nlike=^alpha"))["search"]) == 1
    assert len((await _search(client, "actors", "name.like=^(alpha|bravo)$"))["search"]) == 2


async def test_number_ordering(client, world):
    """Operators on numbers, including keys inside a mapping field."""
    assert (await _search(client, "executions", "runtime.gt=15"))["_metadata"]["total_count"] == 2
    assert (await _search(client, "executions", "runtime.gte=15"))["_metadata"]["total_count"] == 3
    assert (await _search(client, "executions", "runtime.lte=5"))["_metadata"]["total_count"] == 2
    found = await _search(client, "executions", "runtime.between=10,30&status=COMPLETE")
    assert found["_metadata"]["total_count"] == 1
    found = await _search(client, "executions", "final_state.max_rss.gt=20000")
    assert found["_metadata"]["total_count"] == 2


async def test_skip_and_limit(client, world):
    """Ports test_search_skip_limit."""
    result = await _search(client, "executions", "skip=1&limit=3")
    assert result["_metadata"] == {
        "count_returned": 3,
        "record_limit": 3,
        "records_skipped": 1,
        "total_count": 5,
    }
    everything = world["alice"]["executions"] + world["bob"]["executions"]
    assert _ids(result) == everything[1:4]
    result = await _search(client, "executions", "skip=4&limit=23")
    assert result["_metadata"]["count_returned"] == 1
    result = await _search(client, "executions", "limit=0")
    assert (result["_metadata"]["count_returned"], result["_metadata"]["total_count"]) == (0, 5)


@pytest.mark.parametrize(
    ("kind", "query", "says"),
    [
        ("executions", "colour=red", "no field 'colour'"),
        ("executions", "status.bogus=1", "no keys inside it"),
        ("executions", "runtime.gt=fast", "is not a number"),
        ("executions", "runtime.between=1", "two values separated by a comma"),
        ("executions", "runtime.between=1,2024-01-01", "is not a number"),
        ("executions", "final_state.x.between=1,2024-01-01", "both be numbers or both times"),
        ("executions", "start_time.gt=yesterday", "Invalid datetime"),
        ("executions", "status.in=COMPLETE", "takes a JSON list"),
        ("executions", "status.like=(unclosed", "is not a regular expression"),
        ("executions", "runtime.like=5", "compares text"),
        ("actors", "stateless=maybe", "is not true or false"),
        ("actors", "hints.gt=a", "needs an ordered field"),
        ("actors", "limit=ten", "must be an int"),
        ("actors", "skip=-1", "must be positive"),
        ("actors", "limit=5000", "must be at most 1000"),
        ("actors", "limit=1&limit=2", "given 2 times"),
        ("actors", "tenant=default", "no field 'tenant'"),
        ("actors", ".gt=1", "empty field name"),
        ("nonsense", "", "Invalid search type"),
    ],
)
async def test_bad_input_is_a_400_that_says_why(client, kind, query, says):
    assert says in await _search(client, kind, query, status=400)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status.in=COMPLETE", "status.in takes a JSON list"),
        ("status.nin=COMPLETE", "status.nin takes a JSON list"),
        ("status.like=(unclosed", "status.like: '(unclosed' is not a regular expression"),
        ("runtime.like=5", "runtime.like compares text, and runtime is a number"),
        ("final_state.max_rss.between=1", "final_state.max_rss.between takes two values"),
    ],
)
async def test_a_refusal_names_the_parameter_as_given(client, query, says):
    """The operator is named once (it was "status.in.in takes a JSON list")."""
    message = await _search(client, "executions", query, status=400)
    assert says in message
    operator = query.partition("=")[0].rpartition(".")[2]
    assert f".{operator}.{operator}" not in message


async def test_search_routes_are_not_taken_for_actor_routes(client, world):
    """/actors/search/executions is the search, not the executions of an actor 'search'."""
    result = await _search(client, "executions")
    assert "_metadata" in result
    result = await _search(client, "workers")
    assert "_metadata" in result


async def test_a_nonce_does_not_open_search(client, world, api_url):
    alpha = world["alice"]["actor"]["id"]
    nonce = (await client.post(f"/actors/{alpha}/nonces", json={"level": "READ"})).json()["result"]
    response = await client.get(f"/actors/search/executions?x-nonce={nonce['id']}")
    assert response.status_code == 403, response.text


async def test_search_is_in_the_openapi_document(client):
    document = (await client.get("/openapi.json")).json()
    assert "get" in document["paths"]["/actors/search/{search_type}"]


async def test_searches_page_through_large_indexes(client, users, world, platform_redis, settings):
    """More records than one scan page (500): counts, paging and order stay exact."""
    st = Stores.open(platform_redis, settings)
    alpha = world["alice"]["actor"]["id"]
    made = [new_id() for _ in range(1200)]
    for number, execution_id in enumerate(made):
        await st.executions.create(
            Execution(
                id=execution_id,
                actor_id=alpha,
                executor="alice",
                status=ExecutionStatus.COMPLETE,
                runtime=number,
                tenant=settings.stores.tenant,
            )
        )
    for http in (client, users["alice"]):  # the tenant's index, and alpha's own
        found = await _search(http, "executions", "runtime.gte=1000&skip=150&limit=20")
        assert found["_metadata"]["total_count"] == 200
        assert _ids(found) == made[1150:1170]
    everything = await _search(users["alice"], "executions", "limit=1000&skip=500")
    assert everything["_metadata"]["total_count"] == 1203
    assert everything["_metadata"]["count_returned"] == 703


async def test_user_names_with_quotes_are_matched_exactly(
    client, users, world, platform_redis, settings, api_url
):
    alpha = world["alice"]["actor"]["id"]
    odd = 'o"neil\\x'
    granted = await users["alice"].post(
        f"/actors/{alpha}/permissions", json={"user": odd, "level": "READ"}
    )
    assert granted.status_code == 200, granted.text
    http = await user_client(platform_redis, settings, api_url, odd)
    try:
        assert (await _search(http, "executions"))["_metadata"]["total_count"] == 3
    finally:
        await http.aclose()
