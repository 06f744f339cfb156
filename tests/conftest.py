"""Fixtures on real servers: an embedded Valkey for the session, a flushed database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client on a freshly flushed database."""
    async with open_redis(settings.redis.url) as client:
        await client.flushdb()
        yield client


@pytest.fixture
def stores(redis: Redis, settings: Settings) -> Stores:
    """The default tenant's stores on a fresh database."""
    return Stores.open(redis, settings)
