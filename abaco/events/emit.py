"""Putting events on the events queue, from wherever an actor or execution changes status.

The queue is a durable Redis queue channel, ``P:_platform:events``, that every delivery
actor (:mod:`abaco.events.delivery`) shares. An event is queued only when its actor has a
link or a webhook, as in Abaco; then it costs one write. Emitting never fails the caller:
an error is logged and the event is lost, since the status change it reports stands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from abaco.channels import QueueChannel, Transport
from abaco.errors import AbacoError
from abaco.events.model import EventType, actor_event, wants_events

if TYPE_CHECKING:
    from abaco.actors.models import Actor, Execution
    from abaco.channels import Hub
    from abaco.stores import Stores

__all__ = ["emit_actor_event", "emit_execution_event", "events_queue"]

_log = structlog.get_logger(__name__)


def events_queue(hub: Hub, key_prefix: str) -> QueueChannel:
    """The events queue, bound to ``hub``."""
    channel: QueueChannel = hub.bind(
        QueueChannel(Transport.REDIS, f"{key_prefix}:_platform:events")
    )
    return channel


async def emit_actor_event(
    hub: Hub, key_prefix: str, actor: Actor, event_type: EventType, **fields: Any
) -> None:
    """Queue ``event_type`` for ``actor`` (as it is now) if it has a link or webhook.

    ACTOR_READY and ACTOR_ERROR carry the actor's ``status_message``. Never raises an
    :class:`~abaco.errors.AbacoError`: a failure is logged.
    """
    if not wants_events(actor):
        return
    if event_type in (EventType.ACTOR_READY, EventType.ACTOR_ERROR):
        fields.setdefault("status_message", actor.status_message)
    event = actor_event(actor, event_type, **fields)
    try:
        await events_queue(hub, key_prefix).put(event)
    except AbacoError as exc:
        _log.error(
            "events.emit_failed", actor_id=actor.id, event_type=str(event_type), error=str(exc)
        )


async def emit_execution_event(
    stores: Stores,
    hub: Hub,
    key_prefix: str,
    execution: Execution,
    event_type: EventType,
    *,
    actor: Actor | None = None,
) -> None:
    """Queue ``event_type`` for ``execution`` if its actor has a link or webhook.

    The actor is read afresh (its link or webhook may have changed since the caller read
    it) unless the caller passes one it has just read; that read is the only cost for an
    actor without either. Never raises an :class:`~abaco.errors.AbacoError`: a failure is
    logged.
    """
    try:
        if actor is None:
            actor = await stores.actors.get(execution.actor_id)
    except AbacoError as exc:
        _log.warning(
            "events.emit_skipped",
            execution_id=execution.id,
            event_type=str(event_type),
            error=str(exc),
        )
        return
    fields: dict[str, Any] = {"execution_id": execution.id, "status": str(execution.status)}
    if event_type is EventType.EXECUTION_COMPLETE:
        fields["exit_code"] = execution.exit_code
    else:
        fields["worker_id"] = execution.worker_id
    await emit_actor_event(hub, key_prefix, actor, event_type, **fields)
