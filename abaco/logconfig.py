"""Logging: structlog events, JSON lines off a terminal, readable lines on one.

Every platform process calls :func:`configure_logging` once at start. Code logs with
``structlog.get_logger(__name__)`` and binds ``actor_id``, ``worker_id`` and
``execution_id`` where it knows them, with :func:`bind_ids` (context-local, so each trio
task keeps its own).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

import structlog

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["bind_ids", "configure_logging"]

LogFormat = Literal["auto", "json", "console"]


def configure_logging(level: str = "info", fmt: LogFormat | str = "auto") -> None:
    """Set up structlog for this process.

    ``fmt="auto"`` renders for people when stderr is a terminal and as JSON lines otherwise.
    """
    numeric = logging.getLevelNamesMapping()[level.upper()]
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


@contextmanager
def bind_ids(
    *,
    actor_id: str | None = None,
    worker_id: str | None = None,
    execution_id: str | None = None,
) -> Iterator[None]:
    """Bind the known ids to every log event inside the ``with`` block."""
    ids = {
        k: v
        for k, v in (
            ("actor_id", actor_id),
            ("worker_id", worker_id),
            ("execution_id", execution_id),
        )
        if v is not None
    }
    with structlog.contextvars.bound_contextvars(**ids):
        yield
