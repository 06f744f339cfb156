"""The persist queue: entity records on their way from Redis to durable storage.

Workers and the API submit records here and never wait for the database; the
persistence actor drains the queue in batches into a ``Storage`` (EverBEEN's Object
Repository). A record is ``{kind, group, id, json}`` with EverBEEN's entity kinds; its
``id`` makes writes idempotent, so a record delivered twice is stored once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs

from abaco.channels import QueueChannel, Transport
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from abaco.channels import Hub

__all__ = ["KINDS", "EntityRecord", "persist_queue_of", "submit_records"]

#: EverBEEN's entity kinds.
KINDS = frozenset({"log", "result", "descriptor", "named-descriptor", "evaluation", "outcome"})


def _kind(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in KINDS:
        raise BadRequest(f"entity kind {value!r}: one of {sorted(KINDS)}")


@attrs.frozen(kw_only=True)
class EntityRecord:
    """One record for durable storage: what it is, whose it is, its id and its JSON."""

    kind: str = attrs.field(validator=_kind)
    #: The owner the record is filed under (for executions: the actor id).
    group: str
    id: str
    #: The record itself, as JSON text.
    json: str

    @classmethod
    def of(cls, kind: str, group: str, record_id: str, document: Any) -> EntityRecord:
        """A record whose JSON is ``document`` serialized."""
        return cls(kind=kind, group=group, id=record_id, json=json.dumps(document))

    def to_wire(self) -> dict[str, str]:
        """The record as a plain dict for the queue."""
        return attrs.asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> EntityRecord:
        """A record taken from the queue; :class:`BadRequest` when it is not one."""
        if not isinstance(data, dict):
            raise BadRequest(f"not an entity record: {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise BadRequest(f"malformed entity record: {exc}") from exc


def persist_queue_of(hub: Hub, key_prefix: str) -> QueueChannel:
    """The persist queue (one per platform, all tenants), bound to ``hub``."""
    channel: QueueChannel = hub.bind(QueueChannel(Transport.REDIS, f"{key_prefix}:persist"))
    return channel


async def submit_records(queue: QueueChannel, records: list[EntityRecord]) -> None:
    """Queue records for durable storage (this never waits for the database)."""
    await queue.put_many([record.to_wire() for record in records])
