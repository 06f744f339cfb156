"""Admin views and utilization over real HTTP, and their paths beside ``/actors/<actor_id>``."""

from __future__ import annotations

import pytest

from abaco.actors.ids import new_id
from abaco.actors.models import Execution
from abaco.actors.states import ExecutionStatus
from abaco.auth import Role
from abaco.stores import Stores
from tests.api._helpers import create_actor, push_bundle, user_client

ADMIN_PATHS = ["/actors/admin", "/actors/admin/workers", "/actors/admin/executions"]


@pytest.fixture
async def alice(platform_redis, settings, api_url):
    http = await user_client(platform_redis, settings, api_url, "alice", Role.PRIVILEGED)
    yield http
    await http.aclose()


@pytest.fixture
async def world(client, alice, tmp_path, platform_redis, settings):
    """Two actors with a requested worker each; three executions, one of a deleted actor."""
    await push_bundle(client, tmp_path)
    first = await create_actor(alice, name="first")
    second = await create_actor(client, name="second")
    gone = await create_actor(client, name="gone")
    st = Stores.open(platform_redis, settings)
    for actor, runtime in ((first, 3), (first, 4), (gone, 10)):
        await st.executions.create(
            Execution(
                id=new_id(),
                actor_id=actor["id"],
                executor="alice",
                status=ExecutionStatus.COMPLETE,
                runtime=runtime,
                cpu=runtime * 100,
                io=runtime * 10,
                tenant=settings.stores.tenant,
            )
        )
    response = await client.delete(f"/actors/{gone['id']}")
    assert response.status_code == 200, response.text
    return {"first": first, "second": second, "gone": gone}


@pytest.mark.parametrize("path", ADMIN_PATHS)
async def test_admin_views_are_for_admins_only(alice, world, path):
    response = await alice.get(path)
    assert response.status_code == 403, response.text
    assert response.json()["message"] == "Abaco Admin role required."


async def test_admin_actors(client, world):
    """Abaco's AdminActorsResource: each actor with workers, messages, executions, runtime."""
    response = await client.get("/actors/admin")
    assert response.status_code == 200, response.text
    actors = {a["name"]: a for a in response.json()["result"]}
    assert set(actors) == {"first", "second"}
    first = actors["first"]
    assert (first["executions"], first["runtime"], first["messages"]) == (2, 7, 0)
    assert [w["status"] for w in first["workers"]] == ["REQUESTED"]
    assert first["owner"] == "alice"
    assert actors["second"]["executions"] == 0


async def test_admin_workers(client, world):
    """Abaco's AdminWorkersResource: a summary by status, then the workers."""
    response = await client.get("/actors/admin/workers")
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    # The deleted actor's worker was asked to stop; no spawner runs here to stop it.
    assert result["summary"] == {
        "total_workers": 3,
        "ready_workers": 0,
        "requested_workers": 2,
        "error_workers": 0,
        "busy_workers": 0,
        "actors_no_workers": 0,
    }
    statuses = {w["actor_id"]: w["status"] for w in result["workers"]}
    assert statuses == {
        world["first"]["id"]: "REQUESTED",
        world["second"]["id"]: "REQUESTED",
        world["gone"]["id"]: "SHUTDOWN_REQUESTED",
    }
    assert all(w["actor_dbid"].endswith("_" + w["actor_id"]) for w in result["workers"])


async def test_admin_executions(client, world):
    """Abaco's AdminExecutionsResource: totals over all executions and existing actors."""
    response = await client.get("/actors/admin/executions")
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["summary"] == {
        "total_actors_all": 3,
        "total_actors_all_with_executions": 2,
        "total_executions_all": 3,
        "total_execution_runtime_all": 17,
        "total_execution_cpu_all": 1700,
        "total_execution_io_all": 170,
        "total_actors_existing": 2,
        "total_actors_existing_with_executions": 1,
        "total_executions_existing": 2,
        "total_execution_runtime_existing": 7,
        "total_execution_cpu_existing": 700,
        "total_execution_io_existing": 70,
    }
    assert result["actors"] == [
        {
            "actor_id": world["first"]["id"],
            "owner": "alice",
            "image": world["first"]["image"],
            "total_executions": 2,
            "total_execution_cpu": 700,
            "total_execution_io": 70,
            "total_execution_runtime": 7,
        }
    ]


async def test_utilization_is_open_to_every_user(alice, world):
    """Abaco's AbacoUtilizationResource (its keys are camelCase in Abaco too)."""
    response = await alice.get("/actors/utilization")
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["currentActors"] == 2
    assert result["totalActors"] == 3
    assert result["workers"] == 3  # the deleted actor's is still stopping
    # The scheduler is not running here, so the three requests for workers still wait.
    assert result["commandQueue"] == 3


@pytest.mark.parametrize("path", [*ADMIN_PATHS, "/actors/utilization"])
async def test_static_paths_win_over_actor_ids(client, world, path):
    """``admin`` and ``utilization`` are never read as an actor id."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert "No actor found" not in response.json()["message"]


async def test_admin_paths_are_in_the_openapi_document(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in [*ADMIN_PATHS, "/actors/utilization"]:
        assert "get" in paths[path]
