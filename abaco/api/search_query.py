"""Parsing a search's query string into a typed query: pure, no I/O.

``GET /actors/search/{actors,workers,executions,logs}`` takes Abaco's parameters:

- ``search=WORDS``: records in which any of the words occurs (case-insensitive, in any
  shown text value), the ones with more of the words first;
- ``exactsearch=PHRASE``: records in which the phrase occurs (case-insensitive);
- ``FIELD=VALUE``: equality; ``FIELD.OP=VALUE`` with ``OP`` one of ``eq neq gt gte lt
  lte between in nin like nlike``; ``FIELD`` may name a key inside a mapping field with
  dots (``final_state.max_rss.gt=1000``);
- ``skip`` and ``limit`` (default 100) page the matches.

A value is read by the type of the field it is compared with (a number, true/false, an
ISO-8601 time of any precision, text), ``in``/``nin`` take a JSON list, ``between`` two
values separated by a comma, ``like``/``nlike`` a regular expression (RE2 syntax, which
runs in linear time whatever the pattern). Anything else is a :class:`BadRequest` that
says what was wrong. :func:`parse_query` is the whole interface; evaluating a query is
:mod:`abaco.api.search_match`'s job.
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import re2  # type: ignore[import-untyped]

from abaco.errors import BadRequest

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Condition",
    "Kind",
    "Op",
    "SearchQuery",
    "kinds_of",
    "parse_query",
    "parse_time",
]

#: Records a search returns when ``limit`` is not given (Abaco's record_limit).
DEFAULT_LIMIT = 100
#: The largest ``limit`` a search accepts.
MAX_LIMIT = 1000
#: The longest ``like`` pattern accepted, in characters.
MAX_PATTERN = 512

# Parameters that are not field conditions. x-nonce authenticates, as everywhere.
_RESERVED = frozenset({"search", "exactsearch", "skip", "limit", "x-nonce"})


class Kind(enum.Enum):
    """How a field's values are read from the query string and compared."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    TIME = "time"
    LIST = "list"
    MAPPING = "mapping"
    #: A key inside a mapping field: the value's own look decides (number, JSON, text...).
    ANY = "any"


class Op(enum.Enum):
    """A comparison, named as in the query string (``status.neq=...``)."""

    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    IN = "in"
    NIN = "nin"
    LIKE = "like"
    NLIKE = "nlike"


_ORDERING = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN})
_PATTERNS = frozenset({Op.LIKE, Op.NLIKE})
_MEMBERSHIP = frozenset({Op.IN, Op.NIN})


@attrs.frozen
class Condition:
    """One field test: the field (and keys inside it), the comparison, the typed value.

    ``value`` is a str, float, bool, None, datetime (aware, UTC), a list or dict (JSON),
    a tuple of those (``in``/``nin``), a pair (``between``) or a compiled RE2 pattern
    (``like``/``nlike``).
    """

    path: tuple[str, ...]
    op: Op
    value: Any
    #: How the field's values compare (for a key inside a mapping: ANY).
    kind: Kind

    @property
    def field(self) -> str:
        """The top-level field the condition reads."""
        return self.path[0]


@attrs.frozen
class SearchQuery:
    """A parsed search: field conditions (all must hold), full-text terms, the page."""

    conditions: tuple[Condition, ...] = ()
    #: Lower-case words from ``search``; a record needs at least one of them.
    words: tuple[str, ...] = ()
    #: Lower-case phrases from ``exactsearch``; a record needs every one of them.
    phrases: tuple[str, ...] = ()
    skip: int = 0
    limit: int = DEFAULT_LIMIT

    @property
    def full_text(self) -> bool:
        """Whether the query searches the text of whole records."""
        return bool(self.words or self.phrases)

    def fields(self) -> frozenset[str]:
        """The top-level fields the conditions read."""
        return frozenset(c.field for c in self.conditions)


# -- field kinds from record classes --------------------------------------------------------


def _kind_of(annotation: Any) -> Kind:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind_of(real[0]) if len(real) == 1 else Kind.ANY
    if origin is typing.Literal:
        return Kind.TEXT
    if origin is list or annotation is list:
        return Kind.LIST
    if origin is dict or annotation is dict:
        return Kind.MAPPING
    if annotation is bool:
        return Kind.BOOL
    if annotation in (int, float):
        return Kind.NUMBER
    if annotation is datetime:
        return Kind.TIME
    if isinstance(annotation, type) and issubclass(annotation, str | enum.Enum):
        return Kind.TEXT
    return Kind.ANY


def kinds_of(cls: type[attrs.AttrsInstance], hidden: Iterable[str] = ()) -> dict[str, Kind]:
    """The searchable fields of a record class and their kinds, without ``hidden`` ones."""
    left_out = set(hidden)
    return {
        f.name: _kind_of(f.type)
        for f in attrs.fields(attrs.resolve_types(cls))
        if f.name not in left_out
    }


# -- values -----------------------------------------------------------------------------------

_TIME = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:T(?:(?P<hour>\d{2})"
    r"(?::(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?)?)?)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time of any precision (``2020``, ``2020-05``, ..., ``...T14:45:41.591Z``).

    Missing parts are the start of the period; without a zone the time is UTC. The
    result is aware and in UTC. :class:`BadRequest` when ``text`` is not such a time.
    """
    found = _TIME.fullmatch(text.strip())
    if found is None:
        raise BadRequest(
            f"Invalid datetime {text!r}: use ISO 8601, e.g. '2020-05-01T14:45:41.591Z' "
            "(less precise forms such as '2020-05-01' work too)."
        )
    parts = found.groupdict()
    zone = parts["zone"]
    tz: timezone = UTC
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        if offset >= timedelta(hours=24):
            raise BadRequest(f"Invalid datetime {text!r}: the zone offset is out of range.")
        tz = timezone(-offset if zone[0] == "-" else offset)
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise BadRequest(f"Invalid datetime {text!r}: {exc}.") from None
    return moment.astimezone(UTC)


def _number(field: str, text: str) -> float | None:
    if text.lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"Invalid search value for {field}: {text!r} is not a number.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"Invalid search value for {field}: {text!r} is not a finite number.")
    return value


def _bool(field: str, text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise BadRequest(f"Invalid search value for {field}: {text!r} is not true or false.")
    return lowered == "true"


def _json(text: str) -> Any:
    """JSON text, also with single quotes (as Abaco reads ``['A', 'B']``); None if neither."""
    for attempt in (text, text.replace("'", '"')):
        try:
            return json.loads(attempt)
        except ValueError:
            continue
    return None


def _guess(text: str) -> Any:
    """A value for a key inside a mapping: true/false, none, a number, JSON, else the text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number == number and number not in (float("inf"), float("-inf")):
            return number
    if text[:1] in ("[", "{"):
        value = _json(text)
        if value is not None:
            return value
    return text


def _scalar(field: str, kind: Kind, text: str) -> Any:
    """One value read as ``kind`` demands."""
    if kind is Kind.NUMBER:
        return _number(field, text)
    if kind is Kind.BOOL:
        return _bool(field, text)
    if kind is Kind.TIME:
        if text.lower() in ("none", "null"):
            return None
        return parse_time(text)
    if kind is Kind.ANY:
        return _guess(text)
    if kind in (Kind.LIST, Kind.MAPPING):
        if text[:1] in ("[", "{"):
            value = _json(text)
            if value is None:
                raise BadRequest(f"Invalid search value for {field}: {text!r} is not JSON.")
            return value
        return text  # compared with the list's elements
    return text


def _ordered(field: str, kind: Kind, text: str) -> float | datetime:
    """A bound of ``gt``/``lt``/``between``: a number or a time."""
    if kind is Kind.NUMBER:
        value = _number(field, text)
        if value is None:
            raise BadRequest(f"Invalid search value for {field}: a bound cannot be none.")
        return value
    if kind is Kind.TIME:
        return parse_time(text)
    # A key inside a mapping: a number if it reads as one, else a time.
    try:
        number = float(text)
    except ValueError:
        return parse_time(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRequest(f"Invalid search value for {field}: {text!r} is not a finite number.")
    return number


def _value(field: str, op: Op, kind: Kind, text: str) -> Any:
    if op in _PATTERNS:
        if kind in (Kind.NUMBER, Kind.BOOL):
            raise BadRequest(
                f"Invalid search: {field}.{op.value} compares text, and {field} is a {kind.value}."
            )
        if len(text) > MAX_PATTERN:
            raise BadRequest(
                f"Invalid search: the {op.value} pattern is longer than {MAX_PATTERN} characters."
            )
        options = re2.Options()
        options.log_errors = False
        try:
            return re2.compile(text, options)
        except re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise BadRequest(
                f"Invalid search: {field}.{op.value}: {text!r} is not a regular expression "
                f"({detail})."
            ) from None
    if op in _MEMBERSHIP:
        items = _json(text)
        if not isinstance(items, list):
            raise BadRequest(
                f"Invalid search: {field}.{op.value} takes a JSON list, e.g. "
                f'{field}.{op.value}=["A", "B"]; got {text!r}.'
            )
        return tuple(_scalar(field, kind, _item_text(item)) for item in items)
    if op in _ORDERING:
        if kind in (Kind.BOOL, Kind.LIST, Kind.MAPPING):
            raise BadRequest(
                f"Invalid search: {field}.{op.value} needs an ordered field, and {field} is a "
                f"{kind.value}."
            )
        if op is Op.BETWEEN:
            low, comma, high = text.partition(",")
            if not comma or "," in high:
                raise BadRequest(
                    f"Invalid search: {field}.between takes two values separated by a comma, "
                    "e.g. runtime.between=20,40."
                )
            bounds = (_ordered(field, kind, low), _ordered(field, kind, high))
            if type(bounds[0]) is not type(bounds[1]):
                raise BadRequest(
                    f"Invalid search: the two values of {field}.between must both be numbers "
                    "or both times."
                )
            return bounds
        if kind is Kind.TEXT:
            return text
        return _ordered(field, kind, text)
    return _scalar(field, kind, text)


def _item_text(item: Any) -> str:
    """An element of an ``in`` list as query text (so it is read like a single value)."""
    if isinstance(item, str):
        return item
    if item is None:
        return "none"
    return json.dumps(item)


# -- the query string -------------------------------------------------------------------------


def _condition(key: str, text: str, fields: Mapping[str, Kind]) -> Condition:
    parts = key.split(".")
    op = Op.EQ
    if len(parts) > 1 and parts[-1] in Op._value2member_map_:
        op = Op(parts.pop())
    if not all(parts):
        raise BadRequest(f"Invalid search parameter {key!r}: empty field name.")
    field = parts[0]
    if field not in fields:
        raise BadRequest(
            f"Invalid search parameter {key!r}: no field {field!r}. "
            f"Searchable fields: {', '.join(sorted(fields))}."
        )
    kind = fields[field]
    if len(parts) > 1:
        if kind not in (Kind.MAPPING, Kind.ANY):
            raise BadRequest(
                f"Invalid search parameter {key!r}: {field} has no keys inside it, and "
                f"{parts[-1]!r} is not an operator (eq, neq, gt, gte, lt, lte, between, in, "
                "nin, like, nlike)."
            )
        kind = Kind.ANY
    # Refusals name the field path and add the operator themselves (not "status.in.in").
    return Condition(tuple(parts), op, _value(".".join(parts), op, kind, text), kind)


def _count(name: str, values: list[str], maximum: int | None) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"Invalid search: {name} was given {len(values)} times.")
    text = values[0]
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f'Inputted "{name}" parameter must be an int. Received: {text}') from None
    if value < 0:
        raise BadRequest(f'Inputted "{name}" must be positive. Received: {value}')
    if maximum is not None and value > maximum:
        raise BadRequest(f'Inputted "{name}" must be at most {maximum}. Received: {value}')
    return value


def parse_query(args: Iterable[tuple[str, str]], fields: Mapping[str, Kind]) -> SearchQuery:
    """The search that query parameters ``args`` (in order, repeats kept) ask for.

    ``fields`` are the searchable fields of the records searched and their kinds.
    Raises :class:`BadRequest`, saying why, for an unknown field or operator, a value of
    the wrong type, or bad paging.
    """
    conditions: list[Condition] = []
    words: list[str] = []
    phrases: list[str] = []
    paging: dict[str, list[str]] = {"skip": [], "limit": []}
    for key, text in args:
        if key == "search":
            words += [w for w in text.lower().split() if w not in words]
        elif key == "exactsearch":
            phrase = text.lower().strip()
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        elif key in paging:
            paging[key].append(text)
        elif key not in _RESERVED:
            conditions.append(_condition(key, text, fields))
    skip = _count("skip", paging["skip"], None)
    limit = _count("limit", paging["limit"], MAX_LIMIT)
    return SearchQuery(
        conditions=tuple(conditions),
        words=tuple(words),
        phrases=tuple(phrases),
        skip=0 if skip is None else skip,
        limit=DEFAULT_LIMIT if limit is None else limit,
    )
