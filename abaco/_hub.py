"""The hub: one process's (or one test's) connections, and every channel operation.

A hub owns a Redis client, an inbox for replies, and a nursery for the background work
channels need (renewing leases, listening on the inbox). Channel values bound to it
delegate to it; messages it decodes come with their channels bound to it, so a channel
received inside a message works at once.
"""

from __future__ import annotations

import collections
import contextlib
import math
import traceback
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from abaco import _wire
from abaco._channel_values import (
    Channel,
    DuplexChannel,
    QueueChannel,
    ReplyChannel,
    RequestChannel,
    TopicChannel,
    Transport,
)
from abaco._transports.redis import RedisTransport
from abaco.actors.ids import new_id
from abaco.errors import (
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    RemoteError,
    SendFailed,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

    from abaco.redis_client import Redis

__all__ = [
    "ChannelStatistics",
    "Delivery",
    "Hub",
    "Member",
    "MembershipEvent",
    "MembershipWatch",
    "Request",
    "Subscription",
    "open_hub",
]

_log = structlog.get_logger(__name__)


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
class _Counters:
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
        """Tell the queue this consumer is still working on it."""
        await self.channel.hub.settle(self, "renew")

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


class Subscription:
    """Messages of a topic channel, filtered by topic prefix: ``async for topic, msg in sub``."""

    def __init__(
        self, hub: Hub, channel: TopicChannel, after: bytes, filters: Sequence[str]
    ) -> None:
        self._hub = hub
        self._channel = channel
        self._after = after
        self._buffer: collections.deque[tuple[bytes, str, bytes]] = collections.deque()
        self.filters: set[str] = set(filters)

    def follow(self, topic_filter: str) -> None:
        """Also follow topics starting with ``topic_filter``."""
        self.filters.add(topic_filter)

    def unfollow(self, topic_filter: str) -> None:
        """Stop following ``topic_filter`` (with no filter left, every topic is followed)."""
        self.filters.discard(topic_filter)

    async def receive(self) -> tuple[str, Any]:
        """The next (topic, message) this subscription follows."""
        transport = self._hub.transport(self._channel)
        while True:
            while not self._buffer:
                self._buffer.extend(await transport.topic_read(self._channel.address, self._after))
            position, topic, frame = self._buffer.popleft()
            self._after = position
            if not self.filters or any(topic.startswith(f) for f in self.filters):
                return topic, self._hub.receive_frame(self._channel, frame)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        return await self.receive()


class MembershipWatch:
    """Membership changes of a duplex group: ``async for event in watch``."""

    def __init__(self, hub: Hub, channel: DuplexChannel, after: bytes) -> None:
        self._hub = hub
        self._channel = channel
        self._after = after
        self._buffer: collections.deque[tuple[bytes, str, str]] = collections.deque()

    async def receive(self) -> MembershipEvent:
        """The next membership change."""
        transport = self._hub.transport(self._channel)
        while not self._buffer:
            self._buffer.extend(await transport.events_read(self._channel.address, self._after))
        self._after, event, member = self._buffer.popleft()
        return MembershipEvent(event, member)

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


class Hub:
    """The channel machinery of one process. Make one with :func:`open_hub`."""

    def __init__(
        self,
        redis: Redis,
        nursery: trio.Nursery,
        *,
        namespace: str,
        visibility: float,
        lease: float,
    ) -> None:
        self.id = new_id()
        self.namespace = namespace
        self.lease = lease
        self._nursery = nursery
        self._redis = RedisTransport(redis, consumer=self.id, visibility=visibility)
        self._closed = False
        self._counters: dict[Channel, _Counters] = {}
        self._waiting: dict[str, trio.MemorySendChannel[Any]] = {}
        self.inbox = ReplyChannel(Transport.REDIS, f"{namespace}:ch:reply:{self.id}", hub=self)

    # -- values ---------------------------------------------------------------------------

    def bind(self, channel: Channel) -> Any:
        """The same channel value, bound to this hub."""
        return attrs.evolve(channel, hub=self)

    def _address(self, kind: str, name: str | None) -> str:
        return f"{self.namespace}:ch:{kind}:{name or new_id()}"

    def open_queue(self, name: str | None = None) -> QueueChannel:
        """A queue channel named ``name`` (a new, unique one when None)."""
        return QueueChannel(Transport.REDIS, self._address("queue", name), hub=self)

    def open_topic(self, name: str | None = None) -> TopicChannel:
        """A topic channel named ``name`` (a new one when None)."""
        return TopicChannel(Transport.REDIS, self._address("topic", name), hub=self)

    def open_request(self, name: str | None = None) -> RequestChannel:
        """A request channel named ``name`` (a new one when None)."""
        return RequestChannel(Transport.REDIS, self._address("request", name), hub=self)

    def open_duplex(self, name: str | None = None) -> DuplexChannel:
        """A duplex group named ``name`` (a new one when None)."""
        return DuplexChannel(Transport.REDIS, self._address("duplex", name), hub=self)

    def transport(self, channel: Channel) -> RedisTransport:
        """The transport that carries ``channel``."""
        if self._closed:
            raise ChannelClosed(f"the hub of {channel!r} is closed")
        if channel.transport is Transport.REDIS:
            return self._redis
        raise SendFailed(f"{channel!r}: transport {channel.transport} is not available here")

    # -- frames ---------------------------------------------------------------------------

    def encode(self, message: Any) -> bytes:
        """The wire form of a message."""
        return _wire.encode(message)

    def decode(self, frame: bytes) -> Any:
        """A message from its wire form, with every channel in it bound to this hub."""
        return _wire.decode(frame, bind=self.bind)

    def _count(self, channel: Channel) -> _Counters:
        found = self._counters.get(channel)
        if found is None:
            found = self._counters[channel] = _Counters()
        return found

    def send_frame(self, channel: Channel, message: Any) -> bytes:
        """Encode a message for ``channel`` and count it."""
        frame = self.encode(message)
        counters = self._count(channel)
        counters.sent += 1
        counters.bytes_sent += len(frame)
        return frame

    def receive_frame(self, channel: Channel, frame: bytes) -> Any:
        """Count a frame received on ``channel`` and decode it."""
        counters = self._count(channel)
        counters.received += 1
        counters.bytes_received += len(frame)
        return self.decode(frame)

    def statistics(self, channel: Channel) -> ChannelStatistics:
        """What this hub has done on ``channel``."""
        return ChannelStatistics(**attrs.asdict(self._count(channel)))

    # -- queues ---------------------------------------------------------------------------

    async def queue_put(self, channel: Channel, message: Any) -> None:
        """Put a message on a queue (or request) channel."""
        await self.transport(channel).queue_put(channel.address, self.send_frame(channel, message))

    async def queue_get(self, channel: QueueChannel, timeout: float | None) -> Delivery:
        """Take a delivery from a queue channel."""
        delivery_id, frame = await self.transport(channel).queue_take(channel.address, timeout)
        return Delivery(self.receive_frame(channel, frame), channel, delivery_id)

    async def settle(self, delivery: Delivery, action: str) -> None:
        """Acknowledge or renew a delivery."""
        channel = delivery.channel
        await self.transport(channel).queue_settle(channel.address, delivery.delivery_id, action)

    async def renew_forever(self, delivery: Delivery) -> None:
        """Renew a delivery every third of the visibility timeout until cancelled."""
        while True:
            await trio.sleep(self._redis.visibility_ms / 3000)
            await self.settle(delivery, "renew")

    async def queue_length(self, channel: QueueChannel) -> int:
        """Messages on a queue not yet acknowledged."""
        return await self.transport(channel).queue_length(channel.address)

    # -- topics ---------------------------------------------------------------------------

    async def topic_publish(self, channel: TopicChannel, topic: str, message: Any) -> None:
        """Publish on a topic channel."""
        frame = self.send_frame(channel, message)
        await self.transport(channel).topic_publish(channel.address, topic, frame)

    @contextlib.asynccontextmanager
    async def topic_subscribe(
        self, channel: TopicChannel, filters: Sequence[str]
    ) -> AsyncIterator[Subscription]:
        """Subscribe to a topic channel from now on."""
        after = await self.transport(channel).topic_start(channel.address)
        yield Subscription(self, channel, after, filters)

    # -- request / reply ------------------------------------------------------------------

    async def request(self, channel: RequestChannel, message: Any, timeout: float) -> Any:
        """Send a request and wait for its answer on this hub's inbox."""
        correlation_id = new_id()
        send, receive = trio.open_memory_channel[Any](1)
        self._waiting[correlation_id] = send
        try:
            await self.queue_put(channel, {"r": self.inbox, "c": correlation_id, "b": message})
            with trio.move_on_after(timeout):
                answer = await receive.receive()
                if "e" in answer:
                    error = answer["e"]
                    raise RemoteError(
                        error.get("message", ""),
                        origin=channel.address,
                        type_name=error.get("type", "Exception"),
                        traceback=error.get("traceback", ""),
                    )
                return answer["b"]
            raise ChannelTimeout(f"{channel.address}: no answer within {timeout} s")
        finally:
            del self._waiting[correlation_id]
            send.close()
            receive.close()

    async def next_request(self, channel: RequestChannel, timeout: float | None) -> Request:
        """Take the next request from a request channel."""
        queue = QueueChannel(channel.transport, channel.address, hub=self)
        while True:
            delivery = await self.queue_get(queue, timeout)
            body = delivery.message
            if (
                isinstance(body, dict)
                and isinstance(body.get("r"), ReplyChannel)
                and isinstance(body.get("c"), str)
            ):
                return Request(body.get("b"), body["r"], body["c"], delivery)
            _log.warning("channel.bad_request", channel=channel.address)
            await delivery.ack()  # not a request: nobody can answer it, so drop it

    async def answer(self, request: Request, reply: dict[str, Any]) -> None:
        """Send a reply to a request's inbox, then acknowledge the request."""
        reply_to = request.reply_to
        frame = self.send_frame(reply_to, reply)
        try:
            await self.transport(reply_to).inbox_push(reply_to.address, frame, self.lease)
        finally:
            # Answered or not (the requester is gone), the request is done with.
            await request._delivery.ack()

    async def _serve_inbox(self, task_status: trio.TaskStatus[None]) -> None:
        transport = self._redis
        await transport.inbox_open(self.inbox.address, self.lease)
        task_status.started()
        while True:
            frame = await transport.inbox_pop(self.inbox.address)
            if frame is None:
                continue
            answer = self.receive_frame(self.inbox, frame)
            waiting = self._waiting.get(str(answer.get("c"))) if isinstance(answer, dict) else None
            if waiting is not None:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    waiting.send_nowait(answer)

    async def _keep_inbox_alive(self) -> None:
        while True:
            await trio.sleep(self.lease / 3)
            await self._redis.inbox_open(self.inbox.address, self.lease)

    # -- duplex -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def duplex_join(self, channel: DuplexChannel, member: str) -> AsyncIterator[Member]:
        """Join a duplex group as ``member`` for the duration of the block."""
        transport = self.transport(channel)
        await transport.member_join(channel.address, member, self.lease)
        try:
            with self.in_background(self._renew_membership, channel, member):
                yield Member(self, channel, member)
        finally:
            with trio.CancelScope(shield=True):
                await transport.member_leave(channel.address, member)

    async def _renew_membership(self, channel: DuplexChannel, member: str) -> None:
        while True:
            await trio.sleep(self.lease / 3)
            await self.transport(channel).member_join(channel.address, member, self.lease)

    async def duplex_send(self, channel: DuplexChannel, member: str, message: Any) -> None:
        """Send to one member of a duplex group."""
        frame = self.send_frame(channel, message)
        await self.transport(channel).member_send(channel.address, member, frame)

    async def duplex_members(self, channel: DuplexChannel) -> list[str]:
        """The live members of a duplex group."""
        return sorted(await self.transport(channel).members(channel.address))

    @contextlib.asynccontextmanager
    async def duplex_watch(self, channel: DuplexChannel) -> AsyncIterator[MembershipWatch]:
        """Membership events of a duplex group from now on."""
        yield MembershipWatch(
            self, channel, await self.transport(channel).events_start(channel.address)
        )

    # -- life -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def in_background(self, fn: Callable[..., Awaitable[object]], *args: object) -> Iterator[None]:
        """Run ``fn(*args)`` in the hub's nursery while the ``with`` block runs.

        Not a nursery of the caller's, so an error in the block reaches the caller as
        itself, not wrapped in an exception group; a channel error in ``fn`` is logged.
        """
        scope = trio.CancelScope()

        async def run() -> None:
            with scope:
                try:
                    await fn(*args)
                except ChannelError as exc:
                    _log.warning("channel.background_failed", task=fn.__name__, error=str(exc))

        self._nursery.start_soon(run)
        try:
            yield
        finally:
            scope.cancel()

    async def _start(self) -> None:
        await self._nursery.start(self._serve_inbox)
        self._nursery.start_soon(self._keep_inbox_alive)

    async def _close(self) -> None:
        self._closed = True
        with trio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._redis.inbox_close(self.inbox.address)


@contextlib.asynccontextmanager
async def open_hub(
    redis: Redis,
    *,
    namespace: str = "abaco",
    visibility: float = 30.0,
    lease: float = 10.0,
) -> AsyncIterator[Hub]:
    """Open a hub on ``redis`` for the duration of the block.

    ``visibility``: seconds a queue delivery stays with a consumer that stopped renewing
    it before another consumer may take it. ``lease``: seconds this hub's inbox and
    memberships outlive it if it dies without closing them.
    """
    if not (visibility > 0 and lease > 0 and math.isfinite(visibility + lease)):
        raise ValueError("visibility and lease must be positive numbers of seconds")
    async with trio.open_nursery() as nursery:
        hub = Hub(redis, nursery, namespace=namespace, visibility=visibility, lease=lease)
        await hub._start()
        try:
            yield hub
        finally:
            await hub._close()
            nursery.cancel_scope.cancel()
