"""The ``main()`` the platform's components share: read the config, log, serve until signalled.

A component (scheduler, health supervisor, cron, events) is one async function
``serve(settings, redis)`` that runs until cancelled. :func:`run_component` gives it a
command line (``--config``), the configured logging and Redis connection, and stops it
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
import trio

from abaco.errors import AbacoError, BadRequest
from abaco.logconfig import configure_logging

if TYPE_CHECKING:
    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = ["Serve", "run_component"]

_log = structlog.get_logger(__name__)

#: What a component runs: it serves until cancelled.
Serve = Callable[["Settings", "Redis"], Awaitable[None]]


def run_component(
    name: str,
    serve: Serve,
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    needs: str,
) -> None:
    """Parse ``argv``, load the settings and run ``serve`` until SIGTERM or SIGINT.

    ``name`` prefixes the component's log events and error exits; ``needs`` names it in
    the error when no Redis is configured ("the scheduler needs the platform's Redis").
    """
    from abaco.config import load_settings

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="path of abaco.conf (default: $ABACO_CONF, ./abaco.conf)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        if not settings.redis.url:
            raise BadRequest(f"{needs} needs the platform's Redis: set [redis] url")
        trio.run(_serve_until_signalled, name, settings, serve)
    except AbacoError as exc:
        raise SystemExit(f"{name}: {exc}") from None
    except KeyboardInterrupt:  # before trio took over the signal
        raise SystemExit(130) from None


async def _serve_until_signalled(name: str, settings: Settings, serve: Serve) -> None:
    from abaco.redis_client import open_configured_redis

    # The handler goes in first: a signal while the component starts stops it cleanly too.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_configured_redis(settings.redis) as redis, trio.open_nursery() as nursery:
            nursery.start_soon(serve, settings, redis)
            async for signum in signals:
                _log.info(f"{name}.stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                return
