"""Alias routes: ``/actors/aliases``, one alias, and the alias's own permissions.

    GET    /actors/aliases                      the aliases the caller may read
    POST   /actors/aliases                      {"alias", "actor_id", "description"}
    GET    /actors/aliases/ALIAS                READ on the alias
    PUT    /actors/aliases/ALIAS                {"actor_id", "description"}: UPDATE on it
    DELETE /actors/aliases/ALIAS                UPDATE on the alias
    GET    /actors/aliases/ALIAS/permissions    READ on the alias
    POST   /actors/aliases/ALIAS/permissions    {"user", "level"}: UPDATE on the alias

An alias is a name, unique in its tenant, that works wherever an actor id does (see
:func:`abaco.api.access.actor_for`). As in Abaco, the alias has permissions of its own:
its creator gets UPDATE on it, and pointing it at an actor (creating or updating it)
needs UPDATE on that actor too. Deleting an alias deletes its permissions and nonces.
Unlike Abaco, the list shows only the aliases the caller may read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint

from abaco.actors.models import Alias, PermissionLevel, to_dict
from abaco.api.access import (
    actor_for,
    alias_for,
    alias_level,
    check_alias_name,
    grant,
    level_of,
    permissions_view,
)
from abaco.api.context import api_server, identity, stores
from abaco.api.envelope import ok
from abaco.api.inputs import collect, paging, spec_body
from abaco.api.nonces import forget_alias_nonces
from abaco.api.schemas import AliasSpec, PermissionSpec
from abaco.errors import BadRequest, Conflict, PermissionDenied

if TYPE_CHECKING:
    from abaco.actors.models import Actor

__all__ = ["alias_view", "blueprint"]

blueprint = Blueprint("aliases", __name__)


def alias_view(alias: Alias, base: str) -> dict[str, Any]:
    """An alias, as GET /actors/aliases/ALIAS shows it (Abaco's fields and links)."""
    view = to_dict(alias)
    view.pop("tenant")
    view["_links"] = {
        "self": f"{base}/actors/aliases/{alias.alias}",
        "owner": f"{base}/profiles/v2/{alias.owner}",
        "actor": f"{base}/actors/{alias.actor_id}",
    }
    return view


def _required(value: str | None, field: str) -> str:
    if not value:
        raise BadRequest(f"Invalid alias description. Missing required field: {field}.")
    return value


async def _target(actor_id: str) -> Actor:
    """The actor an alias is to point at: the caller needs UPDATE on it."""
    actor = await actor_for(actor_id, PermissionLevel.NONE)
    if await level_of(actor) < PermissionLevel.UPDATE:
        raise PermissionDenied(
            "Not authorized -- you do not have UPDATE access to the actor you want to "
            "associate with this alias."
        )
    return actor


@blueprint.get("/actors/aliases")
async def list_aliases() -> dict[str, Any]:
    """The aliases of the caller's tenant that the caller may read."""
    limit, offset = paging()

    async def readable(alias: Alias) -> bool:
        return await alias_level(alias) >= PermissionLevel.READ

    aliases = await collect(stores().aliases, limit=limit, offset=offset, keep=readable)
    return ok([alias_view(a, api_server()) for a in aliases], "Aliases retrieved successfully.")


@blueprint.post("/actors/aliases")
async def create_alias() -> dict[str, Any]:
    """Give an actor an alias; the caller needs UPDATE on the actor and gets it on the alias."""
    spec = await spec_body(AliasSpec)
    name = _required(spec.alias, "alias")
    check_alias_name(name)
    actor = await _target(_required(spec.actor_id, "actor_id"))
    caller = identity()
    alias = Alias(
        alias=name,
        actor_id=actor.id,
        owner=caller.user,
        tenant=caller.tenant,
        description=spec.description or "",
    )
    st = stores()
    try:
        await st.aliases.create(alias)
    except Conflict:
        # A 400, as Abaco answers, with its message.
        raise BadRequest(f"Alias {name} already exists.") from None
    # Whatever a deleted alias of this name left behind (if its deletion was cut short)
    # must not carry over to the new one.
    await st.permissions.delete(name)
    await forget_alias_nonces(name)
    await st.permissions.grant(name, caller.user, PermissionLevel.UPDATE)
    return ok(alias_view(alias, api_server()), "Actor alias created successfully.")


@blueprint.get("/actors/aliases/<alias>")
async def get_alias(alias: str) -> dict[str, Any]:
    """One alias."""
    found = await alias_for(alias, PermissionLevel.READ)
    return ok(alias_view(found, api_server()), "Alias retrieved successfully.")


@blueprint.put("/actors/aliases/<alias>")
async def update_alias(alias: str) -> dict[str, Any]:
    """Point the alias at another actor (UPDATE on the alias and on that actor)."""
    found = await alias_for(alias, PermissionLevel.UPDATE)
    spec = await spec_body(AliasSpec)
    if spec.alias is not None:
        raise BadRequest(
            "Invalid alias update description. The alias itself cannot be updated in a PUT request."
        )
    actor = await _target(_required(spec.actor_id, "actor_id"))
    fields: dict[str, Any] = {"actor_id": actor.id}
    if spec.description is not None:
        fields["description"] = spec.description
    updated = await stores().aliases.update(found.alias, **fields)
    return ok(alias_view(updated, api_server()), "Actor alias updated successfully.")


@blueprint.delete("/actors/aliases/<alias>")
async def delete_alias(alias: str) -> dict[str, Any]:
    """Delete the alias, its permissions and its nonces (the actor stays)."""
    found = await alias_for(alias, PermissionLevel.UPDATE)
    st = stores()
    # The record goes last: if this is cut short, the alias is still there to delete again.
    await forget_alias_nonces(found.alias)
    await st.permissions.delete(found.alias)
    await st.aliases.delete(found.alias)
    return ok(None, f"Alias {found.alias} deleted successfully.")


@blueprint.get("/actors/aliases/<alias>/permissions")
async def get_alias_permissions(alias: str) -> dict[str, Any]:
    """Who may do what to the alias itself."""
    found = await alias_for(alias, PermissionLevel.READ)
    return ok(await permissions_view(found.alias), "Permissions retrieved successfully.")


@blueprint.post("/actors/aliases/<alias>/permissions")
async def grant_alias_permission(alias: str) -> dict[str, Any]:
    """Give a user a level (NONE revokes) on the alias itself."""
    found = await alias_for(alias, PermissionLevel.UPDATE)
    await grant(found.alias, await spec_body(PermissionSpec))
    return ok(await permissions_view(found.alias), "Permission added successfully.")
