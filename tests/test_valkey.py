"""The embedded Valkey: starts, keeps acknowledged writes across restarts, fails clearly."""

from __future__ import annotations

import socket

import pytest

from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Execution
from abaco.config import load_settings
from abaco.errors import ValkeyError
from abaco.redis_client import open_redis
from abaco.stores import Stores
from abaco.valkey import EmbeddedValkey, open_embedded_valkey


async def _write_everything(stores: Stores) -> tuple[list[Actor], list[Execution]]:
    actors = [Actor(id=new_id(), name=f"a{i}", owner="alice", image="g/a:1") for i in range(20)]
    executions = [Execution(id=new_id(), actor_id=actors[i % 20].id) for i in range(100)]
    for actor in actors:
        await stores.actors.put(actor)
    for execution in executions:
        await stores.executions.put(execution)
    await stores.logs.append(executions[0].id, "a log line\n")
    return actors, executions


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_restart_on_the_same_data_dir_keeps_every_acknowledged_write(tmp_path, stop):
    # fsync always: each write is on disk before the server answers, so even SIGKILL keeps it.
    server = EmbeddedValkey(tmp_path / "valkey", appendfsync="always")
    settings = load_settings(environ={"ABACO__STATE__DIR": str(tmp_path)})
    server.start()
    try:
        async with open_redis(server.url) as redis:
            actors, executions = await _write_everything(Stores.open(redis, settings))
        server.stop() if stop == "sigterm" else server.kill()
        assert not server.running
        server.start()
        async with open_redis(server.url) as redis:
            stores = Stores.open(redis, settings)
            assert (await stores.actors.list(limit=100)).items == actors
            assert (await stores.executions.list(limit=1000)).items == executions
            assert await stores.executions.count(parent=actors[0].id) == 5
            assert (await stores.logs.read(executions[0].id)).text == "a log line\n"
    finally:
        server.stop()


async def test_open_embedded_valkey_serves_then_stops(tmp_path):
    async with open_embedded_valkey(tmp_path / "v") as server:
        async with open_redis(server.url) as redis:
            info = await redis.server_info()
        assert server.running
    assert not server.running
    assert info.product == "valkey"
    assert info.appendonly
    assert info.appendfsync == "always"
    assert info.has_waitaof
    assert info.acknowledged_writes_durable


def test_a_taken_port_fails_with_the_server_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedValkey(tmp_path / "v", port=port, startup_timeout=5)
        with pytest.raises(
            ValkeyError, match=r"exited with status \d+ while starting(.|\n)*log says"
        ):
            server.start()
    assert not server.running


def test_starting_twice_is_refused(tmp_path):
    with EmbeddedValkey(tmp_path / "v") as server, pytest.raises(ValkeyError, match="already"):
        server.start()
