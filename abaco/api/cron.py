"""``GET /actors/cron``: the cron as an admin sees it.

Abaco's ``/cron`` route ran one pass of its cron when called (its cron container called
it every 50 seconds); here the cron actors (:mod:`abaco.cron_actor`) make their passes by
themselves, so the route is a read-only status view instead: the tick, the cron instances
and their last passes, and the actors of the caller's tenant that have a schedule.
Admins only, as Abaco's route was internal.

The instances note their passes in a hash, ``P:_platform:cron:instances`` (instance id ->
JSON); :func:`instances_key` names it and :func:`instances` reads it, here rather than in
:mod:`abaco.cron_actor` because that module sends messages through :mod:`abaco.api`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quart import Blueprint

from abaco.api.access import require_admin
from abaco.api.context import redis, settings, stores
from abaco.api.envelope import ok
from abaco.api.inputs import collect

if TYPE_CHECKING:
    from abaco.actors.models import Actor
    from abaco.redis_client import Redis

__all__ = ["blueprint", "instances", "instances_key"]

blueprint = Blueprint("cron", __name__)


def instances_key(key_prefix: str) -> str:
    """The hash in which cron instances note their passes."""
    return f"{key_prefix}:_platform:cron:instances"


async def instances(client: Redis, key_prefix: str) -> list[dict[str, Any]]:
    """The cron instances that noted a pass, by id, with what they noted."""
    found = []
    for instance_id, raw in sorted((await client.hgetall(instances_key(key_prefix))).items()):
        try:
            noted = json.loads(raw)
        except ValueError:
            continue
        if isinstance(noted, dict):
            found.append({"id": instance_id.decode(), **noted})
    return found


def _scheduled(actor: Actor) -> dict[str, Any]:
    return {
        "id": actor.id,
        "owner": actor.owner,
        "cron_schedule": actor.cron_schedule,
        "cron_on": actor.cron_on,
        "cron_next_ex": actor.cron_next_ex,
    }


@blueprint.get("/actors/cron")
async def cron_status() -> dict[str, Any]:
    """The cron: its tick, its instances, and the tenant's actors that have a schedule."""
    require_admin("view the cron")

    async def has_schedule(actor: Actor) -> bool:
        return bool(actor.cron_schedule)

    actors = await collect(stores().actors, limit=1_000_000, offset=0, keep=has_schedule)
    result = {
        "tick": settings().cron.tick,
        "instances": await instances(redis(), settings().redis.key_prefix),
        "actors": [_scheduled(actor) for actor in actors],
    }
    return ok(result, "Cron status retrieved successfully.")
