"""Execution routes: an actor's executions, one execution, its logs and its results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response

from abaco.actors.mailbox import control_of
from abaco.actors.models import PermissionLevel, utcnow
from abaco.actors.states import ExecutionStatus, is_terminal
from abaco.api.access import actor_for
from abaco.api.context import api_server, hub, settings, stores
from abaco.api.display import execution_summary, execution_view
from abaco.api.envelope import ok
from abaco.api.history import stored_execution, stored_log
from abaco.api.inputs import collect, flag, paging
from abaco.errors import BadRequest, InvalidTransition, NotFound
from abaco.restore import persist_ended

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.actors.models import Actor, Execution

__all__ = ["ABORT_MESSAGE", "blueprint"]

blueprint = Blueprint("executions", __name__)

#: What an aborted execution's status_message says, as in Abaco.
ABORT_MESSAGE = "Issued force quit command"


async def _execution(actor: Actor, execution_id: str) -> Execution:
    try:
        execution: Execution | None = await stores().executions.get(execution_id)
    except NotFound:
        execution = await stored_execution(actor.id, execution_id)
    if execution is None or execution.actor_id != actor.id:
        raise NotFound(
            f"No executions found with actor id of {actor.id} and execution id of {execution_id}."
        )
    return execution


@blueprint.get("/actors/<actor_id>/executions")
async def list_executions(actor_id: str) -> dict[str, Any]:
    """Abaco's executions summary: totals over all executions, and one page of them."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    limit, offset = paging()
    executions = stores().executions
    everything = await collect(executions, parent=actor.id, limit=1_000_000, offset=0)
    page = everything[offset : offset + limit]
    base = api_server()
    result = {
        "actor_id": actor.id,
        "api_server": base,
        "owner": actor.owner,
        "total_executions": len(everything),
        "total_cpu": sum(e.cpu for e in everything),
        "total_io": sum(e.io for e in everything),
        "total_runtime": sum(e.runtime for e in everything),
        "executions": [execution_summary(e) for e in page],
        "ids": [e.id for e in page],
        "_links": {
            "self": f"{base}/actors/{actor.id}/executions",
            "owner": f"{base}/profiles/v2/{actor.owner}",
        },
    }
    return ok(result, "Actor executions retrieved successfully.")


@blueprint.get("/actors/<actor_id>/executions/<execution_id>")
async def get_execution(actor_id: str, execution_id: str) -> dict[str, Any]:
    """One execution."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    execution = await _execution(actor, execution_id)
    return ok(
        execution_view(execution, actor.owner, api_server()),
        "Actor execution retrieved successfully.",
    )


@blueprint.delete("/actors/<actor_id>/executions/<execution_id>")
async def abort_execution(actor_id: str, execution_id: str) -> dict[str, Any]:
    """Abort a SUBMITTED or RUNNING execution: it ends ABORTED."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    execution = await _execution(actor, execution_id)
    if execution.status not in (ExecutionStatus.SUBMITTED, ExecutionStatus.RUNNING):
        raise BadRequest(
            f"Cannot force quit an execution not in {ExecutionStatus.RUNNING} status. "
            f"Execution was found in status: {execution.status}"
        )
    try:
        aborted = await stores().executions.move(
            execution.id,
            ExecutionStatus.ABORTED,
            finish_time=utcnow(),
            status_message=ABORT_MESSAGE,
        )
    except InvalidTransition:
        current = await stores().executions.get(execution.id)
        raise BadRequest(
            f"Cannot force quit execution {execution.id}: it is {current.status} now."
        ) from None
    await persist_ended(hub(), settings(), [aborted])  # so restore won't rerun it
    if execution.status is ExecutionStatus.RUNNING and aborted.worker_id:
        # The worker kills the run when it hears of it (or sees the record at the end).
        control = control_of(hub(), settings().redis.key_prefix, actor.tenant, aborted.worker_id)
        await control.put({"kind": "abort", "execution_id": execution.id})
    return ok(None, f"Issued force quit command for execution {execution.id}.")


@blueprint.get("/actors/<actor_id>/executions/<execution_id>/logs")
async def get_logs(actor_id: str, execution_id: str) -> Any:
    """The execution's logs; ``?follow=true`` streams them as text until the run ends."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    execution = await _execution(actor, execution_id)
    logs = stores().logs
    if flag("follow"):

        async def lines() -> AsyncIterator[bytes]:
            async for chunk in logs.follow(execution.id, poll_ms=500):
                yield chunk.encode()

        return Response(lines(), content_type="text/plain; charset=utf-8")
    base = api_server()
    link = f"{base}/actors/{actor.id}/executions/{execution.id}"
    kept = await logs.read(execution.id)
    text = kept.text
    if not text and not kept.complete and is_terminal(execution.status):
        # Expired here (or never written): durable storage may still have it.
        text = await stored_log(actor.id, execution.id) or ""
    result = {
        "logs": text,
        "_links": {
            "self": f"{link}/logs",
            "owner": f"{base}/profiles/v2/{actor.owner}",
            "execution": link,
        },
    }
    return ok(result, "Logs retrieved successfully.")


@blueprint.get("/actors/<actor_id>/executions/<execution_id>/results")
async def get_result(actor_id: str, execution_id: str) -> Response:
    """The execution's next result not read yet (empty when there is none), as bytes."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    execution = await _execution(actor, execution_id)
    result = await stores().results.pop(execution.id)
    return Response(result or b"", content_type="application/octet-stream")
