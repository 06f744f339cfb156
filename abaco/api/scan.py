"""Reading many records in few round trips, for search and the admin views.

The typed stores (:mod:`abaco.stores`) build one attrs record per hash, which is right for
a request about one thing and too slow for a pass over ten thousand executions (decoding
and structuring costs more than fetching). These helpers read the same keys, laid out as
the keyspace map in :mod:`abaco.stores` documents them, but return plain JSON values, and
fetch only the fields a caller asks for: ``status`` of 10,000 executions is twenty replies,
each one JSON text for 500 records that one ``json.loads`` decodes. They only read (the
Lua scripts write nothing), and the ids of expired records are skipped rather than
cleaned up, which listings do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from abaco.redis_client import Redis
    from abaco.stores import Stores

__all__ = ["Keyspace", "hashes", "log_texts", "plain", "scan"]

_BOOKKEEPING = frozenset({b"_v", b"_rev", b"_parent"})

#: Ids per script call: one call reads this many hashes, so it holds the server a few ms.
_PAGE = 500


@attrs.frozen
class Keyspace:
    """The keys of one tenant's records, as :mod:`abaco.stores` lays them out."""

    #: ``P:T:``, the tenant's namespace with its trailing colon.
    namespace: str

    @classmethod
    def of(cls, stores: Stores) -> Keyspace:
        """The keyspace of ``stores``' tenant."""
        # An actor's key is P:T:actor:ID, so the empty id gives the prefix P:T:actor:.
        return cls(stores.actors.key("").removesuffix("actor:"))

    def prefix(self, kind: str) -> str:
        """The prefix of the keys of one kind of record (``P:T:execution:``)."""
        return f"{self.namespace}{kind}:"

    def index(self, kind: str) -> str:
        """The index of every record of a kind in the tenant."""
        return f"{self.namespace}{kind}:_ids"

    def actor_index(self, actor_id: str, kind: str) -> str:
        """The index of one actor's records of a kind (its executions, workers...)."""
        return f"{self.namespace}actor:{actor_id}:{kind}:_ids"

    def permissions_prefix(self) -> str:
        """The prefix of the permission hashes (``P:T:permissions:RESOURCE``)."""
        return f"{self.namespace}permissions:"

    def log_key(self, execution_id: str) -> str:
        """The log stream of one execution."""
        return f"{self.namespace}logs:{execution_id}"


async def scan(
    redis: Redis,
    index: str,
    prefix: str,
    fields: Sequence[str] = (),
    *,
    raw: bool = False,
    page: int = _PAGE,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every id of ``index`` in id order with the listed fields of its hash ``prefix + id``.

    Yields ``(id, values)``: the fields found, as plain values (the whole record with no
    ``fields``). Values are JSON text in record hashes; ``raw`` says they are plain
    strings (as in permission hashes). Fields whose names start with ``_`` (such as
    ``_rev``, in every record) only tell a record from an expired index entry: ids whose
    hash has none of the fields are skipped, and ``_`` fields are not yielded.
    """
    lower = "-"
    script = redis.script("fields_page")
    mode = "raw" if raw else "json"
    while True:
        reply = await script([index], [lower, page, prefix, mode, *fields])
        examined, last = int(reply[0]), reply[1]
        for record in json.loads(reply[2]):
            yield record.pop("_id"), record
        if examined < page:
            return
        lower = "(" + last.decode()


def plain(flat: Sequence[bytes]) -> dict[str, Any]:
    """A whole record hash (HGETALL's flat list) as plain values, without bookkeeping."""
    # One json.loads over the whole record is much cheaper than one per field; field
    # names are Python identifiers, so they need no escaping.
    parts = [
        b'"%s":%s' % (flat[i], flat[i + 1])
        for i in range(0, len(flat), 2)
        if flat[i] not in _BOOKKEEPING
    ]
    value: dict[str, Any] = json.loads(b"{" + b",".join(parts) + b"}")
    return value


async def hashes(redis: Redis, keys: Sequence[str]) -> list[list[bytes]]:
    """The whole hashes at ``keys`` (flat lists, empty for a missing key), in one round trip."""
    if not keys:
        return []
    reply: list[list[bytes]] = await redis.script("hashes_many")(keys, [])
    return reply


async def log_texts(redis: Redis, keys: Sequence[str]) -> list[str | None]:
    """The text of the log streams at ``keys`` (None where there is none), in one round trip."""
    if not keys:
        return []
    reply = await redis.script("logs_many")(keys, [])
    return [None if raw is None else raw.decode(errors="replace") for raw in reply]
