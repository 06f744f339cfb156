"""Who may do what to an actor: Abaco's permission rules.

Levels are READ < EXECUTE < UPDATE per user per actor; the owner gets UPDATE when the
actor is created, an admin of the tenant may do anything, and a grant to the user
``ABACO_WORLD`` is a grant to everyone. Only admins and privileged users may set the
fields that take resources from others (``privileged``, ``max_workers``, ``max_cpus``,
``mem_limit``, ``queue``); limited users may not either. Refusals are 403 with Abaco's
messages.

An alias works wherever an actor id does: :func:`actor_for` resolves it, and the check is
then on the actor. Aliases have permissions of their own (keyed by the alias name, which
can never be an actor id), needed to manage the alias itself. A request authenticated by
a nonce gets at most the nonce's level, and only on the nonce's actor or alias.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio

from abaco.actors.ids import is_valid_id
from abaco.actors.models import PermissionLevel
from abaco.api.context import identity, nonce_grant, stores
from abaco.auth import Role
from abaco.errors import BadRequest, NotFound, PermissionDenied

if TYPE_CHECKING:
    from abaco.actors.models import Actor, Alias
    from abaco.api.schemas import ActorSpec, PermissionSpec

__all__ = [
    "RESERVED_ALIASES",
    "WORLD_USER",
    "actor_for",
    "alias_for",
    "alias_level",
    "check_alias_name",
    "check_privileged",
    "grant",
    "is_alias_name",
    "level_of",
    "permissions_view",
    "require_admin",
]

#: A grant to this user is a grant to every user of the tenant.
WORLD_USER = "ABACO_WORLD"


#: Names under /actors that are routes (or were in Abaco), so never aliases.
RESERVED_ALIASES = frozenset(
    {
        "adapters",
        "admin",
        "aliases",
        "configs",
        "cron",
        "executions",
        "logs",
        "messages",
        "metrics",
        "nonces",
        "permissions",
        "search",
        "state",
        "utilization",
        "workers",
    }
)

# URL-safe without escaping ("unreserved" in RFC 3986); the first character is a letter or
# digit, so "." and ".." (which clients normalise away) and store keys such as "_ids" are out.
_ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")

# What may be looked up as an actor id: not a store's own key ("_ids"), no ":" or spaces.
_IDENTIFIER = re.compile(r"[^_:\s][^:\s]*")


def check_alias_name(name: str) -> None:
    """BadRequest, saying why, unless ``name`` may be an alias."""
    if not _ALIAS_NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid alias description: alias {name!r} must be 1 to 128 letters, digits, "
            "'.', '_', '~' or '-', starting with a letter or digit."
        )
    if name.lower() in RESERVED_ALIASES:
        raise BadRequest(
            f"{name} is a reserved word. The following reserved words cannot be used for an "
            f"alias: {sorted(RESERVED_ALIASES)}."
        )
    if is_valid_id(name):
        # Aliases and actor ids share the path segment and the permission store's keys.
        raise BadRequest("Invalid alias description. Alias cannot be an Abaco hash id.")


def is_alias_name(name: str) -> bool:
    """Whether ``name`` may be an alias."""
    try:
        check_alias_name(name)
    except BadRequest:
        return False
    return True


async def _own_level(resource_id: str) -> PermissionLevel:
    caller = identity()
    if caller.is_admin:
        return PermissionLevel.UPDATE
    permissions = stores().permissions
    levels: list[PermissionLevel] = []

    async def level(user: str) -> None:
        levels.append(await permissions.level(resource_id, user))

    async with trio.open_nursery() as nursery:  # two reads, one wait
        nursery.start_soon(level, caller.user)
        nursery.start_soon(level, WORLD_USER)
    return max(levels)


async def level_of(actor: Actor) -> PermissionLevel:
    """The caller's level on ``actor`` (under a nonce: at most the nonce's, on its actor)."""
    level = await _own_level(actor.id)
    grant = nonce_grant()
    if grant is None:
        return level
    return min(level, grant.level) if grant.actor_id == actor.id else PermissionLevel.NONE


async def alias_level(alias: Alias) -> PermissionLevel:
    """The caller's level on the alias itself (not on its actor)."""
    level = await _own_level(alias.alias)
    grant = nonce_grant()
    if grant is None:
        return level
    return min(level, grant.level) if grant.alias == alias.alias else PermissionLevel.NONE


async def _find_actor(identifier: str) -> Actor:
    missing = NotFound(f"No actor found with identifier: {identifier}.")
    if not _IDENTIFIER.fullmatch(identifier):
        raise missing
    st = stores()
    try:
        return await st.actors.get(identifier)
    except NotFound:
        if not is_alias_name(identifier):
            raise missing from None
    try:
        alias = await st.aliases.get(identifier)
        return await st.actors.get(alias.actor_id)
    except NotFound:
        raise missing from None


async def actor_for(actor_id: str, level: PermissionLevel) -> Actor:
    """The actor ``actor_id`` (an actor id or an alias) if the caller has ``level`` on it.

    NotFound (404) when there is no such actor in the caller's tenant, PermissionDenied
    (403) when the caller's level is lower.
    """
    actor = await _find_actor(actor_id)
    if await level_of(actor) < level:
        raise PermissionDenied("Not authorized -- you do not have access to this actor.")
    return actor


async def alias_for(name: str, level: PermissionLevel) -> Alias:
    """The alias ``name`` if the caller has ``level`` on the alias itself.

    NotFound (404) when there is no such alias, PermissionDenied (403) when the caller's
    level is lower.
    """
    missing = NotFound(f"No alias found: {name}.")
    if not is_alias_name(name):
        raise missing
    try:
        alias = await stores().aliases.get(name)
    except NotFound:
        raise missing from None
    if await alias_level(alias) < level:
        raise PermissionDenied("Not authorized -- you do not have access to this alias.")
    return alias


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


async def permissions_view(resource_id: str) -> dict[str, str]:
    """Every user's level on an actor or alias, as the API shows it."""
    levels = await stores().permissions.all(resource_id)
    return {user: level.name for user, level in sorted(levels.items())}


async def grant(resource_id: str, spec: PermissionSpec) -> None:
    """Give ``spec.user`` ``spec.level`` (NONE revokes) on an actor or alias, after checks."""
    if spec.level not in PermissionLevel.__members__:
        raise BadRequest(
            f"Invalid permission level: {spec.level}. "
            f"The valid values are {list(PermissionLevel.__members__)}"
        )
    if not spec.user or ":" in spec.user or any(c.isspace() for c in spec.user):
        raise BadRequest(f"Invalid permissions description: user {spec.user!r}.")
    await stores().permissions.grant(resource_id, spec.user, PermissionLevel[spec.level])
