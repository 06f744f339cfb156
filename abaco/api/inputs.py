"""Reading a request's body and its query parameters, with Abaco's 400 messages.

A resource's description (an actor, alias, config, nonce, permission, workers request)
comes as JSON or, as Abaco's clients send it, as a form: :func:`spec_body` reads either
into the same spec. Message bodies have rules of their own (:mod:`abaco.api.messages`).
"""

from __future__ import annotations

import json
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import AttrsInstance
from quart import request

from abaco.api.schemas import parse
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from werkzeug.datastructures import MultiDict

    from abaco._records import RecordStore

__all__ = ["collect", "flag", "json_body", "paging", "spec_body"]

R = TypeVar("R", bound=AttrsInstance)
Spec = TypeVar("Spec", bound=AttrsInstance)

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

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


async def spec_body(cls: type[Spec]) -> Spec:
    """The body as a ``cls`` (:func:`abaco.api.schemas.parse`): JSON, or a form.

    A form (urlencoded or multipart, without files) becomes the dict a JSON body would
    be, each value read as its field's type: a boolean from true/false/1/0 (any case), an
    integer, every value of a repeated field for a list of strings (one value is a list of
    one, as Abaco's ``hints``), JSON text for an object or a list of objects
    (``default_environment``, ``mounts``). Unknown fields are left for ``parse`` to refuse.
    """
    if request.mimetype not in _FORMS:
        return parse(cls, await json_body())
    name = cls.__name__.removesuffix("Spec").lower()
    files = await request.files
    if files:
        raise BadRequest(f"Invalid {name} description: files are not accepted: {sorted(files)}.")
    return parse(cls, _from_form(name, typing.get_type_hints(cls), await request.form))


def _from_form(name: str, kinds: dict[str, Any], form: MultiDict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field, values in form.lists():
        kind = kinds.get(field)
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if kind == list[str]:
            data[field] = values
            continue
        if len(values) > 1:
            raise BadRequest(f"Invalid {name} description: {field}: given more than once.")
        raw = values[0]
        try:
            data[field] = _FORM_READERS.get(typing.get_origin(kind) or kind, str)(raw)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            expected = _FORM_EXPECTED.get(kind, "JSON text")
            raise BadRequest(
                f"Invalid {name} description: {field}: expected {expected}, not {raw!r:.40}."
            ) from None
    return data


def _form_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(raw)
    return lowered in ("true", "1")


#: How a form value is read, by its field's type (or the type's origin); others stay strings.
_FORM_READERS: dict[Any, Callable[[str], Any]] = {
    bool: _form_bool,
    int: int,
    dict: json.loads,
    list: json.loads,
}
_FORM_EXPECTED: dict[Any, str] = {bool: "true or false", int: "an integer"}


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
