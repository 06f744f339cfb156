"""The API's checks of an actor's ``link`` and ``webhook``, with Abaco's rules and messages.

- A link must name an actor or alias of the caller's tenant on which the caller has
  EXECUTE; an actor cannot link to itself; and an update must not close a cycle of links
  ("Error: this update would result in a cycle of linked actors."). A new actor cannot
  close one: nothing links to it yet.
- A webhook must be an http(s) URL whose host, when written as an address, is one the
  platform may post to (:mod:`abaco.events.webhooks`).

Bad values are 400s; a link to an actor the caller may not execute is a 403 (Abaco
answered 400), with Abaco's message either way. Runs inside a request (it reads the
caller and the stores from the request's context).
"""

from __future__ import annotations

from typing import Any

from abaco.actors.models import PermissionLevel
from abaco.api.access import actor_for
from abaco.api.context import settings, stores
from abaco.errors import BadRequest, NotFound, PermissionDenied
from abaco.events.links import has_cycles, link_graph
from abaco.events.webhooks import WebhookPolicy, check_webhook_url

__all__ = ["CYCLE_MESSAGE", "check_event_fields"]

#: Abaco's answer to a link that would close a cycle.
CYCLE_MESSAGE = "Error: this update would result in a cycle of linked actors."

_LINK_REQUIREMENT = (
    "The link must be a valid actor id or alias for which you have EXECUTE permission."
)


async def check_event_fields(fields: dict[str, Any], actor_id: str | None = None) -> None:
    """Check the ``link`` and ``webhook`` among ``fields`` of a new actor or of ``actor_id``.

    Raises BadRequest (400) or PermissionDenied (403) saying what is wrong.
    """
    webhook = fields.get("webhook")
    if webhook:
        check_webhook_url(webhook, WebhookPolicy.from_settings(settings().events))
    link = fields.get("link")
    if link:
        await _check_link(link, actor_id)


async def _check_link(link: str, actor_id: str | None) -> None:
    try:
        target = await actor_for(link, PermissionLevel.EXECUTE)
    except NotFound:
        raise BadRequest(
            f"Invalid link parameter; unable to retrieve linked actor data. {_LINK_REQUIREMENT}"
        ) from None
    except PermissionDenied as exc:
        raise PermissionDenied(
            f"Invalid link parameter. {_LINK_REQUIREMENT} Additional info: {exc}"
        ) from None
    if actor_id is None:
        return
    if target.id == actor_id:
        raise BadRequest("Invalid link parameter. An actor cannot link to itself.")
    graph = await link_graph(stores())
    graph[actor_id] = target.id  # the proposed link replaces the actor's current one
    if has_cycles(graph):
        raise BadRequest(CYCLE_MESSAGE)
