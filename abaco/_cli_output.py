"""How the ``abaco`` client commands print: fixed-width tables, JSON, complaints, progress.

Pure formatting over plain values (what the API answered), plus :class:`Progress`, the
one-line spinner ``abaco send --wait`` draws on a terminal. No dependency beyond the
standard library: a table is a few lines of ``str.ljust``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["Progress", "complain", "print_json", "record", "show", "table", "when", "write_text"]

_SPINNER = "|/-\\"
# Back to the start of the line and clear it.
_WIPE = "\r\x1b[K"


def show(as_json: bool, result: Any, render: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON if ``as_json``, else as ``render`` draws it."""
    if as_json:
        print_json(result)
    else:
        print(render(result))


def print_json(value: Any, indent: int | None = 2) -> None:
    """Print ``value`` as JSON (``indent=None``: on one line)."""
    print(json.dumps(value, indent=indent, ensure_ascii=False))


def write_text(text: str) -> None:
    """Write text as is to stdout, ending it with a newline if it has none."""
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")


def complain(message: str) -> None:
    """Say what went wrong on stderr, the way every ``abaco`` error is said."""
    print(f"abaco: {message}", file=sys.stderr)


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> str:
    """Rows in columns as wide as their widest cell, two spaces apart (see :func:`cell`)."""
    lines = [[cell(value) for value in row] for row in rows]
    if headers is not None:
        lines.insert(0, list(headers))
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def record(fields: Mapping[str, Any], first: Sequence[str] = ()) -> str:
    """One record as a two-column table of its fields: those in ``first`` first, in that
    order, then the others as they come (its ``_links`` left out)."""
    keys = [key for key in first if key in fields]
    keys += [key for key in fields if key not in keys and key != "_links"]
    return table(None, ((key, fields[key]) for key in keys))


def cell(value: object) -> str:
    """A value as one table cell: ``-`` for nothing, lists and dicts spelt out, one line."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value)
    # A newline inside a cell would break the columns.
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def when(timestamp: str | None) -> str | None:
    """An API time (ISO 8601 in UTC) to the second, as people read it."""
    if not timestamp:
        return None
    return timestamp[:19].replace("T", " ")


class Progress:
    """A one-line spinner with a status and the time waited, drawn only on a terminal."""

    def __init__(self, stream: TextIO | None, what: str) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._what = what
        self._started = time.monotonic()
        self._frame = 0

    def show(self, status: str) -> None:
        """Draw the line again with ``status``."""
        if self._stream is None:
            return
        waited = time.monotonic() - self._started
        spin = _SPINNER[self._frame % len(_SPINNER)]
        self._frame += 1
        self._stream.write(f"{_WIPE}{spin} {self._what} {status} {waited:.1f} s")
        self._stream.flush()

    def clear(self) -> None:
        """Wipe the line, if it was drawn."""
        if self._stream is not None and self._frame:
            self._stream.write(_WIPE)
            self._stream.flush()
