"""The ``abaco`` command: parses arguments and runs trio, nothing else.

Sub-commands so far:

- ``abaco up``: runs the platform on this machine on its embedded defaults. Today that
  is the data layer (the embedded Valkey under the state dir, or the configured Redis);
  the API, scheduler, spawner and health actors join it as their issues land.
  ``--demo`` writes an actor and an execution through the stores, reads them back, sends
  a request over a Redis channel and a 0MQ channel, and exits, to show a new
  installation working.
- ``abaco bundle build DIR`` / ``push FILE`` / ``list``: make, upload and list bundles.
- ``abaco persistence``: drain the persist queue into durable storage, answer queries.
- ``abaco janitor``: delete old records from durable storage.
- ``abaco version``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog
import trio

from abaco import __version__
from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Execution
from abaco.actors.states import ExecutionStatus
from abaco.bundles import ArchiveLimits, build_bundle, inspect_archive
from abaco.channels import RequestChannel, Transport, open_hub
from abaco.config import Settings, load_settings
from abaco.errors import AbacoError, BadRequest
from abaco.janitor import JanitorPolicy, run_janitor
from abaco.logconfig import configure_logging
from abaco.persist_queue import persist_queue_of
from abaco.persistence import drain
from abaco.queries import serve_queries
from abaco.redis_client import Redis, open_configured_redis, open_redis
from abaco.storage import open_storage
from abaco.storage.postgres import redact
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


def _storage_url(settings: Settings) -> str:
    return settings.persistence.storage_url or f"sqlite:///{settings.state.path() / 'records.db'}"


async def _serve_storage(settings: Settings, role: str) -> None:
    """Run a persistence actor (drainer and query server) or a janitor until stopped."""
    if not settings.redis.url and role == "persistence":
        raise BadRequest("the persistence actor needs the platform's Redis: set [redis] url")
    async with open_storage(_storage_url(settings)) as storage:
        if role == "janitor":
            options = settings.janitor
            policy = JanitorPolicy(
                finished_longevity=options.finished_longevity,
                failed_longevity=options.failed_longevity,
            )
            await run_janitor(storage, policy, interval=options.interval)
            return
        prefix = settings.redis.key_prefix
        async with (
            open_configured_redis(settings.redis) as redis,
            open_hub(redis, namespace=prefix, visibility=settings.worker.visibility) as hub,
            trio.open_nursery() as nursery,
        ):
            queue = persist_queue_of(hub, prefix)
            nursery.start_soon(
                functools.partial(drain, queue, storage, batch_size=settings.persistence.batch_size)
            )
            nursery.start_soon(serve_queries, hub, redis, prefix, storage)
            _log.info("persistence.serving", storage=redact(_storage_url(settings)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abaco", description="The abaco actor platform.")
    parser.add_argument("--config", help="path of abaco.conf (default: $ABACO_CONF, ./abaco.conf)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the platform on this machine")
    up.add_argument("--demo", action="store_true", help="show it working, then stop")
    commands.add_parser("version", help="print the version")
    commands.add_parser(
        "persistence", help="drain the persist queue into storage and answer queries"
    )
    commands.add_parser("janitor", help="delete old records from durable storage")
    bundle = commands.add_parser("bundle", help="build and push actor bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bundle_commands.add_parser("build", help="make a bundle from a directory")
    build.add_argument("directory", help="holds Manifest.json and the actor's code")
    build.add_argument("--output", "-o", default=".", help="directory to write the .bpk into")
    push = bundle_commands.add_parser("push", help="upload a bundle to the repository")
    push.add_argument("file", help="the .bpk file")
    push.add_argument("--api", help="the API's base URL (default: [api] host and port)")
    listing = bundle_commands.add_parser("list", help="list the repository's bundles")
    listing.add_argument("--api", help="the API's base URL (default: [api] host and port)")
    return parser


def _api_url(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.api or f"http://{settings.api.host}:{settings.api.port}").rstrip("/")


def _bundle(args: argparse.Namespace, settings: Settings) -> None:
    if args.bundle_command == "build":
        path = build_bundle(Path(args.directory), Path(args.output))
        print(path)
        return
    if args.bundle_command == "list":
        response = httpx.get(f"{_api_url(args, settings)}/bundles", timeout=30)
        for bundle in _result(response):
            print(bundle["reference"])
        return
    path = Path(args.file)
    manifest = inspect_archive(path, limits=ArchiveLimits())
    bundle = manifest.bundle_id
    data = path.read_bytes()
    response = httpx.put(
        f"{_api_url(args, settings)}/bundles/{bundle.group}/{bundle.id}/{bundle.version}",
        content=data,
        headers={"Bundle-Sha256": hashlib.sha256(data).hexdigest()},
        timeout=300,
    )
    stored = _result(response)
    print(f"{stored['reference']}  sha256={stored['sha256']}  {stored['size']} bytes")


def _result(response: httpx.Response) -> Any:
    """The result of an Abaco envelope, or an error with the server's message."""
    try:
        body = response.json()
    except ValueError:
        raise BadRequest(
            f"the API answered {response.status_code}: {response.text[:200]}"
        ) from None
    if response.status_code >= 400 or body.get("status") != "success":
        raise BadRequest(f"the API answered {response.status_code}: {body.get('message')}")
    return body["result"]


def main(argv: list[str] | None = None) -> None:
    """Run the ``abaco`` command line."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        if args.command == "bundle":
            _bundle(args, settings)
            return
        if args.command in ("persistence", "janitor"):
            trio.run(_serve_storage, settings, args.command)
            return
        trio.run(_up, settings, args.demo)
    except AbacoError as exc:
        print(f"abaco: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except httpx.HTTPError as exc:
        print(f"abaco: cannot reach the API: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
