"""``GET /actors/cron``: the cron as an admin sees it.

Abaco's ``/cron`` route ran one pass of its cron when called (its cron container called
it every 50 seconds); here the cron actors (:mod:`abaco.cron_actor`) make their passes by
themselves, so the route is a read-only status view instead: the tick, the cron instances
and their last passes, and the actors of the caller's tenant that have a schedule.
Admins only, as Abaco's route was internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint

from abaco.api.access import require_admin
from abaco.api.context import redis, settings, stores
from abaco.api.envelope import ok
from abaco.api.inputs import collect
from abaco.cron_actor import instances

if TYPE_CHECKING:
    from abaco.actors.models import Actor

__all__ = ["blueprint"]

blueprint = Blueprint("cron", __name__)


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
