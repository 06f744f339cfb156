"""A typed store of attrs records in Redis hashes: the engine under :mod:`abaco.stores`.

Each record is one hash. Every field holds the JSON text of the field's unstructured
value (so numbers stay numbers that HINCRBY can add to, and ``redis-cli HGETALL`` is
readable), plus three bookkeeping fields: ``_v`` (schema version), ``_rev`` (revision,
bumped by every write, the basis of compare-and-set) and ``_parent`` (the id of the
record this one belongs to, for per-parent listings). Ids sit in a sorted set with
score 0, so listing pages go in id order with ZRANGEBYLEX and a cursor.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import cattrs
import trio

from abaco.actors.states import allowed, machine_name
from abaco.errors import BadRequest, Conflict, InvalidTransition, NotFound, SchemaError

if TYPE_CHECKING:
    from abaco.redis_client import Redis

__all__ = ["Page", "RecordStore"]

R = TypeVar("R", bound=attrs.AttrsInstance)

_BOOKKEEPING = frozenset({b"_v", b"_rev", b"_parent"})


@attrs.frozen
class Page(Generic[R]):
    """One page of a listing; pass ``next_cursor`` back to get the next one."""

    items: list[R]
    #: None when this is the last page.
    next_cursor: str | None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class RecordStore(Generic[R]):
    """Records of one attrs class, under one key prefix.

    ``parent_field`` names the field (e.g. ``actor_id``) whose value groups records for
    :meth:`list` and :meth:`count` with ``parent=``.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        kind: str,
        cls: type[R],
        converter: cattrs.Converter,
        id_field: str = "id",
        parent_field: str | None = None,
        parent_kind: str = "",
        companions: Sequence[str] = (),
        cas_retries: int = 100,
    ) -> None:
        self._redis = redis
        # Keys <namespace>:<companion>:<id> that belong to a record and go with it.
        self._companions = [f"{namespace}:{companion}:" for companion in companions]
        self._cls = cls
        self._converter = converter
        self._id_field = id_field
        self._parent_field = parent_field
        self._cas_retries = cas_retries
        # Models use postponed annotations; resolve them so field types are real types.
        self._fields = {f.name: f for f in attrs.fields(attrs.resolve_types(cls))}
        self._version: int = getattr(cls, "SCHEMA_VERSION", 1)
        self._record_prefix = f"{namespace}:{kind}:"
        self._index = f"{namespace}:{kind}:_ids"
        # The index of one parent's records is <parent prefix><parent id><parent suffix>.
        self._parent_prefix = f"{namespace}:{parent_kind}:"
        self._parent_suffix = f":{kind}:_ids"

    # -- keys ---------------------------------------------------------------------------

    def key(self, record_id: str) -> str:
        """The Redis key of one record."""
        return self._record_prefix + record_id

    def _parent_index(self, parent: str) -> str:
        return self._parent_prefix + parent + self._parent_suffix

    # -- encoding -----------------------------------------------------------------------

    def _encode(self, record: R) -> list[str]:
        flat: list[str] = ["_v", str(self._version)]
        for name, value in self._converter.unstructure(record).items():
            flat += [name, _dumps(value)]
        return flat

    def _decode(self, record_id: str, raw: dict[bytes, bytes]) -> R:
        version = int(raw.get(b"_v", b"1"))
        if version > self._version:
            raise SchemaError(
                f"{self._cls.__name__} {record_id} has schema version {version}; "
                f"this code reads up to {self._version}"
            )
        # One json.loads over the whole record costs a third of one call per field.
        # Field names are Python identifiers, so they need no escaping.
        text = b",".join(b'"%s":%s' % kv for kv in raw.items() if kv[0] not in _BOOKKEEPING)
        data = json.loads(b"{" + text + b"}")
        try:
            return self._converter.structure(data, self._cls)
        except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
            raise SchemaError(f"{self._cls.__name__} {record_id} does not decode: {exc}") from exc

    def _encode_fields(self, fields: dict[str, Any]) -> list[str]:
        """Check each value against its field's type and encode it."""
        flat: list[str] = []
        for name, value in fields.items():
            field = self._fields.get(name)
            if field is None or name == self._id_field:
                raise BadRequest(f"{self._cls.__name__} has no updatable field {name!r}")
            try:
                plain = self._converter.unstructure(value, unstructure_as=field.type)
                self._converter.structure(plain, field.type)
            except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
                raise BadRequest(f"{self._cls.__name__}.{name}: bad value {value!r}") from exc
            flat += [name, _dumps(plain)]
        return flat

    def _id_of(self, record: R) -> str:
        return str(getattr(record, self._id_field))

    def _parent_of(self, record: R) -> str:
        if self._parent_field is None:
            return ""
        return str(getattr(record, self._parent_field) or "")

    # -- reads --------------------------------------------------------------------------

    async def get(self, record_id: str) -> R:
        """The record with this id; raises :class:`~abaco.errors.NotFound`."""
        record, _ = await self.get_with_revision(record_id)
        return record

    async def get_with_revision(self, record_id: str) -> tuple[R, int]:
        """The record and its revision, for :meth:`compare_and_set`."""
        raw = await self._redis.hgetall(self.key(record_id))
        if not raw:
            raise NotFound(f"no {self._cls.__name__.lower()} with id {record_id!r}")
        return self._decode(record_id, raw), int(raw[b"_rev"])

    async def exists(self, record_id: str) -> bool:
        """Whether a record with this id exists."""
        return await self._redis.exists(self.key(record_id))

    async def count(self, *, parent: str | None = None) -> int:
        """How many records there are (of one parent, when given).

        Records that expired are counted until a :meth:`list` passes over them.
        """
        index = self._index if parent is None else self._parent_index(parent)
        return await self._redis.zcard(index)

    async def list(
        self, *, parent: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[R]:
        """One page of records in id order, starting after ``cursor``."""
        if limit < 1:
            raise BadRequest(f"limit must be at least 1, got {limit}")
        index = self._index if parent is None else self._parent_index(parent)
        lower = "-" if cursor is None else "(" + cursor
        reply = await self._redis.script("record_page")(
            [index], [lower, limit, self._record_prefix]
        )
        examined, last_examined = int(reply[0]), reply[1]
        items: list[R] = []
        for i in range(2, len(reply), 2):
            flat = reply[i + 1]
            record_id = reply[i].decode()
            items.append(self._decode(record_id, dict(zip(flat[::2], flat[1::2], strict=True))))
        if examined < limit:
            return Page(items, None)
        # Continue after the last id examined, even when its record had expired.
        return Page(items, last_examined.decode())

    # -- writes -------------------------------------------------------------------------

    async def _write(self, record: R, mode: str, revision: int, ttl: float | None) -> int:
        record_id = self._id_of(record)
        parent = self._parent_of(record)
        ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        keys = [self.key(record_id), self._index, self._parent_index(parent) if parent else ""]
        keys[2] = keys[2] or keys[0]
        args: list[str | int | float | bytes] = [record_id, mode, revision, ttl_ms, parent]
        args += self._encode(record)
        return int(await self._redis.script("record_put")(keys, args))

    async def put(self, record: R, *, ttl: float | None = None) -> int:
        """Create or replace a record (expiring after ``ttl`` seconds); returns its revision."""
        return await self._write(record, "replace", 0, ttl)

    async def create(self, record: R, *, ttl: float | None = None) -> int:
        """Create a record; raises :class:`~abaco.errors.Conflict` if the id is taken."""
        revision = await self._write(record, "create", 0, ttl)
        if revision < 0:
            raise Conflict(f"{self._cls.__name__.lower()} {self._id_of(record)!r} exists already")
        return revision

    async def compare_and_set(self, record: R, revision: int, *, ttl: float | None = None) -> int:
        """Replace a record only if it is still at ``revision``; returns the new revision.

        Raises :class:`~abaco.errors.Conflict` when someone else wrote it in between.
        """
        new_revision = await self._write(record, "cas", revision, ttl)
        if new_revision < 0:
            raise Conflict(f"{self._cls.__name__.lower()} {self._id_of(record)!r} changed")
        return new_revision

    async def transaction(self, record_id: str, change: Callable[[R], Awaitable[R] | R]) -> R:
        """Read, change and write back one record, retrying when another writer got there first.

        ``change`` may run several times, so it must not have side effects. Raises
        :class:`~abaco.errors.Conflict` after ``cas_retries`` lost races.
        """
        for attempt in range(self._cas_retries):
            record, revision = await self.get_with_revision(record_id)
            changed = change(record)
            new = await changed if isinstance(changed, Awaitable) else changed
            if self._id_of(new) != record_id:
                raise BadRequest("a transaction cannot change a record's id")
            try:
                await self.compare_and_set(new, revision)
            except Conflict:
                # Jittered backoff keeps many writers of one hot record from lock-stepping.
                await trio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
                continue
            return new
        raise Conflict(
            f"{self._cls.__name__.lower()} {record_id!r}: gave up after "
            f"{self._cas_retries} conflicting writes"
        )

    async def move(self, record_id: str, status: Any, **fields: Any) -> R:
        """Change a record's ``status`` through the transition table, with other fields.

        Atomic on the server (one round trip): of two writers racing to move one record
        only one wins, and the other gets :class:`~abaco.errors.InvalidTransition` if the
        move is no longer allowed from where the record now is.
        """
        sources = [s for s in type(status) if status in allowed(s)]
        args = [str(len(sources)), *(_dumps(s.value) for s in sources)]
        args += self._encode_fields({"status": status, **fields})
        reply = await self._redis.script("record_move")([self.key(record_id)], args)
        if not reply:
            raise NotFound(f"no {self._cls.__name__.lower()} with id {record_id!r}")
        if isinstance(reply, bytes):
            current = json.loads(reply)
            raise InvalidTransition(machine_name(status), str(current), str(status))
        return self._decode(record_id, dict(zip(reply[::2], reply[1::2], strict=True)))

    async def update(self, record_id: str, **fields: Any) -> R:
        """Set some fields atomically (no read first); returns the record as it is now."""
        if not fields:
            return await self.get(record_id)
        reply = await self._redis.script("record_update")(
            [self.key(record_id)], self._encode_fields(fields)
        )
        if not reply:
            raise NotFound(f"no {self._cls.__name__.lower()} with id {record_id!r}")
        return self._decode(record_id, dict(zip(reply[::2], reply[1::2], strict=True)))

    async def increment(self, record_id: str, field: str, amount: int | float = 1) -> int | float:
        """Add ``amount`` to a numeric field atomically; returns the new value."""
        spec = self._fields.get(field)
        if spec is None or spec.type not in (int, float):
            raise BadRequest(f"{self._cls.__name__}.{field} is not a number field")
        if spec.type is int and not isinstance(amount, int):
            raise BadRequest(f"{self._cls.__name__}.{field} is an int; cannot add {amount!r}")
        reply = await self._redis.script("record_increment")([self.key(record_id)], [field, amount])
        if not reply:
            raise NotFound(f"no {self._cls.__name__.lower()} with id {record_id!r}")
        value: int | float = json.loads(reply)
        return value

    async def delete(self, record_id: str) -> bool:
        """Delete a record and its companion keys; returns whether the record existed."""
        companions = [prefix + record_id for prefix in self._companions]
        deleted = await self._redis.script("record_delete")(
            [self.key(record_id), self._index, *companions],
            [record_id, self._parent_prefix, self._parent_suffix],
        )
        return bool(deleted)

    async def expire(self, record_id: str, ttl: float) -> None:
        """Let an existing record expire after ``ttl`` seconds."""
        if not await self._redis.pexpire(self.key(record_id), max(1, int(ttl * 1000))):
            raise NotFound(f"no {self._cls.__name__.lower()} with id {record_id!r}")
