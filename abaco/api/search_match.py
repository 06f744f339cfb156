"""Evaluating a parsed search against one record: pure, no I/O.

A record here is what its store holds, as plain JSON values: times are ISO-8601 strings
in UTC, statuses their names. The rules follow MongoDB's, which Abaco's search runs on:

- a field that is missing or null equals ``none`` only; ``neq``, ``nin`` and ``nlike``
  hold for it, every ordering test fails on it;
- a list field equals a value when one of its elements does, and ``like`` holds when one
  of its text elements matches;
- ordering compares numbers with numbers, times with times and text with text; values of
  another type never match (no coercion between a number and a string).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from abaco.api.search_query import Condition, Op, SearchQuery

__all__ = ["matches", "text_of", "text_score"]

_MISSING = object()


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _as_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


@functools.lru_cache(maxsize=256)
def _canonical(moment: datetime) -> str:
    """A time in the stores' own form, whose text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def _time_text(value: Any) -> str | None:
    """``value`` as a time in the stores' form, or None when it is not a time."""
    if (
        isinstance(value, str)
        and len(value) == 27
        and value[-1] == "Z"
        and value[4] == "-"
        and value[10] == "T"
        and value[19] == "."
    ):
        return value  # written by the stores: compared as text, with no parsing
    moment = _as_time(value)
    return None if moment is None else _canonical(moment)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_equals(value: Any, target: Any) -> bool:
    if target is None:
        return value is None or value is _MISSING
    if isinstance(target, bool):
        return isinstance(value, bool) and value is target
    if _is_number(target):
        return _is_number(value) and value == target
    if isinstance(target, datetime):
        return _time_text(value) == _canonical(target)
    return bool(value == target)


def _equals(value: Any, target: Any) -> bool:
    if _scalar_equals(value, target):
        return True
    if isinstance(value, list) and not isinstance(target, list):
        return any(_scalar_equals(item, target) for item in value)
    return False


def _like(value: Any, pattern: Any) -> bool:
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, list):
        return any(isinstance(item, str) and pattern.search(item) is not None for item in value)
    return False


def _comparable(value: Any, bound: Any) -> Any:
    """``value`` as something ordered like ``bound``, or None when it is not such a value."""
    if isinstance(bound, datetime):
        return _as_time(value)
    if isinstance(bound, float):
        return value if _is_number(value) else None
    if isinstance(bound, str):
        return value if isinstance(value, str) else None
    return None


def _ordered(value: Any, op: Op, bound: Any) -> bool:
    if isinstance(value, list):
        return any(_ordered(item, op, bound) for item in value)
    if isinstance(bound, datetime) or (op is Op.BETWEEN and isinstance(bound[0], datetime)):
        # Times compare as text in one canonical form: no datetime per record.
        value = _time_text(value)
        bound = (
            (_canonical(bound[0]), _canonical(bound[1])) if op is Op.BETWEEN else _canonical(bound)
        )
    low_bound = bound[0] if op is Op.BETWEEN else bound
    found = _comparable(value, low_bound)
    if found is None:
        return False
    if op is Op.GT:
        return bool(found > bound)
    if op is Op.GTE:
        return bool(found >= bound)
    if op is Op.LT:
        return bool(found < bound)
    if op is Op.LTE:
        return bool(found <= bound)
    low, high = bound
    return bool(low <= found <= high)


def _holds(condition: Condition, record: Mapping[str, Any]) -> bool:
    value = _lookup(record, condition.path)
    op, target = condition.op, condition.value
    if op is Op.EQ:
        return _equals(value, target)
    if op is Op.NEQ:
        return not _equals(value, target)
    if op is Op.IN:
        return any(_equals(value, item) for item in target)
    if op is Op.NIN:
        return not any(_equals(value, item) for item in target)
    if op is Op.LIKE:
        return _like(value, target)
    if op is Op.NLIKE:
        return not _like(value, target)
    if value is _MISSING or value is None:
        return False
    return _ordered(value, op, target)


def matches(query: SearchQuery, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` passes every field condition of ``query``."""
    return all(_holds(condition, record) for condition in query.conditions)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def text_of(record: Mapping[str, Any]) -> str:
    """Every text value of ``record`` (inside lists and mappings too), lower-cased."""
    return "\n".join(_strings(record)).lower()


def text_score(query: SearchQuery, text: str) -> int | None:
    """How many of the query's words ``text`` (from :func:`text_of`) holds.

    None when it fails the full-text part: a phrase is missing, or there are words and
    none of them occurs.
    """
    if not all(phrase in text for phrase in query.phrases):
        return None
    found = sum(1 for word in query.words if word in text)
    if query.words and not found:
        return None
    return found
