"""The platform as separate processes, for tests over real HTTP (tests/e2e, tests/abaco_core).

:func:`running_platform` runs api, scheduler, health and events (and, if asked, more
components, e.g. ``cron``) under
:func:`abaco.supervisor.supervise` (each its own process, as ``abaco up`` does), on a
Valkey under a key prefix of its own, with short heartbeats so that failures are noticed
in a second or two. Spawners are started by the caller (``await
platform.start_spawner(...)``) outside the supervisor, so that a test can kill one for
good. :func:`push_python_bundle` builds and pushes a one-module Python bundle.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import socket
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from abaco.bundles import build_bundle
from abaco.config import Settings, load_settings
from abaco.supervisor import Component, supervise
from tests.bundles import manifest_dict

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from pathlib import Path

#: Heartbeats and timeouts short enough for tests, long enough for a loaded 2-core machine.
FAST = {
    "ABACO__WORKER__HEARTBEAT": "0.5",
    "ABACO__WORKER__VISIBILITY": "3",
    "ABACO__WORKER__STOP_DEADLINE": "5",
    "ABACO__SPAWNER__HEARTBEAT": "0.5",
    "ABACO__SPAWNER__DRAIN_DEADLINE": "5",
    "ABACO__HEALTH__INTERVAL": "0.3",
    "ABACO__HEALTH__MISSED_HEARTBEATS": "6",
    "ABACO__HEALTH__IDLE_TIMEOUT": "600",
    "ABACO__SCHEDULER__RETRY_INTERVAL": "0.2",
}


#: The test actor: prints, sends a result, sleeps or fails on request.
ECHO_SOURCE = b"""
import time
from abaco.actors.context import send_result


def handle(message):
    if isinstance(message, str) and message.startswith("sleep:"):
        time.sleep(float(message[6:]))
    if message == "fail":
        raise RuntimeError("asked to fail")
    print(f"echo {message}")
    send_result(f"result {message}".encode())
"""

ECHO_IMAGE = "org.example/echo:1.0.0"


async def push_python_bundle(
    http: httpx.AsyncClient, tmp_path: Path, image: str, source: bytes
) -> str:
    """Build and push bundle ``image`` (``group/id:version``): ``source`` is its module
    ``main.py``, whose ``handle(message)`` is the entry point. Returns ``image``."""
    name, _, version = image.partition(":")
    package = name.rpartition("/")[2].replace("-", "_").replace(".", "_")
    root = tmp_path / f"{package}-{version}-src"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_bytes(b"")
    (root / package / "main.py").write_bytes(source)
    manifest = manifest_dict(
        name=name,
        version=version,
        runtime={"type": "python", "entry_point": f"{package}.main:handle"},
    )
    (root / "Manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / f"{package}-{version}-dist"
    out.mkdir()
    archive = build_bundle(root, out).read_bytes()
    response = await http.put(f"/bundles/{name}/{version}", content=archive)
    assert response.status_code == 201, response.text
    return image


async def push_echo(http: httpx.AsyncClient, tmp_path: Path) -> str:
    """Build and push the echo bundle; returns its image."""
    return await push_python_bundle(http, tmp_path, ECHO_IMAGE, ECHO_SOURCE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class Platform:
    """A running platform and the handles a test needs."""

    api_url: str
    token: str
    env: dict[str, str]
    http: httpx.AsyncClient
    nursery: trio.Nursery
    spawners: dict[str, trio.Process] = attrs.Factory(dict)

    def settings(self) -> Settings:
        """The platform's settings, as its components read them."""
        return load_settings(environ=self.env)

    async def start_spawner(
        self, host_id: str, *, capacity: int = 8, labels: str = "", queue: str = ""
    ) -> None:
        """Start a spawner process for host ``host_id`` and wait until it registered."""
        argv = [sys.executable, "-m", "abaco", "spawner", "--host-id", host_id]
        argv += ["--capacity", str(capacity)] + (["--labels", labels] if labels else [])
        argv += ["--queue", queue] if queue else []
        process = await trio.lowlevel.open_process(argv, env={**os.environ, **self.env})
        self.spawners[host_id] = process
        prefix = self.env["ABACO__REDIS__KEY_PREFIX"]
        from abaco.redis_client import open_redis

        async with open_redis(self.env["ABACO__REDIS__URL"]) as redis:
            with trio.fail_after(30):
                while True:
                    if await redis.exists(f"{prefix}:_platform:host:{host_id}"):
                        return
                    await trio.sleep(0.05)

    def kill_spawner(self, host_id: str) -> None:
        """SIGKILL a spawner (its workers die with it)."""
        self.spawners[host_id].send_signal(signal.SIGKILL)

    async def stop_spawners(self) -> None:
        """SIGTERM every spawner still running and wait for it."""
        for process in self.spawners.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            for process in self.spawners.values():
                await process.wait()
        for process in self.spawners.values():
            if process.returncode is None:
                process.kill()
                await process.wait()


@asynccontextmanager
async def running_platform(
    redis_url: str,
    state_dir: Path,
    settings: Mapping[str, str] | None = None,
    *,
    extra_components: Sequence[str] = (),
) -> AsyncIterator[Platform]:
    """api, scheduler, health and events as processes on ``redis_url``, for the block.

    ``settings`` are ``ABACO__*`` variables over :data:`FAST`; ``extra_components`` are
    more components of ``abaco up`` to run (``"cron"``). No spawner runs yet; on the way
    out, spawners still running get SIGTERM, then the components are stopped.
    """
    port = _free_port()
    token = secrets.token_urlsafe(16)
    env = {
        **FAST,
        "ABACO__REDIS__URL": redis_url,
        "ABACO__REDIS__KEY_PREFIX": f"e2e{secrets.token_hex(4)}",
        "ABACO__STATE__DIR": str(state_dir),
        "ABACO__API__PORT": str(port),
        "ABACO__AUTH__ADMIN_TOKEN": token,
        "ABACO__LOGGING__LEVEL": "warning",
        **(settings or {}),
    }
    components = [
        Component(name, [sys.executable, "-m", "abaco", name])
        for name in ("api", "scheduler", "health", "events", *extra_components)
    ]
    api_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as http,
    ):
        await nursery.start(functools.partial(supervise, components, env=env, stop_deadline=10))
        with trio.fail_after(30):
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)
        running = Platform(api_url, token, env, http, nursery)
        try:
            yield running
        finally:
            with trio.CancelScope(shield=True):
                await running.stop_spawners()
            nursery.cancel_scope.cancel()
