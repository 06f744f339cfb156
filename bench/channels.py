"""What the channel library costs over raw clients, between two processes.

Everything runs in ONE run, on a fresh embedded Valkey (``appendfsync everysec``, in a
temporary directory, stopped at the end, also on error). Every measurement uses two
processes started for it (this file with ``--peer``), so each side has its own
interpreter, event loop and hub; the orchestrating process only reads their results.

1. Throughput of 100-byte messages (the library sends ``b"m" * 100``, a 102-byte msgpack
   frame), msgs/s as the consumer sees them, from its first message to its last, for each
   transport and kind:

   - queue:  producer ``queue.put``; consumer ``queue.get`` + ``delivery.ack``
   - batch:  the same queue, batched: producer ``queue.put_many`` of 100; consumer
     ``queue.get_many(100)`` + ``hub.ack_many``
   - topic:  producer ``topic.publish``; consumer ``subscription.receive``
   - duplex: producer ``duplex.send(member, ...)``; consumer ``member.receive``

   A Redis channel lives in Valkey. A 0MQ channel lives in the CONSUMER's hub (its broker
   opened it), so the producer's hub sends to it over ``ipc://`` through a DEALER. The
   producer's send rate and the consumer process's CPU time per message (every thread,
   libzmq's I/O thread included) are printed too. Next to each row, the same workload
   with raw clients, in the same run (library and raw interleaved, alternating who goes
   first):

   - Redis, coredis under trio: queue and duplex ``XADD`` | ``XREADGROUP COUNT 1`` + ``XACK``
     per message; topic ``XADD MAXLEN ~ 10000`` | ``XREAD COUNT 100`` (the library's batch);
   - Redis batch: a coredis pipeline of 100 ``XADD`` | ``XREADGROUP COUNT 100`` + one ``XACK``;
   - pyzmq, blocking sync sockets over ``ipc://``, the consumer binds: queue (and batch)
     PUSH/PULL, the no-semantics floor (no ids, no acks, no redelivery), topic PUB/SUB
     (high-water marks off, so nothing is dropped), duplex DEALER->ROUTER;
   - and for 0MQ queues, ``broker``: a blocking pyzmq ROUTER broker that does the work the
     library's queue does (a DEALER producer's puts get delivery ids and are confirmed in
     bulk, at most 1000 unconfirmed; the consumer, in the broker's process as the library's
     is in its hub, takes each into an in-flight table and acks it out; a batch travels as
     one msgpack-packed frame, as the library's does), so both ratios show.

2. Request/reply round trip, p50/p99 in microseconds, ``--requests`` sequential requests
   after 200 warm-up ones, requester and replier in separate processes (the replier's hub
   owns the request channel; 0MQ replies go to the requester's hub inbox): the library's
   ``request(msg, timeout=)`` / ``next_request()`` + ``reply()``, next to raw Redis via
   coredis under trio (requester ``RPUSH`` + ``BLPOP`` of its own reply list; replier
   ``BLPOP`` + ``RPUSH``) and raw pyzmq REQ/REP (blocking sync). Also the CPU time per
   request of the requester's and the replier's process.

Goals printed with the figures: library throughput at most 2x slower than raw; 0MQ round
trip p50 under 150 us; Redis round trip p50 under 1 ms. Every raw row carries its own
verdict (library msgs/s over that row's), so a 0MQ queue is judged both against the
no-semantics floor and against the broker doing the same work. A consumer that gets
nothing for 5 s stops and its row says how many messages were lost.

``--profile TRANSPORT-KIND`` (e.g. ``redis-queue``) runs only that library throughput case
with the consumer under cProfile and prints its top costs.

Run from the repository root::

    .venv/bin/python bench/channels.py            # n = 20,000, 2,000 requests; ~2 min
    .venv/bin/python bench/channels.py --quick    # n = 2,000, 300 requests; ~35 s
    .venv/bin/python bench/channels.py --profile zmq-queue --n 10000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import ctypes
import io
import itertools
import json
import os
import platform
import pstats
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]
import trio
import zmq
from coredis.tokens import PureToken

from abaco.channels import (
    DuplexChannel,
    QueueChannel,
    RequestChannel,
    TopicChannel,
    Transport,
    open_hub,
)
from abaco.errors import ChannelTimeout
from abaco.logconfig import configure_logging
from abaco.redis_client import open_redis
from abaco.valkey import EmbeddedValkey

ROOT: Final = Path(__file__).resolve().parent.parent
PAYLOAD: Final = b"m" * 100
WARM: Final = b"w" * 100  # raw PUB/SUB warm-up messages, sent until the subscription is live
TOPIC: Final = "bench"
MEMBER: Final = "consumer"
GROUP: Final = "g"
TOPIC_MAXLEN: Final = 10_000  # what the library trims topic streams to
XREAD_COUNT: Final = 100  # the library's topic read batch
IDLE_S: Final = 5.0  # a consumer (or replier) that gets nothing for this long stops
PEER_LIMIT_S: Final = 150  # a peer process kills itself after this long, whatever happens
WARMUP: Final = 200
KINDS: Final = ("queue", "batch", "topic", "duplex")
BATCH: Final = 100  # messages per put_many / get_many in the batch rows
TRANSPORTS: Final = ("redis", "zmq")
THROUGHPUT_GOAL: Final = 2.0  # library at most this many times slower than raw
RTT_GOAL_US: Final = {"zmq": 150.0, "redis": 1000.0}


# --------------------------------------------------------------------------- peers


@dataclass(frozen=True)
class Spec:
    """What one peer process does; travels as JSON on its command line."""

    role: str  # consume | produce | reply | request
    impl: str  # lib | raw
    transport: str  # redis | zmq
    kind: str  # queue | topic | duplex | request
    url: str  # the Valkey URL
    name: str  # channel name, Redis key, or ipc socket path (consumer and replier)
    address: str = ""  # where to send (producer and requester)
    n: int = 0
    warmup: int = 0
    profile: str = ""  # a file for the consumer's cProfile statistics, when profiling


def _say(*words: str) -> None:
    print(*words, flush=True)


def _wait_for(word: str) -> None:
    if sys.stdin.readline().strip() != word:
        raise SystemExit(f"no {word} from the benchmark")


def _wait_go() -> None:
    _wait_for("GO")


def _wait_bye() -> None:
    # A producer that exits at once loses what its consumer has not read yet (a ROUTER
    # drops the queue of a peer that disconnects): stay until the consumer has it all.
    _wait_for("BYE")


class _Tally:
    """Messages counted by a consumer (or replier): wall time first to last, and CPU time.

    CPU time is the whole process's (every thread, so libzmq's I/O thread too), from the
    first message to the report, read only twice so it costs the loop nothing.
    """

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = self.cpu_first = 0.0

    def add(self, messages: int = 1) -> None:
        self.last = time.perf_counter()
        if not self.count:
            self.first = self.last
            self.cpu_first = time.process_time()
        self.count += messages

    def report(self) -> None:
        cpu = time.process_time() - self.cpu_first
        per = cpu / (self.count - 1) * 1e6 if self.count > 1 else 0.0
        result = {"count": self.count, "span": self.last - self.first, "cpu_us": per}
        _say("RESULT", json.dumps(result))


def _percentiles(samples_ns: list[int], cpu_s: float) -> None:
    ordered = sorted(samples_ns)
    result = {
        "p50": ordered[len(ordered) // 2] / 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000,
        "mean": sum(ordered) / len(ordered) / 1000,
        "cpu_us": cpu_s / len(ordered) * 1e6,
    }
    _say("RESULT", json.dumps(result))


async def _count(take: Callable[[], Awaitable[object]], n: int) -> None:
    tally = _Tally()
    try:
        while tally.count < n:
            await take()
            tally.add()
    except (ChannelTimeout, trio.TooSlowError):
        pass  # messages were lost: report what came
    tally.report()


async def _lib_consume(spec: Spec) -> None:
    transport = Transport(spec.transport)
    async with open_redis(spec.url) as redis, open_hub(redis) as hub:
        if spec.kind == "queue":
            queue = hub.open_queue(spec.name, transport=transport)
            _say("READY", queue.address)

            async def take() -> None:
                delivery = await queue.get(timeout=IDLE_S)
                await delivery.ack()

            await _count(take, spec.n)
        elif spec.kind == "batch":
            queue = hub.open_queue(spec.name, transport=transport)
            _say("READY", queue.address)
            tally = _Tally()
            with contextlib.suppress(ChannelTimeout):
                while tally.count < spec.n:
                    batch = await queue.get_many(BATCH, timeout=IDLE_S)
                    await hub.ack_many(batch)
                    tally.add(len(batch))
            tally.report()
        elif spec.kind == "topic":
            topic = hub.open_topic(spec.name, transport=transport)
            async with topic.subscribe() as subscription:
                _say("READY", topic.address)

                async def receive() -> None:
                    with trio.fail_after(IDLE_S):
                        await subscription.receive()

                await _count(receive, spec.n)
        else:
            duplex = hub.open_duplex(spec.name, transport=transport)
            async with duplex.join(MEMBER) as member:
                _say("READY", duplex.address)
                await _count(lambda: member.receive(timeout=IDLE_S), spec.n)


async def _lib_produce(spec: Spec) -> None:
    transport = Transport(spec.transport)
    async with open_redis(spec.url) as redis, open_hub(redis) as hub:
        send: Callable[[], Awaitable[None]]
        sends = spec.n
        if spec.kind == "queue":
            queue = QueueChannel(transport, spec.address, hub=hub)
            send = lambda: queue.put(PAYLOAD)  # noqa: E731
        elif spec.kind == "batch":
            queue = QueueChannel(transport, spec.address, hub=hub)
            send = lambda: queue.put_many([PAYLOAD] * BATCH)  # noqa: E731
            sends = spec.n // BATCH
        elif spec.kind == "topic":
            topic = TopicChannel(transport, spec.address, hub=hub)
            send = lambda: topic.publish(TOPIC, PAYLOAD)  # noqa: E731
        else:
            duplex = DuplexChannel(transport, spec.address, hub=hub)
            send = lambda: duplex.send(MEMBER, PAYLOAD)  # noqa: E731
        _say("READY")
        await trio.to_thread.run_sync(_wait_go)
        start = time.perf_counter()
        for _ in range(sends):
            await send()
        _say("DONE", json.dumps({"seconds": time.perf_counter() - start}))
        await trio.to_thread.run_sync(_wait_bye)


async def _lib_reply(spec: Spec) -> None:
    async with open_redis(spec.url) as redis, open_hub(redis) as hub:
        service = hub.open_request(spec.name, transport=Transport(spec.transport))
        _say("READY", service.address)
        tally = _Tally()
        with contextlib.suppress(ChannelTimeout):
            while tally.count < spec.n + spec.warmup:
                request = await service.next_request(timeout=IDLE_S)
                await request.reply(request.message)
                tally.add()
        tally.report()


async def _lib_request(spec: Spec) -> None:
    async with open_redis(spec.url) as redis, open_hub(redis) as hub:
        service = RequestChannel(Transport(spec.transport), spec.address, hub=hub)
        samples: list[int] = []
        cpu = time.process_time()
        for i in range(spec.warmup + spec.n):
            if i == spec.warmup:
                cpu = time.process_time()
            start = time.perf_counter_ns()
            await service.request(PAYLOAD, timeout=IDLE_S)
            if i >= spec.warmup:
                samples.append(time.perf_counter_ns() - start)
        _percentiles(samples, time.process_time() - cpu)


async def _raw_redis_consume(spec: Spec) -> None:
    async with open_redis(spec.url) as redis:
        client, key, tally = redis.raw, spec.name, _Tally()
        block_ms = int(IDLE_S * 1000)
        if spec.kind == "topic":
            _say("READY", key)
            after: str | bytes = "0-0"  # a fresh stream: everything on it is ours
            while tally.count < spec.n:
                reply = await client.xread({key: after}, count=XREAD_COUNT, block=block_ms)
                if not reply:
                    break
                entries = next(iter(reply.values()))
                tally.add(len(entries))
                after = entries[-1].identifier
        else:
            await client.xgroup_create(key, GROUP, "0", mkstream=True)
            _say("READY", key)
            while tally.count < spec.n:
                count = BATCH if spec.kind == "batch" else 1
                reply = await client.xreadgroup(GROUP, "c", {key: ">"}, count=count, block=block_ms)
                if not reply:
                    break
                entries = next(iter(reply.values()))
                await client.xack(key, GROUP, [entry.identifier for entry in entries])
                tally.add(len(entries))
        tally.report()


async def _raw_redis_produce(spec: Spec) -> None:
    async with open_redis(spec.url) as redis:
        client, key = redis.raw, spec.address
        _say("READY")
        await trio.to_thread.run_sync(_wait_go)
        start = time.perf_counter()
        if spec.kind == "topic":
            for _ in range(spec.n):
                await client.xadd(
                    key,
                    {"m": PAYLOAD},
                    trim_strategy=PureToken.MAXLEN,
                    threshold=TOPIC_MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY,
                )
        elif spec.kind == "batch":
            for _ in range(spec.n // BATCH):
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(BATCH):
                        pipe.xadd(key, {"m": PAYLOAD})
        else:
            for _ in range(spec.n):
                await client.xadd(key, {"m": PAYLOAD})
        _say("DONE", json.dumps({"seconds": time.perf_counter() - start}))
        await trio.to_thread.run_sync(_wait_bye)


async def _raw_redis_reply(spec: Spec) -> None:
    async with open_redis(spec.url) as redis:
        client = redis.raw
        _say("READY", spec.name)
        tally = _Tally()
        while tally.count < spec.n + spec.warmup:
            popped = await client.blpop([f"{spec.name}:req"], IDLE_S)
            if popped is None:
                break
            await client.rpush(f"{spec.name}:reply", [popped[1]])
            tally.add()
        tally.report()


async def _raw_redis_request(spec: Spec) -> None:
    async with open_redis(spec.url) as redis:
        client, samples = redis.raw, []
        requests, replies = f"{spec.address}:req", f"{spec.address}:reply"
        cpu = time.process_time()
        for i in range(spec.warmup + spec.n):
            if i == spec.warmup:
                cpu = time.process_time()
            start = time.perf_counter_ns()
            await client.rpush(requests, [PAYLOAD])
            if await client.blpop([replies], IDLE_S) is None:
                raise SystemExit("raw Redis replier did not answer")
            if i >= spec.warmup:
                samples.append(time.perf_counter_ns() - start)
        _percentiles(samples, time.process_time() - cpu)


_CONSUMER_SOCKET: Final = {
    "queue": zmq.PULL,
    "batch": zmq.PULL,
    "topic": zmq.SUB,
    "duplex": zmq.ROUTER,
}
_PRODUCER_SOCKET: Final = {
    "queue": zmq.PUSH,
    "batch": zmq.PUSH,
    "topic": zmq.PUB,
    "duplex": zmq.DEALER,
}


def _raw_zmq_consume(spec: Spec) -> None:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(_CONSUMER_SOCKET[spec.kind])
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(IDLE_S * 1000))
    if spec.kind == "topic":
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    endpoint = f"ipc://{spec.name}"
    sock.bind(endpoint)
    _say("READY", endpoint)
    receive = sock.recv_multipart if spec.kind == "duplex" else sock.recv
    tally, synced = _Tally(), spec.kind != "topic"
    try:
        while tally.count < spec.n:
            message = receive()
            if message == WARM:
                if not synced:
                    _say("SYNCED")
                    synced = True
                continue
            tally.add()
    except zmq.Again:
        pass
    tally.report()
    sock.close()
    context.term()


def _stdin_has_line(timeout: float) -> bool:
    return bool(select.select([sys.stdin], [], [], timeout)[0])


def _raw_zmq_produce(spec: Spec) -> None:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(_PRODUCER_SOCKET[spec.kind])
    if spec.kind == "topic":
        sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(spec.address)
    _say("READY")
    if spec.kind == "topic":
        # PUB drops what it sends before the subscription arrives: warm up until told.
        while not _stdin_has_line(0.001):
            sock.send(WARM)
    _wait_go()
    start = time.perf_counter()
    for _ in range(spec.n):
        sock.send(PAYLOAD)
    _say("DONE", json.dumps({"seconds": time.perf_counter() - start}))
    _wait_bye()
    sock.close(linger=int(IDLE_S * 1000))
    context.term()


def _raw_zmq_reply(spec: Spec) -> None:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(IDLE_S * 1000))
    endpoint = f"ipc://{spec.name}"
    sock.bind(endpoint)
    _say("READY", endpoint)
    tally = _Tally()
    with contextlib.suppress(zmq.Again):
        while tally.count < spec.n + spec.warmup:
            sock.send(sock.recv())
            tally.add()
    tally.report()
    sock.close()
    context.term()


def _raw_zmq_request(spec: Spec) -> None:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(IDLE_S * 1000))
    sock.connect(spec.address)
    samples: list[int] = []
    cpu = time.process_time()
    for i in range(spec.warmup + spec.n):
        if i == spec.warmup:
            cpu = time.process_time()
        start = time.perf_counter_ns()
        sock.send(PAYLOAD)
        sock.recv()
        if i >= spec.warmup:
            samples.append(time.perf_counter_ns() - start)
    _percentiles(samples, time.process_time() - cpu)
    sock.close()
    context.term()


def _broker_consume(spec: Spec) -> None:
    """A blocking ROUTER broker doing the library queue's work, its consumer in-process.

    Like the library's queue (which lives in the consumer's hub): puts arrive as
    ``[b"put RID CHANNEL", *frames]``, get delivery ids and wait in a ready list; the
    broker confirms them in bulk (``okto RID`` per producer, once per drained burst); the
    consumer takes each message (into an in-flight table, with a deadline) and acks it
    (out of the table).
    """
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(IDLE_S * 1000))
    endpoint = f"ipc://{spec.name}"
    sock.bind(endpoint)
    _say("READY", endpoint)
    ready: collections.deque[tuple[bytes, bytes]] = collections.deque()
    in_flight: dict[bytes, tuple[bytes, float]] = {}
    ids = itertools.count(1)
    tally = _Tally()
    try:
        while tally.count < spec.n:
            confirm: dict[bytes, bytes] = {}
            frames = sock.recv_multipart()
            while True:
                identity, header, payload = frames
                op, request_id, _ = header.split(b" ")
                confirm[identity] = request_id
                batch = msgpack.unpackb(payload) if op == b"putm" else (payload,)
                ready.extend((b"%d" % next(ids), frame) for frame in batch)
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
            for identity, request_id in confirm.items():
                sock.send_multipart([identity, b"okto " + request_id])
            while ready:  # the consumer: take, then ack
                delivery_id, frame = ready.popleft()
                in_flight[delivery_id] = (frame, time.monotonic() + 30.0)
                del in_flight[delivery_id]
                tally.add()
    except zmq.Again:
        pass
    tally.report()
    sock.close()
    context.term()


def _broker_produce(spec: Spec) -> None:
    """A DEALER producer for :func:`_broker_consume`: puts pipelined, at most 1000 unconfirmed."""
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.connect(spec.address)
    per_message = BATCH if spec.kind == "batch" else 1
    # A batch goes as one msgpack-packed frame, as the library sends it.
    op, payload = (
        (b"putm", msgpack.packb([PAYLOAD] * BATCH)) if per_message > 1 else (b"put", PAYLOAD)
    )
    _say("READY")
    _wait_go()
    start = time.perf_counter()
    confirmed = 0
    for request_id in range(1, spec.n // per_message + 1):
        sock.send_multipart([b"%s %d q" % (op, request_id), payload])
        while True:
            try:
                confirmed = int(sock.recv(zmq.NOBLOCK if request_id - confirmed <= 1000 else 0)[5:])
            except zmq.Again:
                break
    _say("DONE", json.dumps({"seconds": time.perf_counter() - start}))
    _wait_bye()
    sock.close(linger=int(IDLE_S * 1000))
    context.term()


_ASYNC_PEERS: Final[dict[tuple[str, str], Callable[[Spec], Awaitable[None]]]] = {
    ("lib", "consume"): _lib_consume,
    ("lib", "produce"): _lib_produce,
    ("lib", "reply"): _lib_reply,
    ("lib", "request"): _lib_request,
    ("raw-redis", "consume"): _raw_redis_consume,
    ("raw-redis", "produce"): _raw_redis_produce,
    ("raw-redis", "reply"): _raw_redis_reply,
    ("raw-redis", "request"): _raw_redis_request,
}
_SYNC_PEERS: Final[dict[str, Callable[[Spec], None]]] = {
    "consume": _raw_zmq_consume,
    "produce": _raw_zmq_produce,
    "reply": _raw_zmq_reply,
    "request": _raw_zmq_request,
}


def _run_peer(spec: Spec) -> None:
    if spec.impl == "broker":
        (_broker_consume if spec.role == "consume" else _broker_produce)(spec)
        return
    if spec.impl == "raw" and spec.transport == "zmq":
        _SYNC_PEERS[spec.role](spec)
        return
    impl = "lib" if spec.impl == "lib" else "raw-redis"
    trio.run(_ASYNC_PEERS[impl, spec.role], spec)


def peer_main(encoded: str) -> None:
    """Be one side of one measurement (``--peer SPEC-JSON``)."""
    signal.alarm(PEER_LIMIT_S)  # never outlive a benchmark that lost track of us
    configure_logging("warning", "console")  # to stderr: stdout carries the protocol
    spec = Spec(**json.loads(encoded))
    if not spec.profile:
        _run_peer(spec)
        return
    profiler = cProfile.Profile()
    profiler.runcall(_run_peer, spec)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    Path(spec.profile).write_text(out.getvalue())


# --------------------------------------------------------------------------- orchestration


class PeerError(Exception):
    """A peer process failed, or did not say what it should in time."""


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the benchmark process dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Peer:
    """A running peer process, read line by line with deadlines."""

    def __init__(self, spec: Spec, log: Path) -> None:
        self.label = f"{spec.impl} {spec.transport} {spec.kind} {spec.role}"
        self._log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.channels", "--peer", json.dumps(asdict(spec))],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                bufsize=0,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._buffer = b""

    def expect(self, word: str, timeout: float) -> str:
        """Wait for the line ``WORD rest`` and return ``rest``."""
        line = self._line(time.monotonic() + timeout)
        head, _, rest = line.partition(" ")
        if head != word:
            raise PeerError(f"{self.label}: expected {word}, got {line!r}{self._log_tail()}")
        return rest

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    def finish(self, timeout: float = 15.0) -> None:
        """Wait for a clean exit; a peer that fails is an error."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise PeerError(f"{self.label}: did not exit{self._log_tail()}") from None
        if code != 0:
            raise PeerError(f"{self.label}: exit status {code}{self._log_tail()}")

    def close(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def _line(self, deadline: float) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerError(f"{self.label}: no answer in time{self._log_tail()}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.process.wait()
                    raise PeerError(
                        f"{self.label}: exited ({self.process.returncode}){self._log_tail()}"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            tail = self._log.read_text(errors="replace").strip().splitlines()[-15:]
            if tail:
                return "\n  " + "\n  ".join(tail)
        return ""


@dataclass
class Bench:
    """The shared context of one run."""

    url: str
    workdir: Path
    n: int
    requests: int
    warmup: int
    _serial: int = 0

    def name(self, impl: str, transport: str, kind: str) -> str:
        """A fresh channel name or Redis key, or an ipc socket path for raw 0MQ."""
        self._serial += 1
        if impl != "lib" and transport == "zmq":
            return str(self.workdir / f"{kind}-{self._serial}.sock")
        return f"bench:{impl}:{kind}:{self._serial}"

    @contextlib.contextmanager
    def peers(self) -> Iterator[Callable[[Spec], Peer]]:
        """Start peers with the returned function; all are killed and reaped at the end."""
        started: list[Peer] = []

        def start(spec: Spec) -> Peer:
            peer = Peer(spec, self.workdir / f"peer-{self._serial}-{len(started)}.log")
            started.append(peer)
            return peer

        try:
            yield start
        finally:
            for peer in started:
                peer.close()


@dataclass
class Flow:
    """One throughput measurement."""

    rate: float  # msgs/s at the consumer, first message to last
    lost: int
    producer_rate: float  # msgs/s the producer sent (or queued, for raw 0MQ)
    cpu_us: float  # consumer process CPU per message


def throughput(bench: Bench, impl: str, transport: str, kind: str, profile: str = "") -> Flow:
    """Run a consumer and a producer process for one (impl, transport, kind) and time it."""
    spec = Spec(
        role="consume",
        impl=impl,
        transport=transport,
        kind=kind,
        url=bench.url,
        name=bench.name(impl, transport, kind),
        n=bench.n,
        profile=profile,
    )
    with bench.peers() as start:
        consumer = start(spec)
        address = consumer.expect("READY", 30)
        producer = start(replace(spec, role="produce", address=address, profile=""))
        producer.expect("READY", 30)
        if impl == "raw" and transport == "zmq" and kind == "topic":
            consumer.expect("SYNCED", 30)
        producer.send("GO")
        done = json.loads(producer.expect("DONE", 120))
        result = json.loads(consumer.expect("RESULT", 120))
        producer.send("BYE")
        producer.finish()
        consumer.finish(30)
    count, span = result["count"], result["span"]
    return Flow(
        rate=(count - 1) / span if count > 1 and span > 0 else 0.0,
        lost=bench.n - count,
        producer_rate=bench.n / done["seconds"],
        cpu_us=result["cpu_us"],
    )


@dataclass
class RoundTrip:
    """One request/reply measurement, in microseconds."""

    p50: float
    p99: float
    mean: float
    requester_cpu_us: float  # requester process CPU per request
    replier_cpu_us: float  # replier process CPU per request


def round_trip(bench: Bench, impl: str, transport: str) -> RoundTrip:
    """Run a replier and a requester process and time the requester's requests."""
    spec = Spec(
        role="reply",
        impl=impl,
        transport=transport,
        kind="request",
        url=bench.url,
        name=bench.name(impl, transport, "request"),
        n=bench.requests,
        warmup=bench.warmup,
    )
    with bench.peers() as start:
        replier = start(spec)
        address = replier.expect("READY", 30)
        requester = start(replace(spec, role="request", address=address))
        timed = json.loads(requester.expect("RESULT", 120))
        served = json.loads(replier.expect("RESULT", 30))
        requester.finish()
        replier.finish()
    return RoundTrip(timed["p50"], timed["p99"], timed["mean"], timed["cpu_us"], served["cpu_us"])


# --------------------------------------------------------------------------- report


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


async def _server_version(url: str) -> str:
    async with open_redis(url) as redis:
        info = await redis.server_info()
    return f"{info.product} {'.'.join(map(str, info.version))} (appendfsync {info.appendfsync})"


def machine(url: str) -> str:
    """The machine lines: platform, CPU, cpus, Python, pyzmq/libzmq, the server."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"platform : {platform.platform()}",
            f"cpu      : {_cpu_model()} | nproc {usable} | loadavg {load}",
            f"python   : {platform.python_implementation()} {platform.python_version()}",
            f"zmq      : pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}",
            f"server   : {trio.run(_server_version, url)}, embedded, on {url}",
        ]
    )


_WORKLOAD: Final = {
    ("lib", "queue"): "queue.put | queue.get + delivery.ack",
    ("lib", "batch"): f"queue.put_many({BATCH}) | queue.get_many({BATCH}) + hub.ack_many",
    ("lib", "topic"): "topic.publish | subscription.receive",
    ("lib", "duplex"): "duplex.send(member) | member.receive",
    ("redis", "queue"): "coredis XADD | XREADGROUP COUNT 1 + XACK",
    ("redis", "batch"): f"coredis pipeline of {BATCH} XADD | XREADGROUP COUNT {BATCH} + XACK",
    ("redis", "topic"): "coredis XADD MAXLEN ~ | XREAD COUNT 100",
    ("redis", "duplex"): "coredis XADD | XREADGROUP COUNT 1 + XACK",
    ("zmq", "queue"): "pyzmq PUSH -> PULL, blocking: the no-semantics floor",
    ("zmq", "batch"): "pyzmq PUSH -> PULL, blocking: the no-semantics floor",
    ("zmq", "topic"): "pyzmq PUB -> SUB, blocking, HWM off",
    ("zmq", "duplex"): "pyzmq DEALER -> ROUTER, blocking",
    ("broker", "queue"): "pyzmq DEALER -> ROUTER broker, blocking: the library's work "
    "(put, okto in bulk, take + ack in the broker's process)",
    ("broker", "batch"): f"the same broker, {BATCH} puts per message (msgpack-packed)",
}
_OWNER: Final = {
    ("lib", "redis"): "valkey",
    ("lib", "zmq"): "consumer's hub",
    ("raw", "redis"): "valkey",
    ("raw", "zmq"): "consumer binds",
    ("broker", "zmq"): "consumer's broker",
}


def _flow_row(transport: str, kind: str, impl: str, flow: Flow, verdict: str) -> str:
    lost = f" LOST {flow.lost}" if flow.lost else ""
    workload = _WORKLOAD[(impl, kind) if impl in ("lib", "broker") else (transport, kind)]
    return (
        f"{transport if impl == 'lib' else '':9} {kind if impl == 'lib' else '':7} {impl:6} "
        f"{_OWNER[impl, transport]:17} {flow.rate:10,.0f} {flow.producer_rate:10,.0f} "
        f"{flow.cpu_us:8.1f}  {verdict:25} {workload}{lost}"
    )


def _baselines(transport: str, kind: str) -> tuple[str, ...]:
    """The raw rows next to one library row: 0MQ queues get the broker doing the same work."""
    if transport == "zmq" and kind in ("queue", "batch"):
        return ("raw", "broker")
    return ("raw",)


def throughput_table(bench: Bench) -> None:
    """Measure and print every throughput row, library and raw interleaved."""
    print(
        f"\nthroughput: {bench.n:,} messages of 100 bytes, producer and consumer in separate "
        "processes\n  msgs/s: at the consumer, first to last message; prod/s: the producer's "
        "send rate; cpu: consumer process CPU us per message\n  verdict: library msgs/s over "
        "that row's msgs/s; the goal is >= 0.50 against raw clients doing the same work"
    )
    print(
        f"{'transport':9} {'kind':7} {'impl':6} {'channel owner':17} {'msgs/s':>10} "
        f"{'prod/s':>10} {'cpu us':>8}  {'lib/this (goal >= 0.50)':25} workload"
    )
    row = 0
    for transport in TRANSPORTS:
        for kind in KINDS:
            impls = ("lib", *_baselines(transport, kind))
            flows: dict[str, Flow] = {}
            # Rotate who goes first, so no row always runs on a cold (or hot) machine.
            for i in range(len(impls)):
                impl = impls[(i + row) % len(impls)]
                flows[impl] = throughput(bench, impl, transport, kind)
            row += 1
            lib = flows["lib"]
            print(_flow_row(transport, kind, "lib", lib, ""))
            for impl in impls[1:]:
                base = flows[impl]
                ratio = lib.rate / base.rate if base.rate else 0.0
                slower = base.rate / lib.rate if lib.rate else float("inf")
                met = "met" if slower <= THROUGHPUT_GOAL else "MISSED"
                verdict = f"{ratio:.2f} {met} ({slower:.1f}x slower)"
                print(_flow_row(transport, kind, impl, base, verdict), flush=True)


def round_trip_table(bench: Bench) -> None:
    """Measure and print the request/reply rows."""
    print(
        f"\nrequest/reply round trip: {bench.requests:,} sequential requests of 100 bytes after "
        f"{bench.warmup} warm-up, requester and replier in separate processes\n  "
        "microseconds; cpu: process CPU us per request of the requester and of the replier"
    )
    print(
        f"{'transport':9} {'impl':4} {'p50':>7} {'p99':>7} {'mean':>7} {'req cpu':>7} "
        f"{'rep cpu':>7}  {'goal lib p50':22} workload"
    )
    workload = {
        ("lib", "zmq"): "request() | next_request() + reply(); the replier's hub owns it",
        ("lib", "redis"): "request() | next_request() + reply()",
        ("raw", "zmq"): "pyzmq REQ -> REP, blocking, ipc://",
        ("raw", "redis"): "coredis RPUSH + BLPOP own list | BLPOP + RPUSH",
    }
    for transport in ("zmq", "redis"):
        results = {impl: round_trip(bench, impl, transport) for impl in ("lib", "raw")}
        goal = RTT_GOAL_US[transport]
        for impl, rtt in results.items():
            verdict = ""
            if impl == "lib":
                met = "met" if rtt.p50 < goal else "MISSED"
                times = rtt.p50 / results["raw"].p50
                verdict = f"< {goal:.0f} {met} ({times:.1f}x raw)"
            print(
                f"{transport if impl == 'lib' else '':9} {impl:4} {rtt.p50:7.0f} {rtt.p99:7.0f} "
                f"{rtt.mean:7.0f} {rtt.requester_cpu_us:7.0f} {rtt.replier_cpu_us:7.0f}  "
                f"{verdict:22} {workload[impl, transport]}",
                flush=True,
            )


def profile_case(bench: Bench, case: str) -> None:
    """Run one library throughput case with the consumer under cProfile; print its costs."""
    transport, _, kind = case.partition("-")
    if transport not in TRANSPORTS or kind not in KINDS:
        raise SystemExit(f"--profile wants TRANSPORT-KIND, e.g. redis-queue, not {case!r}")
    stats = bench.workdir / "consumer.prof.txt"
    flow = throughput(bench, "lib", transport, kind, profile=str(stats))
    print(
        f"\nprofiled lib {case}: {flow.rate:,.0f} msgs/s at the consumer (under cProfile), "
        f"{flow.cpu_us:.0f} us CPU per message"
    )
    print(stats.read_text())


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind through every finally: peers and Valkey stop


def main() -> None:
    """Run the benchmark (or, with ``--peer``, one side of one measurement)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, help="messages per throughput run (default 20,000)")
    parser.add_argument("--requests", type=int, help="timed requests (default 2,000)")
    parser.add_argument("--quick", action="store_true", help="n = 2,000 and 300 requests")
    parser.add_argument("--profile", metavar="TRANSPORT-KIND", help="profile one consumer")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args.peer)
        return
    n = args.n or (2_000 if args.quick else 20_000)
    requests = args.requests or (300 if args.quick else 2_000)
    signal.signal(signal.SIGTERM, _terminate)
    configure_logging("warning", "console")
    began = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="abaco-bench-") as tmp,
            EmbeddedValkey(Path(tmp) / "valkey", appendfsync="everysec") as server,
        ):
            bench = Bench(server.url, Path(tmp), n, requests, WARMUP)
            print(machine(server.url), flush=True)
            if args.profile:
                profile_case(bench, args.profile)
                return
            throughput_table(bench)
            round_trip_table(bench)
    except PeerError as exc:  # peers and Valkey are stopped by now
        print(f"benchmark failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"\ntotal {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
