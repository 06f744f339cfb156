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

import contextlib
import itertools
import os
from typing import TYPE_CHECKING, Any

import trio
import zmq

from abaco._transports._zmqbroker import LOCAL, Broker
from abaco._transports._zmqsocket import ZmqSocket, open_zmq_socket
from abaco.errors import Aborted, ChannelTimeout, DestinationUnavailable, SendFailed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

__all__ = ["ZmqFollow", "ZmqTransport", "ipc_endpoint", "open_zmq_transport"]


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
        # Requests given up on; for a take, what to hand back if a message still comes.
        self.abandoned: dict[bytes, list[bytes]] = {}

    def next_id(self) -> bytes:
        return str(next(self._ids)).encode()

    async def read_forever(self) -> None:
        assert self.socket is not None
        # Closing the socket is how a hub stops its peers.
        with contextlib.suppress(trio.ClosedResourceError):
            while True:
                await self.deliver(await self.socket.recv_multipart())

    async def request(self, frames: list[bytes]) -> None:
        """Send ``[op, request id, channel id, *args]`` to the broker."""
        if self.socket is None:
            assert self.broker is not None
            await self.broker.handle([LOCAL, *frames])
        else:
            await self.socket.send_multipart(frames)

    async def deliver(self, frames: list[bytes]) -> None:
        """Hand an answer or a push from the broker to whoever waits for it."""
        status, key, *values = frames
        if status == b"push":
            follower = self.pushes.get(key)
            if follower is not None:
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    follower.send_nowait((values[0].decode(), values[1]))
            return
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.set([status, *values])
        elif key in self.abandoned:
            release = self.abandoned.pop(key)
            if status == b"msg" and release:
                # The take was cancelled after the owner handed this over: give it back.
                channel_id, consumer = release
                await self.request(
                    [b"settle", self.next_id(), channel_id, b"release", values[0], consumer]
                )

    def expect(self, request_id: bytes) -> _Waiter:
        waiter = self._waiting[request_id] = _Waiter()
        return waiter

    def abandon(self, request_id: bytes, release: list[bytes]) -> bool:
        """Give up on a request; returns whether it was still unanswered."""
        if self._waiting.pop(request_id, None) is None:
            return False
        self.abandoned[request_id] = release
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

    async def call(
        self, address: str, op: bytes, *args: bytes, wait: float | None = None
    ) -> list[bytes]:
        """Send one request to the owner of ``address`` and return its answer."""
        endpoint, channel_id = _split(address)
        peer = self._peers.get(endpoint) or await self.peer(endpoint)
        if peer.socket is not None and peer.ipc_path and not os.path.exists(peer.ipc_path):  # noqa: ASYNC240
            raise DestinationUnavailable(f"{address}: its owner is gone")
        request_id = peer.next_id()
        waiter = peer.expect(request_id)
        try:
            await peer.request([op, request_id, channel_id, *args])
            if waiter.answer is not None:
                # The owner is this hub and answered at once; still a checkpoint, as any
                # trio operation must be, so other tasks get their turn.
                await trio.lowlevel.checkpoint()
                return waiter.answer
            with trio.move_on_after(self.answer_timeout if wait is None else wait):
                return await waiter.wait()
        finally:
            is_take = op == b"take"
            release = [channel_id, self.consumer] if is_take else []
            if peer.abandon(request_id, release) and is_take:
                with trio.CancelScope(shield=True), contextlib.suppress(trio.ClosedResourceError):
                    await peer.request([b"cancel", peer.next_id(), channel_id, request_id])
        if wait is not None:
            raise ChannelTimeout(f"{address}: nothing within {wait} s")
        raise DestinationUnavailable(
            f"{address}: no answer from its owner in {self.answer_timeout} s"
        )

    # -- queues -------------------------------------------------------------------------

    async def queue_put(self, address: str, frame: bytes, *, confirm: bool = True) -> None:
        """Append a frame to a queue; without ``confirm``, do not wait for the owner's ok."""
        if confirm:
            await self.call(address, b"put", frame)
            return
        endpoint, channel_id = _split(address)
        peer = await self.peer(endpoint)
        await peer.request([b"put", peer.next_id(), channel_id, frame])

    async def queue_take(self, address: str, timeout: float | None) -> tuple[bytes, bytes]:
        """Take one delivery (id, frame), waiting up to ``timeout`` (None: forever)."""
        wait = float("inf") if timeout is None else timeout
        server_ms = -1 if timeout is None else int(timeout * 1000) + 1000
        answer = await self.call(
            address, b"take", str(server_ms).encode(), self.consumer, wait=wait
        )
        if answer[0] != b"msg":
            raise ChannelTimeout(f"queue {address}: nothing within {timeout} s")
        return answer[1], answer[2]

    async def queue_settle(self, address: str, delivery_id: bytes, action: str) -> bool:
        """Acknowledge or renew a delivery this hub holds (fenced like the Redis queue)."""
        status, *_ = await self.call(
            address, b"settle", action.encode(), delivery_id, self.consumer
        )
        if status == b"lost":
            raise Aborted(f"queue {address}: delivery {delivery_id.decode()} was reclaimed")
        return status == b"ok"

    async def queue_length(self, address: str) -> int:
        """Messages in the queue, taken or not, not yet acknowledged."""
        return int((await self.call(address, b"len"))[1])

    # -- topics and events --------------------------------------------------------------------

    async def topic_publish(self, address: str, topic: str, frame: bytes) -> None:
        """Publish a frame on a topic."""
        await self.call(address, b"pub", topic.encode(), frame)

    async def follow(self, address: str) -> ZmqFollow:
        """Follow a topic (or a duplex group's events) from now on."""
        endpoint, _ = _split(address)
        peer = await self.peer(endpoint)
        subscription = self.consumer + b"/" + peer.next_id()
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

    @contextlib.asynccontextmanager
    async def open_inbox(self) -> AsyncIterator[trio.MemoryReceiveChannel[bytes]]:
        """This hub's inbox: what others send with :meth:`inbox_push` to ``#inbox``."""
        assert self.broker is not None
        send, receive = trio.open_memory_channel[bytes](1000)
        self.broker.inbox = send
        try:
            yield receive
        finally:
            self.broker.inbox = None

    async def inbox_push(self, address: str, frame: bytes, lease: float) -> None:
        """Deliver a frame to a hub's inbox; DestinationUnavailable when it is gone."""
        status, *_ = await self.call(address, b"reply", frame)
        if status != b"ok":
            raise DestinationUnavailable(f"inbox {address}: its owner is gone")

    # -- duplex groups ------------------------------------------------------------------------

    async def member_join(self, address: str, member: str, lease: float) -> None:
        """Add (or renew) a member of a group."""
        await self.call(address, b"join", member.encode(), str(int(lease * 1000)).encode())

    async def member_leave(self, address: str, member: str) -> None:
        """Remove a member."""
        with contextlib.suppress(DestinationUnavailable):
            await self.call(address, b"leave", member.encode())

    async def members(self, address: str) -> list[str]:
        """The group's current members."""
        return [m.decode() for m in (await self.call(address, b"members"))[1:]]

    async def member_send(self, address: str, member: str, frame: bytes) -> None:
        """Send to one member; DestinationUnavailable when it is not a member."""
        status, *_ = await self.call(address, b"send", member.encode(), frame)
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
