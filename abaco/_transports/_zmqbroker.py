"""The 0MQ side of a hub that owns channels: one ROUTER socket serving all of them.

A 0MQ channel lives in the hub that opened it; its address is ``ENDPOINT#ID``. Other hubs
talk to the owner through a DEALER (:mod:`abaco._transports.zmq`) with this protocol, one
multipart message per request and per answer, whose first frame is a header of
space-separated words (ids, numbers: nothing that may hold a space) and whose other frames
are payload (messages, topics, member names)::

    request  [b"OP RID CHANNEL WORD...", *payload]
    answer   [b"STATUS RID WORD...", *payload]      status: ok msg timeout gone lost none bad
    confirm  [b"okto RID"]                          every pipelined request up to RID is done
    batch    [b"putm RID CHANNEL", pack_frames(frames)]
    taken    [b"msg RID DELIVERY", frame]  or, several,  [b"msg RID DELIVERY...", pack]
    push     [b"push SUBSCRIPTION", topic, frame]    (topics and membership events)

One header frame instead of a frame per field, and a batch of messages packed into one
frame: each frame is one more call into libzmq (about a microsecond and a half here), a
msgpack array of a hundred frames about two.

Puts, publishes and replies are pipelined: the sender does not wait for their answer, and
the broker confirms them in bulk (``okto``), a few milliseconds later or every
``_CONFIRM_BATCH`` requests, instead of one answer each.

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
import msgpack  # type: ignore[import-untyped]
import structlog
import trio
import zmq

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from abaco._transports._zmqsocket import ZmqSocket

__all__ = ["LOCAL", "Broker", "pack_frames", "unpack_frames"]

#: The identity of the owning hub itself (a ROUTER identity is never empty).
LOCAL = b""

# Pipelined requests are confirmed this long after the first unconfirmed one arrives...
_CONFIRM_DELAY = 0.002
# ... or as soon as this many from one peer are unconfirmed (senders allow 1000).
_CONFIRM_BATCH = 250
# The most requests handled between two checkpoints.
_BURST = 64

_log = structlog.get_logger(__name__)


def pack_frames(frames: Sequence[bytes]) -> bytes:
    """Several frames as one: a msgpack array of binaries."""
    return msgpack.packb(frames, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_frames(data: bytes) -> list[bytes]:
    """The frames :func:`pack_frames` packed; ValueError when ``data`` is not such a pack."""
    try:
        frames = msgpack.unpackb(data, raw=False)
    except ValueError:
        raise
    except Exception as exc:  # msgpack may raise anything on bad input
        raise ValueError(f"malformed frame pack: {exc}") from exc
    if type(frames) is not list or any(type(f) is not bytes for f in frames):
        raise ValueError("malformed frame pack: not an array of binaries")
    return frames


@attrs.define
class _Take:
    identity: bytes
    request_id: bytes
    consumer: bytes
    deadline: float
    count: int


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
        local: Callable[[bytes, bytes, list[bytes]], Awaitable[None]],
        *,
        visibility: float,
        lease: float,
    ) -> None:
        self._socket = socket
        #: Where answers to this hub's own requests go: ``local(status, request id, values)``.
        self.local = local
        self._visibility = visibility
        self._lease = lease
        self._queues: dict[bytes, _Queue] = collections.defaultdict(_Queue)
        # channel id -> subscription id -> follower (topics, and a duplex group's events)
        self._followers: dict[bytes, dict[bytes, _Follower]] = collections.defaultdict(dict)
        self._members: dict[bytes, dict[bytes, float]] = collections.defaultdict(dict)
        self._ids = itertools.count(1)
        # peer identity -> (last pipelined request id done, how many since last confirmed)
        self._unconfirmed: dict[bytes, tuple[bytes, int]] = {}
        self._confirm_due = trio.Event()
        self._handlers: dict[bytes, Callable[..., Awaitable[None]]] = {
            name[len("_op_") :].encode(): getattr(self, name)
            for name in dir(self)
            if name.startswith("_op_")
        }
        #: Called with each frame sent to this hub's inbox (replies to its requests).
        self.inbox: Callable[[bytes], None] | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer requests until cancelled or the socket is closed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_until_closed)
            nursery.start_soon(self._confirm_until_closed)
            task_status.started()
            with contextlib.suppress(trio.ClosedResourceError):
                await self._answer_forever()
            nursery.cancel_scope.cancel()

    async def _answer_forever(self) -> None:
        socket = self._socket
        while True:
            # What has come already is handled before the next checkpoint: one trip
            # through trio's scheduler per burst instead of one per message.
            for frames in await socket.recv_multipart_many(_BURST):
                if len(frames) < 2:
                    _log.warning("zmq.bad_request", frames=len(frames))
                    continue
                identity, header, *payload = frames
                words = header.split(b" ")
                if len(words) < 3:
                    _log.warning("zmq.bad_request", header=header[:80])
                    continue
                op, request_id, channel_id, *args = words
                await self.run(identity, op, request_id, channel_id, [*args, *payload])

    async def run(
        self, identity: bytes, op: bytes, request_id: bytes, channel_id: bytes, args: list[bytes]
    ) -> None:
        """Carry out one request from ``identity``: its header words, then its payload.

        The owning hub calls this directly, with identity :data:`LOCAL`, for the channels
        it owns itself: no socket in between.
        """
        handler = self._handlers.get(op)
        try:
            if handler is None:
                raise TypeError(f"unknown operation {op!r}")
            await handler(identity, request_id, channel_id, *args)
        except (TypeError, ValueError) as exc:
            # A malformed request from one peer must not stop the broker for all.
            _log.warning("zmq.bad_request", error=str(exc))
            await self._answer(identity, b"bad", request_id)

    async def _answer(
        self,
        identity: bytes,
        status: bytes,
        request_id: bytes,
        words: Sequence[bytes] = (),
        payload: Sequence[bytes] = (),
    ) -> None:
        if identity == LOCAL:
            await self.local(status, request_id, [*words, *payload])
        else:
            self._send(identity, [b" ".join((status, request_id, *words)), *payload])

    async def _confirm(self, identity: bytes, request_id: bytes) -> None:
        """Count a pipelined request as done; its sender hears it with the next ``okto``."""
        if identity == LOCAL:
            await self.local(b"ok", request_id, [])
            return
        _, count = self._unconfirmed.get(identity, (b"", 0))
        if count + 1 >= _CONFIRM_BATCH:
            self._unconfirmed.pop(identity, None)
            self._send(identity, [b"okto " + request_id])
            return
        self._unconfirmed[identity] = (request_id, count + 1)
        self._confirm_due.set()

    async def _confirm_until_closed(self) -> None:
        while True:
            await self._confirm_due.wait()
            await trio.sleep(_CONFIRM_DELAY)
            self._confirm_due = trio.Event()
            unconfirmed, self._unconfirmed = self._unconfirmed, {}
            with contextlib.suppress(trio.ClosedResourceError):
                for identity, (request_id, _) in unconfirmed.items():
                    self._send(identity, [b"okto " + request_id])

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

    async def put(self, channel: bytes, frames: Sequence[bytes]) -> None:
        """Append frames to a queue and hand them to whoever waits."""
        queue = self._queues[channel]
        ids = self._ids
        queue.ready.extend((b"%d" % next(ids), frame) for frame in frames)
        if queue.takers:
            await self._dispatch(queue)

    def take_ready(self, channel: bytes, consumer: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Up to ``count`` deliveries (id, frame) for ``consumer`` of what waits already.

        Nobody else can be waiting when something is ready (it would have been handed
        over), so this jumps no queue.
        """
        queue = self._queues[channel]
        ready = queue.ready
        deadline = trio.current_time() + self._visibility
        taken = []
        for _ in range(min(count, len(ready))):
            delivery_id, frame = ready.popleft()
            queue.in_flight[delivery_id] = _InFlight(frame, consumer, deadline)
            taken.append((delivery_id, frame))
        return taken

    async def _op_put(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        await self.put(channel, (frame,))
        await self._confirm(identity, rid)

    async def _op_putm(self, identity: bytes, rid: bytes, channel: bytes, pack: bytes) -> None:
        await self.put(channel, unpack_frames(pack))
        await self._confirm(identity, rid)

    async def _op_post(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        """A put that wants no answer (a request: its reply is the answer)."""
        await self.put(channel, (frame,))

    async def _op_take(
        self,
        identity: bytes,
        rid: bytes,
        channel: bytes,
        timeout_ms: bytes,
        consumer: bytes,
        count: bytes,
    ) -> None:
        queue = self._queues[channel]
        wait = int(timeout_ms)
        deadline = trio.current_time() + wait / 1000 if wait >= 0 else float("inf")
        queue.takers.append(_Take(identity, rid, consumer, deadline, max(1, int(count))))
        await self._dispatch(queue)

    async def _op_cancel(self, identity: bytes, rid: bytes, channel: bytes, take_id: bytes) -> None:
        queue = self._queues[channel]
        queue.takers = collections.deque(
            t for t in queue.takers if not (t.identity == identity and t.request_id == take_id)
        )

    async def _dispatch(self, queue: _Queue) -> None:
        ready = queue.ready
        while ready and queue.takers:
            take = queue.takers.popleft()
            deadline = trio.current_time() + self._visibility
            ids: list[bytes] = []
            frames: list[bytes] = []
            for _ in range(min(take.count, len(ready))):
                delivery_id, frame = ready.popleft()
                queue.in_flight[delivery_id] = _InFlight(frame, take.consumer, deadline)
                ids.append(delivery_id)
                frames.append(frame)
            payload = frames if len(frames) == 1 else [pack_frames(frames)]
            await self._answer(take.identity, b"msg", take.request_id, ids, payload)

    async def _op_settle(
        self,
        identity: bytes,
        rid: bytes,
        channel: bytes,
        action: bytes,
        consumer: bytes,
        *delivery_ids: bytes,
    ) -> None:
        outcomes = await self.settle(channel, action, consumer, delivery_ids)
        await self._answer(identity, b"ok", rid, [outcomes] if outcomes else [])

    async def settle(
        self, channel: bytes, action: bytes, consumer: bytes, delivery_ids: Sequence[bytes]
    ) -> bytes:
        """Acknowledge, renew or release deliveries; one outcome per delivery: ``1`` done,
        ``0`` acknowledged already, ``-`` another consumer's now (fenced)."""
        queue = self._queues[channel]
        outcomes = bytearray()
        released: list[tuple[bytes, bytes]] = []
        for delivery_id in delivery_ids:
            held = queue.in_flight.get(delivery_id)
            if held is None:
                outcomes += b"0"
                continue
            if held.consumer != consumer:
                outcomes += b"-"
                continue
            outcomes += b"1"
            if action == b"ack":
                del queue.in_flight[delivery_id]
            elif action == b"release":
                # A consumer whose take was cancelled hands the messages straight back.
                del queue.in_flight[delivery_id]
                released.append((delivery_id, held.frame))
            else:
                held.deadline = trio.current_time() + self._visibility
        if released:
            queue.ready.extendleft(reversed(released))
            await self._dispatch(queue)
        return bytes(outcomes)

    async def _op_len(self, identity: bytes, rid: bytes, channel: bytes) -> None:
        queue = self._queues.get(channel)
        size = 0 if queue is None else len(queue.ready) + len(queue.in_flight)
        await self._answer(identity, b"ok", rid, [str(size).encode()])

    async def _op_waiting(self, identity: bytes, rid: bytes, channel: bytes) -> None:
        queue = self._queues.get(channel)
        size = 0 if queue is None else len(queue.ready)
        await self._answer(identity, b"ok", rid, [str(size).encode()])

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
        await self._confirm(identity, rid)
        await self._push(channel, topic, frame)

    async def _push(self, channel: bytes, topic: bytes, frame: bytes) -> None:
        for subscription, follower in list(self._followers.get(channel, {}).items()):
            if follower.identity == LOCAL:
                await self.local(b"push", subscription, [topic, frame])
                continue
            # A follower that cannot keep up loses messages, as 0MQ PUB/SUB would (logged);
            # one that is gone stops being followed.
            if not self._send(follower.identity, [b"push " + subscription, topic, frame]):
                _log.warning("zmq.topic_drop", subscription=subscription.decode())

    # -- duplex groups ------------------------------------------------------------------------

    async def _op_join(
        self, identity: bytes, rid: bytes, channel: bytes, lease_ms: bytes, member: bytes
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
        await self._answer(identity, b"ok", rid, (), sorted(self._members.get(channel, {})))

    async def _op_send(
        self, identity: bytes, rid: bytes, channel: bytes, member: bytes, frame: bytes
    ) -> None:
        if member not in self._members.get(channel, {}):
            await self._answer(identity, b"none", rid)
            return
        await self._op_post(identity, rid, channel + b":m:" + member, frame)
        await self._answer(identity, b"ok", rid)

    # -- the hub's inbox ----------------------------------------------------------------------

    async def _op_reply(self, identity: bytes, rid: bytes, channel: bytes, frame: bytes) -> None:
        if self.inbox is None:  # only before the hub has started: nobody knows it yet
            _log.warning("zmq.reply_before_inbox")
        else:
            self.inbox(frame)
        await self._confirm(identity, rid)

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
