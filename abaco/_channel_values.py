"""Channel values: small, immutable, hashable descriptions of where messages go.

A value names a transport, an address on it and (through its class) a kind. It carries
no credentials and no connection, so it can travel inside any message; the same channel
received twice is equal (and hashes equal) to itself. A value *bound* to a hub (one made
by the hub's ``open_*`` methods, or received through the hub) also works: its methods
send and receive through that hub's connections. Binding is not part of equality.
"""

from __future__ import annotations

import contextlib
import enum
import re
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from abaco.errors import ChannelClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    # Only for annotations: _hub and _handles import this module. attrs never evaluates them.
    from abaco._handles import (
        ChannelStatistics,
        Delivery,
        Member,
        MembershipWatch,
        Request,
        Subscription,
    )
    from abaco._hub import Hub  # noqa: TC004

__all__ = [
    "CHANNEL_CLASSES",
    "Channel",
    "DuplexChannel",
    "Kind",
    "QueueChannel",
    "ReplyChannel",
    "RequestChannel",
    "TopicChannel",
    "Transport",
]


class Transport(enum.StrEnum):
    """How messages travel: through Redis (durable, cross-host) or 0MQ (direct, fast)."""

    REDIS = "redis"
    ZMQ = "zmq"


class Kind(enum.StrEnum):
    """What a channel does with a message (Kumori's connector types)."""

    #: Load-balanced: each message goes to exactly one consumer.
    QUEUE = "queue"
    #: Publish/subscribe: every subscriber gets every message of the topics it follows.
    TOPIC = "topic"
    #: Request/reply: a request carries a reply channel, the replier answers on it.
    REQUEST = "request"
    #: The one-consumer inbox a requester waits on.
    REPLY = "reply"
    #: Addressed sends to members, with a membership list and change events.
    DUPLEX = "duplex"


# What an address may not contain: control characters and spaces (code points 0-32).
_CONTROL_OR_SPACE = re.compile("[\x00-\x20]")


def _check_address(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or len(value) > 1024 or _CONTROL_OR_SPACE.search(value):
        raise ValueError(f"channel address {value!r}: 1-1024 printable characters, no spaces")


@attrs.frozen
class Channel:
    """Base of every channel value: a transport and an address."""

    KIND: ClassVar[Kind]

    transport: Transport = attrs.field(converter=Transport)
    address: str = attrs.field(validator=_check_address)
    _hub: Hub | None = attrs.field(
        default=None, eq=False, hash=False, repr=False, kw_only=True, alias="hub"
    )

    @property
    def kind(self) -> Kind:
        """The channel's kind."""
        return self.KIND

    @property
    def hub(self) -> Hub:
        """The hub this value is bound to; :class:`ChannelClosed` when none is."""
        if self._hub is None:
            raise ChannelClosed(
                f"{self!r} is not bound to a hub: receive it through a hub or use hub.bind()"
            )
        return self._hub

    def statistics(self) -> ChannelStatistics:
        """What this hub has sent and received on this channel."""
        return self.hub.statistics(self)


@attrs.frozen
class QueueChannel(Channel):
    """A queue: many producers, many consumers, each message to exactly one consumer."""

    KIND: ClassVar[Kind] = Kind.QUEUE

    async def put(self, message: Any) -> None:
        """Append a message."""
        await self.hub.queue_put(self, message)

    async def put_many(self, messages: Sequence[Any]) -> None:
        """Append several messages in order (on Redis: in one round trip)."""
        await self.hub.queue_put_many(self, messages)

    async def get(self, *, timeout: float | None = None) -> Delivery:
        """Take the next message; it is yours until you ``ack()`` it (or stop renewing it)."""
        return await self.hub.queue_get(self, timeout)

    async def get_many(self, count: int, *, timeout: float | None = None) -> list[Delivery]:
        """Wait for one message, then take up to ``count`` of those already waiting."""
        return await self.hub.queue_get_many(self, count, timeout)

    @contextlib.asynccontextmanager
    async def receive(self, *, timeout: float | None = None) -> AsyncIterator[Any]:
        """Take the next message, keep it renewed inside the block, ack it on success.

        If the block raises, the message is not acknowledged and will be delivered again.
        """
        delivery = await self.get(timeout=timeout)
        async with delivery.renewing():
            yield delivery.message
        await delivery.ack()

    async def length(self) -> int:
        """Messages put and not yet acknowledged."""
        return await self.hub.queue_length(self)

    async def waiting(self) -> int:
        """Messages put and not yet taken by any consumer."""
        return await self.hub.queue_waiting(self)


@attrs.frozen
class TopicChannel(Channel):
    """A topic: every subscriber gets every message published on the topics it follows."""

    KIND: ClassVar[Kind] = Kind.TOPIC

    async def publish(self, topic: str, message: Any) -> None:
        """Publish a message on ``topic``."""
        await self.hub.topic_publish(self, topic, message)

    def subscribe(self, *filters: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Follow the topics starting with any of ``filters`` (none: every topic)."""
        return self.hub.topic_subscribe(self, filters)


@attrs.frozen
class RequestChannel(Channel):
    """Where requests go; each request carries the reply channel its answer goes to."""

    KIND: ClassVar[Kind] = Kind.REQUEST

    async def request(self, message: Any, *, timeout: float) -> Any:
        """Send a request and wait for its answer.

        Raises :class:`~abaco.errors.ChannelTimeout` when none comes in time and
        :class:`~abaco.errors.RemoteError` when the replier answered with an error.
        """
        return await self.hub.request(self, message, timeout)

    async def next_request(self, *, timeout: float | None = None) -> Request:
        """Take the next request to answer."""
        return await self.hub.next_request(self, timeout)


@attrs.frozen
class ReplyChannel(Channel):
    """A requester's inbox; it lives as long as the hub that made it."""

    KIND: ClassVar[Kind] = Kind.REPLY


@attrs.frozen
class DuplexChannel(Channel):
    """A group of members that send to each other by name."""

    KIND: ClassVar[Kind] = Kind.DUPLEX

    def join(self, member: str) -> contextlib.AbstractAsyncContextManager[Member]:
        """Be a member named ``member`` for the duration of the block."""
        return self.hub.duplex_join(self, member)

    async def send(self, member: str, message: Any) -> None:
        """Send to one member; :class:`~abaco.errors.DestinationUnavailable` if absent."""
        await self.hub.duplex_send(self, member, message)

    async def membership(self) -> list[str]:
        """The current members, sorted."""
        return await self.hub.duplex_members(self)

    def watch(self) -> contextlib.AbstractAsyncContextManager[MembershipWatch]:
        """Membership changes from now on."""
        return self.hub.duplex_watch(self)


CHANNEL_CLASSES: dict[Kind, type[Channel]] = {
    cls.KIND: cls
    for cls in (QueueChannel, TopicChannel, RequestChannel, ReplyChannel, DuplexChannel)
}
"""The value class of each kind, for decoders."""
