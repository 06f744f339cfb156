"""JWT authentication over real HTTP (Abaco's X-JWT-Assertion-TENANT), and CORS.

Keys are made in the test (cryptography); tokens are signed with PyJWT as an identity
provider would sign them. CORS ports test_cors_list_actors and
test_cors_options_list_actors of Abaco's tests/test_abaco_core.py.
"""

from __future__ import annotations

import json
import time

import attrs
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from abaco.api import create_app, serve_api
from abaco.errors import ConfigError
from abaco.jwt_auth import JwtVerifier
from tests.api._helpers import IMAGE, create_actor, push_bundle

USER_CLAIM = "http://wso2.org/claims/enduser"
ROLES_CLAIM = "http://wso2.org/claims/role"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER_KEY = new_key(), new_key()


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def token(
    key=KEY,
    *,
    user="jdoe@carbon.super",
    roles="Internal/abaco-user",
    ttl=300,
    headers=None,
    **claims,
):
    payload = {USER_CLAIM: user, ROLES_CLAIM: roles, "exp": int(time.time()) + ttl, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def assertion(header_tenant="DEV-STAGING", **token_fields) -> dict[str, str]:
    """The header Abaco's clients send: X-JWT-Assertion-TENANT with a signed token."""
    return {f"X-JWT-Assertion-{header_tenant}": token(**token_fields)}


@pytest.fixture
def settings(settings, tmp_path):
    """JWT on, with the test's public key."""
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(public_pem(KEY))
    auth = attrs.evolve(settings.auth, jwt_public_key_file=str(key_file))
    return attrs.evolve(settings, auth=auth)


@pytest.fixture
async def anonymous(api_url):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def test_a_valid_token_is_the_user_of_the_headers_tenant(anonymous, client, tmp_path):
    await push_bundle(client, tmp_path)
    headers = assertion("DEV-STAGING", user="jdoe@carbon.super")
    created = await anonymous.post("/actors", json={"image": IMAGE}, headers=headers)
    assert created.status_code == 200, created.text
    actor = created.json()["result"]
    assert (actor["owner"], actor["tenant"]) == ("jdoe", "dev-staging")
    # Another tenant's header is another tenant: the actor is not there (Abaco's test_tenant_*).
    listed = await anonymous.get("/actors", headers=assertion("DEV-DEVELOP", user="jdoe"))
    assert listed.status_code == 200
    assert listed.json()["result"] == []
    assert (await client.get(f"/actors/{actor['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("roles", "reserved_allowed"),
    [
        ("Internal/everyone,Internal/abaco-admin", True),
        (["Internal/abaco-privileged"], True),
        ("Internal/abaco-user", False),
        ("Internal/abaco-limited,Internal/everyone", False),
    ],
)
async def test_abacos_role_claims_map_to_roles(
    anonymous, client, tmp_path, roles, reserved_allowed
):
    await push_bundle(client, tmp_path)
    headers = assertion(user="rita", roles=roles)
    response = await anonymous.post(
        "/actors", json={"image": IMAGE, "max_workers": 2}, headers=headers
    )
    assert (response.status_code == 200) is reserved_allowed, response.text
    if not reserved_allowed:
        assert response.status_code == 403


async def test_a_token_without_an_abaco_role_is_refused(anonymous):
    for roles in ("Internal/everyone", "", ["admin"]):
        response = await anonymous.get("/actors", headers=assertion(roles=roles))
        assert response.status_code == 403
        assert response.json()["message"] == "Not authorized -- missing required role."


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (assertion(ttl=-60), "Invalid JWT: the token has expired."),
        (assertion(key=OTHER_KEY), "Invalid JWT: Signature verification failed."),
        ({"X-JWT-Assertion-DEV": "not.a.jwt"}, "Invalid JWT: "),
        ({"X-JWT-Assertion-DEV": jwt.encode({USER_CLAIM: "x"}, KEY, "RS256")}, '"exp"'),
        (
            {"X-JWT-Assertion-DEV": jwt.encode({"exp": 2**40}, "k" * 32, "HS256")},
            "alg value is not allowed",
        ),
        (assertion(user=""), "Invalid JWT: no valid user"),
        (assertion("_bad"), "Invalid JWT: no valid tenant"),
    ],
)
async def test_a_bad_token_is_a_401_envelope(anonymous, headers, says):
    response = await anonymous.get("/actors", headers=headers)
    assert response.status_code == 401, response.text
    body = response.json()
    assert (body["status"], body["result"]) == ("error", None)
    assert says in body["message"]


async def test_the_tenant_claim_when_configured_must_match_the_header(settings, tmp_path):
    auth = attrs.evolve(settings.auth, jwt_tenant_claim="tenant")
    strict = attrs.evolve(settings, auth=auth)
    async with (
        serve_api(create_app(strict), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        same = await http.get("/actors", headers=assertion("T1", tenant="t1"))
        other = await http.get("/actors", headers=assertion("T2", tenant="t1"))
        missing = await http.get("/actors", headers=assertion("T1"))
    assert same.status_code == 200, same.text
    assert (other.status_code, missing.status_code) == (401, 401)
    assert other.json()["message"] == "Invalid JWT: the token is not for tenant 't2'."


async def test_a_jwks_file_picks_the_key_by_kid(settings, tmp_path):
    keys = []
    for kid, key in (("old", OTHER_KEY), ("new", KEY)):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    auth = attrs.evolve(settings.auth, jwt_public_key_file="", jwt_jwks_file=str(jwks))
    with_jwks = attrs.evolve(settings, auth=auth)
    async with (
        serve_api(create_app(with_jwks), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        new = await http.get("/actors", headers=assertion(headers={"kid": "new"}))
        old = await http.get("/actors", headers=assertion(key=OTHER_KEY, headers={"kid": "old"}))
        mixed = await http.get("/actors", headers=assertion(headers={"kid": "old"}))
        unknown = await http.get("/actors", headers=assertion(headers={"kid": "gone"}))
    assert (new.status_code, old.status_code) == (200, 200)
    assert (mixed.status_code, unknown.status_code) == (401, 401)
    assert (
        unknown.json()["message"] == "Invalid JWT: no key with kid 'gone' in the configured JWKS."
    )


async def test_with_jwt_disabled_the_header_is_refused_alone_and_ignored_beside_a_token(
    settings, admin_token
):
    auth = attrs.evolve(settings.auth, jwt_public_key_file="")
    plain = attrs.evolve(settings, auth=auth)
    async with (
        serve_api(create_app(plain), "127.0.0.1", 0) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        alone = await http.get("/actors", headers=assertion())
        beside = await http.get(
            "/actors", headers={**assertion(), "Authorization": f"Bearer {admin_token}"}
        )
    assert alone.status_code == 401
    assert alone.json()["message"].startswith("JWT authentication is not enabled on this server")
    assert beside.status_code == 200


def test_an_unusable_key_file_is_a_config_error(settings, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for options in (
        {"jwt_public_key_file": str(bad)},
        {"jwt_public_key_file": str(tmp_path / "missing.pem")},
        {"jwt_public_key_file": "", "jwt_jwks_file": str(bad)},
        {"jwt_jwks_file": str(bad)},  # both set
    ):
        with pytest.raises(ConfigError):
            JwtVerifier.from_settings(attrs.evolve(settings.auth, **options))


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_list_actors(client):
    response = await client.get("/actors", headers={"Origin": "http://example.com"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_options_list_actors(anonymous):
    # A preflight carries no credentials, and needs none.
    response = await anonymous.options(
        "/actors",
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Requested-With, Authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-requested-with" in allowed
    assert "authorization" in allowed


async def test_errors_carry_cors_headers_too(anonymous):
    response = await anonymous.get("/actors", headers={"Origin": "http://example.com"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_follows_the_configured_origins(settings, admin_token):
    for origins, origin, expected in (
        ("https://portal.example, https://b.example", "https://portal.example", True),
        ("https://portal.example", "http://example.com", False),
        ("", "http://example.com", False),
    ):
        configured = attrs.evolve(settings, api=attrs.evolve(settings.api, cors_origins=origins))
        async with (
            serve_api(create_app(configured), "127.0.0.1", 0) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            response = await http.get(
                "/actors",
                headers={"Origin": origin, "Authorization": f"Bearer {admin_token}"},
            )
        assert response.status_code == 200
        allowed = response.headers.get("Access-Control-Allow-Origin")
        assert allowed == (origin if expected else None), (origins, origin)


async def test_a_jwt_user_works_with_the_routes_as_a_token_user_does(anonymous, client, tmp_path):
    await push_bundle(client, tmp_path)
    headers = assertion(user="ana", roles="Internal/abaco-user")
    async with httpx.AsyncClient(
        base_url=str(anonymous.base_url), timeout=30, headers=headers
    ) as ana:
        actor = await create_actor(ana)
        assert (await ana.get(f"/actors/{actor['id']}")).status_code == 200
