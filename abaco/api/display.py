"""Records as the API shows them: Abaco's field names plus its ``_links``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from abaco.actors.models import to_dict

if TYPE_CHECKING:
    from abaco.actors.models import Actor, Execution, Worker

__all__ = ["actor_view", "execution_summary", "execution_view", "worker_view"]


def _owner_link(base: str, owner: str) -> str:
    return f"{base}/profiles/v2/{owner}"


def actor_view(actor: Actor, base: str) -> dict[str, Any]:
    """An actor, as GET /actors/ID shows it."""
    view = to_dict(actor)
    view["_links"] = {
        "self": f"{base}/actors/{actor.id}",
        "owner": _owner_link(base, actor.owner),
        "executions": f"{base}/actors/{actor.id}/executions",
    }
    return view


def execution_view(execution: Execution, owner: str, base: str) -> dict[str, Any]:
    """An execution, as GET /actors/ID/executions/EID shows it."""
    view = to_dict(execution)
    link = f"{base}/actors/{execution.actor_id}/executions/{execution.id}"
    view["_links"] = {
        "self": link,
        "owner": _owner_link(base, owner),
        "logs": f"{link}/logs",
    }
    return view


def execution_summary(execution: Execution) -> dict[str, Any]:
    """The short form of an execution in an actor's list of executions."""
    view = to_dict(execution)
    return {
        key: view[key]
        for key in ("id", "status", "start_time", "finish_time", "message_received_time")
    }


def worker_view(worker: Worker) -> dict[str, Any]:
    """A worker, as GET /actors/ID/workers/WID shows it."""
    return to_dict(worker)
