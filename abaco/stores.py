"""The typed stores over Redis/Valkey, and the map of every key the platform writes.

Keyspace (``P`` is ``[redis] key_prefix``, ``T`` the tenant; ids never contain ``:``)::

    P:T:actor:ID                      hash    one Actor (fields as JSON text, plus _v _rev _parent)
    P:T:actor:_ids                    zset    every actor id (score 0, listed in id order)
    P:T:worker:ID                     hash    one Worker
    P:T:worker:_ids                   zset    every worker id
    P:T:actor:ACTOR:worker:_ids       zset    the workers of one actor
    P:T:worker-control:ID             stream  a worker's commands (a queue channel); deleted
                                              with the worker's record
    P:T:execution:ID                  hash    one Execution
    P:T:execution:_ids                zset    every execution id
    P:T:actor:ACTOR:execution:_ids    zset    the executions of one actor
    P:T:nonce:ID                      hash    one Nonce
    P:T:nonce:_ids                    zset    every nonce id
    P:T:actor:ACTOR:nonce:_ids        zset    the nonces of one actor (or alias)
    P:T:alias:ALIAS                   hash    one Alias (its id is the alias name)
    P:T:alias:_ids                    zset    every alias
    P:T:permissions:RESOURCE          hash    user -> READ | EXECUTE | UPDATE on an actor/alias
    P:T:config:NAME                   hash    one ActorConfig (a secret's value is ciphertext)
    P:T:config:_ids                   zset    every actor config
    P:T:config:permissions:NAME       hash    user -> READ | EXECUTE | UPDATE on a config
    P:T:logs:EXECUTION                stream  log chunks {d: text}; a last entry {end: ""}
    P:T:logs:EXECUTION:meta           hash    size (bytes kept), dropped (bytes cut off the head)
    P:T:results:EXECUTION             list    an execution's binary results, first in first out
    P:T:state:ACTOR                   string  a stateful actor's state (JSON)

Records carry a schema version (``_v``) and a revision (``_rev``); see :mod:`abaco._records`.
Logs and records written with a ``ttl`` expire; index entries of expired records are
cleaned up when a listing passes over them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
import trio

from abaco._records import Page as Page
from abaco._records import RecordStore as RecordStore
from abaco.actor_configs import ActorConfig
from abaco.actors.models import (
    Actor,
    Alias,
    Execution,
    Nonce,
    PermissionLevel,
    Worker,
    converter,
)
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = [
    "LogStore",
    "LogText",
    "Page",
    "PermissionStore",
    "RecordStore",
    "ResultStore",
    "StateStore",
    "Stores",
]


def _check_name(what: str, value: str) -> str:
    if not value or ":" in value or any(c.isspace() for c in value):
        raise BadRequest(f"{what} {value!r} must be non-empty, without ':' or spaces")
    return value


@attrs.frozen
class LogText:
    """An execution's log as kept: the text, and how many bytes were cut off its head."""

    text: str
    dropped_bytes: int
    #: Whether the writer has marked the log finished.
    complete: bool


class LogStore:
    """Execution logs: appended in chunks, bounded (the tail is kept), expiring."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        *,
        expiry: int,
        max_bytes: int,
        max_expiry: int | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:logs:"
        self.expiry = expiry
        self.max_bytes = max_bytes
        #: The longest expiry an actor's ``log_ex`` may ask for (None: no limit).
        self.max_expiry = max_expiry

    def expiry_for(self, log_ex: int | None) -> int:
        """Seconds to keep the logs of an actor whose ``log_ex`` is ``log_ex``.

        None means the store's default; a value above ``max_expiry`` is cut to it, as
        Abaco cuts ``log_ex`` to ``log_ex_limit``.
        """
        if log_ex is None:
            return self.expiry
        chosen = max(1, log_ex)
        return chosen if self.max_expiry is None else min(chosen, self.max_expiry)

    def _keys(self, execution_id: str) -> list[str]:
        stream = self._prefix + _check_name("execution id", execution_id)
        return [stream, stream + ":meta"]

    async def append(self, execution_id: str, text: str, *, expiry: int | None = None) -> None:
        """Add text to the log; ``expiry`` (seconds) overrides the store's default."""
        data = text.encode()
        if len(data) > self.max_bytes:
            data = data[-self.max_bytes :]
        ttl_ms = (self.expiry if expiry is None else expiry) * 1000
        await self._redis.script("log_append")(
            self._keys(execution_id), [data, self.max_bytes, ttl_ms]
        )

    async def finish(self, execution_id: str, *, expiry: int | None = None) -> None:
        """Mark the log complete, so followers stop; it expires after ``expiry`` seconds.

        ``expiry`` overrides the store's default, and applies to a log that got no
        output too.
        """
        ttl_ms = (self.expiry if expiry is None else expiry) * 1000
        await self._redis.script("log_finish")(self._keys(execution_id), [ttl_ms])

    async def read(self, execution_id: str) -> LogText:
        """The whole log as kept now."""
        stream, meta = self._keys(execution_id)
        read: dict[str, Any] = {}

        async def entries_of() -> None:
            read["entries"] = await self._redis.xrange(stream)

        async def info_of() -> None:
            read["info"] = await self._redis.hgetall(meta)

        async with trio.open_nursery() as nursery:  # two round trips, one wait
            nursery.start_soon(entries_of)
            nursery.start_soon(info_of)
        entries, info = read["entries"], read["info"]
        chunks = [fields[b"d"] for _, fields in entries if b"d" in fields]
        return LogText(
            text=b"".join(chunks).decode(errors="replace"),
            dropped_bytes=int(info.get(b"dropped", b"0")),
            complete=any(b"end" in fields for _, fields in entries),
        )

    async def follow(self, execution_id: str, *, poll_ms: int = 1000) -> AsyncIterator[str]:
        """Yield the log's chunks from the start, then new ones as they come, until finished."""
        stream, _ = self._keys(execution_id)
        after: bytes | str = "0-0"
        while True:
            for entry_id, fields in await self._redis.xread(stream, after, block_ms=poll_ms):
                after = entry_id
                if b"end" in fields:
                    return
                yield fields[b"d"].decode(errors="replace")

    async def delete(self, execution_id: str) -> None:
        """Forget an execution's log."""
        await self._redis.delete(*self._keys(execution_id))


class ResultStore:
    """Binary results of executions: appended by the worker, read back one at a time (FIFO)."""

    def __init__(self, redis: Redis, namespace: str, *, expiry: int) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:results:"
        self.expiry = expiry

    def _key(self, execution_id: str) -> str:
        return self._prefix + _check_name("execution id", execution_id)

    async def push(self, execution_id: str, result: bytes) -> None:
        """Append one result."""
        await self._redis.rpush(self._key(execution_id), result, ttl_ms=self.expiry * 1000)

    async def pop(self, execution_id: str) -> bytes | None:
        """The oldest result not read yet (None when there is none)."""
        return await self._redis.lpop(self._key(execution_id))

    async def count(self, execution_id: str) -> int:
        """Results not read yet."""
        return await self._redis.llen(self._key(execution_id))

    async def delete(self, execution_id: str) -> None:
        """Forget an execution's results."""
        await self._redis.delete(self._key(execution_id))


class StateStore:
    """The state of stateful actors: one JSON value per actor."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:state:"

    async def get(self, actor_id: str) -> Any:
        """The actor's state ({} when it has none)."""
        raw = await self._redis.get(self._prefix + _check_name("actor id", actor_id))
        return {} if raw is None else json.loads(raw)

    async def set(self, actor_id: str, state: Any) -> None:
        """Replace the actor's state; :class:`BadRequest` unless it is JSON."""
        try:
            data = json.dumps(state).encode()
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"an actor's state must be JSON: {exc}") from exc
        await self._redis.set(self._prefix + _check_name("actor id", actor_id), data)

    async def delete(self, actor_id: str) -> None:
        """Forget the actor's state."""
        await self._redis.delete(self._prefix + _check_name("actor id", actor_id))


class PermissionStore:
    """Who may do what to an actor or alias: one hash of user -> level per resource."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:permissions:"

    def _key(self, resource_id: str) -> str:
        return self._prefix + _check_name("resource id", resource_id)

    async def grant(self, resource_id: str, user: str, level: PermissionLevel) -> None:
        """Give ``user`` exactly ``level`` on the resource (NONE revokes)."""
        if level == PermissionLevel.NONE:
            await self.revoke(resource_id, user)
            return
        await self._redis.hset(self._key(resource_id), {user: level.name.encode()})

    async def revoke(self, resource_id: str, user: str) -> None:
        """Take every permission of ``user`` on the resource away."""
        await self._redis.hdel(self._key(resource_id), user)

    async def all(self, resource_id: str) -> dict[str, PermissionLevel]:
        """Every user's level on the resource."""
        raw = await self._redis.hgetall(self._key(resource_id))
        return {user.decode(): PermissionLevel[level.decode()] for user, level in raw.items()}

    async def level(self, resource_id: str, user: str) -> PermissionLevel:
        """The level ``user`` has on the resource (NONE when not listed)."""
        raw = await self._redis.hget(self._key(resource_id), user)
        return PermissionLevel.NONE if raw is None else PermissionLevel[raw.decode()]

    async def delete(self, resource_id: str) -> None:
        """Forget every permission on the resource."""
        await self._redis.delete(self._key(resource_id))


@attrs.frozen
class Stores:
    """Every store of one tenant. Make one with :meth:`Stores.open`."""

    tenant: str
    actors: RecordStore[Actor]
    workers: RecordStore[Worker]
    executions: RecordStore[Execution]
    nonces: RecordStore[Nonce]
    aliases: RecordStore[Alias]
    permissions: PermissionStore
    logs: LogStore
    results: ResultStore
    state: StateStore
    configs: RecordStore[ActorConfig]
    config_permissions: PermissionStore

    @classmethod
    def open(cls, redis: Redis, settings: Settings, tenant: str | None = None) -> Stores:
        """The stores of ``tenant`` (the configured default tenant when None)."""
        tenant = _check_name("tenant", tenant or settings.stores.tenant)
        namespace = f"{_check_name('key prefix', settings.redis.key_prefix)}:{tenant}"
        retries = settings.stores.cas_retries

        def records(kind: str, record_cls: type[attrs.AttrsInstance], **kw: Any) -> RecordStore:  # type: ignore[type-arg]
            return RecordStore(
                redis,
                namespace=namespace,
                kind=kind,
                cls=record_cls,
                converter=converter,
                cas_retries=retries,
                **kw,
            )

        return cls(
            tenant=tenant,
            actors=records("actor", Actor),
            # A worker's control queue (abaco.actors.mailbox.control_of) goes with it.
            workers=records(
                "worker",
                Worker,
                parent_field="actor_id",
                parent_kind="actor",
                companions=("worker-control",),
            ),
            executions=records(
                "execution", Execution, parent_field="actor_id", parent_kind="actor"
            ),
            nonces=records("nonce", Nonce, parent_field="actor_id", parent_kind="actor"),
            aliases=records("alias", Alias, id_field="alias"),
            permissions=PermissionStore(redis, namespace),
            logs=LogStore(
                redis,
                namespace,
                expiry=settings.stores.log_expiry,
                max_bytes=settings.stores.log_max_bytes,
                max_expiry=settings.stores.log_ex_limit,
            ),
            results=ResultStore(redis, namespace, expiry=settings.stores.log_expiry),
            state=StateStore(redis, namespace),
            configs=records("config", ActorConfig, id_field="name"),
            config_permissions=PermissionStore(redis, f"{namespace}:config"),
        )
