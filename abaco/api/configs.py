"""Actor config routes: ``/actors/configs``, one config, and the config's own permissions.

    GET    /actors/configs                          the configs the caller may read
    POST   /actors/configs                          {"name", "value", "actors", "is_secret"}
    GET    /actors/configs/NAME                     READ on the config
    PUT    /actors/configs/NAME                     {"value", "actors", "is_secret"}: UPDATE
    DELETE /actors/configs/NAME                     UPDATE on the config
    GET    /actors/configs/NAME/permissions         READ on the config
    POST   /actors/configs/NAME/permissions         {"user", "level"}: UPDATE on the config

As in Abaco (see :mod:`abaco.actor_configs`): the creator gets UPDATE on the config, every
actor or alias in ``actors`` must exist (404 naming the first that does not), a PUT
replaces the value, the actors and ``is_secret`` together, and a secret is shown as its
ciphertext. Unlike Abaco, attaching a config needs UPDATE on each actor or alias it names
(Abaco meant to check that, but dropped the answer) and the list shows only the configs
the caller may read. A taken name is a 400, as in Abaco.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from abaco.actor_configs import (
    ActorConfig,
    check_config_name,
    encrypt,
    identifiers_of,
)
from abaco.actors.models import PermissionLevel, to_dict
from abaco.api.access import WORLD_USER, alias_level, is_alias_name, level_of
from abaco.api.context import identity, nonce_grant, settings, stores
from abaco.api.envelope import ok
from abaco.api.inputs import collect, paging, spec_body
from abaco.api.schemas import ConfigSpec, PermissionSpec
from abaco.errors import BadRequest, Conflict, NotFound, PermissionDenied

__all__ = ["blueprint", "config_view"]

blueprint = Blueprint("configs", __name__)


def config_view(config: ActorConfig) -> dict[str, Any]:
    """A config as the API shows it: Abaco's fields (a secret's value is its ciphertext)."""
    view = to_dict(config)
    view.pop("tenant")
    return view


async def config_level(name: str) -> PermissionLevel:
    """The caller's level on the config ``name`` (admins have UPDATE on every config)."""
    caller = identity()
    if nonce_grant() is not None:
        return PermissionLevel.NONE  # a nonce opens one actor's routes, never configs
    if caller.is_admin:
        return PermissionLevel.UPDATE
    permissions = stores().config_permissions
    return max(
        await permissions.level(name, caller.user),
        await permissions.level(name, WORLD_USER),
    )


async def _config_for(name: str, level: PermissionLevel) -> ActorConfig:
    """The config ``name`` if the caller has ``level`` on it (404, then 403)."""
    missing = NotFound(f"No config found: {name}.")
    try:
        check_config_name(name)
        config = await stores().configs.get(name)
    except (BadRequest, NotFound):
        raise missing from None
    if await config_level(name) < level:
        raise PermissionDenied("You do not have sufficient access to this actor config.")
    return config


def _required(value: Any, field: str) -> Any:
    if value is None:
        raise BadRequest(f"Invalid config description. Missing required field: {field}.")
    return value


async def _targets(actors: str) -> str:
    """``actors`` normalised; each must exist and the caller needs UPDATE on each."""
    st = stores()
    identifiers = identifiers_of(actors)
    for identifier in identifiers:
        try:
            level = await level_of(await st.actors.get(identifier))
        except NotFound:
            if not is_alias_name(identifier):
                raise NotFound(f"No actor or alias found with id: {identifier}.") from None
            try:
                alias = await st.aliases.get(identifier)
            except NotFound:
                raise NotFound(f"No actor or alias found with id: {identifier}.") from None
            level = await alias_level(alias)
        if level < PermissionLevel.UPDATE:
            raise PermissionDenied(
                "Not authorized -- you do not have UPDATE access to the actor or alias "
                f"{identifier}."
            )
    return ",".join(identifiers)


def _stored_value(value: str, is_secret: bool) -> str:
    return encrypt(settings(), value) if is_secret else value


@blueprint.get("/actors/configs")
async def list_configs() -> dict[str, Any]:
    """The actor configs of the caller's tenant that the caller may read."""
    limit, offset = paging()

    async def readable(config: ActorConfig) -> bool:
        return await config_level(config.name) >= PermissionLevel.READ

    configs = await collect(stores().configs, limit=limit, offset=offset, keep=readable)
    return ok([config_view(c) for c in configs], "Actor Configs retrieved successfully.")


@blueprint.post("/actors/configs")
async def create_config() -> dict[str, Any]:
    """Create an actor config; the caller needs UPDATE on each actor and gets it on the config."""
    spec = await spec_body(ConfigSpec)
    name = _required(spec.name, "name")
    value = _required(spec.value, "value")
    actors = _required(spec.actors, "actors")
    is_secret = _required(spec.is_secret, "is_secret")
    check_config_name(name)
    caller = identity()
    config = ActorConfig(
        name=name,
        value=_stored_value(value, is_secret),
        actors=await _targets(actors),
        is_secret=is_secret,
        tenant=caller.tenant,
    )
    st = stores()
    try:
        await st.configs.create(config)
    except Conflict:
        # A 400, as Abaco answers, with its message.
        raise BadRequest(
            f"Config {name} already exists; please choose another name for your config"
        ) from None
    # Whatever a deleted config of this name left behind (if its deletion was cut short)
    # must not carry over to the new one.
    await st.config_permissions.delete(name)
    await st.config_permissions.grant(name, caller.user, PermissionLevel.UPDATE)
    return ok(config_view(config), "Actor config created successfully.")


@blueprint.get("/actors/configs/<config_name>")
async def get_config(config_name: str) -> dict[str, Any]:
    """One actor config."""
    config = await _config_for(config_name, PermissionLevel.READ)
    return ok(config_view(config), "Config retrieved successfully.")


@blueprint.put("/actors/configs/<config_name>")
async def update_config(config_name: str) -> dict[str, Any]:
    """Replace a config's value, actors and secrecy (UPDATE on it and on each actor)."""
    found = await _config_for(config_name, PermissionLevel.UPDATE)
    spec = await spec_body(ConfigSpec)
    if spec.name is not None and spec.name != found.name:
        raise BadRequest(
            "Invalid config update description. The name of a config cannot be changed."
        )
    value = _required(spec.value, "value")
    actors = _required(spec.actors, "actors")
    is_secret = _required(spec.is_secret, "is_secret")
    updated = await stores().configs.update(
        found.name,
        value=_stored_value(value, is_secret),
        actors=await _targets(actors),
        is_secret=is_secret,
    )
    return ok(config_view(updated), "Actor config updated successfully.")


@blueprint.delete("/actors/configs/<config_name>")
async def delete_config(config_name: str) -> dict[str, Any]:
    """Delete an actor config and its permissions."""
    found = await _config_for(config_name, PermissionLevel.UPDATE)
    st = stores()
    # The record goes last: if this is cut short, the config is still there to delete again.
    await st.config_permissions.delete(found.name)
    await st.configs.delete(found.name)
    return ok(None, f"Actor config {found.name} deleted successfully.")


@blueprint.get("/actors/configs/<config_name>/permissions")
async def get_config_permissions(config_name: str) -> dict[str, Any]:
    """Who may do what to the config."""
    found = await _config_for(config_name, PermissionLevel.READ)
    levels = await stores().config_permissions.all(found.name)
    return ok(
        {user: level.name for user, level in sorted(levels.items())},
        "Permissions retrieved successfully.",
    )


@blueprint.post("/actors/configs/<config_name>/permissions")
async def grant_config_permission(config_name: str) -> dict[str, Any]:
    """Give a user a level (NONE revokes) on the config."""
    found = await _config_for(config_name, PermissionLevel.UPDATE)
    spec = await spec_body(PermissionSpec)
    if spec.level not in PermissionLevel.__members__:
        raise BadRequest(
            f"Invalid permission level: {spec.level}. "
            f"The valid values are {list(PermissionLevel.__members__)}"
        )
    if not spec.user or ":" in spec.user or any(c.isspace() for c in spec.user):
        raise BadRequest(f"Invalid permissions description: user {spec.user!r}.")
    permissions = stores().config_permissions
    await permissions.grant(found.name, spec.user, PermissionLevel[spec.level])
    levels = await permissions.all(found.name)
    return ok(
        {user: level.name for user, level in sorted(levels.items())},
        "Permission added successfully.",
    )
