"""What ``abaco up`` runs: the data layer, then every component under the supervisor.

:func:`up` starts the embedded Valkey under the state dir (or uses the configured Redis),
restores actors and unfinished work from durable storage when that Redis has lost the
platform's state (:func:`abaco.restore.restore`), then runs each component as
``python -m abaco [--config PATH] NAME`` under :func:`~abaco.supervisor.supervise`, all
told the Redis URL, the admin token, the state dir and the API's port through
``ABACO__*`` variables. It prints a short banner and runs until cancelled; the components
stop first and the data layer last, as the blocks nest.
:func:`check` shows the data layer alone working.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import sys
from typing import TYPE_CHECKING

import trio

from abaco import __version__
from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Execution
from abaco.actors.states import ExecutionStatus
from abaco.auth import admin_token
from abaco.channels import RequestChannel, Transport, open_hub
from abaco.redis_client import open_configured_redis, open_redis
from abaco.restore import restore, storage_url
from abaco.storage import open_storage
from abaco.stores import Stores
from abaco.supervisor import Component, ComponentStatistics, supervise
from abaco.valkey import open_embedded_valkey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.config import Settings
    from abaco.redis_client import Redis, ServerInfo

__all__ = ["PLATFORM", "check", "client_host", "up"]

PLATFORM = ("api", "scheduler", "health", "spawner", "persistence", "janitor", "cron", "events")
"""The components ``abaco up`` runs, in this order: the API first, as spawners fetch
bundles from it."""

# Seconds a component gets to drain on top of the longest drain it may do itself.
_STOP_MARGIN = 5.0


@contextlib.asynccontextmanager
async def _platform_redis(settings: Settings) -> AsyncIterator[Redis]:
    """The configured Redis, or an embedded Valkey under the state dir when none is."""
    redis_settings = settings.redis
    if redis_settings.url:
        async with open_configured_redis(redis_settings) as redis:
            yield redis
        return
    valkey = settings.valkey
    async with (
        open_embedded_valkey(
            settings.state.path() / "valkey",
            host=valkey.host,
            port=valkey.port,
            appendfsync=valkey.appendfsync,  # type: ignore[arg-type]  # validated by config
            startup_timeout=valkey.startup_timeout,
        ) as server,
        open_redis(server.url, max_connections=redis_settings.max_connections) as redis,
    ):
        yield redis


def _say(text: str) -> None:
    # Flushed at once: stdout is often a pipe, and the banner is what a reader waits for.
    print(text, flush=True)


def _print_data_layer(redis: Redis, info: ServerInfo, settings: Settings) -> None:
    _say(f"abaco {__version__}: data on {info.product} {'.'.join(map(str, info.version))}")
    _say(f"  url          {redis.url}")
    _say(f"  state dir    {settings.state.path()}")
    durable = "yes (AOF, fsync always)" if info.acknowledged_writes_durable else "no"
    _say(f"  durable acks {durable}; WAITAOF {'available' if info.has_waitaof else 'missing'}")


async def _check_stores(stores: Stores) -> None:
    actor = Actor(id=new_id(), name="demo", owner="abaco", image="demo/echo:1.0")
    execution = Execution(id=new_id(), actor_id=actor.id)
    await stores.actors.put(actor)
    await stores.executions.put(execution)
    await stores.executions.update(execution.id, status=ExecutionStatus.RUNNING)
    await stores.logs.append(execution.id, "hello from the demo\n")
    done = await stores.executions.update(execution.id, status=ExecutionStatus.COMPLETE)
    _say(f"actor      {actor.id}  {actor.name}  image={actor.image}")
    _say(f"execution  {done.id}  status={done.status}")
    _say(f"logs       {(await stores.logs.read(execution.id)).text.strip()!r}")
    await stores.actors.delete(actor.id)
    await stores.executions.delete(execution.id)
    await stores.logs.delete(execution.id)


async def _check_channels(redis: Redis, settings: Settings) -> None:
    async with open_hub(redis, namespace=settings.redis.key_prefix) as hub:
        for transport in Transport:
            service = hub.open_request(transport=transport)

            async def echo(service: RequestChannel = service) -> None:
                request = await service.next_request(timeout=5)
                await request.reply({"echo": request.message})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo)
                start = trio.current_time()
                answer = await service.request("ping", timeout=5)
                took_ms = (trio.current_time() - start) * 1000
            _say(f"channel    {transport.value:5} request/reply {answer}  {took_ms:.2f} ms")


async def check(settings: Settings) -> None:
    """``abaco check``: the data layer of this installation, shown working."""
    async with _platform_redis(settings) as redis:
        _print_data_layer(redis, await redis.server_info(), settings)
        await _check_stores(Stores.open(redis, settings))
        await _check_channels(redis, settings)


async def _restore(settings: Settings, redis: Redis) -> None:
    """Bring back from durable storage what a wiped Redis lost, and say what came back.

    Before any component starts, so none sees a half-restored platform; the storage is
    closed again before the persistence actors open it. A storage that cannot be read stops
    ``abaco up`` (:class:`~abaco.errors.StoreUnavailable`): starting without what it holds
    would make the loss final, as the first new actor marks Redis live.
    """
    async with open_storage(storage_url(settings)) as storage:
        report = await restore(settings, redis, storage)
    if summary := report.summary():
        _say(f"  restored     {summary}")


def _free_port(host: str) -> int:
    family, kind, _, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as sock:
        sock.bind(address)
        return int(sock.getsockname()[1])


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{host}]" if address.version == 6 else host


def _platform_components(config: str | None) -> list[Component]:
    """Every component of the platform as ``python -m abaco [--config PATH] NAME``."""
    options = ["--config", config] if config else []
    return [Component(name, [sys.executable, "-m", "abaco", *options, name]) for name in PLATFORM]


def _platform_env(settings: Settings, redis_url: str, token: str, api_port: int) -> dict[str, str]:
    """What every component is told, on top of this process's environment."""
    env = {
        "ABACO__REDIS__URL": redis_url,
        "ABACO__AUTH__ADMIN_TOKEN": token,
        # Resolved here once, so that no component can disagree about them.
        "ABACO__STATE__DIR": str(settings.state.path()),
        "ABACO__API__PORT": str(api_port),
    }
    # The components write to our pipes, not the terminal, so "auto" would make them JSON.
    if settings.logging.format == "auto" and sys.stderr.isatty():
        env["ABACO__LOGGING__FORMAT"] = "console"
    return env


def _token_note(settings: Settings, token: str, show_token: bool) -> str:
    if show_token:
        return token
    if settings.auth.admin_token:
        return "set by [auth] admin_token (abaco up --show-token prints it)"
    return f"in {settings.state.path() / 'admin-token'} (abaco up --show-token prints it)"


def _components_line(statistics: dict[str, ComponentStatistics]) -> str:
    return "  ".join(f"{name}[{stats.pid}]" for name, stats in statistics.items())


async def up(settings: Settings, config: str | None, demo: bool, show_token: bool) -> None:
    """Run the platform until cancelled, or with ``demo`` until the demo ends.

    ``config`` (the ``--config`` the user gave, if any) is passed on to every component;
    ``show_token`` prints the admin token in the banner rather than where it is kept.
    Raises :class:`~abaco.examples.demo.DemoFailed` when the demo fails.
    """
    # Port 0 is resolved here: the banner, the demo and the spawners' fetchers need it.
    api_port = settings.api.port or _free_port(settings.api.host)
    api_url = f"http://{client_host(settings.api.host)}:{api_port}"
    async with _platform_redis(settings) as redis:
        _print_data_layer(redis, await redis.server_info(), settings)
        await _restore(settings, redis)
        token = await trio.to_thread.run_sync(admin_token, settings)
        env = _platform_env(settings, settings.redis.url or redis.url, token, api_port)
        stop_deadline = (
            max(settings.spawner.drain_deadline, settings.worker.stop_deadline) + _STOP_MARGIN
        )
        # Inside the data layer's block: on the way out, components stop before Valkey.
        async with trio.open_nursery() as nursery:
            supervision = await nursery.start(
                functools.partial(
                    supervise,
                    _platform_components(config),
                    env=env,
                    stop_deadline=stop_deadline,
                )
            )
            _say(f"  api          {api_url}")
            _say(f"  admin token  {_token_note(settings, token, show_token)}")
            _say(f"  components   {_components_line(supervision.statistics())}")
            if demo:
                from abaco.examples.demo import run_demo

                _say("running the demo")
                await run_demo(api_url, token)
                nursery.cancel_scope.cancel()
                return
            _say("running; press Ctrl-C to stop")
            await trio.sleep_forever()
