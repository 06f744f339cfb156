"""The hub: one process's (or one test's) connections, and every channel operation.

A hub owns a Redis client, an inbox for replies, and a nursery for the background work
channels need (renewing leases, listening on the inbox). Channel values bound to it
delegate to it; messages it decodes come with their channels bound to it, so a channel
received inside a message works at once.
"""

from __future__ import annotations

import contextlib
import itertools
import math
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
from abaco._handles import (
    ChannelStatistics,
    Counters,
    Delivery,
    Member,
    MembershipWatch,
    Request,
    Subscription,
)
from abaco._paths import runtime_dir
from abaco._transports.redis import RedisTransport
from abaco._transports.zmq import ZmqTransport, ipc_endpoint, open_zmq_transport
from abaco.actors.ids import new_id
from abaco.errors import (
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    RemoteError,
    SendFailed,
    WireError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

    from abaco.redis_client import Redis

__all__ = ["Hub", "open_hub"]

_log = structlog.get_logger(__name__)


class _AnswerSlot:
    """Where the answer to one request lands (the first one, if several come)."""

    __slots__ = ("_event", "answer")

    def __init__(self) -> None:
        self.answer: dict[str, Any] | None = None
        self._event = trio.Event()

    def set(self, answer: dict[str, Any]) -> None:
        if self.answer is None:
            self.answer = answer
            self._event.set()

    async def wait(self) -> dict[str, Any]:
        await self._event.wait()
        assert self.answer is not None
        return self.answer


class Hub:
    """The channel machinery of one process. Make one with :func:`open_hub`."""

    def __init__(
        self,
        redis: Redis | None,
        nursery: trio.Nursery,
        *,
        namespace: str,
        visibility: float,
        lease: float,
        max_frame: int,
    ) -> None:
        self.id = new_id()
        self.max_frame = max_frame
        self.namespace = namespace
        self.visibility = visibility
        self.lease = lease
        self._nursery = nursery
        self._redis = (
            None if redis is None else RedisTransport(redis, self.id, visibility=visibility)
        )
        self._zmq: ZmqTransport | None = None
        self._closed = False
        self._counters: dict[Channel, Counters] = {}
        self._waiting: dict[str, _AnswerSlot] = {}
        self._correlation_ids = itertools.count(1)
        self._inboxes: dict[Transport, ReplyChannel] = {}
        if redis is not None:
            address = f"{namespace}:ch:reply:{self.id}"
            self._inboxes[Transport.REDIS] = ReplyChannel(Transport.REDIS, address, hub=self)

    # -- values ---------------------------------------------------------------------------

    def bind(self, channel: Channel) -> Any:
        """The same channel value, bound to this hub."""
        return attrs.evolve(channel, hub=self)

    @property
    def default_transport(self) -> Transport:
        """Redis when this hub has it, else 0MQ."""
        return Transport.REDIS if self._redis is not None else Transport.ZMQ

    def _address(
        self, kind: str, name: str | None, transport: Transport | None
    ) -> tuple[Transport, str]:
        transport = transport or self.default_transport
        channel_id = f"{kind}:{name or new_id()}"
        if transport is Transport.REDIS:
            self._require_redis()
            return transport, f"{self.namespace}:ch:{channel_id}"
        return transport, self._require_zmq().address(channel_id)

    def open_queue(
        self, name: str | None = None, *, transport: Transport | None = None
    ) -> QueueChannel:
        """A queue channel named ``name`` (a new, unique one when None).

        A 0MQ channel lives in this hub: it ends when the hub closes.
        """
        return QueueChannel(*self._address("queue", name, transport), hub=self)

    def open_topic(
        self, name: str | None = None, *, transport: Transport | None = None
    ) -> TopicChannel:
        """A topic channel named ``name`` (a new one when None)."""
        return TopicChannel(*self._address("topic", name, transport), hub=self)

    def open_request(
        self, name: str | None = None, *, transport: Transport | None = None
    ) -> RequestChannel:
        """A request channel named ``name`` (a new one when None)."""
        return RequestChannel(*self._address("request", name, transport), hub=self)

    def open_duplex(
        self, name: str | None = None, *, transport: Transport | None = None
    ) -> DuplexChannel:
        """A duplex group named ``name`` (a new one when None)."""
        return DuplexChannel(*self._address("duplex", name, transport), hub=self)

    def inbox(self, transport: Transport) -> ReplyChannel:
        """This hub's reply inbox on ``transport``."""
        return self._inboxes[transport]

    def _require_redis(self) -> RedisTransport:
        if self._redis is None:
            raise SendFailed("this hub has no Redis connection")
        return self._redis

    def _require_zmq(self) -> ZmqTransport:
        if self._zmq is None:
            raise SendFailed("this hub has no 0MQ transport")
        return self._zmq

    def transport(self, channel: Channel) -> RedisTransport | ZmqTransport:
        """The transport that carries ``channel``."""
        if self._closed:
            raise ChannelClosed(f"the hub of {channel!r} is closed")
        if channel.transport is Transport.REDIS:
            return self._require_redis()
        return self._require_zmq()

    # -- frames ---------------------------------------------------------------------------

    def encode(self, message: Any) -> bytes:
        """The wire form of a message."""
        return _wire.encode(message)

    def decode(self, frame: bytes) -> Any:
        """A message from its wire form, with every channel in it bound to this hub."""
        return _wire.decode(frame, max_size=self.max_frame, bind=self.bind)

    def _count(self, channel: Channel) -> Counters:
        found = self._counters.get(channel)
        if found is None:
            found = self._counters[channel] = Counters()
        return found

    def send_frame(self, channel: Channel, message: Any) -> bytes:
        """Encode a message for ``channel`` and count it."""
        frame = self.encode(message)
        if len(frame) > self.max_frame:
            raise SendFailed(
                f"{channel.address}: a {len(frame)}-byte message is over {self.max_frame}"
            )
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

    async def queue_put_many(self, channel: QueueChannel, messages: Sequence[Any]) -> None:
        """Put several messages on a queue channel at once, in order."""
        frames = [self.send_frame(channel, message) for message in messages]
        if frames:
            await self.transport(channel).queue_put_many(channel.address, frames)

    async def queue_get(self, channel: QueueChannel, timeout: float | None) -> Delivery:
        """Take a delivery from a queue channel."""
        transport = self.transport(channel)
        delivery_id, frame = await transport.queue_take(channel.address, timeout)
        try:
            message = self.receive_frame(channel, frame)
        except WireError:
            # Nobody can ever decode it: drop it, or it would come back to every get.
            _log.warning("channel.dropped_bad_frame", channel=channel.address, size=len(frame))
            await transport.queue_settle(channel.address, delivery_id, "ack")
            raise
        return Delivery(message, channel, delivery_id)

    async def queue_get_many(
        self, channel: QueueChannel, count: int, timeout: float | None
    ) -> list[Delivery]:
        """Wait for one delivery like :meth:`queue_get`, then take up to ``count`` in all
        of what is already there, without waiting more (bad frames are dropped; if all
        of them were bad, the first one's WireError is raised)."""
        transport = self.transport(channel)
        batch: list[Delivery] = []
        bad: WireError | None = None
        for delivery_id, frame in await transport.queue_take_many(channel.address, count, timeout):
            try:
                batch.append(Delivery(self.receive_frame(channel, frame), channel, delivery_id))
            except WireError as exc:
                _log.warning("channel.dropped_bad_frame", channel=channel.address)
                await transport.queue_settle(channel.address, delivery_id, "ack")
                bad = bad or exc
        if not batch and bad is not None:
            raise bad
        return batch

    async def settle(self, delivery: Delivery, action: str) -> bool:
        """Acknowledge or renew a delivery; False when it was acknowledged already."""
        channel = delivery.channel
        return await self.transport(channel).queue_settle(
            channel.address, delivery.delivery_id, action
        )

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries of one queue in one round trip (Redis).

        Raises :class:`~abaco.errors.Aborted` if another consumer reclaimed any of them.
        """
        by_channel: dict[QueueChannel, list[bytes]] = {}
        for delivery in deliveries:
            by_channel.setdefault(delivery.channel, []).append(delivery.delivery_id)
        for channel, ids in by_channel.items():
            await self.transport(channel).queue_ack_many(channel.address, ids)

    async def renew_forever(self, delivery: Delivery) -> None:
        """Renew a delivery every third of the visibility timeout until cancelled."""
        while True:
            await trio.sleep(self.visibility / 3)
            await self.settle(delivery, "renew")

    async def queue_length(self, channel: QueueChannel) -> int:
        """Messages on a queue not yet acknowledged."""
        return await self.transport(channel).queue_length(channel.address)

    async def queue_waiting(self, channel: QueueChannel) -> int:
        """Messages on a queue that no consumer has taken yet."""
        return await self.transport(channel).queue_waiting(channel.address)

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
        follow = await self.transport(channel).follow(channel.address)
        try:
            yield Subscription(self, channel, follow, filters)
        finally:
            await follow.aclose()

    # -- request / reply ------------------------------------------------------------------

    async def request(self, channel: RequestChannel, message: Any, timeout: float) -> Any:
        """Send a request and wait for its answer on this hub's inbox."""
        # Unique within this hub, which is all it must be: the inbox is this hub's alone.
        correlation_id = str(next(self._correlation_ids))
        slot = self._waiting[correlation_id] = _AnswerSlot()
        try:
            request = {"r": self.inbox(channel.transport), "c": correlation_id, "b": message}
            # No need to wait for the owner's ok: its answer, or the timeout, will come.
            await self.transport(channel).queue_put(
                channel.address, self.send_frame(channel, request), confirm=False
            )
            with trio.move_on_after(timeout):
                answer = await slot.wait()
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

    async def next_request(self, channel: RequestChannel, timeout: float | None) -> Request:
        """Take the next request from a request channel."""
        queue = QueueChannel(channel.transport, channel.address, hub=self)
        while True:
            try:
                delivery = await self.queue_get(queue, timeout)
            except WireError:
                continue  # dropped and logged by queue_get
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
        delivery = request._delivery
        frame = self.send_frame(reply_to, reply)
        transport = self.transport(reply_to)
        if isinstance(transport, RedisTransport) and delivery.channel.transport is Transport.REDIS:
            await transport.reply_and_ack(
                reply_to.address, frame, self.lease, delivery.channel.address, delivery.delivery_id
            )
            return
        try:
            await transport.inbox_push(reply_to.address, frame, self.lease)
        finally:
            # Answered or not (the requester is gone), the request is done with.
            await delivery.ack()

    def _take_answer(self, inbox: ReplyChannel, frame: bytes) -> None:
        try:
            answer = self.receive_frame(inbox, frame)
        except WireError as exc:
            _log.warning("channel.dropped_bad_reply", error=str(exc))
            return
        waiting = self._waiting.get(str(answer.get("c"))) if isinstance(answer, dict) else None
        if waiting is not None:
            waiting.set(answer)

    async def _serve_redis_inbox(self, task_status: trio.TaskStatus[None]) -> None:
        transport = self._require_redis()
        inbox = self._inboxes[Transport.REDIS]
        await transport.inbox_open(inbox.address, self.lease)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_redis_inbox_alive, inbox)
            while True:
                frame = await transport.inbox_pop(inbox.address)
                if frame is not None:
                    self._take_answer(inbox, frame)

    async def _keep_redis_inbox_alive(self, inbox: ReplyChannel) -> None:
        while True:
            await trio.sleep(self.lease / 3)
            await self._require_redis().inbox_open(inbox.address, self.lease)

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
        follow = await self.transport(channel).follow(f"{channel.address}:events")
        try:
            yield MembershipWatch(follow)
        finally:
            await follow.aclose()

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

    async def _start(self, zmq_transport: ZmqTransport) -> None:
        self._zmq = zmq_transport
        address = zmq_transport.address("inbox")
        inbox = self._inboxes[Transport.ZMQ] = ReplyChannel(Transport.ZMQ, address, hub=self)
        zmq_transport.open_inbox(lambda frame: self._take_answer(inbox, frame))
        if self._redis is not None:
            await self._nursery.start(self._serve_redis_inbox)

    async def _close(self) -> None:
        self._closed = True
        if self._redis is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._redis.inbox_close(self._inboxes[Transport.REDIS].address)


@contextlib.asynccontextmanager
async def open_hub(
    redis: Redis | None = None,
    *,
    namespace: str = "abaco",
    visibility: float = 30.0,
    lease: float = 10.0,
    zmq_endpoint: str | None = None,
    answer_timeout: float = 5.0,
    max_frame: int = _wire.DEFAULT_MAX_SIZE,
) -> AsyncIterator[Hub]:
    """Open a hub for the duration of the block.

    ``redis``: the connection for Redis channels (a hub without one has only 0MQ).
    ``visibility``: seconds a queue delivery stays with a consumer that stopped renewing
    it before another consumer may take it. ``lease``: seconds this hub's inboxes,
    subscriptions and memberships outlive it if it dies without closing them.
    ``zmq_endpoint``: where this hub serves its 0MQ channels; by default an ``ipc://``
    socket in the runtime dir (one host); use ``tcp://HOST:*`` to serve other hosts.
    ``answer_timeout``: seconds to wait for another hub before it counts as unavailable.
    ``max_frame``: the largest encoded message sent or accepted, in bytes.
    """
    if not (visibility > 0 and lease > 0 and math.isfinite(visibility + lease)):
        raise ValueError("visibility and lease must be positive numbers of seconds")
    async with trio.open_nursery() as nursery:
        hub = Hub(
            redis,
            nursery,
            namespace=namespace,
            visibility=visibility,
            lease=lease,
            max_frame=max_frame,
        )
        endpoint = zmq_endpoint or ipc_endpoint(runtime_dir(), hub.id)
        async with open_zmq_transport(
            nursery,
            hub.id,
            endpoint,
            visibility=visibility,
            lease=lease,
            answer_timeout=answer_timeout,
        ) as zmq_transport:
            await hub._start(zmq_transport)
            try:
                yield hub
            finally:
                # Pipelined 0MQ sends still in flight get their chance to be confirmed.
                with trio.CancelScope(shield=True) as flushing:
                    flushing.deadline = trio.current_time() + answer_timeout
                    await zmq_transport.flush()
                await hub._close()
                nursery.cancel_scope.cancel()
