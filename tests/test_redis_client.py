"""Our Redis client: clear errors for unreachable servers, and what a server can do."""

from __future__ import annotations

import os
import socket

import pytest

from abaco.errors import StoreUnavailable
from abaco.redis_client import ServerInfo, open_redis


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_server_is_a_clear_error_naming_it():
    port = _closed_port()
    with pytest.raises(StoreUnavailable, match=rf"redis://127.0.0.1:{port}/0: Redis unreachable"):
        async with open_redis(f"redis://127.0.0.1:{port}/0", connect_timeout=1):
            pass


async def test_a_password_never_appears_in_errors():
    port = _closed_port()
    with pytest.raises(StoreUnavailable) as info:
        async with open_redis(f"redis://user:s3cret@127.0.0.1:{port}/0", connect_timeout=1):
            pass
    assert "s3cret" not in str(info.value)
    assert "user:***@127.0.0.1" in str(info.value)


async def test_a_bad_url_is_a_clear_error():
    with pytest.raises(StoreUnavailable, match="bad Redis URL"):
        async with open_redis("http://127.0.0.1:1"):
            pass


async def test_server_info_of_the_embedded_server(valkey_server):
    async with open_redis(valkey_server.url) as redis:
        info = await redis.server_info()
    assert info.product == "valkey"
    assert info.version >= (8,)
    assert info.has_waitaof


def test_what_a_plain_redis_7_0_lacks():
    plain = ServerInfo(
        product="redis", version=(7, 0, 15), appendonly=False, appendfsync="everysec"
    )
    assert not plain.has_waitaof
    assert not plain.acknowledged_writes_durable
    assert ServerInfo(
        product="redis", version=(7, 2, 0), appendonly=True, appendfsync="always"
    ).has_waitaof


@pytest.mark.skipif(
    not os.environ.get("ABACO_TEST_SYSTEM_REDIS"),
    reason="ABACO_TEST_SYSTEM_REDIS is not set (.ci/run sets it)",
)
async def test_the_system_redis_is_detected_for_what_it_is():
    async with open_redis(os.environ["ABACO_TEST_SYSTEM_REDIS"]) as redis:
        info = await redis.server_info()
    assert info.product in ("redis", "valkey")
    assert info.has_waitaof == (info.product == "valkey" or info.version >= (7, 2))
