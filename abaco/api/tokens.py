"""Token routes (admins only): issue a bearer token for a user, and revoke one.

``POST /tokens {"user", "tenant", "role"}`` answers ``{"token": ...}`` once; only the
token's SHA-256 is kept (:mod:`abaco.auth`). ``POST /tokens/revoke {"token"}`` makes it
stop working. ``abaco tokens create|revoke`` call these.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint

from abaco.api.access import require_admin
from abaco.api.context import identity, redis, settings
from abaco.api.envelope import ok
from abaco.api.inputs import spec_body
from abaco.api.schemas import RevokeSpec, TokenSpec
from abaco.auth import Identity, Role, issue_token, revoke_token
from abaco.errors import BadRequest

__all__ = ["blueprint"]

blueprint = Blueprint("tokens", __name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@blueprint.post("/tokens")
async def create_token() -> dict[str, Any]:
    """Issue a token for a user of a tenant with one of Abaco's roles (admins only)."""
    require_admin("issue tokens")
    spec = await spec_body(TokenSpec)
    tenant = spec.tenant or identity().tenant
    for what, value in (("user", spec.user), ("tenant", tenant)):
        if not _NAME.match(value):
            raise BadRequest(f"Invalid token description: {what} {value!r}.")
    try:
        role = Role(spec.role or Role.USER.value)
    except ValueError:
        roles = [r.value for r in Role]
        raise BadRequest(
            f"Invalid token description: role {spec.role!r}: one of {roles}."
        ) from None
    token = await issue_token(redis(), settings(), Identity(spec.user, tenant, role))
    view = {"token": token, "user": spec.user, "tenant": tenant, "role": role.value}
    return ok(view, "Token issued: it is shown only this once.")


@blueprint.post("/tokens/revoke")
async def revoke() -> dict[str, Any]:
    """Revoke an issued token (admins only)."""
    require_admin("revoke tokens")
    spec = await spec_body(RevokeSpec)
    await revoke_token(redis(), settings(), spec.token)
    return ok(None, "Token revoked.")
