"""The 0MQ side of a hub that owns channels: one ROUTER socket serving all of them.

A 0MQ channel lives in the hub that opened it; its address is ``ENDPOINT#ID``. Other hubs
talk to the owner through a DEALER (:mod:`abaco._transports.zmq`) with this protocol,
one multipart message per request and per answer::

    request  [op, request id, channel id, *args]
    answer   [status, request id, *values]          status: ok msg timeout gone lost none
    push     [b"push", subscription id, topic, frame]   (topics and membership events)

State is in memory: a 0MQ queue is as durable as its owner. Deliveries still follow the
queue rules of the Redis transport: held until acknowledged, taken back from a consumer
that stops renewing them for ``visibility`` seconds, and acknowledgements are fenced.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
import zmq

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from abaco._transports._zmqsocket import ZmqSocket

__all__ = ["LOCAL", "Broker"]

#: The identity of the owning hub itself (a ROUTER identity is never empty).
LOCAL = b""

_log = structlog.get_logger(__name__)


@attrs.define
class _Take:
    identity: bytes
    request_id: bytes
    consumer: bytes
    deadline: float


@attrs.define
class _InFlight:
    frame: bytes
    consumer: bytes
    deadline: float


@attrs.define
class _Queue:
    # (delivery id, frame): an id stays with its message across redeliveries, so a
    # consumer that lost it is told so when it tries to acknowledge.
    ready: collections.deque[tuple[bytes, bytes]] = attrs.field(factory=collections.deque)
    in_flight: dict[bytes, _InFlight] = attrs.field(factory=dict)
    takers: collections.deque[_Take] = attrs.field(factory=collections.deque)


@attrs.define
class _Follower:
    identity: bytes
    deadline: float


class Broker:
    """Serves the channels one hub owns over its ROUTER socket."""

    def __init__(
        self,
        socket: ZmqSocket,
        local: Callable[[list[bytes]], Awaitable[None]],
        *,
        visibility: float,
        lease: float,
    ) -> None:
        self._socket = socket
        self.local = local
        self._visibility = visibility
        self._lease = lease
        self._queues: dict[bytes, _Queue] = collections.defaultdict(_Queue)
        # channel id -> subscription id -> follower (topics, and a duplex group's events)
        self._followers: dict[bytes, dict[bytes, _Follower]] = collections.defaultdict(dict)
        self._members: dict[bytes, dict[bytes, float]] = collections.defaultdict(dict)
        self._ids = itertools.count(1)
        #: Called with each frame sent to this hub's inbox (replies to its requests).
        self.inbox: Callable[[bytes], None] | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer requests until cancelled or the socket is closed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_until_closed)
            task_status.started()
            with contextlib.suppress(trio.ClosedResourceError):
                await self._answer_forever()
            nursery.cancel_scope.cancel()

    async def _answer_forever(self) -> None:
        while True:
            await self.handle(await self._socket.recv_multipart())

    async def handle(self, frames: list[bytes]) -> None:
        """Carry out one request ``[identity, op, request id, channel id, *args]``.

        The owning hub calls this directly, with identity :data:`LOCAL`, for the channels
        it owns itself: no socket in between.
        """
        if len(frames) < 4:
            _log.warning("zmq.bad_request", frames=len(frames))
            return
        identity, op, request_id, channel_id, *args = frames
        handler = getattr(self, f"_op_{op.decode(errors='replace')}", None)
        try:
            if handler is None:
                raise TypeError(f"unknown operation {op!r}")
            await handler(identity, request_id, channel_id, *args)
        except TypeError as exc:
            # A malformed request from one peer must not stop the broker for all.
            _log.warning("zmq.bad_request", error=str(exc))
            await self._answer(identity, b"bad", request_id)

    async def _answer(
        self, identity: bytes, status: bytes, request_id: bytes, *values: bytes
    ) -> None:
        if identity == LOCAL:
            await self.local([status, request_id, *values])
        else:
            self._send(identity, [status, request_id, *values])

    def _send(self, identity: bytes, frames: list[bytes]) -> bool:
        """Send to one peer without ever waiting; returns whether it went out.

        The ROUTER is in mandatory mode, so a peer that is gone or not reading is an
        error here instead of a silent drop: its message is dropped and logged, and the
        broker goes on serving everyone else (the peer's call times out on its side).
        """
        try:
            self._socket.send_multipart_nowait([identity, *frames])
        except trio.WouldBlock:
            _log.warning("zmq.peer_slow_dropped", peer=identity.hex())
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            _log.info("zmq.peer_gone", peer=identity.hex())
            return False
        return True

    # -- queues -------------------------------------------------------------------------

    async def _op_put(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        await self._answer(identity, b"ok", rid)
        await self._op_post(identity, rid, channel, frame)

    async def _op_post(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        """A put that wants no answer (a request: its reply is the answer)."""
        queue = self._queues[channel]
        queue.ready.append((str(next(self._ids)).encode(), frame))
        await self._dispatch(queue)

    async def _op_take(
        self, identity: bytes, rid: bytes, channel: bytes, timeout_ms: bytes, consumer: bytes
    ) -> None:
        queue = self._queues[channel]
        wait = int(timeout_ms)
        deadline = trio.current_time() + wait / 1000 if wait >= 0 else float("inf")
        queue.takers.append(_Take(identity, rid, consumer, deadline))
        await self._dispatch(queue)

    async def _op_cancel(self, identity: bytes, rid: bytes, channel: bytes, take_id: bytes) -> None:
        queue = self._queues[channel]
        queue.takers = collections.deque(
            t for t in queue.takers if not (t.identity == identity and t.request_id == take_id)
        )

    async def _dispatch(self, queue: _Queue) -> None:
        while queue.ready and queue.takers:
            take = queue.takers.popleft()
            delivery_id, frame = queue.ready.popleft()
            queue.in_flight[delivery_id] = _InFlight(
                frame, take.consumer, trio.current_time() + self._visibility
            )
            await self._answer(take.identity, b"msg", take.request_id, delivery_id, frame)

    async def _op_settle(
        self,
        identity: bytes,
        rid: bytes,
        channel: bytes,
        action: bytes,
        delivery_id: bytes,
        consumer: bytes,
    ) -> None:
        queue = self._queues[channel]
        held = queue.in_flight.get(delivery_id)
        if held is None:
            await self._answer(identity, b"gone", rid)
            return
        if held.consumer != consumer:
            await self._answer(identity, b"lost", rid)
            return
        if action == b"ack":
            del queue.in_flight[delivery_id]
        elif action == b"release":
            # A consumer whose take was cancelled hands the message straight back.
            del queue.in_flight[delivery_id]
            queue.ready.appendleft((delivery_id, held.frame))
            await self._dispatch(queue)
        else:
            held.deadline = trio.current_time() + self._visibility
        await self._answer(identity, b"ok", rid)

    async def _op_len(self, identity: bytes, rid: bytes, channel: bytes) -> None:
        queue = self._queues.get(channel)
        size = 0 if queue is None else len(queue.ready) + len(queue.in_flight)
        await self._answer(identity, b"ok", rid, str(size).encode())

    async def _op_waiting(self, identity: bytes, rid: bytes, channel: bytes) -> None:
        queue = self._queues.get(channel)
        size = 0 if queue is None else len(queue.ready)
        await self._answer(identity, b"ok", rid, str(size).encode())

    # -- topics and membership events ---------------------------------------------------------

    async def _op_follow(
        self, identity: bytes, rid: bytes, channel: bytes, subscription: bytes
    ) -> None:
        deadline = trio.current_time() + self._lease
        self._followers[channel][subscription] = _Follower(identity, deadline)
        await self._answer(identity, b"ok", rid)

    async def _op_unfollow(
        self, identity: bytes, rid: bytes, channel: bytes, subscription: bytes
    ) -> None:
        self._followers[channel].pop(subscription, None)
        await self._answer(identity, b"ok", rid)

    async def _op_pub(
        self, identity: bytes, rid: bytes, channel: bytes, topic: bytes, frame: bytes
    ) -> None:
        await self._answer(identity, b"ok", rid)
        await self._push(channel, topic, frame)

    async def _push(self, channel: bytes, topic: bytes, frame: bytes) -> None:
        for subscription, follower in list(self._followers.get(channel, {}).items()):
            if follower.identity == LOCAL:
                await self.local([b"push", subscription, topic, frame])
                continue
            # A follower that cannot keep up loses messages, as 0MQ PUB/SUB would (logged);
            # one that is gone stops being followed.
            if not self._send(follower.identity, [b"push", subscription, topic, frame]):
                _log.warning("zmq.topic_drop", subscription=subscription.decode())

    # -- duplex groups ------------------------------------------------------------------------

    async def _op_join(
        self, identity: bytes, rid: bytes, channel: bytes, member: bytes, lease_ms: bytes
    ) -> None:
        members = self._members[channel]
        is_new = member not in members
        members[member] = trio.current_time() + int(lease_ms) / 1000
        await self._answer(identity, b"ok", rid)
        if is_new:
            await self._push(channel + b":events", b"joined", member)

    async def _op_leave(self, identity: bytes, rid: bytes, channel: bytes, member: bytes) -> None:
        await self._answer(identity, b"ok", rid)
        await self._remove_member(channel, member)

    async def _remove_member(self, channel: bytes, member: bytes) -> None:
        if self._members[channel].pop(member, None) is not None:
            self._queues.pop(channel + b":m:" + member, None)
            await self._push(channel + b":events", b"left", member)

    async def _op_members(self, identity: bytes, rid: bytes, channel: bytes) -> None:
        await self._answer(identity, b"ok", rid, *sorted(self._members.get(channel, {})))

    async def _op_send(
        self, identity: bytes, rid: bytes, channel: bytes, member: bytes, frame: bytes
    ) -> None:
        if member not in self._members.get(channel, {}):
            await self._answer(identity, b"none", rid)
            return
        await self._op_put(identity, rid, channel + b":m:" + member, frame)

    # -- the hub's inbox ----------------------------------------------------------------------

    async def _op_reply(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        if self.inbox is None:
            await self._answer(identity, b"none", rid)
            return
        self.inbox(frame)
        await self._answer(identity, b"ok", rid)

    # -- time ---------------------------------------------------------------------------------

    async def _expire_until_closed(self) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            await self._expire_forever()

    async def _expire_forever(self) -> None:
        period = min(self._visibility, self._lease) / 4
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for queue in self._queues.values():
                await self._expire_queue(queue, now)
            for followers in self._followers.values():
                for subscription in [s for s, f in followers.items() if f.deadline < now]:
                    del followers[subscription]
            for channel, members in list(self._members.items()):
                for member in [m for m, deadline in members.items() if deadline < now]:
                    await self._remove_member(channel, member)

    async def _expire_queue(self, queue: _Queue, now: float) -> None:
        for delivery_id in [d for d, held in queue.in_flight.items() if held.deadline < now]:
            queue.ready.appendleft((delivery_id, queue.in_flight.pop(delivery_id).frame))
        expired = [t for t in queue.takers if t.deadline < now]
        if expired:
            queue.takers = collections.deque(t for t in queue.takers if t.deadline >= now)
            for take in expired:
                await self._answer(take.identity, b"timeout", take.request_id)
        await self._dispatch(queue)
