"""What channel operations hand back: deliveries, requests, subscriptions, memberships.

Each holds the hub it came from and asks it to do the work; none is made by user code.
"""

from __future__ import annotations

import contextlib
import traceback
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from abaco._channel_values import QueueChannel, ReplyChannel
from abaco.errors import Aborted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from abaco._channel_values import DuplexChannel, TopicChannel
    from abaco._hub import Hub

__all__ = [
    "ChannelStatistics",
    "Counters",
    "Delivery",
    "Follow",
    "Member",
    "MembershipEvent",
    "MembershipWatch",
    "Request",
    "Subscription",
]


@attrs.frozen
class ChannelStatistics:
    """What one hub has done on one channel."""

    #: Messages this hub sent on the channel.
    sent: int
    #: Messages this hub received from the channel.
    received: int
    #: Bytes of encoded messages sent.
    bytes_sent: int
    #: Bytes of encoded messages received.
    bytes_received: int


@attrs.define
class Counters:
    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


@attrs.frozen
class Delivery:
    """A message taken from a queue, held until acknowledged."""

    message: Any
    channel: QueueChannel
    delivery_id: bytes

    async def ack(self) -> None:
        """Acknowledge it: it will not be delivered again.

        Raises :class:`~abaco.errors.Aborted` if another consumer reclaimed it meanwhile.
        """
        await self.channel.hub.settle(self, "ack")

    async def renew(self) -> None:
        """Tell the queue this consumer is still working on it.

        Raises :class:`~abaco.errors.Aborted` if it is no longer this consumer's: another
        consumer reclaimed it, or reclaimed and acknowledged it already.
        """
        if not await self.channel.hub.settle(self, "renew"):
            raise Aborted(f"queue {self.channel.address}: the delivery was acknowledged already")

    @contextlib.asynccontextmanager
    async def renewing(self) -> AsyncIterator[None]:
        """Renew the delivery in the background for the duration of the block."""
        with self.channel.hub.in_background(self.channel.hub.renew_forever, self):
            yield


@attrs.frozen
class Request:
    """A request taken from a request channel, to be answered once."""

    message: Any
    reply_to: ReplyChannel
    correlation_id: str
    _delivery: Delivery

    async def reply(self, message: Any) -> None:
        """Answer the request (and acknowledge it)."""
        await self._delivery.channel.hub.answer(self, {"c": self.correlation_id, "b": message})

    async def fail(self, error: BaseException) -> None:
        """Answer with an error; the requester gets a :class:`RemoteError`."""
        detail = {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        }
        await self._delivery.channel.hub.answer(self, {"c": self.correlation_id, "e": detail})


@attrs.frozen
class MembershipEvent:
    """A member joined or left a duplex group."""

    event: str
    member: str


class Follow(Protocol):
    async def receive(self) -> tuple[str, bytes]: ...
    async def aclose(self) -> None: ...


class Subscription:
    """Messages of a topic channel, filtered by topic prefix: ``async for topic, msg in sub``."""

    def __init__(
        self, hub: Hub, channel: TopicChannel, follow: Follow, filters: Sequence[str]
    ) -> None:
        self._hub = hub
        self._channel = channel
        self._follow = follow
        self.filters: set[str] = set(filters)

    def follow(self, topic_filter: str) -> None:
        """Also follow topics starting with ``topic_filter``."""
        self.filters.add(topic_filter)

    def unfollow(self, topic_filter: str) -> None:
        """Stop following ``topic_filter`` (with no filter left, every topic is followed)."""
        self.filters.discard(topic_filter)

    async def receive(self) -> tuple[str, Any]:
        """The next (topic, message) this subscription follows."""
        while True:
            topic, frame = await self._follow.receive()
            if not self.filters or any(topic.startswith(f) for f in self.filters):
                return topic, self._hub.receive_frame(self._channel, frame)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        return await self.receive()


class MembershipWatch:
    """Membership changes of a duplex group: ``async for event in watch``."""

    def __init__(self, follow: Follow) -> None:
        self._follow = follow

    async def receive(self) -> MembershipEvent:
        """The next membership change."""
        event, member = await self._follow.receive()
        return MembershipEvent(event, member.decode())

    def __aiter__(self) -> MembershipWatch:
        return self

    async def __anext__(self) -> MembershipEvent:
        return await self.receive()


class Member:
    """This hub's membership in a duplex group: receive what others send to it."""

    def __init__(self, hub: Hub, channel: DuplexChannel, name: str) -> None:
        self._hub = hub
        self.channel = channel
        self.name = name
        self._inbox = QueueChannel(channel.transport, f"{channel.address}:m:{name}", hub=hub)

    async def receive(self, *, timeout: float | None = None) -> Any:
        """The next message sent to this member (acknowledged on return)."""
        delivery = await self._inbox.get(timeout=timeout)
        await delivery.ack()
        return delivery.message

    async def send(self, member: str, message: Any) -> None:
        """Send to another member."""
        await self.channel.send(member, message)
