"""``abaco api``: serve the REST API with hypercorn until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal

import structlog
import trio

from abaco.api.app import create_app, serve_api
from abaco.config import Settings, load_settings
from abaco.errors import AbacoError, BadRequest
from abaco.logconfig import configure_logging

__all__ = ["main", "run_api"]

_log = structlog.get_logger(__name__)


async def run_api(
    settings: Settings, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the API on ``[api] host:port`` until SIGTERM/SIGINT; ``started`` gets its URL."""
    app = create_app(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with serve_api(app, settings.api.host, settings.api.port) as url:
            _log.info("api.serving", url=url)
            task_status.started(url)
            async for signum in signals:
                _log.info("api.stopping", signal=signal.Signals(signum).name)
                return


def main(argv: list[str] | None = None) -> None:
    """Run the API process (``abaco api``); needs ``[redis] url``."""
    parser = argparse.ArgumentParser(prog="abaco api", description="Serve the REST API.")
    parser.add_argument("--config", help="path of abaco.conf")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.logging.level, settings.logging.format)
        if not settings.redis.url:
            raise BadRequest("the API needs the platform's Redis: set [redis] url")
        trio.run(run_api, settings)
    except AbacoError as exc:
        raise SystemExit(f"api: {exc}") from None


if __name__ == "__main__":
    main()
