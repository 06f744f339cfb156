"""Reading a request's JSON body and its query parameters, with Abaco's 400 messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import AttrsInstance
from quart import request

from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from abaco._records import RecordStore

__all__ = ["collect", "flag", "json_body", "paging"]

R = TypeVar("R", bound=AttrsInstance)

_MAX_LIMIT = 1000


async def json_body() -> Any:
    """The request body decoded as JSON; :class:`BadRequest` when it is not JSON."""
    data = await request.get_data()
    if not data:
        raise BadRequest("Unable to process the JSON description: the body is empty.")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Unable to process the JSON description: {exc}.") from None


def _non_negative_int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}.") from None
    if value < 0:
        raise BadRequest(f"{name} must be 0 or more, not {value}.")
    return value


def paging(default_limit: int = 100) -> tuple[int, int]:
    """``limit`` and ``offset`` from the query string (``limit`` at most 1000)."""
    limit = _non_negative_int("limit", default_limit)
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {_MAX_LIMIT}, not {limit}.")
    return limit, _non_negative_int("offset", 0)


def flag(name: str) -> bool:
    """A boolean query parameter (``true``/``false``, any case; absent is false)."""
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise BadRequest(f"{name} must be true or false, not {raw!r}.")
    return raw in ("true", "1", "yes")


async def collect(
    store: RecordStore[R],
    *,
    parent: str | None = None,
    limit: int,
    offset: int,
    keep: Callable[[R], Awaitable[bool]] | None = None,
) -> list[R]:
    """``limit`` records after skipping ``offset``, in id order, of those ``keep`` accepts."""
    found: list[R] = []
    skipped = 0
    cursor: str | None = None
    while True:
        page = await store.list(parent=parent, cursor=cursor, limit=max(limit, 100))
        for record in page.items:
            if keep is not None and not await keep(record):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(record)
            if len(found) == limit:
                return found
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
