"""Worker routes: list an actor's workers, make sure it has N, stop one."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from abaco.actors.models import PermissionLevel
from abaco.actors.states import WorkerStatus
from abaco.api.access import actor_for, require_admin
from abaco.api.context import hub, settings, stores
from abaco.api.display import worker_view
from abaco.api.envelope import ok
from abaco.api.inputs import collect, paging, spec_body
from abaco.api.schemas import WorkersSpec
from abaco.control import request_workers, stop_worker
from abaco.errors import BadRequest, NotFound

__all__ = ["blueprint"]

blueprint = Blueprint("workers", __name__)

_STOPPING = frozenset(
    {WorkerStatus.SHUTDOWN_REQUESTED, WorkerStatus.SHUTTING_DOWN, WorkerStatus.ERROR}
)

#: Most workers one request may ask for.
_MAX_NUM = 100


@blueprint.get("/actors/<actor_id>/workers")
async def list_workers(actor_id: str) -> dict[str, Any]:
    """The actor's workers."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    limit, offset = paging()
    workers = await collect(stores().workers, parent=actor.id, limit=limit, offset=offset)
    return ok([worker_view(w) for w in workers], "Workers retrieved successfully.")


@blueprint.post("/actors/<actor_id>/workers")
async def ensure_workers(actor_id: str) -> dict[str, Any]:
    """Make sure the actor has ``num`` workers (admins only, as in Abaco)."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    require_admin("update workers")
    # No body asks for the default, one worker, as in Abaco.
    spec = await spec_body(WorkersSpec) if await request.get_data() else WorkersSpec()
    num = spec.num or 1
    if not 1 <= num <= _MAX_NUM:
        raise BadRequest(f"num must be between 1 and {_MAX_NUM}, not {num}.")
    if not actor.stateless and num > 1:
        raise BadRequest("stateful actors can only have 1 worker.")
    st = stores()
    workers = await collect(st.workers, parent=actor.id, limit=1000, offset=0)
    live = [w for w in workers if w.status not in _STOPPING]
    if len(live) >= num:
        return ok(None, f"Actor {actor.id} already had {num} worker(s).")
    await request_workers(st, hub(), settings().redis.key_prefix, actor, num - len(live))
    return ok(
        None,
        f"Scheduled {num - len(live)} new worker(s) to start. Previously, there were "
        f"{len(live)} workers.",
    )


@blueprint.get("/actors/<actor_id>/workers/<worker_id>")
async def get_worker(actor_id: str, worker_id: str) -> dict[str, Any]:
    """One worker."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    try:
        worker = await stores().workers.get(worker_id)
    except NotFound:
        worker = None
    if worker is None or worker.actor_id != actor.id:
        raise NotFound(f"No worker {worker_id} for actor {actor.id}.")
    return ok(worker_view(worker), "Worker retrieved successfully.")


@blueprint.delete("/actors/<actor_id>/workers/<worker_id>")
async def delete_worker(actor_id: str, worker_id: str) -> dict[str, Any]:
    """Stop a worker after its current execution."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    st = stores()
    try:
        worker = await st.workers.get(worker_id)
    except NotFound:
        worker = None
    if worker is None or worker.actor_id != actor.id:
        raise NotFound(f"No worker {worker_id} for actor {actor.id}.")
    await stop_worker(st, hub(), settings().redis.key_prefix, worker.id, "deleted through the API")
    return ok(None, "Worker scheduled to be stopped.")
