"""Who may do what to an actor: Abaco's permission rules.

Levels are READ < EXECUTE < UPDATE per user per actor; the owner gets UPDATE when the
actor is created, an admin of the tenant may do anything, and a grant to the user
``ABACO_WORLD`` is a grant to everyone. Only admins and privileged users may set the
fields that take resources from others (``privileged``, ``max_workers``, ``max_cpus``,
``mem_limit``, ``queue``); limited users may not either. Refusals are 403 with Abaco's
messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abaco.actors.models import PermissionLevel
from abaco.api.context import identity, stores
from abaco.auth import Role
from abaco.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from abaco.actors.models import Actor
    from abaco.api.schemas import ActorSpec

__all__ = ["WORLD_USER", "actor_for", "check_privileged", "level_of", "require_admin"]

#: A grant to this user is a grant to every user of the tenant.
WORLD_USER = "ABACO_WORLD"


async def level_of(actor: Actor) -> PermissionLevel:
    """The caller's level on ``actor``."""
    caller = identity()
    if caller.is_admin:
        return PermissionLevel.UPDATE
    permissions = stores().permissions
    return max(
        await permissions.level(actor.id, caller.user),
        await permissions.level(actor.id, WORLD_USER),
    )


async def actor_for(actor_id: str, level: PermissionLevel) -> Actor:
    """The actor ``actor_id`` if the caller has ``level`` on it.

    NotFound (404) when there is no such actor in the caller's tenant, PermissionDenied
    (403) when the caller's level is lower.
    """
    try:
        actor = await stores().actors.get(actor_id)
    except NotFound:
        raise NotFound(f"No actor found with identifier: {actor_id}.") from None
    if await level_of(actor) < level:
        raise PermissionDenied("Not authorized -- you do not have access to this actor.")
    return actor


def require_admin(what: str) -> None:
    """PermissionDenied unless the caller is an admin of its tenant."""
    if not identity().is_admin:
        raise PermissionDenied(f"Not authorized -- only admins are authorized to {what}.")


_PRIVILEGED_FIELDS = (
    ("privileged", "make privileged actors"),
    ("max_workers", "set max workers"),
    ("max_cpus", "set max CPUs"),
    ("mem_limit", "set mem limit"),
    ("queue", "set queue"),
)


def check_privileged(spec: ActorSpec) -> None:
    """PermissionDenied when a caller who is not admin or privileged sets a reserved field."""
    if identity().role in (Role.ADMIN, Role.PRIVILEGED):
        return
    for field, what in _PRIVILEGED_FIELDS:
        if getattr(spec, field):
            raise PermissionDenied(
                f"Not authorized -- only admins and privileged users can {what}."
            )
