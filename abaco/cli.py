"""The ``abaco`` command: parses arguments and runs trio, nothing else.

Sub-commands:

- ``abaco up``: runs the whole platform on this machine (:mod:`abaco.launcher`): the
  embedded Valkey under the state dir (or the configured Redis), then every component in
  a process of its own under :mod:`abaco.supervisor` (api, scheduler, health, one
  spawner, a persistence drainer, the janitor and the cron actor), restarted if it dies,
  all stopped on Ctrl-C/SIGTERM/SIGHUP, children first and the data layer last.
  ``--demo`` then runs the sample actor through the REST API (:mod:`abaco.examples.demo`)
  and stops.
- ``abaco api`` / ``scheduler`` / ``health`` / ``spawner`` / ``cron``: run one component
  in this process until SIGTERM/SIGINT; the arguments after the name are the component's
  own.
- ``abaco persistence``: drain the persist queue into durable storage, answer queries.
- ``abaco janitor``: delete old records from durable storage.
- ``abaco check``: write and read records and send a request over each channel transport,
  to show the data layer of a new installation working.
- ``abaco bundle build DIR`` / ``push FILE`` / ``list``: make, upload and list bundles.
- ``abaco actors`` / ``send`` / ``run`` / ``executions`` / ``workers``: use a running
  platform through its REST API (:mod:`abaco.cli_client`).
- ``abaco version``.

Bad options print the usage and ``abaco: <what is wrong>`` and exit 2; any other error
prints ``abaco: <message>`` and exits 1, without a traceback. The modules a command needs
are imported when it runs, so that the client commands start quickly.
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

import structlog

from abaco import __version__, cli_client
from abaco.config import Settings, load_settings
from abaco.errors import AbacoError, BadRequest
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
    "cron": ("abaco.cron_actor", "send actors their scheduled (cron) messages"),
    "events": ("abaco.events", "deliver actor events to linked actors and webhooks"),
}
# What stops a long-running command; `abaco up` also stops when its terminal goes away.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_UP_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP)


async def _until_signalled(
    function: Callable[..., Awaitable[object]], *args: Any, signals: tuple[int, ...] = _STOP_SIGNALS
) -> None:
    """Run ``function(*args)`` until it returns or one of ``signals`` arrives."""
    import trio

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


async def _serve_storage(settings: Settings, role: str) -> None:
    """Run a persistence actor (drainer and query server) or a janitor until stopped."""
    import trio

    from abaco.channels import open_hub
    from abaco.janitor import JanitorPolicy, run_janitor
    from abaco.persist_queue import persist_queue_of
    from abaco.persistence import drain
    from abaco.queries import serve_queries
    from abaco.redis_client import open_configured_redis
    from abaco.restore import storage_url
    from abaco.storage import open_storage
    from abaco.storage.postgres import redact

    if not settings.redis.url and role == "persistence":
        raise BadRequest("the persistence actor needs the platform's Redis: set [redis] url")
    async with open_storage(storage_url(settings)) as storage:
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
            _log.info("persistence.serving", storage=redact(storage_url(settings)))


class _Parser(argparse.ArgumentParser):
    """argparse, saying what is wrong the way every other error of ``abaco`` does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"abaco: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="abaco", description="The abaco actor platform.")
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
        cli_client.add_connection_options(command)
    cli_client.add_commands(commands)
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


def _bundle(args: argparse.Namespace, settings: Settings) -> None:
    from abaco.bundles import ArchiveLimits, build_bundle, inspect_archive
    from abaco.client import ApiClient

    if args.bundle_command == "build":
        path = build_bundle(Path(args.directory), Path(args.output))
        print(path)
        return
    url, token = cli_client.api_url(args, settings), cli_client.bearer_token(args, settings)
    if args.bundle_command == "list":
        with ApiClient(url, token) as client:
            bundles = client.list_bundles()
        for listed in bundles:
            print(listed["reference"])
        return
    path = Path(args.file)
    bundle = inspect_archive(path, limits=ArchiveLimits()).bundle_id
    data = path.read_bytes()
    with ApiClient(url, token) as client:
        stored = client.push_bundle(
            bundle.group, bundle.id, bundle.version, data, hashlib.sha256(data).hexdigest()
        )
    print(f"{stored['reference']}  sha256={stored['sha256']}  {stored['size']} bytes")


def _run(function: Callable[..., Any], *args: Any) -> None:
    """``trio.run``, with an error that a nursery wrapped alone in a group unwrapped."""
    import trio

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


def _configure_logging(settings: Settings) -> None:
    from abaco.logconfig import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)


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
        if args.command in cli_client.COMMANDS:
            # No logging set up: what these print is for people, on stdout and stderr.
            status = cli_client.run_command(args, settings)
            sys.stdout.flush()  # here, where a reader that went away is caught
            if status:
                raise SystemExit(status)
            return
        _configure_logging(settings)
        if args.command == "bundle":
            _bundle(args, settings)
        elif args.command in ("persistence", "janitor"):
            _run(_until_signalled, _serve_storage, settings, args.command)
        elif args.command == "check":
            from abaco import launcher

            _run(_until_signalled, launcher.check, settings)
        else:
            from abaco import launcher

            run_up = functools.partial(
                launcher.up, settings, args.config, args.demo, args.show_token
            )
            _run(functools.partial(_until_signalled, run_up, signals=_UP_SIGNALS))
    except AbacoError as exc:
        print(f"abaco: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        # Whoever read our output went away (``| head``): stop quietly, as other tools do,
        # and keep Python from complaining again when it flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
