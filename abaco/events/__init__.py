"""Actor events, links and webhooks, as Abaco has them.

When an actor becomes READY or ERROR, and when one of its executions starts or ends, an
event (:mod:`~abaco.events.model`) goes on the events queue (:mod:`~abaco.events.emit`),
if the actor has a ``link`` or a ``webhook``. The events actor
(:mod:`~abaco.events.delivery`, ``python -m abaco.events``) takes them off and sends each
to the linked actor as a message and POSTs it to the webhook
(:mod:`~abaco.events.webhooks`: address guard, timeouts, bounded retries). The API
checks links and webhooks when an actor is created or updated
(:mod:`~abaco.events.checks`), refusing cycles of links (:mod:`~abaco.events.links`).

Layering: ``model`` and ``links`` need only records and stores; ``emit`` adds channels
and is what the worker and spawner import, so this module loads nothing heavier.
``webhooks`` adds httpx; ``checks`` runs inside API requests; ``delivery`` uses both.
Those load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from abaco.events.emit import emit_actor_event as emit_actor_event
from abaco.events.emit import emit_execution_event as emit_execution_event
from abaco.events.emit import events_queue as events_queue
from abaco.events.links import has_cycles as has_cycles
from abaco.events.links import link_graph as link_graph
from abaco.events.links import resolve_link as resolve_link
from abaco.events.model import EVENT_USERNAME as EVENT_USERNAME
from abaco.events.model import EventType as EventType
from abaco.events.model import actor_event as actor_event

if TYPE_CHECKING:
    from abaco.events.checks import check_event_fields as check_event_fields
    from abaco.events.delivery import EventsActor as EventsActor
    from abaco.events.delivery import main as main
    from abaco.events.delivery import run_events as run_events
    from abaco.events.webhooks import WebhookPolicy as WebhookPolicy
    from abaco.events.webhooks import check_webhook_url as check_webhook_url
    from abaco.events.webhooks import post_event as post_event

_LAZY = {
    "check_event_fields": "abaco.events.checks",
    "EventsActor": "abaco.events.delivery",
    "main": "abaco.events.delivery",
    "run_events": "abaco.events.delivery",
    "WebhookPolicy": "abaco.events.webhooks",
    "check_webhook_url": "abaco.events.webhooks",
    "post_event": "abaco.events.webhooks",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
