"""Abaco's search scenarios (``/actors/search/{logs,executions,actors,workers}``), its
search authorization scenarios, and the admin views.

A sequence, as in Abaco. Abaco's search tests count what the whole suite before them left
behind (10 actors, 7 executions...); here the module makes its own, in tenants of its own,
so every count is known:

- the admin's ``abaco_test_suite`` (shared with the privileged user at UPDATE, as Abaco's
  test_update_actor_other_user shares it), ``abaco_test_suite_func``,
  ``abaco_test_suite_sleep_loop`` and ``abaco_test_suite_wc``; the limited user's
  ``abaco_test_suite_limited_user``: five actors;
- four executions of ``abaco_test_suite``, one of the sleep loop and two of wc: seven
  executions, each with its log, all COMPLETE (none is aborted, as Abaco's were not).

Every actor is stateful, so each keeps exactly one worker and the worker counts are exact
(Abaco's tests allowed "at most").
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.abaco_core._bundles import ABACO_TEST, PY3_FUNC, SLEEP_LOOP, WC
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    get_actor_id,
    refused,
    register,
    wait_execution,
)
from tests.abaco_core.conftest import ADMIN, LIMITED, PRIVILEGED

#: The admin's actors: name -> image.
ADMIN_ACTORS = {
    "abaco_test_suite": ABACO_TEST,
    "abaco_test_suite_func": PY3_FUNC,
    "abaco_test_suite_sleep_loop": SLEEP_LOOP,
    "abaco_test_suite_wc": WC,
}
LIMITED_ACTOR = "abaco_test_suite_limited_user"
ACTORS = len(ADMIN_ACTORS) + 1
#: The messages sent: actor name -> (form or JSON body, how many times).
MESSAGES: dict[str, tuple[dict[str, Any], int]] = {
    "abaco_test_suite": ({"data": {"message": "testing execution"}}, 4),
    "abaco_test_suite_sleep_loop": ({"json": {"sleep": 0, "iterations": 1}}, 1),
    "abaco_test_suite_wc": ({"data": {"message": "count these four words"}}, 2),
}
EXECUTIONS = sum(times for _, times in MESSAGES.values())
#: The executions (and logs) of the actor shared with the privileged user.
SHARED_EXECUTIONS = MESSAGES["abaco_test_suite"][1]
ADMIN_PATHS = ("/actors/admin", "/actors/admin/workers", "/actors/admin/executions")


async def search(
    http: httpx.AsyncClient, kind: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The result of ``GET /actors/search/KIND`` with ``params``, a 200 envelope."""
    result: dict[str, Any] = basic_response_checks(
        await http.get(f"/actors/search/{kind}", params=params)
    )
    return result


def check_metadata(
    result: dict[str, Any], returned: int, total: int | None = None, limit: int = 100, skip: int = 0
) -> None:
    """Abaco's checks of ``_metadata`` (snake case), and that ``search`` has what it says."""
    assert result["_metadata"] == {
        "count_returned": returned,
        "record_limit": limit,
        "records_skipped": skip,
        "total_count": returned if total is None else total,
    }, result["_metadata"]
    assert len(result["search"]) == returned


async def test_register_actors(api):
    """Setup as Abaco's registration tests and test_update_actor_other_user (ported in
    test_actors): the module's five actors, the first shared with the privileged user."""
    for name, image in ADMIN_ACTORS.items():
        await register(api.admin, image=image, name=name, stateless=False)
    await register(api.limited, image=ABACO_TEST, name=LIMITED_ACTOR, stateless=False)
    shared = await get_actor_id(api.admin)
    grant = {"user": PRIVILEGED, "level": "UPDATE"}
    basic_response_checks(await api.admin.post(f"/actors/{shared}/permissions", json=grant))
    for actor in basic_response_checks(await api.admin.get("/actors")):
        await check_actor_is_ready(api.admin, actor["id"])


async def test_execute_actors(api):
    """Setup as Abaco's execution tests (ported in test_executions): seven messages, sent
    together, all COMPLETE."""
    sent: list[tuple[str, str]] = []
    for name, (body, times) in MESSAGES.items():
        actor_id = await get_actor_id(api.admin, name)
        for _ in range(times):
            answer = await api.admin.post(f"/actors/{actor_id}/messages", **body)
            sent.append((actor_id, basic_response_checks(answer)["execution_id"]))
    for actor_id, execution_id in sent:
        await wait_execution(api.admin, actor_id, execution_id)


async def test_search_logs_details(api):
    """Ports test_search_logs_details: every log, with its links and nothing internal."""
    result = await search(api.admin, "logs")
    check_metadata(result, EXECUTIONS)
    first = result["search"][0]
    assert "_links" in first
    assert "logs" in first
    for hidden in ("_id", "permissions", "tenant", "exp"):
        assert hidden not in first
    # Beyond Abaco's test: the logs are the executions' own.
    shared = await get_actor_id(api.admin)
    ours = [record for record in result["search"] if record["actor_id"] == shared]
    assert len(ours) == SHARED_EXECUTIONS
    for record in ours:
        assert "Contents of MSG: testing execution" in record["logs"]
        assert record["_links"]["self"].endswith(
            f"/actors/{shared}/executions/{record['execution_id']}/logs"
        )


async def test_search_executions_details(api):
    """Ports test_search_executions_details."""
    result = await search(api.admin, "executions")
    check_metadata(result, EXECUTIONS)
    first = result["search"][0]
    for field in ("_links", "executor", "id", "io", "runtime", "status"):
        assert field in first
    assert first["status"] == "COMPLETE"
    for hidden in ("_id", "permissions", "api_server", "tenant"):
        assert hidden not in first


async def test_search_actors_details(api):
    """Ports test_search_actors_details. ``token`` is a JSON boolean (Abaco's was the text
    'false')."""
    result = await search(api.admin, "actors")
    check_metadata(result, ACTORS)
    first = result["search"][0]
    for field in (
        "_links",
        "description",
        "gid",
        "hints",
        "link",
        "mounts",
        "name",
        "owner",
        "privileged",
        "status",
    ):
        assert field in first
    assert first["token"] is False
    for hidden in ("_id", "permissions", "api_server", "executions", "tenant", "db_id"):
        assert hidden not in first
    assert {actor["name"] for actor in result["search"]} == {*ADMIN_ACTORS, LIMITED_ACTOR}


async def test_search_workers_details(api):
    """Ports test_search_workers_details: one worker per (stateful) actor, exactly."""
    result = await search(api.admin, "workers")
    check_metadata(result, ACTORS)
    first = result["search"][0]
    assert "status" in first
    assert "id" in first
    for hidden in ("_id", "permissions", "tenant"):
        assert hidden not in first


async def test_search_permissions_priv(api):
    """Ports test_search_permissions_priv: the privileged user sees the actor shared with
    it, and that actor's executions, logs and worker."""
    shared = await get_actor_id(api.admin)
    for kind, count in (
        ("logs", SHARED_EXECUTIONS),
        ("executions", SHARED_EXECUTIONS),
        ("actors", 1),
        ("workers", 1),
    ):
        result = await search(api.privileged, kind)
        check_metadata(result, count)
        for record in result["search"]:
            assert record["id" if kind == "actors" else "actor_id"] == shared


async def test_search_permissions_limited(api):
    """Ports test_search_permissions_limited: the limited user sees its own actor and its
    worker (exactly one: Abaco allowed at most one), and no executions or logs."""
    own = await get_actor_id(api.limited, LIMITED_ACTOR)
    for kind, count in (("logs", 0), ("executions", 0), ("actors", 1), ("workers", 1)):
        result = await search(api.limited, kind)
        check_metadata(result, count)
        for record in result["search"]:
            assert record["id" if kind == "actors" else "actor_id"] == own


@pytest.mark.parametrize("kind", ["logs", "executions", "actors", "workers"])
async def test_search_sees_nothing_unshared(api, kind):
    """Beyond Abaco's tests: a user with no actor of its own and nothing shared finds
    nothing, nor does the admin of another tenant; without a token, 401."""
    check_metadata(await search(api.user, kind), 0)
    check_metadata(await search(api.other_tenant, kind), 0)
    refused(await api.anonymous.get(f"/actors/search/{kind}"), 401)


async def test_search_datetime(api):
    """Ports test_search_datetime. Abaco's first three queries compare
    ``final_state.StartedAt``, a field of Docker's container state; an execution's
    ``final_state`` here is what the runner reports (``max_rss``, ``killed``), so they
    compare ``start_time``, the same moment."""
    for params, count in (
        ({"start_time.gt": "2000-05:00"}, EXECUTIONS),
        ({"start_time.gt": "2000-01-01T01:00:00.000Z"}, EXECUTIONS),
        ({"start_time.lt": "2000-01-01T01:00"}, 0),
        (
            {"message_received_time.between": "2000-01-01T01:00,2200-12-30T23:59:59.999Z"},
            EXECUTIONS,
        ),
    ):
        assert len((await search(api.admin, "executions", params))["search"]) == count, params
    actors = await search(api.admin, "actors", {"create_time.between": "2000-01-01,2200-01-01"})
    assert len(actors["search"]) == ACTORS
    # Beyond Abaco's test: a bound between the executions splits them, and a key inside
    # final_state is searched too.
    everything = (await search(api.admin, "executions"))["search"]
    times = sorted(execution["message_received_time"] for execution in everything)
    middle = times[len(times) // 2]
    before = await search(api.admin, "executions", {"message_received_time.lte": middle})
    after = await search(api.admin, "executions", {"message_received_time.gt": middle})
    assert len(before["search"]) == times.index(middle) + times.count(middle)
    assert len(before["search"]) + len(after["search"]) == EXECUTIONS
    assert after["search"]
    measured = await search(api.admin, "executions", {"final_state.max_rss.gt": 0})
    assert len(measured["search"]) == EXECUTIONS


async def test_search_exactsearch_search(api):
    """Ports test_search_exactsearch_search. ``search`` words filter here: only the records
    holding a word are returned (Abaco returned every record, those with the words first),
    so ``search=sleep_loop`` finds the sleep loop actor alone."""
    found = await search(api.admin, "actors", {"exactsearch": "abacosamples/sleep_loop"})
    assert len(found["search"]) == 1
    found = await search(api.admin, "actors", {"search": "sleep_loop"})
    assert found["search"][0]["image"] == SLEEP_LOOP
    assert len(found["search"]) == 1
    found = await search(api.admin, "actors", {"exactsearch": "NOTATHINGWORD"})
    assert len(found["search"]) == 0


async def test_search_in_nin(api):
    """Ports test_search_in_nin."""
    statuses = '["COMPLETE", "READY"]'
    found = await search(api.admin, "executions", {"status.in": statuses})
    assert len(found["search"]) == EXECUTIONS
    found = await search(api.admin, "executions", {"status.nin": statuses})
    assert len(found["search"]) == 0


async def test_search_eq_neq(api):
    """Ports test_search_eq_neq (images carry a version here: ``abacosamples/py3_func:1.0``)."""
    found = await search(api.admin, "actors", {"image": PY3_FUNC})
    assert [actor["image"] for actor in found["search"]] == [PY3_FUNC]
    found = await search(api.admin, "actors", {"image.neq": PY3_FUNC})
    assert len(found["search"]) == ACTORS - 1
    assert PY3_FUNC not in {actor["image"] for actor in found["search"]}


async def test_search_like_nlike(api):
    """Ports test_search_like_nlike. Patterns are RE2 (Abaco's were MongoDB's regular
    expressions): anchors work, and a look-ahead, which RE2 lacks, is a 400."""
    found = await search(api.admin, "actors", {"image.like": "py3_func"})
    assert len(found["search"]) == 1
    found = await search(api.admin, "actors", {"image.nlike": "py3_func"})
    assert len(found["search"]) == ACTORS - 1
    found = await search(api.admin, "actors", {"image.like": "^abacosamples/"})
    assert {actor["image"] for actor in found["search"]} == {PY3_FUNC, SLEEP_LOOP, WC}
    answer = await api.admin.get("/actors/search/actors", params={"image.like": "py3(?=_func)"})
    refused(answer, 400, "is not a regular expression")


async def test_search_skip_limit(api):
    """Ports test_search_skip_limit: skip 4 of the five actors, at most 23."""
    result = await search(api.admin, "actors", {"skip": 4, "limit": 23})
    check_metadata(result, ACTORS - 4, total=ACTORS, limit=23, skip=4)
    # Beyond Abaco's test: the page is the tail of the whole list, in the same order.
    everything = await search(api.admin, "actors")
    assert [a["id"] for a in result["search"]] == [a["id"] for a in everything["search"]][4:]


async def test_search_bad_input(api):
    """Beyond Abaco's tests: an unknown search type, field or bad value is a 400 saying
    which."""
    refused(await api.admin.get("/actors/search/nonces"), 400, "Invalid search type")
    answer = await api.admin.get("/actors/search/actors", params={"colour": "red"})
    refused(answer, 400, "no field 'colour'")
    answer = await api.admin.get("/actors/search/executions", params={"runtime.gt": "fast"})
    refused(answer, 400, "is not a number")
    answer = await api.admin.get("/actors/search/actors", params={"limit": "many"})
    refused(answer, 400, '"limit" parameter must be an int')


async def test_admin_views(api):
    """The admin views (Abaco's AdminActorsResource, AdminWorkersResource,
    AdminExecutionsResource, and utilization; Abaco's suite has no test of them): an admin
    reads all four; other roles are refused the admin views with Abaco's "Abaco Admin role
    required." (403; Abaco 400) and read the utilization, which Abaco opens to every
    authenticated user."""
    actors = basic_response_checks(await api.admin.get("/actors/admin"))
    assert {actor["name"] for actor in actors} == {*ADMIN_ACTORS, LIMITED_ACTOR}
    by_name = {actor["name"]: actor for actor in actors}
    for name, actor in by_name.items():
        assert len(actor["workers"]) == 1
        assert actor["messages"] == 0
        assert actor["executions"] == MESSAGES.get(name, ({}, 0))[1]
        assert "runtime" in actor

    workers = basic_response_checks(await api.admin.get("/actors/admin/workers"))
    assert workers["summary"]["total_workers"] == ACTORS
    assert workers["summary"]["actors_no_workers"] == 0
    assert len(workers["workers"]) == ACTORS
    tenant = api.world.tenant
    assert {w["actor_dbid"] for w in workers["workers"]} == {
        f"{tenant}_{actor['id']}" for actor in actors
    }

    executions = basic_response_checks(await api.admin.get("/actors/admin/executions"))
    summary = executions["summary"]
    assert summary["total_executions_all"] == summary["total_executions_existing"] == EXECUTIONS
    assert summary["total_actors_existing"] == ACTORS
    assert summary["total_actors_existing_with_executions"] == len(MESSAGES)
    per_actor = {row["actor_id"]: row for row in executions["actors"]}
    shared = by_name["abaco_test_suite"]
    assert per_actor[shared["id"]]["total_executions"] == SHARED_EXECUTIONS
    assert per_actor[shared["id"]]["owner"] == ADMIN

    for http in (api.admin, api.privileged, api.user, api.limited):
        used = basic_response_checks(await http.get("/actors/utilization"))
        assert used["currentActors"] == ACTORS
        assert used["workers"] == ACTORS
        assert used["totalActors"] == ACTORS
        assert "commandQueue" in used
    for http in (api.privileged, api.user, api.limited):
        for path in ADMIN_PATHS:
            refused(await http.get(path), 403, "Abaco Admin role required.")
    # The other tenant's admin sees its own (empty) tenant.
    assert basic_response_checks(await api.other_tenant.get("/actors/admin")) == []
    assert by_name[LIMITED_ACTOR]["owner"] == LIMITED
