"""Nonce routes: the nonces of an actor, and of an alias.

    GET    /actors/ACTOR/nonces                    READ on the actor
    POST   /actors/ACTOR/nonces                    {"level", "max_uses", "description"}: UPDATE
    GET    /actors/ACTOR/nonces/NONCE              READ on the actor
    DELETE /actors/ACTOR/nonces/NONCE              UPDATE on the actor
    ... and the same under /actors/aliases/ALIAS, which need the level on the alias and
    on its actor both.

A nonce lets whoever holds its id act on one actor (or alias) as the nonce's owner, at
most at the nonce's level, ``max_uses`` times (-1: without limit), by adding
``?x-nonce=ID`` to a request; :mod:`abaco.api.context` redeems it. As in Abaco, making a
nonce needs UPDATE on the actor, an alias nonce may only be READ or EXECUTE, and a
nonce's level never exceeds its maker's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, request

from abaco.actors.models import Nonce, PermissionLevel, to_dict
from abaco.api.access import actor_for, alias_for, alias_level, level_of
from abaco.api.context import api_server, identity, new_nonce_id, nonce_tenant, stores
from abaco.api.envelope import ok
from abaco.api.inputs import collect, paging, spec_body
from abaco.api.schemas import NonceSpec
from abaco.errors import BadRequest, NotFound, PermissionDenied

if TYPE_CHECKING:
    from abaco.actors.models import Actor, Alias

__all__ = ["blueprint", "forget_alias_nonces", "nonce_view"]

blueprint = Blueprint("nonces", __name__)

_ACTOR_LEVELS = (PermissionLevel.READ, PermissionLevel.EXECUTE, PermissionLevel.UPDATE)
_ALIAS_LEVELS = (PermissionLevel.READ, PermissionLevel.EXECUTE)

#: Most uses a limited nonce may have.
_MAX_USES = 2**31 - 1


def nonce_view(nonce: Nonce, base: str) -> dict[str, Any]:
    """A nonce, as GET .../nonces/ID shows it (Abaco's fields and links)."""
    view = to_dict(nonce)
    view.pop("tenant")
    if nonce.alias is not None:
        target = f"{base}/actors/aliases/{nonce.alias}"
        links = {"alias": target}
    else:
        target = f"{base}/actors/{nonce.actor_id}"
        links = {"actor": target}
    view["_links"] = {
        "self": f"{target}/nonces/{nonce.id}",
        "owner": f"{base}/profiles/v2/{nonce.owner}",
        **links,
    }
    return view


async def _alias_nonces(alias: str) -> list[Nonce]:
    async def of_alias(nonce: Nonce) -> bool:
        return nonce.alias == alias

    # Alias nonces have no per-parent index (the store groups nonces by actor_id).
    return await collect(stores().nonces, limit=1_000_000, offset=0, keep=of_alias)


async def forget_alias_nonces(alias: str) -> None:
    """Delete every nonce of ``alias`` (when the alias goes, its nonces go with it)."""
    nonces = stores().nonces
    for nonce in await _alias_nonces(alias):
        await nonces.delete(nonce.id)


async def _spec() -> NonceSpec:
    # An empty body asks for the defaults, as in Abaco.
    if not await request.get_data():
        return NonceSpec()
    return await spec_body(NonceSpec)


def _new_nonce(
    spec: NonceSpec, allowed: tuple[PermissionLevel, ...], own_level: PermissionLevel
) -> dict[str, Any]:
    """The fields of a nonce a request asks for, checked."""
    name = spec.level if spec.level is not None else PermissionLevel.EXECUTE.name
    level = PermissionLevel.__members__.get(name)
    if level not in allowed:
        raise BadRequest(
            "Invalid nonce description. The level attribute must be one of: "
            f"{[a.name for a in allowed]}"
        )
    if level > own_level:
        raise PermissionDenied(
            f"Not authorized -- a nonce's level cannot exceed your own ({own_level.name})."
        )
    max_uses = -1 if spec.max_uses is None else spec.max_uses
    if max_uses == 0 or max_uses < -1 or max_uses > _MAX_USES:
        raise BadRequest(
            "The max uses parameter must be a positive integer (at most "
            f"{_MAX_USES}) or -1 (to denote unlimited uses)."
        )
    caller = identity()
    return {
        "id": new_nonce_id(caller.tenant),
        "owner": caller.user,
        "tenant": caller.tenant,
        "level": level,
        "max_uses": max_uses,
        "description": spec.description or "",
        "roles": [caller.role.value],
        "api_server": api_server(),
    }


async def _nonce(nonce_id: str, *, actor: Actor | None = None, alias: Alias | None = None) -> Nonce:
    """The nonce ``nonce_id`` of the actor (or alias); NotFound otherwise."""
    missing = NotFound(f"Nonce not found: {nonce_id}.")
    if nonce_tenant(nonce_id) != identity().tenant:
        raise missing
    try:
        nonce = await stores().nonces.get(nonce_id)
    except NotFound:
        raise missing from None
    if alias is not None and nonce.alias != alias.alias:
        raise missing
    if actor is not None and (nonce.alias is not None or nonce.actor_id != actor.id):
        raise missing
    return nonce


# -- actor nonces ---------------------------------------------------------------------------


@blueprint.get("/actors/<actor_id>/nonces")
async def list_nonces(actor_id: str) -> dict[str, Any]:
    """The actor's nonces."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    limit, offset = paging()
    nonces = await collect(stores().nonces, parent=actor.id, limit=limit, offset=offset)
    base = api_server()
    return ok([nonce_view(n, base) for n in nonces], "Actor nonces retrieved successfully.")


@blueprint.post("/actors/<actor_id>/nonces")
async def create_nonce(actor_id: str) -> dict[str, Any]:
    """Make a nonce for the actor (default: EXECUTE, unlimited uses)."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    fields = _new_nonce(await _spec(), _ACTOR_LEVELS, await level_of(actor))
    nonce = Nonce(actor_id=actor.id, **fields)
    await stores().nonces.create(nonce)
    return ok(nonce_view(nonce, api_server()), "Actor nonce created successfully.")


@blueprint.get("/actors/<actor_id>/nonces/<nonce_id>")
async def get_nonce(actor_id: str, nonce_id: str) -> dict[str, Any]:
    """One of the actor's nonces, with its uses so far."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    nonce = await _nonce(nonce_id, actor=actor)
    return ok(nonce_view(nonce, api_server()), "Actor nonce retrieved successfully.")


@blueprint.delete("/actors/<actor_id>/nonces/<nonce_id>")
async def delete_nonce(actor_id: str, nonce_id: str) -> dict[str, Any]:
    """Delete one of the actor's nonces: it stops working at once."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    nonce = await _nonce(nonce_id, actor=actor)
    await stores().nonces.delete(nonce.id)
    return ok(None, "Actor nonce deleted successfully.")


# -- alias nonces ---------------------------------------------------------------------------


async def _alias_and_actor(name: str, level: PermissionLevel) -> tuple[Alias, Actor]:
    """The alias and its actor, if the caller has ``level`` on both (as Abaco asks)."""
    try:
        alias = await alias_for(name, level)
        actor = await actor_for(alias.actor_id, level)
    except PermissionDenied:
        # Abaco's words for a refusal on an alias's nonces, whichever side lacks the level.
        raise PermissionDenied(
            "Not authorized -- you do not have access to this alias and actor."
        ) from None
    return alias, actor


@blueprint.get("/actors/aliases/<alias>/nonces")
async def list_alias_nonces(alias: str) -> dict[str, Any]:
    """The alias's nonces."""
    found, _ = await _alias_and_actor(alias, PermissionLevel.READ)
    limit, offset = paging()
    nonces = (await _alias_nonces(found.alias))[offset : offset + limit]
    base = api_server()
    return ok([nonce_view(n, base) for n in nonces], "Alias nonces retrieved successfully.")


@blueprint.post("/actors/aliases/<alias>/nonces")
async def create_alias_nonce(alias: str) -> dict[str, Any]:
    """Make a nonce for the alias (READ or EXECUTE; default EXECUTE, unlimited uses)."""
    found, actor = await _alias_and_actor(alias, PermissionLevel.UPDATE)
    own_level = min(await alias_level(found), await level_of(actor))
    fields = _new_nonce(await _spec(), _ALIAS_LEVELS, own_level)
    nonce = Nonce(alias=found.alias, **fields)
    await stores().nonces.create(nonce)
    return ok(nonce_view(nonce, api_server()), "Alias nonce created successfully.")


@blueprint.get("/actors/aliases/<alias>/nonces/<nonce_id>")
async def get_alias_nonce(alias: str, nonce_id: str) -> dict[str, Any]:
    """One of the alias's nonces, with its uses so far."""
    found, _ = await _alias_and_actor(alias, PermissionLevel.READ)
    nonce = await _nonce(nonce_id, alias=found)
    return ok(nonce_view(nonce, api_server()), "Alias nonce retrieved successfully.")


@blueprint.delete("/actors/aliases/<alias>/nonces/<nonce_id>")
async def delete_alias_nonce(alias: str, nonce_id: str) -> dict[str, Any]:
    """Delete one of the alias's nonces: it stops working at once."""
    found, _ = await _alias_and_actor(alias, PermissionLevel.UPDATE)
    nonce = await _nonce(nonce_id, alias=found)
    await stores().nonces.delete(nonce.id)
    return ok(None, "Alias nonce deleted successfully.")
