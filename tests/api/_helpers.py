"""Shared steps of the API tests: push a bundle, make users, create actors."""

from __future__ import annotations

import httpx

from abaco.auth import Identity, Role, issue_token
from tests.api.test_repository import _build

IMAGE = "org.example/hello:1.0.0"


async def push_bundle(client: httpx.AsyncClient, tmp_path, version: str = "1.0.0") -> str:
    """Push the hello bundle; returns its image reference."""
    response = await client.put(
        f"/bundles/org.example/hello/{version}", content=_build(tmp_path, version)
    )
    assert response.status_code == 201, response.text
    return f"org.example/hello:{version}"


async def user_client(platform_redis, settings, api_url, user, role=Role.USER, tenant=None):
    """An HTTP client authenticated as a new user (close it with ``aclose``)."""
    identity = Identity(user, tenant or settings.stores.tenant, role)
    token = await issue_token(platform_redis, settings, identity)
    return httpx.AsyncClient(
        base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


async def create_actor(client: httpx.AsyncClient, **fields) -> dict:
    """Create an actor (image defaults to the hello bundle); returns its record."""
    response = await client.post("/actors", json={"image": IMAGE, **fields})
    assert response.status_code == 200, response.text
    return response.json()["result"]
