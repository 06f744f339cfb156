"""Channels over Redis/Valkey: durable queues, topics, hub inboxes and duplex groups.

Keys (addresses are full key names, chosen by :mod:`abaco.channels`)::

    ADDRESS                       stream   a queue or request channel; consumer group "g"
    ADDRESS                       stream   a topic: entries {t: topic, m: frame}, trimmed
    ADDRESS                       list     a hub's inbox (replies); expires with the hub
    ADDRESS:alive                 string   the inbox owner's lease; gone = owner gone
    ADDRESS:members               zset     a duplex group: member -> lease deadline (ms)
    ADDRESS:m:MEMBER              stream   a duplex member's inbox (a queue)
    ADDRESS:events                stream   a duplex group's joined/left events

Queues are at-least-once: a delivery stays pending in the group until its consumer
acknowledges it; a consumer renews what it holds, and one that stops renewing (it died)
loses its deliveries to the next consumer that asks after ``visibility`` seconds.
Acknowledging is fenced: a consumer that lost a delivery cannot acknowledge it.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING

import trio

from abaco.errors import (
    Aborted,
    ChannelTimeout,
    DestinationUnavailable,
    SendFailed,
    StoreError,
    StreamGone,
)

if TYPE_CHECKING:
    from abaco.redis_client import Redis

__all__ = ["RedisFollow", "RedisTransport"]

_GROUP = "g"
_TOPIC_MAXLEN = 10_000
# Blocking reads wake up at least this often, so reclaimable deliveries of dead consumers
# are noticed and a closed hub's reads end promptly.
_BLOCK_SLICE_S = 0.5


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisTransport:
    """The Redis side of one hub: every operation on Redis-backed channels."""

    def __init__(self, redis: Redis, consumer: str, *, visibility: float) -> None:
        self.redis = redis
        self.consumer = consumer
        self.visibility_ms = max(1, int(visibility * 1000))
        self._groups: set[str] = set()
        self._unclean: set[str] = set()
        self._next_full_take: dict[str, float] = {}

    async def _ensure_group(self, address: str) -> None:
        if address not in self._groups:
            await self.redis.xgroup_create(address, _GROUP)
            self._groups.add(address)

    # -- queues -------------------------------------------------------------------------

    async def queue_put(self, address: str, frame: bytes, *, confirm: bool = True) -> None:
        """Append a frame to a queue (always confirmed: the server answers XADD)."""
        try:
            await self.redis.xadd(address, {"m": frame})
        except StoreError as exc:
            raise SendFailed(f"queue {address}: {exc}") from exc

    async def queue_put_many(self, address: str, frames: list[bytes]) -> None:
        """Append frames to a queue in one round trip, in order."""
        try:
            await self.redis.script("queue_put_many")([address], frames)
        except StoreError as exc:
            raise SendFailed(f"queue {address}: {exc}") from exc

    async def queue_take(self, address: str, timeout: float | None) -> tuple[bytes, bytes]:
        """Take one delivery (id, frame), waiting up to ``timeout`` seconds (None: forever).

        A cancelled wait loses nothing: whatever the server handed over meanwhile is
        still pending for this consumer and comes back on the next take. A queue whose
        stream was deleted meanwhile (the platform retires the channels of workers and
        hosts it forgot) starts again empty.
        """
        await self._ensure_group(address)
        try:
            return await self._take(address, timeout)
        except StreamGone:
            self._groups.discard(address)
        await self._ensure_group(address)
        return await self._take(address, timeout)

    async def _take(self, address: str, timeout: float | None) -> tuple[bytes, bytes]:
        deadline = trio.current_time() + timeout if timeout is not None else float("inf")
        while True:
            if self._full_take_due(address):
                # Own pending entries first, then reclaimable ones, then new ones (Lua).
                found = await self.redis.script("queue_take")(
                    [address], [_GROUP, self.consumer, self.visibility_ms]
                )
                self._next_full_take[address] = trio.current_time() + self.visibility_ms / 2000
                self._unclean.discard(address)
                if found:
                    return found[0], _field(found[1], b"m")
            left = deadline - trio.current_time()
            if left <= 0:
                raise ChannelTimeout(f"queue {address}: nothing within {timeout} s")
            block_ms = max(1, int(min(left, _BLOCK_SLICE_S) * 1000))
            # If this read is cancelled, the server may still have handed an entry over:
            # the next take then starts with the full take, which finds it.
            self._unclean.add(address)
            entries = await self.redis.xreadgroup(address, _GROUP, self.consumer, block_ms=block_ms)
            self._unclean.discard(address)
            if entries:
                entry_id, fields = entries[0]
                return entry_id, fields[b"m"]

    async def queue_take_many(
        self, address: str, count: int, timeout: float | None
    ) -> list[tuple[bytes, bytes]]:
        """Wait like :meth:`queue_take` for one delivery, then take up to ``count`` in all
        of the new ones already there (one more round trip)."""
        first = await self.queue_take(address, timeout)
        return [first, *await self._take_more(address, count - 1)]

    async def _take_more(self, address: str, count: int) -> list[tuple[bytes, bytes]]:
        """Up to ``count`` more new deliveries without waiting (after a take, for batches)."""
        # COUNT 0 would mean no limit at all to the server.
        if count < 1 or self._full_take_due(address):
            return []  # let the next take look at pending and reclaimable entries first
        self._unclean.add(address)
        entries = await self.redis.xreadgroup(
            address, _GROUP, self.consumer, block_ms=None, count=count
        )
        self._unclean.discard(address)
        return [(entry_id, fields[b"m"]) for entry_id, fields in entries]

    def _full_take_due(self, address: str) -> bool:
        """Whether a take must look at pending and reclaimable entries, not only new ones.

        It must after a cancelled read, and does every half visibility timeout, which is
        how deliveries of dead consumers are noticed; otherwise one blocking read will do.
        """
        return address in self._unclean or trio.current_time() >= self._next_full_take.get(
            address, float("-inf")
        )

    async def queue_settle(self, address: str, delivery_id: bytes, action: str) -> bool:
        """Acknowledge (``ack``) or renew (``renew``) a delivery this consumer holds.

        Returns False when it was already acknowledged; raises :class:`Aborted` when
        another consumer reclaimed it (this one was too slow or presumed dead).
        """
        outcome = await self.redis.script("queue_settle")(
            [address], [_GROUP, self.consumer, delivery_id, action]
        )
        if outcome == -1:
            raise Aborted(
                f"queue {address}: delivery {delivery_id.decode()} was reclaimed by another "
                "consumer"
            )
        return bool(outcome)

    async def queue_ack_many(self, address: str, delivery_ids: list[bytes]) -> int:
        """Acknowledge many deliveries in one round trip; returns how many were acknowledged.

        Raises :class:`Aborted` when another consumer reclaimed any of them (the others
        are acknowledged all the same).
        """
        if not delivery_ids:
            return 0
        outcomes = await self.redis.script("queue_ack_many")(
            [address], [_GROUP, self.consumer, *delivery_ids]
        )
        if -1 in outcomes:
            raise Aborted(f"queue {address}: some deliveries were reclaimed by another consumer")
        return sum(1 for o in outcomes if o == 1)

    async def queue_length(self, address: str) -> int:
        """Messages in the queue, taken or not, not yet acknowledged."""
        return await self.redis.xlen(address)

    async def queue_waiting(self, address: str) -> int:
        """Messages in the queue that no consumer has taken yet."""
        return int(await self.redis.script("queue_waiting")([address], [_GROUP]))

    # -- topics -------------------------------------------------------------------------

    async def topic_publish(self, address: str, topic: str, frame: bytes) -> None:
        """Publish a frame on a topic of a topic channel."""
        try:
            await self.redis.xadd(address, {"t": topic.encode(), "m": frame}, maxlen=_TOPIC_MAXLEN)
        except StoreError as exc:
            raise SendFailed(f"topic {address}: {exc}") from exc

    async def follow(self, address: str) -> RedisFollow:
        """Follow a topic stream (or a duplex group's events) from now on."""
        return RedisFollow(self.redis, address, await self.redis.last_stream_id(address))

    # -- inboxes ------------------------------------------------------------------------

    async def inbox_open(self, address: str, lease: float) -> None:
        """Mark an inbox's owner alive for ``lease`` seconds (call again to renew)."""
        await self.redis.set(f"{address}:alive", b"1", ttl_ms=int(lease * 1000))

    async def inbox_close(self, address: str) -> None:
        """Mark an inbox's owner gone and drop what is left in it."""
        await self.redis.delete(f"{address}:alive", address)

    async def inbox_push(self, address: str, frame: bytes, lease: float) -> None:
        """Deliver a frame to an inbox; :class:`DestinationUnavailable` if its owner is gone."""
        delivered = await self.redis.script("inbox_push")(
            [address, f"{address}:alive"], [frame, int(lease * 1000)]
        )
        if not delivered:
            raise DestinationUnavailable(f"inbox {address}: its owner is gone")

    async def reply_and_ack(
        self, inbox: str, frame: bytes, lease: float, queue: str, delivery_id: bytes
    ) -> bool:
        """Push a reply to a Redis inbox and acknowledge the request in one round trip.

        Returns whether the request was acknowledged by this call (False when it was
        already, or another consumer reclaimed it); raises :class:`DestinationUnavailable`
        when the requester is gone (the request is acknowledged all the same).
        """
        delivered, acknowledged = await self.redis.script("reply_and_ack")(
            [inbox, f"{inbox}:alive", queue],
            [frame, int(lease * 1000), _GROUP, self.consumer, delivery_id],
        )
        if not delivered:
            raise DestinationUnavailable(f"inbox {inbox}: its owner is gone")
        return bool(acknowledged == 1)

    async def inbox_pop(self, address: str) -> bytes | None:
        """The next frame of an inbox, waiting a short while (None when nothing came)."""
        return await self.redis.blpop(address, _BLOCK_SLICE_S)

    # -- duplex groups ------------------------------------------------------------------

    async def member_join(self, address: str, member: str, lease: float) -> None:
        """Add (or renew) a member with a lease; announces it when it is new."""
        added = await self.redis.zadd(f"{address}:members", {member: _now_ms() + int(lease * 1000)})
        await self._ensure_group(f"{address}:m:{member}")
        if added:
            await self._event(address, "joined", member)

    async def member_leave(self, address: str, member: str) -> None:
        """Remove a member and its inbox; announces it."""
        removed = await self.redis.zrem(f"{address}:members", member)
        await self.redis.delete(f"{address}:m:{member}")
        self._groups.discard(f"{address}:m:{member}")
        if removed:
            await self._event(address, "left", member)

    async def members(self, address: str) -> list[str]:
        """The members whose lease is current (expired ones are removed and announced)."""
        live = await self.redis.script("members_live")(
            [f"{address}:members", f"{address}:events"], [_now_ms(), _TOPIC_MAXLEN]
        )
        return [m.decode() for m in live]

    async def member_send(self, address: str, member: str, frame: bytes) -> None:
        """Send to one member's inbox; :class:`DestinationUnavailable` if it is not a member."""
        deadline = await self.redis.zscore(f"{address}:members", member)
        if deadline is None or deadline < _now_ms():
            raise DestinationUnavailable(f"duplex {address}: {member!r} is not a member")
        await self.queue_put(f"{address}:m:{member}", frame)

    async def _event(self, address: str, event: str, member: str) -> None:
        await self.redis.xadd(
            f"{address}:events", {"t": event.encode(), "m": member.encode()}, maxlen=_TOPIC_MAXLEN
        )


class RedisFollow:
    """(topic, frame) pairs of a topic stream after a position, read in batches."""

    def __init__(self, redis: Redis, address: str, after: bytes) -> None:
        self._redis = redis
        self._address = address
        self._after = after
        self._buffer: collections.deque[tuple[bytes, dict[bytes, bytes]]] = collections.deque()

    async def receive(self) -> tuple[str, bytes]:
        """The next (topic, frame)."""
        while not self._buffer:
            self._buffer.extend(
                await self._redis.xread(
                    self._address, self._after, block_ms=int(_BLOCK_SLICE_S * 1000), count=100
                )
            )
        self._after, fields = self._buffer.popleft()
        return fields[b"t"].decode(), fields[b"m"]

    async def aclose(self) -> None:
        """Stop following (nothing to release on Redis)."""


def _field(flat: list[bytes], name: bytes) -> bytes:
    """A field of a stream entry as Lua returns it: a flat field/value list."""
    for i in range(0, len(flat) - 1, 2):
        if flat[i] == name:
            return flat[i + 1]
    raise SendFailed(f"malformed queue entry: no field {name.decode()!r}")
