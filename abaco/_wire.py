"""The wire form of channel messages: msgpack, with an extension type for channel values.

A frame is exactly one msgpack object built from None, bool, int (``-2**63`` to
``2**64 - 1``), float, str, bytes, arrays, maps whose keys are str or int, and channel
values. A channel value is the extension type :data:`CHANNEL_EXT_CODE` whose payload is
itself a msgpack array ``[kind, transport, address]`` of strings (the enum values), and
decodes to an equal value of the kind's class. Tuples are sent as arrays and come back as
lists; nothing else is converted: any other type, a subclass of a supported type, or a map
key that is neither str nor int is refused with :class:`~abaco.errors.WireError`.

Limits, on decode: a frame over ``max_size`` bytes (default 16 MiB) is refused before it
is unpacked; msgpack bounds every declared length by the frame's size; arrays and maps
may nest ``max_depth`` levels (default 32, also checked on encode). Any frame that cannot
be decoded (truncated, trailing bytes, unknown extension, bad channel payload, bad key)
raises ``WireError`` (chained from msgpack's or the channel class's exception when there
is one), and never any other exception.

Both directions cache channel forms (1024 of each): channels recur, and building a value
(its address check) costs more than the rest of a small message.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

# msgpack ships no type hints; pyproject.toml has no mypy override for it (yet).
import msgpack  # type: ignore[import-untyped]
from msgpack import ExtraData, ExtType, FormatError, StackError, Timestamp

from abaco._channel_values import CHANNEL_CLASSES, Channel, Kind, Transport
from abaco.errors import WireError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CHANNEL_EXT_CODE", "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "decode", "encode"]

CHANNEL_EXT_CODE: Final = 1
"""The msgpack extension type code of a channel value."""
DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024
"""The largest frame :func:`decode` accepts unless told otherwise, in bytes."""
DEFAULT_MAX_DEPTH: Final = 32
"""How deep arrays and maps may nest unless told otherwise (``[[1]]`` is 2 deep)."""

_KIND_OF: Final[dict[type, str]] = {cls: kind.value for kind, cls in CHANNEL_CLASSES.items()}
# Types the check walk must look at: containers, and what msgpack packs or unpacks by
# itself although it is not part of the format (raw extensions, timestamps, bytes-likes).
_WALKED: Final = frozenset({dict, list, tuple, ExtType, Timestamp, bytearray, memoryview})


def encode(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Return the frame of ``obj``; raise :class:`WireError` naming what cannot be sent."""
    try:
        if type(obj) in _WALKED:
            _check(obj, max_depth, max_depth)
        return msgpack.packb(obj, default=_default, strict_types=True)  # type: ignore[no-any-return]
    except WireError:
        raise
    except RecursionError as exc:
        raise WireError(f"cannot encode: nested too deep (limit {max_depth})") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise WireError(f"cannot encode: {exc}") from exc


def decode(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    bind: Callable[[Channel], Any] | None = None,
) -> Any:
    """Return the value of one frame; raise :class:`WireError` if it is bad in any way.

    ``bind``, when given, is applied to every channel value decoded (a hub binds them).
    """
    if len(data) > max_size:
        raise WireError(f"frame of {len(data)} bytes is over the limit of {max_size} bytes")
    hook = _ext_hook if bind is None else lambda code, payload: bind(_ext_hook(code, payload))
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=hook)
        if type(value) in _WALKED:
            _check(value, max_depth, max_depth)
    except WireError:
        raise
    except ExtraData as exc:
        raise WireError(
            f"malformed frame: {len(exc.extra)} trailing bytes after the value"
        ) from exc
    except (StackError, RecursionError) as exc:
        raise WireError(f"malformed frame: nested too deep (limit {max_depth})") from exc
    except FormatError as exc:
        raise WireError("malformed frame: a byte that starts no msgpack type") from exc
    except Exception as exc:  # msgpack documents that unpacking may raise anything
        raise WireError(f"malformed frame: {exc or type(exc).__name__}") from exc
    return value


def _check(value: Any, levels_left: int, max_depth: int) -> None:
    """Refuse nesting past ``max_depth``, bad map keys and types outside the format."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str and type(key) is not int:
                raise WireError(f"map key of type {type(key).__qualname__}: only str and int")
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        raise WireError(f"a value of type {kind.__qualname__} is not part of the wire format")
    if levels_left == 0:
        raise WireError(f"arrays and maps nested deeper than {max_depth} levels")
    for item in items:
        if type(item) in _WALKED:
            _check(item, levels_left - 1, max_depth)


def _default(obj: Any) -> Any:
    """Turn what msgpack cannot pack by itself into what it can, or refuse it."""
    kind = type(obj)
    if kind is tuple:
        return list(obj)
    channel_kind = _KIND_OF.get(kind)
    if channel_kind is not None:
        return _channel_ext(channel_kind, obj.transport, obj.address)
    if kind is int:
        raise WireError("cannot encode an int outside -2**63 .. 2**64-1")
    raise WireError(f"cannot encode a value of type {kind.__module__}.{kind.__qualname__}")


@functools.lru_cache(maxsize=1024)
def _channel_ext(kind: str, transport: Transport, address: str) -> ExtType:
    """The extension object of a channel value.

    Cached (the same channels recur), by its fields rather than by the value, which may be
    bound to a hub that the cache must not keep alive.
    """
    fields = [kind, transport.value, address]
    # A small buffer: packb's default of 256 KiB costs microseconds inside another packb.
    return ExtType(CHANNEL_EXT_CODE, msgpack.packb(fields, buf_size=256))


def _ext_hook(code: int, payload: bytes) -> Channel:
    if code != CHANNEL_EXT_CODE:
        raise WireError(f"malformed frame: unknown extension type {code}")
    return _channel_from_payload(payload)


@functools.lru_cache(maxsize=1024)
def _channel_from_payload(payload: bytes) -> Channel:
    """The channel value of an extension payload (cached: values are immutable)."""
    try:
        fields = msgpack.unpackb(payload, raw=False)
    except Exception as exc:
        raise WireError(f"malformed channel payload: {exc or type(exc).__name__}") from exc
    if type(fields) is not list or len(fields) != 3 or any(type(f) is not str for f in fields):
        raise WireError(
            "malformed channel payload: expected an array of 3 strings "
            f"[kind, transport, address], got {_describe(fields)}"
        )
    kind, transport, address = fields
    try:
        return CHANNEL_CLASSES[Kind(kind)](Transport(transport), address)
    except ValueError as exc:
        raise WireError(f"malformed channel payload: {exc}") from exc


def _describe(value: Any) -> str:
    if type(value) is list:
        return f"an array of {len(value)}: " + ", ".join(type(v).__qualname__ for v in value[:4])
    return f"a {type(value).__qualname__}"
