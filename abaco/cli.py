"""The ``abaco`` command: parses arguments and runs trio, nothing else.

Sub-commands:

- ``abaco up``: runs the whole platform on this machine (:mod:`abaco.launcher`): the
  embedded Valkey under the state dir (or the configured Redis), then every component in
  a process of its own under :mod:`abaco.supervisor` (api, scheduler, health, one
  spawner, a persistence drainer and the janitor), restarted if it dies, all stopped on
  Ctrl-C/SIGTERM/SIGHUP, children first and the data layer last. ``--demo`` then runs
  the sample actor through the REST API (:mod:`abaco.examples.demo`) and stops.
- ``abaco api`` / ``scheduler`` / ``health`` / ``spawner``: run one component in this
  process until SIGTERM/SIGINT; the arguments after the name are the component's own.
- ``abaco persistence``: drain the persist queue into durable storage, answer queries.
- ``abaco janitor``: delete old records from durable storage.
- ``abaco check``: write and read records and send a request over each channel transport,
  to show the data layer of a new installation working.
- ``abaco bundle build DIR`` / ``push FILE`` / ``list``: make, upload and list bundles.
- ``abaco version``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import structlog
import trio

from abaco import __version__, launcher
from abaco.auth import admin_token
from abaco.bundles import ArchiveLimits, build_bundle, inspect_archive
from abaco.channels import open_hub
from abaco.config import Settings, load_settings
from abaco.errors import AbacoError, BadRequest
from abaco.janitor import JanitorPolicy, run_janitor
from abaco.logconfig import configure_logging
from abaco.persist_queue import persist_queue_of
from abaco.persistence import drain
from abaco.queries import serve_queries
from abaco.redis_client import open_configured_redis
from abaco.storage import open_storage
from abaco.storage.postgres import redact
from abaco.supervisor import EXIT_UNAVAILABLE, stop_with_supervisor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["main"]

_log = structlog.get_logger("abaco.cli")

# The components that run as ``abaco NAME``: the module whose main(argv) runs it, and help.
_COMPONENTS = {
    "api": ("abaco.api.server", "serve the REST API"),
    "scheduler": ("abaco.scheduler", "place new workers on hosts"),
    "health": ("abaco.health", "find dead workers and hosts, replace and scale workers"),
    "spawner": ("abaco.spawner", "start and stop workers on this host (also abaco-spawner)"),
}
# What stops a long-running command; `abaco up` also stops when its terminal goes away.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_UP_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP)


async def _until_signalled(
    function: Callable[..., Awaitable[object]], *args: Any, signals: tuple[int, ...] = _STOP_SIGNALS
) -> None:
    """Run ``function(*args)`` until it returns or one of ``signals`` arrives."""
    # Opened first, so that a signal at any point means an orderly stop.
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in received:
                    _log.info("abaco.stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await function(*args)
            nursery.cancel_scope.cancel()


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
    up = commands.add_parser("up", help="run the whole platform on this machine")
    up.add_argument("--demo", action="store_true", help="run the sample actor, then stop")
    up.add_argument("--show-token", action="store_true", help="print the admin token")
    for name, (_module, description) in _COMPONENTS.items():
        # Their options are their own (abaco NAME --help): main() passes them on as given.
        commands.add_parser(name, help=description, add_help=False)
    commands.add_parser(
        "persistence", help="drain the persist queue into storage and answer queries"
    )
    commands.add_parser("janitor", help="delete old records from durable storage")
    commands.add_parser("check", help="show the data layer working: records and channels")
    commands.add_parser("version", help="print the version")
    bundle = commands.add_parser("bundle", help="build and push actor bundles")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True)
    build = bundle_commands.add_parser("build", help="make a bundle from a directory")
    build.add_argument("directory", help="holds Manifest.json and the actor's code")
    build.add_argument("--output", "-o", default=".", help="directory to write the .bpk into")
    push = bundle_commands.add_parser("push", help="upload a bundle to the repository")
    push.add_argument("file", help="the .bpk file")
    listing = bundle_commands.add_parser("list", help="list the repository's bundles")
    for command in (push, listing):
        command.add_argument("--api", help="the API's base URL (default: [api] host and port)")
        command.add_argument(
            "--token", help="bearer token (default: $ABACO_TOKEN, else the admin token)"
        )
    return parser


def _run_component(name: str, argv: list[str]) -> None:
    """Run component ``name``'s ``main(argv)``; exit EX_UNAVAILABLE if it is not installed."""
    module_name = _COMPONENTS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _unavailable(name, str(exc))
    component_main = getattr(module, "main", None)
    if not callable(component_main):
        _unavailable(name, f"{module_name} has no main()")
    component_main(argv)


def _unavailable(name: str, why: str) -> NoReturn:
    print(f"abaco: the {name} component is not available here: {why}", file=sys.stderr)
    # Not 1: the supervisor of `abaco up` does not restart a component that exits so.
    raise SystemExit(EXIT_UNAVAILABLE)


def _api_url(args: argparse.Namespace, settings: Settings) -> str:
    default = f"http://{launcher.client_host(settings.api.host)}:{settings.api.port}"
    return str(args.api or default).rstrip("/")


def _authorization(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The bearer token: --token, else $ABACO_TOKEN, else this machine's admin token."""
    token = args.token or os.environ.get("ABACO_TOKEN") or admin_token(settings)
    return {"Authorization": f"Bearer {token}"}


def _bundle(args: argparse.Namespace, settings: Settings) -> None:
    if args.bundle_command == "build":
        path = build_bundle(Path(args.directory), Path(args.output))
        print(path)
        return
    if args.bundle_command == "list":
        response = httpx.get(
            f"{_api_url(args, settings)}/bundles",
            headers=_authorization(args, settings),
            timeout=30,
        )
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
        headers={
            "Bundle-Sha256": hashlib.sha256(data).hexdigest(),
            **_authorization(args, settings),
        },
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


def _run(function: Callable[..., Any], *args: Any) -> None:
    """``trio.run``, with an error that a nursery wrapped alone in a group unwrapped."""
    try:
        trio.run(function, *args)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) != 1:
            raise
        raise leaves[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def main(argv: list[str] | None = None) -> None:
    """Run the ``abaco`` command line."""
    stop_with_supervisor()
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in _COMPONENTS:
        options = ["--config", args.config] if args.config else []
        _run_component(args.command, [*options, *rest])
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "version":
        print(__version__)
        return
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        if args.command == "bundle":
            _bundle(args, settings)
        elif args.command in ("persistence", "janitor"):
            _run(_until_signalled, _serve_storage, settings, args.command)
        elif args.command == "check":
            _run(_until_signalled, launcher.check, settings)
        else:
            run_up = functools.partial(
                launcher.up, settings, args.config, args.demo, args.show_token
            )
            _run(functools.partial(_until_signalled, run_up, signals=_UP_SIGNALS))
    except AbacoError as exc:
        print(f"abaco: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except httpx.HTTPError as exc:
        print(f"abaco: cannot reach the API: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
