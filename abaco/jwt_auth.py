"""Optional JWT authentication, as Abaco's: a signed token in ``X-JWT-Assertion-TENANT``.

For sites with an identity provider (Abaco ran behind WSO2's API manager, which put the
caller's JWT in that header). Enabled by ``[auth] jwt_public_key_file`` (a PEM public
key) or ``[auth] jwt_jwks_file`` (a JWKS file; the token's ``kid`` picks the key). A
token is taken when its signature checks out with an accepted algorithm
(``jwt_algorithms``), it has not expired (``exp`` is required), and, when
``jwt_audience`` is set, its ``aud`` names it. Then, as in Abaco:

- the **tenant** is the header name's suffix (``X-JWT-Assertion-DEV-STAGING``:
  ``dev-staging``), lowercased, since header names carry no case; with
  ``jwt_tenant_claim`` set, the token must also carry that claim with the same tenant
  (otherwise anyone holding a token could pick a tenant by naming a header);
- the **user** is the ``jwt_user_claim`` claim (WSO2's ``.../enduser``), up to any ``@``;
- the **role** is the most powerful of admin, privileged, user and limited found in the
  ``jwt_roles_claim`` claim (a comma-separated string, or a list) behind
  ``jwt_role_prefix`` (``Internal/abaco-admin``, ...). A token with none of them is
  refused with Abaco's 403 "Not authorized -- missing required role.".

A token that does not check out is a 401 saying why. With JWT disabled, the header is
ignored when the request also has a bearer token, and refused (401, saying JWT is not
enabled) when it is the request's only credential.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from abaco.auth import Identity, Role
from abaco.errors import ConfigError, PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from collections.abc import Iterable

    from abaco.config import AuthSettings

__all__ = ["HEADER_PREFIX", "Assertion", "JwtVerifier", "find_assertion"]

#: Abaco's header: ``X-JWT-Assertion-`` followed by the tenant (case does not matter).
HEADER_PREFIX = "x-jwt-assertion-"

_TENANT = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
_USER = re.compile(r"[^\s:]{1,256}")


@attrs.frozen
class Assertion:
    """A JWT found in a request: the header it came in, its tenant, the token."""

    header_name: str
    tenant: str
    token: str


def find_assertion(headers: Iterable[tuple[str, str]]) -> Assertion | None:
    """The first ``X-JWT-Assertion-TENANT`` header among ``headers``, if any."""
    for name, value in headers:
        if name.lower().startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX):
            return Assertion(name, name[len(HEADER_PREFIX) :].lower(), value.strip())
    return None


def _invalid(why: str) -> Unauthenticated:
    return Unauthenticated(f"Invalid JWT: {why}")


class JwtVerifier:
    """Checks Abaco JWT assertions against the configured key(s); see the module docstring."""

    def __init__(self, settings: AuthSettings, keys: Any | jwt.PyJWKSet) -> None:
        self._settings = settings
        self._keys = keys
        self._algorithms = [a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> JwtVerifier | None:
        """The verifier ``settings`` configure, None when JWT is disabled.

        ConfigError when a key file cannot be read or holds no usable key.
        """
        if settings.jwt_public_key_file and settings.jwt_jwks_file:
            raise ConfigError("[auth] jwt_public_key_file and jwt_jwks_file: set one, not both")
        path = settings.jwt_public_key_file or settings.jwt_jwks_file
        if not path:
            return None
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the JWT key: {exc.strerror or exc}") from exc
        try:
            if settings.jwt_public_key_file:
                return cls(settings, load_pem_public_key(data))
            return cls(settings, jwt.PyJWKSet.from_json(data.decode()))
        except (ValueError, TypeError, UnicodeDecodeError, jwt.PyJWKError) as exc:
            raise ConfigError(f"{path}: not a usable JWT key: {exc}") from exc

    def _key(self, token: str) -> Any:
        if not isinstance(self._keys, jwt.PyJWKSet):
            return self._keys
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise _invalid(str(exc)) from None
        if kid is None and len(self._keys.keys) == 1:
            return self._keys.keys[0].key
        try:
            return self._keys[str(kid)].key
        except KeyError:
            raise _invalid(f"no key with kid {kid!r} in the configured JWKS.") from None

    def identity(self, assertion: Assertion) -> Identity:
        """Who the assertion's token stands for; Unauthenticated (401) when it is invalid."""
        options = self._settings
        if not _TENANT.fullmatch(assertion.tenant):
            raise _invalid(f"no valid tenant in the header name {assertion.header_name!r}.")
        try:
            claims = jwt.decode(
                assertion.token,
                self._key(assertion.token),
                algorithms=self._algorithms,
                audience=options.jwt_audience or None,
                options={"require": ["exp"], "verify_aud": bool(options.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired.") from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"{exc}.") from None
        user = str(claims.get(options.jwt_user_claim, "")).split("@")[0]
        if not _USER.fullmatch(user):
            raise _invalid(f"no valid user in the claim {options.jwt_user_claim!r}.")
        if options.jwt_tenant_claim:
            claimed = str(claims.get(options.jwt_tenant_claim, "")).lower()
            if claimed != assertion.tenant:
                raise _invalid(f"the token is not for tenant {assertion.tenant!r}.")
        return Identity(user, assertion.tenant, self._role(claims.get(options.jwt_roles_claim)))

    def _role(self, claim: object) -> Role:
        """The most powerful Abaco role the claim holds; PermissionDenied with none."""
        names = claim.split(",") if isinstance(claim, str) else claim
        prefix = self._settings.jwt_role_prefix
        held: set[str] = set()
        if isinstance(names, list):
            stripped = (str(name).strip() for name in names)
            held = {name[len(prefix) :] for name in stripped if name.startswith(prefix)}
        for role in Role:  # most powerful first
            if role.value in held:
                return role
        raise PermissionDenied("Not authorized -- missing required role.")
