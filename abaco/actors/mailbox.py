"""An actor's mailbox: where the API puts messages and the actor's workers take them.

The mailbox is a durable Redis queue channel per actor (at-least-once). Each message
carries the id of the execution the API recorded for it (SUBMITTED) before putting it
there, so a worker that takes it knows which record to move through the execution's
life cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from abaco.actors.ids import new_id
from abaco.actors.models import Execution
from abaco.channels import QueueChannel, Transport
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from abaco.channels import Hub
    from abaco.stores import Stores

__all__ = [
    "CONTENT_TYPES",
    "MailboxMessage",
    "StopWorker",
    "control_of",
    "enqueue",
    "mailbox_of",
    "prepare",
    "submit",
]

#: Abaco's ``_abaco_Content_Type`` values: a string message, a JSON one, a binary one.
CONTENT_TYPES = frozenset({"str", "application/json", "application/octet-stream"})


def _content_type(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in CONTENT_TYPES:
        raise BadRequest(f"content type {value!r}: one of {sorted(CONTENT_TYPES)}")


@attrs.frozen(kw_only=True)
class MailboxMessage:
    """One message for an actor, as it travels through the mailbox."""

    execution_id: str
    actor_id: str
    tenant: str
    #: Text for ``str`` and JSON messages, bytes for binary ones.
    body: str | bytes
    content_type: str = attrs.field(default="str", validator=_content_type)
    #: Per-message environment variables (the query parameters of the POST).
    environment: dict[str, str] = attrs.field(factory=dict)
    #: Who sent it.
    username: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The message as a plain dict for the channel."""
        return {"kind": "message", **attrs.asdict(self)}

    @classmethod
    def from_wire(cls, data: Any) -> MailboxMessage:
        """Read a message taken from a mailbox; :class:`BadRequest` when it is not one."""
        if not isinstance(data, dict) or data.get("kind") != "message":
            raise BadRequest(f"not a mailbox message: {type(data).__name__}")
        fields = {k: v for k, v in data.items() if k != "kind"}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise BadRequest(f"malformed mailbox message: {exc}") from exc


@attrs.frozen(kw_only=True)
class StopWorker:
    """The command that stops a worker: it finishes its current execution, then exits."""

    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The command as a plain dict for the channel."""
        return {"kind": "stop", "reason": self.reason}

    @classmethod
    def from_wire(cls, data: Any) -> StopWorker:
        """Read a command; :class:`BadRequest` when it is not a stop command."""
        if not isinstance(data, dict) or data.get("kind") != "stop":
            raise BadRequest(f"not a worker command: {data!r:.80}")
        return cls(reason=str(data.get("reason", "")))


def control_of(hub: Hub, key_prefix: str, tenant: str, worker_id: str) -> QueueChannel:
    """The channel a worker takes its commands from, bound to ``hub``."""
    channel: QueueChannel = hub.bind(
        QueueChannel(Transport.REDIS, f"{key_prefix}:{tenant}:worker-control:{worker_id}")
    )
    return channel


def mailbox_of(hub: Hub, key_prefix: str, tenant: str, actor_id: str) -> QueueChannel:
    """The mailbox channel of one actor, bound to ``hub``."""
    channel: QueueChannel = hub.bind(
        QueueChannel(Transport.REDIS, f"{key_prefix}:{tenant}:mailbox:{actor_id}")
    )
    return channel


def prepare(
    tenant: str,
    *,
    actor_id: str,
    body: str | bytes,
    content_type: str = "str",
    environment: dict[str, str] | None = None,
    username: str = "",
    execution_id: str | None = None,
) -> tuple[Execution, MailboxMessage]:
    """A new SUBMITTED execution for a message, and the message that names it."""
    execution = Execution(
        id=execution_id or new_id(), actor_id=actor_id, tenant=tenant, executor=username
    )
    message = MailboxMessage(
        execution_id=execution.id,
        actor_id=actor_id,
        tenant=tenant,
        body=body,
        content_type=content_type,
        environment=environment or {},
        username=username,
    )
    return execution, message


async def enqueue(
    stores: Stores, mailbox: QueueChannel, execution: Execution, message: MailboxMessage
) -> None:
    """Record the execution and put its message in the mailbox, both at once.

    Each write waits for the disk, so they go out together; a worker that takes the
    message before its record lands waits for the record (``WorkerProcess._start``).
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stores.executions.create, execution)
        nursery.start_soon(mailbox.put, message.to_wire())


async def submit(
    stores: Stores,
    mailbox: QueueChannel,
    *,
    actor_id: str,
    body: str | bytes,
    content_type: str = "str",
    environment: dict[str, str] | None = None,
    username: str = "",
    execution_id: str | None = None,
) -> Execution:
    """Record a SUBMITTED execution for a message, then put the message in the mailbox."""
    execution, message = prepare(
        stores.tenant,
        actor_id=actor_id,
        body=body,
        content_type=content_type,
        environment=environment,
        username=username,
        execution_id=execution_id,
    )
    await enqueue(stores, mailbox, execution, message)
    return execution
