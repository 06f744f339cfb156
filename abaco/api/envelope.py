"""Abaco's JSON envelope, and the one table from exceptions to HTTP statuses.

Every answer, success or error, is ``{"status", "message", "result", "version"}`` as in
Abaco (``status`` is ``"success"`` or ``"error"``), JSON even for unknown routes.
"""

from __future__ import annotations

from typing import Any

import abaco
from abaco import errors

__all__ = ["PayloadTooLarge", "TooManyRequests", "error", "ok", "status_of"]


class PayloadTooLarge(errors.BadRequest):
    """A request body over the published limit (413)."""


class TooManyRequests(errors.AbacoError):
    """A caller over its rate or quota (429)."""


# Most specific first: the first class an error is an instance of decides its status.
_STATUSES: list[tuple[type[BaseException], int]] = [
    (PayloadTooLarge, 413),
    (TooManyRequests, 429),
    (errors.BadRequest, 400),
    (errors.ConfigError, 400),
    (errors.InvalidTransition, 400),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.StoreUnavailable, 503),
    (errors.DestinationUnavailable, 503),
    (errors.ChannelTimeout, 504),
]


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error raised while handling a request (500 when unknown)."""
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


def ok(result: Any, message: str = "The request was successful.") -> dict[str, Any]:
    """A success envelope."""
    return {"status": "success", "message": message, "result": result, "version": abaco.__version__}


def error(message: str, result: Any = None) -> dict[str, Any]:
    """An error envelope."""
    return {"status": "error", "message": message, "result": result, "version": abaco.__version__}
