"""What every request handler needs: the caller, its tenant's stores, the hub, settings.

``create_app`` opens Redis and the channel hub once per server (``while_serving``) and
:func:`authenticate` runs before each request; handlers then call :func:`identity`,
:func:`stores` and friends instead of reaching into Quart's globals themselves.
"""

from __future__ import annotations

import attrs
from quart import current_app, g, request

from abaco.auth import Identity, resolve_token
from abaco.channels import Hub
from abaco.config import Settings
from abaco.errors import Unauthenticated
from abaco.redis_client import Redis, ServerInfo
from abaco.stores import Stores

__all__ = [
    "Resources",
    "api_server",
    "authenticate",
    "hub",
    "identity",
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
    """Find out who is calling; :class:`Unauthenticated` without a valid token."""
    g.abaco_identity = await resolve_token(redis(), settings(), _bearer_token())
