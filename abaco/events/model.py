"""Actor events as Abaco shapes them: plain dicts, built from records, with no I/O.

Every event carries ``tenant_id``, ``event_type``, ``event_time_utc`` and
``event_time_display`` (the same instant, ``2024-05-01T14:45:41.591Z``), ``actor_id``,
``actor_dbid`` (``TENANT_ID``), and where it goes: ``_abaco_link`` (the actor's link, an
actor id or alias) and ``_abaco_webhook``. Actor events add ``status_message``; execution
events add ``execution_id`` and ``status``, and EXECUTION_COMPLETE ``exit_code``.

Abaco declares EXECUTION_STARTED (and emits only EXECUTION_COMPLETE); this platform emits
both, under Abaco's names.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from abaco.actors.models import utcnow

if TYPE_CHECKING:
    from datetime import datetime

    from abaco.actors.models import Actor

__all__ = ["EVENT_USERNAME", "EventType", "actor_event", "event_time", "wants_events"]

#: Who an event's execution or webhook says sent it (Abaco's ``_abaco_username``).
EVENT_USERNAME = "Abaco Event"


class EventType(enum.StrEnum):
    """What happened to an actor or one of its executions."""

    ACTOR_READY = "ACTOR_READY"
    ACTOR_ERROR = "ACTOR_ERROR"
    EXECUTION_STARTED = "EXECUTION_STARTED"
    EXECUTION_COMPLETE = "EXECUTION_COMPLETE"


def event_time(moment: datetime | None = None) -> str:
    """Abaco's event timestamp: ISO 8601 in UTC to the millisecond, ending in ``Z``."""
    return (moment or utcnow()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"


def wants_events(actor: Actor) -> bool:
    """Whether the actor's events go anywhere (it has a link or a webhook)."""
    return bool(actor.link or actor.webhook)


def actor_event(
    actor: Actor, event_type: EventType, *, moment: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """The event ``event_type`` of ``actor``, with ``fields`` (execution id, status...)."""
    when = event_time(moment)
    return {
        **fields,
        "tenant_id": actor.tenant,
        "event_type": str(event_type),
        "event_time_utc": when,
        "event_time_display": when,
        "actor_id": actor.id,
        "actor_dbid": f"{actor.tenant}_{actor.id}",
        "_abaco_link": actor.link,
        "_abaco_webhook": actor.webhook,
    }
