"""Channels over 0MQ: direct, fast, as durable as the hub that owns them.

Each hub binds one ROUTER socket (``ipc://`` in its runtime dir on one host, ``tcp://``
when configured with a host for several) and serves the channels it opened with a
:class:`~abaco._transports._zmqbroker.Broker`. A channel's address is ``ENDPOINT#ID``.
To use another hub's channel, this hub keeps one DEALER per remote endpoint (a peer) and
matches answers to requests by id. An owner that does not answer within
``answer_timeout`` (or whose ``ipc://`` socket file is gone) is
:class:`~abaco.errors.DestinationUnavailable`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
from typing import TYPE_CHECKING, Any

import structlog
import trio
import zmq

from abaco._transports._zmqbroker import LOCAL, Broker, pack_frames, unpack_frames
from abaco._transports._zmqsocket import ZmqSocket, open_zmq_socket
from abaco.errors import Aborted, ChannelTimeout, DestinationUnavailable, SendFailed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

__all__ = ["ZmqFollow", "ZmqTransport", "ipc_endpoint", "open_zmq_transport"]

_log = structlog.get_logger(__name__)

# Pipelined sends a peer may have outstanding before a send waits for confirmations.
_WINDOW = 1000
# The most messages one put_many request carries (larger batches go as several).
_PUT_BATCH = 1000
# The most answers a peer reads between two checkpoints.
_BURST = 64
# How long the broker waits for a local subscriber a whole buffer behind before it drops.
_BEHIND_GRACE = 1.0


def _buffer_half_free(channel: trio.MemorySendChannel[Any]) -> bool:
    statistics = channel.statistics()
    return bool(statistics.current_buffer_used * 2 <= statistics.max_buffer_size)


def _split(address: str) -> tuple[str, bytes]:
    endpoint, sep, channel_id = address.rpartition("#")
    if not sep or not endpoint or not channel_id:
        raise SendFailed(f"{address!r} is not a 0MQ channel address (ENDPOINT#ID)")
    return endpoint, channel_id.encode()


class _Waiter:
    """Where one answer lands: cheaper than a memory channel, which most calls never wait on."""

    __slots__ = ("_event", "answer")

    def __init__(self) -> None:
        self.answer: list[bytes] | None = None
        self._event: trio.Event | None = None

    def set(self, answer: list[bytes]) -> None:
        self.answer = answer
        if self._event is not None:
            self._event.set()

    async def wait(self) -> list[bytes]:
        if self.answer is None:
            self._event = trio.Event()
            await self._event.wait()
        assert self.answer is not None
        return self.answer


class _Peer:
    """The way to one broker, shared by every task of this hub.

    To another hub's broker it is a DEALER socket; to this hub's own broker it is a
    loopback that calls the broker directly (``socket`` None), which makes a channel's
    owner use its own channels without a socket hop.
    """

    def __init__(
        self, socket: ZmqSocket | None, endpoint: str = "", broker: Broker | None = None
    ) -> None:
        self.socket = socket
        self.broker = broker
        # Checked before each request: a gone owner's socket file is gone (one stat, ~1 us).
        self.ipc_path = endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else ""
        self._ids = itertools.count(1)
        self._waiting: dict[bytes, _Waiter] = {}
        self.pushes: dict[bytes, trio.MemorySendChannel[tuple[str, bytes]]] = {}
        # Subscriptions that stopped taking their messages: they lose them until they catch up.
        self.stuck: set[bytes] = set()
        # Requests given up on; for a take, what to hand back if messages still come.
        self.abandoned: dict[bytes, list[bytes]] = {}
        # Pipelined requests not yet confirmed by the broker, oldest first: (id, when sent).
        self.unconfirmed: collections.deque[tuple[int, float]] = collections.deque()
        self.confirmed = trio.Event()  # set (and replaced) whenever confirmations come

    def next_id(self) -> int:
        return next(self._ids)

    async def read_forever(self) -> None:
        assert self.socket is not None
        # Closing the socket is how a hub stops its peers.
        with contextlib.suppress(trio.ClosedResourceError):
            while True:
                # A burst per checkpoint, like the broker.
                for header, *payload in await self.socket.recv_multipart_many(_BURST):
                    words = header.split(b" ")
                    if len(words) < 2:
                        _log.warning("zmq.bad_answer", header=header[:80])
                        continue
                    status, key, *args = words
                    await self.deliver(status, key, [*args, *payload])

    async def request(
        self,
        op: bytes,
        request_id: int,
        channel_id: bytes,
        words: Sequence[bytes] = (),
        payload: Sequence[bytes] = (),
    ) -> None:
        """Send ``op`` with its header ``words`` and its ``payload`` frames to the broker."""
        rid = b"%d" % request_id
        if self.socket is None:
            assert self.broker is not None
            await self.broker.run(LOCAL, op, rid, channel_id, [*words, *payload])
        else:
            header = b" ".join((op, rid, channel_id, *words))
            await self.socket.send_multipart([header, *payload])

    async def deliver(self, status: bytes, key: bytes, values: list[bytes]) -> None:
        """Hand an answer, a confirmation or a push from the broker to whoever waits for it."""
        if status == b"push":
            follower = self.pushes.get(key)
            if follower is not None:
                await self._push(key, follower, (values[0].decode(), values[1]))
            return
        if status == b"okto":
            if not key.isdigit():
                _log.warning("zmq.bad_answer", status="okto", key=key[:80])
                return
            done = int(key)
            unconfirmed = self.unconfirmed
            while unconfirmed and unconfirmed[0][0] <= done:
                unconfirmed.popleft()
            self.confirmed.set()
            self.confirmed = trio.Event()
            return
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.set([status, *values])
        elif key in self.abandoned:
            release = self.abandoned.pop(key)
            if status == b"msg" and release:
                # The take was cancelled after the owner handed these over: give them back.
                channel_id, consumer = release
                delivery_ids = values[:-1]
                await self.request(
                    b"settle", self.next_id(), channel_id, [b"release", consumer, *delivery_ids]
                )

    async def _push(
        self,
        key: bytes,
        follower: trio.MemorySendChannel[tuple[str, bytes]],
        item: tuple[str, bytes],
    ) -> None:
        """Hand a published message to a subscription of this hub.

        A local subscriber (this hub owns the topic) that falls a whole buffer behind
        slows the publishers down: the broker waits for it, reading nothing meanwhile, so
        the publishers' sends wait too. One that takes nothing for ``_BEHIND_GRACE``
        seconds loses messages (logged) until half its buffer is free again. A remote
        subscriber's messages are dropped at once when its buffer is full: this peer's
        reader also carries every other answer of that broker, and must not wait.
        """
        try:
            follower.send_nowait(item)
        except trio.WouldBlock:
            pass
        except trio.BrokenResourceError:
            self.pushes.pop(key, None)
            return
        else:
            if key in self.stuck and _buffer_half_free(follower):
                self.stuck.discard(key)
            return
        if self.socket is None and key not in self.stuck:
            with trio.move_on_after(_BEHIND_GRACE):
                try:
                    await follower.send(item)
                except trio.BrokenResourceError:
                    self.pushes.pop(key, None)
                return
            self.stuck.add(key)
        _log.warning("zmq.subscriber_behind_dropped", subscription=key.decode())

    def expect(self, request_id: int) -> _Waiter:
        waiter = self._waiting[b"%d" % request_id] = _Waiter()
        return waiter

    def abandon(self, request_id: int, release: list[bytes]) -> bool:
        """Give up on a request; returns whether it was still unanswered."""
        key = b"%d" % request_id
        if self._waiting.pop(key, None) is None:
            return False
        self.abandoned[key] = release
        return True


class ZmqFollow:
    """Pushed (topic, frame) pairs of one subscription to a 0MQ topic or event stream."""

    def __init__(self, transport: ZmqTransport, address: str, subscription: bytes) -> None:
        self._transport = transport
        self._address = address
        self._subscription = subscription
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](10_000)

    async def receive(self) -> tuple[str, bytes]:
        """The next (topic, frame)."""
        return await self._receive.receive()

    async def aclose(self) -> None:
        """Stop following."""
        endpoint, _ = _split(self._address)
        peer = await self._transport.peer(endpoint)
        peer.pushes.pop(self._subscription, None)
        with trio.CancelScope(shield=True), contextlib.suppress(DestinationUnavailable):
            await self._transport.call(self._address, b"unfollow", self._subscription)


class ZmqTransport:
    """The 0MQ side of one hub: its broker, and its peers to other hubs' brokers."""

    def __init__(
        self,
        context: zmq.Context[Any],
        nursery: trio.Nursery,
        consumer: str,
        *,
        visibility: float,
        lease: float,
        answer_timeout: float,
    ) -> None:
        self._context = context
        self._nursery = nursery
        self.consumer = consumer.encode()
        self.visibility = visibility
        self.lease = lease
        self.answer_timeout = answer_timeout
        self._peers: dict[str, _Peer] = {}
        self._router: ZmqSocket | None = None
        self.broker: Broker | None = None
        self.endpoint = ""

    async def start(self, endpoint: str) -> None:
        """Bind the broker to ``endpoint`` and serve it."""
        self._router = open_zmq_socket(self._context, zmq.ROUTER)
        # Mandatory: a send to a gone or full peer fails instead of vanishing silently.
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.endpoint = self._router.bind(endpoint)
        loopback = _Peer(None)
        self.broker = Broker(
            self._router, loopback.deliver, visibility=self.visibility, lease=self.lease
        )
        loopback.broker = self.broker
        self._peers[self.endpoint] = loopback
        await self._nursery.start(self.broker.serve)

    def address(self, channel_id: str) -> str:
        """The address of a channel this hub owns."""
        return f"{self.endpoint}#{channel_id}"

    def close(self) -> None:
        """Close every socket."""
        for peer in self._peers.values():
            if peer.socket is not None:
                peer.socket.close()
        if self._router is not None:
            self._router.close()

    async def peer(self, endpoint: str) -> _Peer:
        """The DEALER to ``endpoint``'s broker, connected on first use."""
        found = self._peers.get(endpoint)
        if found is None:
            socket = open_zmq_socket(self._context, zmq.DEALER)
            socket.connect(endpoint)
            found = self._peers[endpoint] = _Peer(socket, endpoint)
            self._nursery.start_soon(found.read_forever)
        return found

    async def _reachable_peer(self, address: str) -> tuple[_Peer, bytes]:
        """The peer to the owner of ``address`` and the channel id; fails fast if it is gone."""
        endpoint, channel_id = _split(address)
        peer = self._peers.get(endpoint) or await self.peer(endpoint)
        if peer.socket is not None and peer.ipc_path and not os.path.exists(peer.ipc_path):  # noqa: ASYNC240
            raise DestinationUnavailable(f"{address}: its owner is gone")
        return peer, channel_id

    async def call(
        self,
        address: str,
        op: bytes,
        *words: bytes,
        payload: Sequence[bytes] = (),
        wait: float | None = None,
    ) -> list[bytes]:
        """Send one request to the owner of ``address`` and return its answer
        ``[status, *words, *payload]``."""
        peer, channel_id = await self._reachable_peer(address)
        await trio.lowlevel.checkpoint_if_cancelled()
        request_id = peer.next_id()
        waiter = peer.expect(request_id)
        try:
            await peer.request(op, request_id, channel_id, words, payload)
            if waiter.answer is not None:
                # The owner is this hub and answered at once; still a checkpoint, as any
                # trio operation must be, so other tasks get their turn, but one that
                # cannot be cancelled: what was done (a take) must reach the caller.
                await trio.lowlevel.cancel_shielded_checkpoint()
                return waiter.answer
            with trio.move_on_after(self.answer_timeout if wait is None else wait):
                return await waiter.wait()
        finally:
            is_take = op == b"take"
            release = [channel_id, self.consumer] if is_take else []
            if peer.abandon(request_id, release) and is_take:
                with trio.CancelScope(shield=True), contextlib.suppress(trio.ClosedResourceError):
                    await peer.request(b"cancel", peer.next_id(), channel_id, [b"%d" % request_id])
        if wait is not None:
            raise ChannelTimeout(f"{address}: nothing within {wait} s")
        raise DestinationUnavailable(
            f"{address}: no answer from its owner in {self.answer_timeout} s"
        )

    # -- queues -------------------------------------------------------------------------

    async def queue_put(self, address: str, frame: bytes, *, confirm: bool = True) -> None:
        """Append a frame to a queue.

        Puts to another hub are pipelined: this returns once the frame is sent, and the
        owner's confirmations are collected as later puts go out (at most
        ``_WINDOW`` unconfirmed). An owner that confirms nothing within
        ``answer_timeout`` is :class:`DestinationUnavailable` on the next put.
        ``confirm=False`` does not even count the frame (requests: their answer counts).
        """
        await self._pipelined(address, b"put", [frame], confirm=confirm)

    async def queue_put_many(self, address: str, frames: list[bytes]) -> None:
        """Append frames to a queue, in order, in one request per ``_PUT_BATCH`` frames
        (pipelined like :meth:`queue_put`)."""
        for start in range(0, len(frames), _PUT_BATCH):
            pack = pack_frames(frames[start : start + _PUT_BATCH])
            await self._pipelined(address, b"putm", [pack])

    async def _pipelined(
        self, address: str, op: bytes, payload: Sequence[bytes], *, confirm: bool = True
    ) -> None:
        peer, channel_id = await self._reachable_peer(address)
        if peer.socket is None:
            # This hub's own broker, called directly; request id 0 is nobody's, so its
            # answer, if any, is dropped.
            assert self.broker is not None
            await trio.lowlevel.checkpoint_if_cancelled()
            await self.broker.run(LOCAL, op, b"0", channel_id, list(payload))
            await trio.lowlevel.cancel_shielded_checkpoint()  # it is done: no Cancelled now
            return
        request_id = peer.next_id()
        if confirm:
            peer.unconfirmed.append((request_id, trio.current_time()))
        elif op == b"put":
            op = b"post"  # no answer wanted
        await peer.request(op, request_id, channel_id, (), payload)
        if len(peer.unconfirmed) > _WINDOW or (
            peer.unconfirmed and trio.current_time() - peer.unconfirmed[0][1] > self.answer_timeout
        ):
            await self._collect(peer, address, limit=_WINDOW)

    async def _collect(self, peer: _Peer, address: str, *, limit: int) -> None:
        """Wait for confirmations until at most ``limit`` are outstanding on ``peer``."""
        unconfirmed = peer.unconfirmed
        while unconfirmed:
            request_id, sent = unconfirmed[0]
            overdue = trio.current_time() - sent > self.answer_timeout
            if len(unconfirmed) <= limit and not overdue:
                return
            with trio.move_on_at(sent + self.answer_timeout):
                while unconfirmed and unconfirmed[0][0] == request_id:
                    await peer.confirmed.wait()
            if unconfirmed and unconfirmed[0][0] == request_id:
                lost = len(unconfirmed)
                unconfirmed.clear()
                raise DestinationUnavailable(
                    f"{address}: its owner confirmed none of the last {lost} messages "
                    f"within {self.answer_timeout} s"
                )

    async def flush(self) -> None:
        """Wait for every pipelined message to be confirmed (or its owner to time out)."""
        for endpoint, peer in list(self._peers.items()):
            with contextlib.suppress(DestinationUnavailable):
                await self._collect(peer, endpoint, limit=0)

    async def queue_take(self, address: str, timeout: float | None) -> tuple[bytes, bytes]:
        """Take one delivery (id, frame), waiting up to ``timeout`` (None: forever)."""
        return (await self.queue_take_many(address, 1, timeout))[0]

    async def queue_take_many(
        self, address: str, count: int, timeout: float | None
    ) -> list[tuple[bytes, bytes]]:
        """Wait up to ``timeout`` (None: forever) for deliveries; take up to ``count`` of
        them (id, frame) in one round trip."""
        endpoint, channel_id = _split(address)
        if endpoint == self.endpoint:
            # This hub owns the queue: what is there already is taken without a request.
            assert self.broker is not None
            await trio.lowlevel.checkpoint_if_cancelled()
            taken = self.broker.take_ready(channel_id, self.consumer, count)
            if taken:
                await trio.lowlevel.cancel_shielded_checkpoint()  # taken: no Cancelled now
                return taken
        wait = float("inf") if timeout is None else timeout
        server_ms = -1 if timeout is None else int(timeout * 1000) + 1000
        answer = await self.call(
            address,
            b"take",
            b"%d" % server_ms,
            self.consumer,
            b"%d" % max(1, count),
            wait=wait,
        )
        if answer[0] != b"msg":
            raise ChannelTimeout(f"queue {address}: nothing within {timeout} s")
        delivery_ids = answer[1:-1]
        frames = [answer[-1]] if len(delivery_ids) == 1 else unpack_frames(answer[-1])
        return list(zip(delivery_ids, frames, strict=True))

    async def _settle(self, address: str, action: bytes, delivery_ids: Sequence[bytes]) -> bytes:
        """Settle deliveries this hub holds; one outcome each: 1 done, 0 acknowledged
        already, - reclaimed by another consumer."""
        endpoint, channel_id = _split(address)
        if endpoint == self.endpoint:
            assert self.broker is not None
            await trio.lowlevel.checkpoint_if_cancelled()
            outcomes = await self.broker.settle(channel_id, action, self.consumer, delivery_ids)
            await trio.lowlevel.cancel_shielded_checkpoint()  # settled: no Cancelled now
            return outcomes
        answer = await self.call(address, b"settle", action, self.consumer, *delivery_ids)
        return answer[1] if len(answer) > 1 else b""

    async def queue_settle(self, address: str, delivery_id: bytes, action: str) -> bool:
        """Acknowledge or renew a delivery this hub holds (fenced like the Redis queue)."""
        outcome = await self._settle(address, action.encode(), [delivery_id])
        if outcome == b"-":
            raise Aborted(f"queue {address}: delivery {delivery_id.decode()} was reclaimed")
        return outcome == b"1"

    async def queue_ack_many(self, address: str, delivery_ids: list[bytes]) -> int:
        """Acknowledge many deliveries in one round trip; returns how many were acknowledged.

        Raises :class:`Aborted` when another consumer reclaimed any of them (the others
        are acknowledged all the same).
        """
        if not delivery_ids:
            return 0
        outcomes = await self._settle(address, b"ack", delivery_ids)
        if b"-" in outcomes:
            raise Aborted(f"queue {address}: some deliveries were reclaimed by another consumer")
        return outcomes.count(b"1")

    async def queue_length(self, address: str) -> int:
        """Messages in the queue, taken or not, not yet acknowledged."""
        return int((await self.call(address, b"len"))[1])

    async def queue_waiting(self, address: str) -> int:
        """Messages in the queue that no consumer has taken yet."""
        return int((await self.call(address, b"waiting"))[1])

    # -- topics and events --------------------------------------------------------------------

    async def topic_publish(self, address: str, topic: str, frame: bytes) -> None:
        """Publish a frame on a topic (pipelined like :meth:`queue_put`)."""
        await self._pipelined(address, b"pub", [topic.encode(), frame])

    async def follow(self, address: str) -> ZmqFollow:
        """Follow a topic (or a duplex group's events) from now on."""
        endpoint, _ = _split(address)
        peer = await self.peer(endpoint)
        subscription = b"%s/%d" % (self.consumer, peer.next_id())
        follow = ZmqFollow(self, address, subscription)
        peer.pushes[subscription] = follow._send
        await self.call(address, b"follow", subscription)
        self._nursery.start_soon(self._renew_follow, address, subscription, peer)
        return follow

    async def _renew_follow(self, address: str, subscription: bytes, peer: _Peer) -> None:
        while subscription in peer.pushes:
            await trio.sleep(self.lease / 3)
            if subscription in peer.pushes:
                with contextlib.suppress(DestinationUnavailable):
                    await self.call(address, b"follow", subscription)

    # -- inboxes ------------------------------------------------------------------------------

    def open_inbox(self, receive: Callable[[bytes], None]) -> None:
        """Hand every frame sent to this hub's inbox (``address("inbox")``) to ``receive``."""
        assert self.broker is not None
        self.broker.inbox = receive

    async def inbox_push(self, address: str, frame: bytes, lease: float) -> None:
        """Deliver a frame to a hub's inbox; DestinationUnavailable when it is gone.

        Pipelined like :meth:`queue_put`: an ``ipc://`` owner that is gone is reported at
        once, a ``tcp://`` one that does not confirm on a later send to it.
        """
        await self._pipelined(address, b"reply", [frame])

    # -- duplex groups ------------------------------------------------------------------------

    async def member_join(self, address: str, member: str, lease: float) -> None:
        """Add (or renew) a member of a group."""
        lease_ms = b"%d" % int(lease * 1000)
        await self.call(address, b"join", lease_ms, payload=[member.encode()])

    async def member_leave(self, address: str, member: str) -> None:
        """Remove a member."""
        with contextlib.suppress(DestinationUnavailable):
            await self.call(address, b"leave", payload=[member.encode()])

    async def members(self, address: str) -> list[str]:
        """The group's current members."""
        return [m.decode() for m in (await self.call(address, b"members"))[1:]]

    async def member_send(self, address: str, member: str, frame: bytes) -> None:
        """Send to one member; DestinationUnavailable when it is not a member."""
        status, *_ = await self.call(address, b"send", payload=[member.encode(), frame])
        if status != b"ok":
            raise DestinationUnavailable(f"duplex {address}: {member!r} is not a member")


def ipc_endpoint(directory: Path, name: str) -> str:
    """An ``ipc://`` endpoint for ``name`` in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    return f"ipc://{directory / name}.sock"


@contextlib.asynccontextmanager
async def open_zmq_transport(
    nursery: trio.Nursery,
    consumer: str,
    endpoint: str,
    *,
    visibility: float,
    lease: float,
    answer_timeout: float = 5.0,
) -> AsyncIterator[ZmqTransport]:
    """A started 0MQ transport bound to ``endpoint``, closed at the end of the block."""
    context: zmq.Context[Any] = zmq.Context.instance()
    transport = ZmqTransport(
        context,
        nursery,
        consumer,
        visibility=visibility,
        lease=lease,
        answer_timeout=answer_timeout,
    )
    await transport.start(endpoint)
    try:
        yield transport
    finally:
        transport.close()
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(OSError):
                os.unlink(transport.endpoint[len("ipc://") :])
