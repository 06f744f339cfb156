"""Our Redis client: the one module that knows which client library talks to Redis.

The platform runs under trio, and redis-py's async API is asyncio-only, so this wraps
**coredis**, which runs natively under trio through anyio (see ``bench/redis_client.py``
and the README for the measurements behind the choice). Nothing outside this module
imports coredis: stores and channels call the small typed surface below, and every
coredis exception is mapped to :mod:`abaco.errors` on the way out, so swapping the
library means rewriting this one file.

Values are bytes in and bytes out (no response decoding); keys are ``str``.
Lua scripts live as ``abaco/lua/NAME.lua`` files and are loaded with :meth:`Redis.script`.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from importlib import resources
from typing import TYPE_CHECKING, Any

import attrs
import coredis
import coredis.exceptions
from coredis.tokens import PureToken

from abaco.errors import StoreError, StoreUnavailable, StreamGone

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

    from coredis.commands.script import Script as _CoredisScript

    from abaco.config import RedisSettings

__all__ = [
    "Redis",
    "Script",
    "ServerInfo",
    "StreamEntry",
    "open_configured_redis",
    "open_redis",
]

StreamEntry = tuple[bytes, dict[bytes, bytes]]
"""One stream entry: its id and its field/value pairs."""


@attrs.frozen
class ServerInfo:
    """What the connected server is and what it can do."""

    #: ``"valkey"`` or ``"redis"``.
    product: str
    #: The server version as a tuple, e.g. ``(7, 0, 15)``.
    version: tuple[int, ...]
    #: Whether the append-only file is on.
    appendonly: bool
    #: The AOF fsync policy: ``always``, ``everysec`` or ``no``.
    appendfsync: str

    @property
    def has_waitaof(self) -> bool:
        """Whether WAITAOF exists (Redis 7.2+, every Valkey)."""
        return self.product == "valkey" or self.version >= (7, 2)

    @property
    def acknowledged_writes_durable(self) -> bool:
        """Whether an acknowledged write is already on disk (AOF with fsync always)."""
        return self.appendonly and self.appendfsync == "always"


@contextlib.contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    """Turn coredis exceptions into :mod:`abaco.errors`, naming what was being done."""
    try:
        yield
    except (coredis.exceptions.ConnectionError, TimeoutError, OSError) as exc:
        raise StoreUnavailable(f"{what}: Redis unreachable: {exc}") from exc
    except coredis.exceptions.RedisError as exc:
        raise _store_error(what, exc) from exc


def _store_error(what: str, exc: coredis.exceptions.RedisError) -> StoreError:
    text = str(exc)
    gone = (
        isinstance(exc, coredis.exceptions.StreamConsumerGroupError)
        and not isinstance(exc, coredis.exceptions.StreamDuplicateConsumerGroupError)
    ) or (
        # In a script, or a blocking read cut short by the key's deletion (UNBLOCKED).
        "NOGROUP" in text or "stream key no longer exists" in text
    )
    return (StreamGone if gone else StoreError)(f"{what}: {text}")


def _url_for_display(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def _entry(entry: Any) -> StreamEntry:
    # Responses are never decoded (decode_responses=False), so every part is bytes.
    return entry.identifier, dict(entry.field_values)


class Script:
    """A Lua script loaded once and then run by its SHA (falls back to EVAL)."""

    def __init__(self, name: str, script: _CoredisScript[bytes]) -> None:
        self.name = name
        self._script = script

    async def __call__(self, keys: Sequence[str], args: Sequence[str | bytes | int | float]) -> Any:
        """Run the script with ``KEYS`` and ``ARGV``; returns what the script returns."""
        with _mapped_errors(f"script {self.name}"):
            return await self._script(keys=list(keys), args=list(args))


class Redis:
    """A pooled connection to one Redis/Valkey database. Make one with :func:`open_redis`."""

    def __init__(self, client: coredis.Redis[bytes], url: str) -> None:
        self._client = client
        self.url = _url_for_display(url)
        self._scripts: dict[str, Script] = {}

    def script(self, name: str) -> Script:
        """The Lua script ``abaco/lua/NAME.lua``, registered on first use."""
        found = self._scripts.get(name)
        if found is None:
            source = resources.files("abaco").joinpath("lua", f"{name}.lua").read_text()
            found = Script(name, self._client.register_script(source))
            self._scripts[name] = found
        return found

    async def ping(self) -> None:
        """Check that the server answers."""
        with _mapped_errors(f"PING {self.url}"):
            await self._client.ping()

    async def server_info(self) -> ServerInfo:
        """What the server is and which durability features it has."""
        with _mapped_errors("INFO"):
            info = await self._client.info("server", "persistence")
            fsync = await self._client.config_get(["appendfsync"])
        product = "valkey" if "valkey_version" in info else "redis"
        raw_version = str(info.get("valkey_version") or info.get("redis_version", "0"))
        version = tuple(int(p) for p in raw_version.split(".") if p.isdigit())
        appendfsync = fsync.get(b"appendfsync", b"")
        return ServerInfo(
            product=product,
            version=version,
            appendonly=bool(int(str(info.get("aof_enabled", 0)))),
            appendfsync=appendfsync.decode() if isinstance(appendfsync, bytes) else "",
        )

    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None."""
        with _mapped_errors(f"GET {key}"):
            return await self._client.get(key)

    async def set(
        self, key: str, value: bytes, *, ttl_ms: int | None = None, only_new: bool = False
    ) -> bool:
        """Set ``key``; with ``only_new`` only if absent. Returns whether it was set."""
        with _mapped_errors(f"SET {key}"):
            return await self._client.set(
                key, value, px=ttl_ms, condition=PureToken.NX if only_new else None
            )

    async def delete(self, *keys: str) -> int:
        """Delete keys; returns how many existed."""
        with _mapped_errors("DEL"):
            return await self._client.delete(keys)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        with _mapped_errors(f"EXISTS {key}"):
            return await self._client.exists([key]) == 1

    async def pexpire(self, key: str, ttl_ms: int) -> bool:
        """Let ``key`` expire in ``ttl_ms`` milliseconds; returns whether it exists."""
        with _mapped_errors(f"PEXPIRE {key}"):
            return await self._client.pexpire(key, ttl_ms)

    async def pttl(self, key: str) -> int:
        """Milliseconds left to live: -1 without expiry, -2 when absent."""
        with _mapped_errors(f"PTTL {key}"):
            return await self._client.pttl(key)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        """Every field of the hash at ``key`` (empty when absent)."""
        with _mapped_errors(f"HGETALL {key}"):
            return await self._client.hgetall(key)

    async def hget(self, key: str, field: str) -> bytes | None:
        """One field of a hash, or None."""
        with _mapped_errors(f"HGET {key}"):
            return await self._client.hget(key, field)

    async def hdel(self, key: str, *fields: str) -> int:
        """Delete fields of a hash; returns how many existed."""
        with _mapped_errors(f"HDEL {key}"):
            return await self._client.hdel(key, fields)

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> int:
        """Set fields of a hash; returns how many were new."""
        with _mapped_errors(f"HSET {key}"):
            return await self._client.hset(key, dict(mapping))

    async def zcard(self, key: str) -> int:
        """The number of members of a sorted set."""
        with _mapped_errors(f"ZCARD {key}"):
            return await self._client.zcard(key)

    async def xadd(
        self, key: str, fields: Mapping[str, bytes], *, maxlen: int | None = None
    ) -> bytes:
        """Append an entry to a stream, trimming it to about ``maxlen``; returns its id."""
        with _mapped_errors(f"XADD {key}"):
            entry_id = await self._client.xadd(
                key,
                dict(fields),
                trim_strategy=PureToken.MAXLEN if maxlen is not None else None,
                threshold=maxlen,
                trim_operator=PureToken.APPROXIMATELY if maxlen is not None else None,
            )
        assert entry_id is not None  # no NOMKSTREAM, so the server always answers an id
        return entry_id

    async def xrange(
        self, key: str, start: str | bytes = "-", end: str | bytes = "+", count: int | None = None
    ) -> list[StreamEntry]:
        """Entries of a stream between two ids (inclusive)."""
        with _mapped_errors(f"XRANGE {key}"):
            entries = await self._client.xrange(key, start, end, count=count)
        return [_entry(e) for e in entries]

    async def xread(
        self, key: str, after: str | bytes, *, block_ms: int | None = None, count: int = 100
    ) -> list[StreamEntry]:
        """Entries of one stream after id ``after``, waiting up to ``block_ms`` for some."""
        with _mapped_errors(f"XREAD {key}"):
            reply = await self._client.xread({key: after}, count=count, block=block_ms)
        if not reply:
            return []
        return [_entry(e) for e in next(iter(reply.values()))]

    async def xgroup_create(self, key: str, group: str) -> None:
        """Create a consumer group (and the stream) reading from the start; no-op if it exists."""
        try:
            with _mapped_errors(f"XGROUP CREATE {key}"):
                await self._client.xgroup_create(key, group, "0", mkstream=True)
        except StoreError as exc:
            if "BUSYGROUP" not in str(exc) and "already exists" not in str(exc):
                raise

    async def xreadgroup(
        self, key: str, group: str, consumer: str, *, block_ms: int | None, count: int = 1
    ) -> list[StreamEntry]:
        """New entries for ``consumer`` of ``group``, waiting up to ``block_ms`` for one.

        ``block_ms=None`` does not wait at all (0 would wait forever).
        """
        with _mapped_errors(f"XREADGROUP {key}"):
            reply = await self._client.xreadgroup(
                group, consumer, {key: ">"}, count=count, block=block_ms
            )
        if not reply:
            return []
        return [_entry(e) for e in next(iter(reply.values()))]

    async def xlen(self, key: str) -> int:
        """The number of entries in a stream."""
        with _mapped_errors(f"XLEN {key}"):
            return await self._client.xlen(key)

    async def last_stream_id(self, key: str) -> bytes:
        """The id of a stream's newest entry (``0-0`` when empty or absent)."""
        with _mapped_errors(f"XREVRANGE {key}"):
            entries = await self._client.xrevrange(key, "+", "-", count=1)
        return _entry(entries[0])[0] if entries else b"0-0"

    async def blpop(self, key: str, timeout: float) -> bytes | None:
        """Pop the head of a list, waiting up to ``timeout`` seconds (> 0) for one."""
        with _mapped_errors(f"BLPOP {key}"):
            reply = await self._client.blpop([key], timeout)
        return None if reply is None else reply[1]

    async def rpush(self, key: str, value: bytes, *, ttl_ms: int | None = None) -> int:
        """Append to a list (refreshing its expiry); returns the list's length."""
        with _mapped_errors(f"RPUSH {key}"):
            length = await self._client.rpush(key, [value])
            if ttl_ms is not None:
                await self._client.pexpire(key, ttl_ms)
        return length

    async def lpop(self, key: str) -> bytes | None:
        """Pop the head of a list, or None."""
        with _mapped_errors(f"LPOP {key}"):
            popped = await self._client.lpop(key)
        return popped if isinstance(popped, bytes) or popped is None else popped[0]

    async def llen(self, key: str) -> int:
        """The length of a list."""
        with _mapped_errors(f"LLEN {key}"):
            return await self._client.llen(key)

    async def zadd(self, key: str, scores: Mapping[str, float]) -> int:
        """Add members with scores to a sorted set (updating existing ones)."""
        with _mapped_errors(f"ZADD {key}"):
            members: dict[str | bytes, float] = {m: v for m, v in scores.items()}
            return int(await self._client.zadd(key, members))

    async def zrem(self, key: str, *members: str) -> int:
        """Remove members from a sorted set."""
        with _mapped_errors(f"ZREM {key}"):
            return await self._client.zrem(key, members)

    async def zscore(self, key: str, member: str) -> float | None:
        """The score of a member of a sorted set, or None."""
        with _mapped_errors(f"ZSCORE {key}"):
            return await self._client.zscore(key, member)

    async def sadd(self, key: str, *members: str) -> int:
        """Add members to a set; returns how many were new."""
        with _mapped_errors(f"SADD {key}"):
            return await self._client.sadd(key, members)

    async def smembers(self, key: str) -> builtins.set[str]:
        """Every member of a set, as text."""
        with _mapped_errors(f"SMEMBERS {key}"):
            return {m.decode() for m in await self._client.smembers(key)}

    async def flushdb(self) -> None:
        """Delete every key of this database (tests and benchmarks only)."""
        with _mapped_errors("FLUSHDB"):
            await self._client.flushdb()

    @property
    def raw(self) -> coredis.Redis[bytes]:
        """The underlying coredis client, for benchmarks that measure raw client cost."""
        return self._client


@contextlib.asynccontextmanager
async def open_redis(
    url: str,
    *,
    password: str = "",
    db: int | None = None,
    connect_timeout: float = 5.0,
    max_connections: int = 64,
) -> AsyncIterator[Redis]:
    """Connect to ``url`` (``redis://``, ``rediss://`` or ``unix://``) and check it answers.

    ``password`` and ``db``, when given, override what the URL says. Raises
    :class:`~abaco.errors.StoreUnavailable` naming the URL when the server cannot be reached.
    """
    if urllib.parse.urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise StoreUnavailable(
            f"bad Redis URL {_url_for_display(url)!r}: use redis://, rediss:// or unix://"
        )
    extra: dict[str, Any] = {"connect_timeout": connect_timeout, "max_connections": max_connections}
    if password:
        extra["password"] = password
    try:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, db=db, decode_responses=False, **extra
        )
    except ValueError as exc:
        raise StoreUnavailable(f"bad Redis URL {_url_for_display(url)!r}: {exc}") from exc
    redis = Redis(client, url)
    try:
        with _mapped_errors(f"connect to {redis.url}"):
            async with client:
                await redis.ping()
                yield redis
    except BaseExceptionGroup as group:
        # coredis runs its pool in a task group, which wraps whatever leaves the block
        # (ours or the caller's) in a group; hand a lone error back as itself.
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def open_configured_redis(options: RedisSettings) -> contextlib.AbstractAsyncContextManager[Redis]:
    """:func:`open_redis` with every option of ``[redis]`` (url, password, db, timeout, pool)."""
    return open_redis(
        options.url,
        password=options.password,
        db=options.db,
        connect_timeout=options.connect_timeout,
        max_connections=options.max_connections,
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found
