"""Fixtures on real servers: an embedded Valkey for the session, a flushed database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from abaco import auth
from abaco.api import create_app, serve_api
from abaco.config import Settings, load_settings
from abaco.redis_client import Redis, open_redis
from abaco.stores import Stores
from abaco.valkey import EmbeddedValkey
from tests._children import child_pids


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """One embedded Valkey for the whole session (fsync every second: tests need speed)."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), appendfsync="everysec")
    with server:
        yield server


@pytest.fixture(autouse=True)
def no_leaked_children(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test that leaves a child process of pytest running."""
    before = child_pids()
    yield
    leaked = child_pids() - before
    if leaked:
        pytest.fail(f"{request.node.nodeid} left child processes running: {sorted(leaked)}")


@pytest.fixture
def settings(valkey_server: EmbeddedValkey, tmp_path: Path) -> Settings:
    """Default settings pointed at the session's Valkey and a per-test state dir."""
    return load_settings(
        environ={
            "ABACO__REDIS__URL": valkey_server.url,
            "ABACO__STATE__DIR": str(tmp_path / "state"),
        }
    )


# The system Redis (a plain Redis 7.0 without persistence on CI machines) is a second
# target when ABACO_TEST_SYSTEM_REDIS names it: every test on `redis` runs there too.
_TARGETS = ["valkey"] + (["system-redis"] if os.environ.get("ABACO_TEST_SYSTEM_REDIS") else [])


@pytest.fixture(params=_TARGETS)
async def redis(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Redis]:
    """A client on a freshly flushed database of each target server."""
    url = settings.redis.url if request.param == "valkey" else os.environ["ABACO_TEST_SYSTEM_REDIS"]
    async with open_redis(url) as client:
        await client.flushdb()
        yield client


@pytest.fixture
def stores(redis: Redis, settings: Settings) -> Stores:
    """The default tenant's stores on a fresh database."""
    return Stores.open(redis, settings)


@pytest.fixture
async def platform_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client on the session Valkey's database, flushed: what the platform under test uses."""
    async with open_redis(settings.redis.url) as client:
        await client.flushdb()
        yield client


@pytest.fixture
async def api_url(settings: Settings, platform_redis: Redis) -> AsyncIterator[str]:
    """The API served by a real hypercorn on 127.0.0.1 and a free port, on a fresh database."""
    async with serve_api(create_app(settings), "127.0.0.1", 0) as url:
        yield url


@pytest.fixture
def admin_token(settings: Settings) -> str:
    """The admin's bearer token."""
    return auth.admin_token(settings)


@pytest.fixture
async def client(api_url: str, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API, authenticated as the admin."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as http:
        yield http
