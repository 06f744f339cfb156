"""Admin views and utilization: ``/actors/admin``, ``/actors/admin/workers``,
``/actors/admin/executions`` (admins only) and ``/actors/utilization`` (everyone).

The shapes are Abaco's. An admin here is an admin of its tenant, so every view covers the
caller's tenant (Abaco's covered the whole deployment). Abaco counted "all actors ever"
from a daily metrics store that we do not keep; ``totalActors`` and
``total_actors_all`` count the actors that exist or have executions on record, which is
the same number as long as executions are kept. Passes over many records go through
:mod:`abaco.api.scan`, reading only the fields each view adds up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from quart import Blueprint

from abaco.actors.mailbox import mailbox_of
from abaco.actors.models import Actor, Worker, from_dict
from abaco.actors.states import WorkerStatus
from abaco.api.context import api_server, hub, identity, redis, settings, stores
from abaco.api.display import actor_view, worker_view
from abaco.api.envelope import ok
from abaco.api.scan import Keyspace, scan
from abaco.control import scheduler_inbox
from abaco.errors import PermissionDenied

__all__ = ["blueprint"]

blueprint = Blueprint("admin", __name__)

_TOTALS = ("runtime", "cpu", "io")


def _require_admin() -> None:
    if not identity().is_admin:
        raise PermissionDenied("Abaco Admin role required.")


async def _records(kind: str, index: str | None = None) -> list[dict[str, Any]]:
    """Every record of ``kind`` in the tenant (or in ``index``), whole, as plain values."""
    keys = Keyspace.of(stores())
    return [
        values async for _, values in scan(redis(), index or keys.index(kind), keys.prefix(kind))
    ]


async def _execution_totals(actor_id: str | None = None) -> list[dict[str, Any]]:
    """``actor_id``, ``runtime``, ``cpu`` and ``io`` of every execution (of one actor)."""
    keys = Keyspace.of(stores())
    index = keys.index("execution") if actor_id is None else keys.actor_index(actor_id, "execution")
    fields = ["actor_id", *_TOTALS]
    return [values async for _, values in scan(redis(), index, keys.prefix("execution"), fields)]


@blueprint.get("/actors/admin")
async def admin_actors() -> dict[str, Any]:
    """Every actor of the tenant with its workers, queued messages and execution totals."""
    _require_admin()
    keys = Keyspace.of(stores())
    prefix = settings().redis.key_prefix
    base = api_server()
    found: list[dict[str, Any]] = []
    for record in await _records("actor"):
        actor = from_dict(Actor, record)
        workers = await _records("worker", keys.actor_index(actor.id, "worker"))
        executions = await _execution_totals(actor.id)
        view = actor_view(actor, base)
        view["workers"] = [worker_view(from_dict(Worker, w)) for w in workers]
        view["messages"] = await mailbox_of(hub(), prefix, actor.tenant, actor.id).length()
        view["executions"] = len(executions)
        view["runtime"] = sum(e.get("runtime", 0) for e in executions)
        found.append(view)
    return ok(found, "Actors retrieved successfully.")


@blueprint.get("/actors/admin/workers")
async def admin_workers() -> dict[str, Any]:
    """Every worker of the tenant, and how many are in each state."""
    _require_admin()
    workers = [from_dict(Worker, w) for w in await _records("worker")]
    statuses = Counter(w.status for w in workers)
    with_workers = {w.actor_id for w in workers}
    summary = {
        "total_workers": len(workers),
        "ready_workers": statuses[WorkerStatus.READY],
        "requested_workers": statuses[WorkerStatus.REQUESTED],
        "error_workers": statuses[WorkerStatus.ERROR],
        "busy_workers": statuses[WorkerStatus.BUSY],
        "actors_no_workers": len(await _actor_ids() - with_workers),
    }
    views = []
    for worker in workers:
        view = worker_view(worker)
        view["actor_dbid"] = f"{worker.tenant}_{worker.actor_id}"
        views.append(view)
    return ok({"summary": summary, "workers": views}, "Workers retrieved successfully.")


async def _actor_ids() -> set[str]:
    keys = Keyspace.of(stores())
    return {
        actor_id
        async for actor_id, _ in scan(redis(), keys.index("actor"), keys.prefix("actor"), ["_rev"])
    }


@blueprint.get("/actors/admin/executions")
async def admin_executions() -> dict[str, Any]:
    """Execution totals of the tenant, overall and per existing actor."""
    _require_admin()
    keys = Keyspace.of(stores())
    fields = ["_rev", "owner", "image"]
    actors = {
        actor_id: values
        async for actor_id, values in scan(
            redis(), keys.index("actor"), keys.prefix("actor"), fields
        )
    }
    totals: dict[str, float] = defaultdict(int)
    per_actor: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for execution in await _execution_totals():
        actor_id = str(execution.get("actor_id", ""))
        seen.add(actor_id)
        values = {name: execution.get(name, 0) for name in _TOTALS}
        totals["total_executions_all"] += 1
        for name, value in values.items():
            totals[f"total_execution_{name}_all"] += value
        if actor_id not in actors:
            continue
        totals["total_executions_existing"] += 1
        for name, value in values.items():
            totals[f"total_execution_{name}_existing"] += value
        stats = per_actor.setdefault(
            actor_id,
            {
                "actor_id": actor_id,
                "owner": actors[actor_id].get("owner"),
                "image": actors[actor_id].get("image"),
                "total_executions": 0,
                "total_execution_cpu": 0,
                "total_execution_io": 0,
                "total_execution_runtime": 0,
            },
        )
        stats["total_executions"] += 1
        for name, value in values.items():
            stats[f"total_execution_{name}"] += value
    summary = {
        "total_actors_all": len(set(actors) | seen),
        "total_actors_all_with_executions": len(seen),
        "total_executions_all": totals["total_executions_all"],
        "total_execution_runtime_all": totals["total_execution_runtime_all"],
        "total_execution_cpu_all": totals["total_execution_cpu_all"],
        "total_execution_io_all": totals["total_execution_io_all"],
        "total_actors_existing": len(actors),
        "total_actors_existing_with_executions": len(per_actor),
        "total_executions_existing": totals["total_executions_existing"],
        "total_execution_runtime_existing": totals["total_execution_runtime_existing"],
        "total_execution_cpu_existing": totals["total_execution_cpu_existing"],
        "total_execution_io_existing": totals["total_execution_io_existing"],
    }
    return ok(
        {"summary": summary, "actors": list(per_actor.values())},
        "Executions retrieved successfully.",
    )


@blueprint.get("/actors/utilization")
async def utilization() -> dict[str, Any]:
    """How many actors and workers the tenant has, and the scheduler's queue length."""
    st = stores()
    keys = Keyspace.of(st)
    current = await _actor_ids()
    with_executions = {
        str(values.get("actor_id"))
        async for _, values in scan(
            redis(), keys.index("execution"), keys.prefix("execution"), ["actor_id"]
        )
    }
    workers = [
        worker_id
        async for worker_id, _ in scan(
            redis(), keys.index("worker"), keys.prefix("worker"), ["_rev"]
        )
    ]
    inbox = scheduler_inbox(hub(), settings().redis.key_prefix)
    result = {
        "currentActors": len(current),
        "totalActors": len(current | with_executions),
        "workers": len(workers),
        "commandQueue": await inbox.length(),
    }
    return ok(result, "Abaco utilization returned successfully.")
