"""The ``abaco`` command: parses arguments and runs trio, nothing else.

Sub-commands so far:

- ``abaco up``: runs the platform on this machine on its embedded defaults. Today that
  is the data layer (the embedded Valkey under the state dir, or the configured Redis);
  the API, scheduler, spawner and health actors join it as their issues land.
  ``--demo`` writes an actor and an execution through the stores, reads them back, sends
  a request over a Redis channel and a 0MQ channel, and exits, to show a new
  installation working.
- ``abaco version``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import structlog
import trio

from abaco import __version__
from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Execution
from abaco.actors.states import ExecutionStatus
from abaco.channels import RequestChannel, Transport, open_hub
from abaco.config import Settings, load_settings
from abaco.errors import AbacoError
from abaco.logconfig import configure_logging
from abaco.redis_client import Redis, open_redis
from abaco.stores import Stores
from abaco.valkey import open_embedded_valkey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["main"]

_log = structlog.get_logger("abaco.cli")


@contextlib.asynccontextmanager
async def _platform_redis(settings: Settings) -> AsyncIterator[Redis]:
    """The configured Redis, or an embedded Valkey under the state dir when none is."""
    redis_settings = settings.redis
    if redis_settings.url:
        async with open_redis(
            redis_settings.url,
            password=redis_settings.password,
            db=redis_settings.db,
            connect_timeout=redis_settings.connect_timeout,
            max_connections=redis_settings.max_connections,
        ) as redis:
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


async def _demo(stores: Stores) -> None:
    actor = Actor(id=new_id(), name="demo", owner="abaco", image="demo/echo:1.0")
    execution = Execution(id=new_id(), actor_id=actor.id)
    await stores.actors.put(actor)
    await stores.executions.put(execution)
    await stores.executions.update(execution.id, status=ExecutionStatus.RUNNING)
    await stores.logs.append(execution.id, "hello from the demo\n")
    done = await stores.executions.update(execution.id, status=ExecutionStatus.COMPLETE)
    print(f"actor      {actor.id}  {actor.name}  image={actor.image}")
    print(f"execution  {done.id}  status={done.status}")
    print(f"logs       {(await stores.logs.read(execution.id)).text.strip()!r}")
    await stores.actors.delete(actor.id)
    await stores.executions.delete(execution.id)
    await stores.logs.delete(execution.id)


async def _demo_channels(redis: Redis, settings: Settings) -> None:
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
            print(f"channel    {transport.value:5} request/reply {answer}  {took_ms:.2f} ms")


async def _up(settings: Settings, demo: bool) -> None:
    async with _platform_redis(settings) as redis:
        info = await redis.server_info()
        print(f"abaco {__version__}: data on {info.product} {'.'.join(map(str, info.version))}")
        print(f"  url          {redis.url}")
        print(f"  state dir    {settings.state.path()}")
        durable = "yes (AOF, fsync always)" if info.acknowledged_writes_durable else "no"
        print(f"  durable acks {durable}; WAITAOF {'available' if info.has_waitaof else 'missing'}")
        if demo:
            await _demo(Stores.open(redis, settings))
            await _demo_channels(redis, settings)
            return
        print("running; press Ctrl-C to stop")
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                _log.info("abaco.stopping", signal=signal.Signals(signum).name)
                return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abaco", description="The abaco actor platform.")
    parser.add_argument("--config", help="path of abaco.conf (default: $ABACO_CONF, ./abaco.conf)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the platform on this machine")
    up.add_argument("--demo", action="store_true", help="show it working, then stop")
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the ``abaco`` command line."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        trio.run(_up, settings, args.demo)
    except AbacoError as exc:
        print(f"abaco: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
