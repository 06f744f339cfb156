"""Record ids: short, URL-safe, unique, and sortable by creation time.

An id is 80 bits written as 16 lowercase Crockford base32 characters: a 42-bit count of
milliseconds since the Unix epoch (enough until the year 2109), then 38 random bits.
Because the timestamp leads and the alphabet is in ASCII order, sorting ids as strings
sorts them by creation time, which lets stores page through records without a second
index.

Within one process ids are strictly increasing: an id made in the same millisecond as
the previous one (or after the clock stepped back) reuses the previous timestamp and
adds one to the random part, as ULID's monotonic mode does. Across processes uniqueness
rests on the 38 random bits. A forked child starts afresh, so that it cannot make the
same "previous id plus one" as its parent.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["ID_LENGTH", "id_datetime", "is_valid_id", "new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_CHARS = frozenset(_ALPHABET)
_TIME_BITS = 42
_RANDOM_BITS = 38
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_TIME_LIMIT = 1 << _TIME_BITS
ID_LENGTH = (_TIME_BITS + _RANDOM_BITS) // 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Generator:
    """The last id made by this process, behind a lock so threads never share one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_ms = -1
        self.last_random = 0

    def next_value(self) -> int:
        with self.lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms > self.last_ms:
                self.last_ms = now_ms
                self.last_random = secrets.randbits(_RANDOM_BITS)
            else:
                self.last_random += 1
                if self.last_random >= _RANDOM_LIMIT:
                    # Borrow the next millisecond rather than wrap and break the order.
                    self.last_ms += 1
                    self.last_random = secrets.randbits(_RANDOM_BITS)
            if self.last_ms >= _TIME_LIMIT:
                raise OverflowError("the 42-bit id timestamp ran out (year 2109)")
            return (self.last_ms << _RANDOM_BITS) | self.last_random


_generator = _Generator()


def _reset_after_fork() -> None:
    global _generator
    _generator = _Generator()


os.register_at_fork(after_in_child=_reset_after_fork)


def _encode(value: int) -> str:
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


def new_id() -> str:
    """Return a new id, greater than every id this process made before."""
    return _encode(_generator.next_value())


def is_valid_id(s: str) -> bool:
    """Whether ``s`` has the form of an id made by :func:`new_id`."""
    return isinstance(s, str) and len(s) == ID_LENGTH and _CHARS.issuperset(s)


def id_datetime(s: str) -> datetime:
    """The moment (UTC, millisecond precision) at which the id ``s`` was made.

    Raises ValueError if ``s`` is not a valid id.
    """
    if not is_valid_id(s):
        raise ValueError(f"not an id: {s!r}")
    value = 0
    for char in s:
        value = (value << 5) | _ALPHABET.index(char)
    return _EPOCH + timedelta(milliseconds=value >> _RANDOM_BITS)
