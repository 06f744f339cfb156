"""Who is calling: bearer tokens, the identities they stand for, and the admin token.

A token identifies a user of one tenant with one of Abaco's roles. Two kinds exist:

- the **admin token**: ``[auth] admin_token``, or, when that is empty, a random token that
  the first process to need it writes to ``admin-token`` in the state dir (mode 0600), so
  ``abaco up``, its components and the CLI on the same machine agree without configuration;
- **issued tokens** (``abaco tokens create``), kept in Redis under the SHA-256 of the
  token, never the token itself, and revocable.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import secrets
from typing import TYPE_CHECKING

import attrs

from abaco.errors import NotFound, Unauthenticated

if TYPE_CHECKING:
    from pathlib import Path

    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = [
    "Identity",
    "Role",
    "admin_identity",
    "admin_token",
    "issue_token",
    "resolve_token",
    "revoke_token",
]


class Role(enum.StrEnum):
    """Abaco's roles, from most to least powerful."""

    ADMIN = "admin"
    PRIVILEGED = "privileged"
    USER = "user"
    LIMITED = "limited"


@attrs.frozen
class Identity:
    """The caller of one request."""

    user: str
    tenant: str
    role: Role = Role.USER

    @property
    def is_admin(self) -> bool:
        """Whether the caller may do anything in its tenant."""
        return self.role is Role.ADMIN


def _token_file(settings: Settings) -> Path:
    return settings.state.path() / "admin-token"


def admin_token(settings: Settings) -> str:
    """The admin token: configured, else read from (or first written to) the state dir."""
    if settings.auth.admin_token:
        return settings.auth.admin_token
    path = _token_file(settings)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        # O_EXCL: of several processes starting at once, one writes and the others read.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token


def admin_identity(settings: Settings) -> Identity:
    """Who the admin token stands for."""
    return Identity(settings.auth.admin_user, settings.stores.tenant, Role.ADMIN)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(settings: Settings, token: str) -> str:
    return f"{settings.redis.key_prefix}:_platform:token:{_digest(token)}"


async def issue_token(redis: Redis, settings: Settings, identity: Identity) -> str:
    """A new token for ``identity``; only its digest is stored."""
    token = secrets.token_urlsafe(32)
    record = {"user": identity.user, "tenant": identity.tenant, "role": identity.role.value}
    await redis.set(_key(settings, token), json.dumps(record).encode())
    return token


async def revoke_token(redis: Redis, settings: Settings, token: str) -> None:
    """Make ``token`` stop working; NotFound when it was never issued."""
    if not await redis.delete(_key(settings, token)):
        raise NotFound("no such token")


async def resolve_token(redis: Redis, settings: Settings, token: str) -> Identity:
    """The identity ``token`` stands for; Unauthenticated when it is unknown."""
    if secrets.compare_digest(token, admin_token(settings)):
        return admin_identity(settings)
    raw = await redis.get(_key(settings, token))
    if raw is None:
        raise Unauthenticated("invalid or revoked token")
    record = json.loads(raw)
    return Identity(record["user"], record["tenant"], Role(record["role"]))
