"""Actor routes: ``/actors``, ``/actors/ID``, and an actor's state and permissions.

Creating an actor checks that its image is a bundle in the repository, makes the caller
its owner with UPDATE, and asks the scheduler for its first worker. An update that changes
the image (or says ``force``) bumps the revision, sends the actor back to SUBMITTED and
replaces its workers; fields an update leaves out keep their values.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs
from quart import Blueprint, current_app

from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Alias, PermissionLevel, utcnow
from abaco.actors.mounts import check_mounts, check_privileged_allowed
from abaco.actors.states import ActorStatus, transition
from abaco.api.access import actor_for, check_privileged, grant, level_of, permissions_view
from abaco.api.context import api_server, hub, identity, redis, settings, stores
from abaco.api.display import actor_view
from abaco.api.envelope import TooManyRequests, ok
from abaco.api.inputs import collect, json_body, paging, spec_body
from abaco.api.messages import purge_mailbox
from abaco.api.nonces import forget_alias_nonces
from abaco.api.schemas import ActorSpec, PermissionSpec
from abaco.control import remember_tenant, request_workers, stop_worker
from abaco.cron import cron_fields
from abaco.errors import BadRequest, BundleError, NotFound
from abaco.events.checks import check_event_fields
from abaco.restore import persist_actor

if TYPE_CHECKING:
    from abaco.bundles.repository import Repository

__all__ = ["blueprint"]

blueprint = Blueprint("actors", __name__)

_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*[kmg]?b?\s*$", re.IGNORECASE)


def _require_image(image: str) -> None:
    repository: Repository = current_app.config["abaco.repository"]
    try:
        repository.require(image)
    except BundleError as exc:
        raise BundleError(f"Invalid actor description: image: {exc}") from None


def _check_fields(fields: dict[str, Any], *, stateless: bool) -> None:
    if fields.get("privileged"):
        check_privileged_allowed(settings().worker)
    if "mounts" in fields:  # checked against the allow-list, and stored normalised
        fields["mounts"] = check_mounts(fields["mounts"], settings().worker.mounts_allowed)
    max_workers = fields.get("max_workers")
    if not stateless and max_workers is not None and max_workers > 1:
        raise BadRequest("Invalid actor description: stateful actors can only have 1 worker.")
    log_ex = fields.get("log_ex")
    if log_ex is not None and log_ex < 1:
        # Abaco keeps any log_ex and cuts it to [stores] log_ex_limit when logs are written.
        raise BadRequest(f"Invalid actor description: log_ex {log_ex}: seconds, at least 1.")
    mem_limit = fields.get("mem_limit")
    if mem_limit is not None and not _SIZE.match(mem_limit):
        raise BadRequest(f"Invalid actor description: mem_limit {mem_limit!r}: a size like 512m.")
    for hint in fields.get("hints", []):
        bad = [c for c in "\"'{}[]" if c in hint]
        if bad:
            raise BadRequest(
                "Hints must be simple stings or numbers, no lists or dicts. "
                f"Error character: {bad[0]}"
            )


def _evolve(actor: Actor, **fields: Any) -> Actor:
    try:
        return attrs.evolve(actor, **fields)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Invalid actor description: {exc}") from None


async def _owned_by(user: str) -> int:
    async def owned(actor: Actor) -> bool:
        return actor.owner == user

    return len(await collect(stores().actors, limit=1000, offset=0, keep=owned))


@blueprint.get("/actors")
async def list_actors() -> dict[str, Any]:
    """The actors the caller may read."""
    limit, offset = paging()

    async def readable(actor: Actor) -> bool:
        return await level_of(actor) >= PermissionLevel.READ

    actors = await collect(stores().actors, limit=limit, offset=offset, keep=readable)
    return ok([actor_view(a, api_server()) for a in actors], "Actors retrieved successfully.")


@blueprint.post("/actors")
async def create_actor() -> dict[str, Any]:
    """Register an actor; its first worker is requested at once."""
    spec = await spec_body(ActorSpec)
    check_privileged(spec)
    fields = spec.given()
    image = fields.pop("image", None)
    if not image:
        raise BadRequest("Invalid actor description: image is required.")
    _check_fields(fields, stateless=fields.get("stateless", True))
    fields |= cron_fields(
        fields, current=None, now=utcnow(), allow_seconds=settings().cron.allow_seconds
    )
    await check_event_fields(fields)
    _require_image(image)
    caller = identity()
    limit = settings().api.max_actors_per_user
    if await _owned_by(caller.user) >= limit:
        raise TooManyRequests(f"User {caller.user} owns {limit} actors already: the limit.")
    now = utcnow()
    actor = _evolve(
        Actor(
            id=new_id(),
            name="",
            owner=caller.user,
            image=image,
            tenant=caller.tenant,
            api_server=api_server(),
            create_time=now,
            last_update_time=now,
        ),
        **fields,
    )
    st = stores()
    prefix = settings().redis.key_prefix
    await st.actors.create(actor)
    await st.permissions.grant(actor.id, caller.user, PermissionLevel.UPDATE)
    await remember_tenant(redis(), prefix, caller.tenant)
    await request_workers(st, hub(), prefix, actor, 1)
    await persist_actor(st, hub(), settings(), actor.id)  # write-through (abaco.restore)
    return ok(actor_view(actor, api_server()), "Actor created successfully.")


@blueprint.get("/actors/<actor_id>")
async def get_actor(actor_id: str) -> dict[str, Any]:
    """One actor."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    return ok(actor_view(actor, api_server()), "Actor retrieved successfully.")


@blueprint.put("/actors/<actor_id>")
async def update_actor(actor_id: str) -> dict[str, Any]:
    """Change an actor; a new image (or ``force``) restarts its workers."""
    current = await actor_for(actor_id, PermissionLevel.UPDATE)
    spec = await spec_body(ActorSpec)
    check_privileged(spec)
    fields = spec.given()
    if not current.stateless and fields.get("stateless"):
        raise BadRequest(
            "Invalid actor description: an actor that was not stateless cannot be updated "
            "to be stateless."
        )
    _check_fields(fields, stateless=fields.get("stateless", current.stateless))
    fields |= cron_fields(
        fields,
        current=current.cron_schedule,
        now=utcnow(),
        allow_seconds=settings().cron.allow_seconds,
    )
    await check_event_fields(fields, current.id)
    if "image" in fields:
        _require_image(fields["image"])
    restart = bool(spec.force) or any(
        # a new image, or a new sandbox (abaco.actors.mounts): workers start afresh
        fields.get(name, getattr(current, name)) != getattr(current, name)
        for name in ("image", "mounts", "privileged")
    )

    def change(actor: Actor) -> Actor:
        changed = _evolve(actor, **fields, last_update_time=utcnow(), api_server=api_server())
        if restart:
            changed = attrs.evolve(
                changed,
                status=transition(actor.status, ActorStatus.SUBMITTED),
                status_message="",
                revision=actor.revision + 1,
            )
        return changed

    st = stores()
    updated = await st.actors.transaction(current.id, change)
    caller = identity()
    if caller.user != updated.owner:
        await st.permissions.grant(updated.id, caller.user, PermissionLevel.UPDATE)
    if restart:
        await _stop_workers(updated.id, "the actor was updated")
        await request_workers(st, hub(), settings().redis.key_prefix, updated, 1)
    await persist_actor(st, hub(), settings(), updated.id)  # write-through (abaco.restore)
    return ok(actor_view(updated, api_server()), "Actor updated successfully.")


async def _stop_workers(actor_id: str, reason: str) -> None:
    st = stores()
    workers = await collect(st.workers, parent=actor_id, limit=1000, offset=0)
    for worker in workers:
        await stop_worker(st, hub(), settings().redis.key_prefix, worker.id, reason)


async def _forget_names_and_nonces(actor: Actor) -> None:
    """Delete the actor's nonces and the aliases that point at it (with theirs)."""
    st = stores()
    for nonce in await collect(st.nonces, parent=actor.id, limit=1_000_000, offset=0):
        await st.nonces.delete(nonce.id)

    async def points_here(alias: Alias) -> bool:
        return alias.actor_id == actor.id

    for alias in await collect(st.aliases, limit=1_000_000, offset=0, keep=points_here):
        await forget_alias_nonces(alias.alias)
        await st.permissions.delete(alias.alias)
        await st.aliases.delete(alias.alias)


@blueprint.delete("/actors/<actor_id>")
async def delete_actor(actor_id: str) -> dict[str, Any]:
    """Delete an actor: its workers stop, its queued messages are aborted."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    await _stop_workers(actor.id, "the actor was deleted")
    await purge_mailbox(actor)
    st = stores()
    await _forget_names_and_nonces(actor)
    await st.actors.delete(actor.id)
    await st.permissions.delete(actor.id)
    await st.state.delete(actor.id)
    await persist_actor(st, hub(), settings(), actor.id)  # write-through (abaco.restore)
    return ok(None, "Actor deleted successfully.")


@blueprint.get("/actors/<actor_id>/state")
async def get_state(actor_id: str) -> dict[str, Any]:
    """A stateful actor's state ({} for a stateless one)."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    return ok({"state": await stores().state.get(actor.id)}, "Actor state retrieved successfully.")


@blueprint.post("/actors/<actor_id>/state")
async def set_state(actor_id: str) -> dict[str, Any]:
    """Replace a stateful actor's state with the JSON body."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    if actor.stateless:
        raise NotFound("actor is stateless.")
    state = await json_body()
    if not state:
        raise BadRequest("Invalid actor state description: state must be JSON serializable.")
    await stores().state.set(actor.id, state)
    # As Abaco's answer (its actor record holds the state): the actor and its new state.
    return ok({**actor_view(actor, api_server()), "state": state}, "State updated successfully.")


@blueprint.get("/actors/<actor_id>/permissions")
async def get_permissions(actor_id: str) -> dict[str, Any]:
    """Who may do what to the actor."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    return ok(await permissions_view(actor.id), "Permissions retrieved successfully.")


@blueprint.post("/actors/<actor_id>/permissions")
async def grant_permission(actor_id: str) -> dict[str, Any]:
    """Give a user a level (NONE revokes) on the actor."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    await grant(actor.id, await spec_body(PermissionSpec))
    await persist_actor(stores(), hub(), settings(), actor.id)  # write-through (abaco.restore)
    return ok(await permissions_view(actor.id), "Permission added successfully.")
