"""What every request handler needs: the caller, its tenant's stores, the hub, settings.

``create_app`` opens Redis and the channel hub once per server (``while_serving``) and
:func:`authenticate` runs before each request; handlers then call :func:`identity`,
:func:`stores` and friends instead of reaching into Quart's globals themselves.

A request authenticates with a bearer token or with ``?x-nonce=ID``. A nonce stands for
its owner, but only on the actor or alias it was made for (named in the request's path
as it was made: an alias nonce through the alias) and only up to its level; each request
it authenticates spends one of its uses, atomically. When a request carries both, the
nonce wins, as in Abaco: the request gets the nonce's narrow rights, never the token's.
Where JWT is enabled (:mod:`abaco.jwt_auth`), an ``X-JWT-Assertion-TENANT`` header comes
next, before a bearer token.
"""

from __future__ import annotations

import functools
import re
import secrets

import attrs
import trio
from quart import current_app, g, request

from abaco.actors.ids import new_id
from abaco.actors.models import Nonce, PermissionLevel, utcnow
from abaco.auth import Identity, Role, resolve_token
from abaco.channels import Hub
from abaco.config import Settings
from abaco.errors import BadRequest, NotFound, PermissionDenied, Unauthenticated
from abaco.jwt_auth import JwtVerifier, find_assertion
from abaco.redis_client import Redis, ServerInfo
from abaco.stores import Stores

__all__ = [
    "NonceGrant",
    "Resources",
    "api_server",
    "authenticate",
    "hub",
    "identity",
    "new_nonce_id",
    "nonce_grant",
    "nonce_tenant",
    "redis",
    "resources",
    "settings",
    "stores",
]


@attrs.define
class Resources:
    """The connections one API server shares between its requests."""

    settings: Settings
    redis: Redis
    hub: Hub
    server: ServerInfo


def resources() -> Resources:
    """This server's shared resources."""
    shared: Resources = current_app.config["abaco.resources"]
    return shared


def settings() -> Settings:
    """The server's settings."""
    return resources().settings


def redis() -> Redis:
    """The server's Redis client."""
    return resources().redis


def hub() -> Hub:
    """The server's channel hub."""
    return resources().hub


def identity() -> Identity:
    """Who is calling (set by :func:`authenticate`)."""
    caller: Identity = g.abaco_identity
    return caller


def stores() -> Stores:
    """The stores of the caller's tenant."""
    cached: Stores | None = g.get("abaco_stores")
    if cached is None:
        cached = Stores.open(redis(), settings(), identity().tenant)
        g.abaco_stores = cached
    return cached


def api_server() -> str:
    """The base URL clients reach this API on, as Abaco puts it in ``_links``."""
    return request.host_url.rstrip("/")


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "No access token: send the header 'Authorization: Bearer TOKEN'."
            if not header
            else "Invalid Authorization header: expected 'Bearer TOKEN'."
        )
    return token.strip()


async def authenticate() -> None:
    """Find out who is calling; :class:`Unauthenticated` without a valid token or nonce."""
    nonce_id = request.args.get("x-nonce")
    if nonce_id is not None:
        await _redeem(nonce_id)
        return
    assertion = find_assertion(request.headers.items())
    if assertion is not None:
        verifier: JwtVerifier | None = current_app.config.get("abaco.jwt")
        if verifier is not None:
            g.abaco_identity = verifier.identity(assertion)
            g.abaco_jwt_header_name = assertion.header_name
            return
        if "Authorization" not in request.headers:
            raise Unauthenticated(
                f"JWT authentication is not enabled on this server ({assertion.header_name} "
                "was sent): send the header 'Authorization: Bearer TOKEN'."
            )
    g.abaco_identity = await resolve_token(redis(), settings(), _bearer_token())


# -- nonces -------------------------------------------------------------------------------


@attrs.frozen
class NonceGrant:
    """What a request authenticated by a nonce may reach: one actor, up to one level."""

    nonce_id: str
    level: PermissionLevel
    #: The actor the nonce reaches now (for an alias nonce, the alias's actor).
    actor_id: str
    #: The alias of an alias nonce, None for an actor nonce.
    alias: str | None


def nonce_grant() -> NonceGrant | None:
    """The nonce this request was authenticated by, if it was."""
    grant: NonceGrant | None = g.get("abaco_nonce")
    return grant


# A nonce id is TENANT_RANDOM: the tenant is found before the tenant's stores are opened,
# and the 32 characters after it (a sortable id and 64 more random bits) make it
# unguessable. RANDOM holds no "_", so the tenant is what lies before the last one.
_NONCE_RANDOM = re.compile(r"[0-9a-z]{32}")


def new_nonce_id(tenant: str) -> str:
    """A new nonce id for ``tenant``."""
    return f"{tenant}_{new_id()}{secrets.token_hex(8)}"


def nonce_tenant(nonce_id: str) -> str | None:
    """The tenant a nonce id belongs to; None when it is not a nonce id at all."""
    tenant, _, random = nonce_id.rpartition("_")
    if not tenant or not _NONCE_RANDOM.fullmatch(random):
        return None
    return tenant


_NO_SUCH_NONCE = "Invalid x-nonce: no such nonce (it may have been deleted)."


async def _redeem(nonce_id: str) -> None:
    tenant = nonce_tenant(nonce_id)
    if tenant is None:
        raise Unauthenticated(_NO_SUCH_NONCE)
    try:
        tenant_stores = Stores.open(redis(), settings(), tenant)
        nonce = await tenant_stores.nonces.get(nonce_id)
    except (BadRequest, NotFound):
        raise Unauthenticated(_NO_SUCH_NONCE) from None
    actor_id = await _target(tenant_stores, nonce)
    needed = _needed_level()
    if nonce.level < needed:
        raise PermissionDenied(
            f"Not authorized -- the nonce's level is {nonce.level.name}; this request needs "
            f"{needed.name}."
        )
    await _spend(tenant_stores, nonce)
    g.abaco_identity = Identity(nonce.owner, tenant, _role(nonce))
    g.abaco_stores = tenant_stores
    g.abaco_nonce = NonceGrant(nonce.id, nonce.level, actor_id, nonce.alias)


async def _target(tenant_stores: Stores, nonce: Nonce) -> str:
    """The id of the actor the nonce reaches, if the request's path names its actor or alias."""
    args = request.view_args or {}
    through_alias = "alias" in args
    named = args.get("alias", args.get("actor_id"))
    if not isinstance(named, str):
        raise PermissionDenied(
            "Not authorized -- a nonce only opens the routes of the actor or alias it is for."
        )
    if nonce.alias is not None and nonce.alias == named:
        try:
            alias = await tenant_stores.aliases.get(nonce.alias)
        except NotFound:
            raise Unauthenticated(_NO_SUCH_NONCE) from None
        return alias.actor_id
    if nonce.actor_id is not None and nonce.actor_id == named and not through_alias:
        return nonce.actor_id
    raise PermissionDenied("Not authorized -- this nonce is for another actor or alias.")


def _needed_level() -> PermissionLevel:
    """The level the request needs, by Abaco's rule: read, send a message, or change."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return PermissionLevel.READ
    rule = request.url_rule.rule if request.url_rule is not None else ""
    if request.method == "POST" and rule.endswith("/messages"):
        return PermissionLevel.EXECUTE
    return PermissionLevel.UPDATE


async def _spend(tenant_stores: Stores, nonce: Nonce) -> None:
    """Use the nonce once; PermissionDenied when no use is left (decided atomically)."""
    now = utcnow()
    nonces = tenant_stores.nonces
    try:
        if nonce.max_uses == -1:
            # Unlimited: nothing to decide, so no compare-and-set for busy nonces to lose,
            # and the two writes go out together.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(nonces.increment, nonce.id, "current_uses")
                nursery.start_soon(functools.partial(nonces.update, nonce.id, last_use_time=now))
            return

        def spent(current: Nonce) -> Nonce:
            if current.remaining_uses == 0:
                raise PermissionDenied("No remaining uses left for this nonce.")
            return attrs.evolve(
                current,
                current_uses=current.current_uses + 1,
                remaining_uses=current.remaining_uses - 1,
                last_use_time=now,
            )

        # A compare-and-set: of two requests racing for the last use, one gets it.
        await nonces.transaction(nonce.id, spent)
    except NotFound:
        raise Unauthenticated(_NO_SUCH_NONCE) from None


def _role(nonce: Nonce) -> Role:
    """The role the nonce's owner had when making it (Abaco keeps the creator's roles)."""
    for name in nonce.roles:
        try:
            return Role(name)
        except ValueError:
            continue
    return Role.USER
