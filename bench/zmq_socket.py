"""ZmqSocket under trio against raw blocking pyzmq, between two processes.

For each transport (``ipc://`` in a temporary directory, ``tcp://127.0.0.1``) and each
implementation, the benchmark process binds a DEALER and starts a peer process (this file
with ``--peer``) that connects a DEALER with the SAME implementation:

* ``raw``: plain pyzmq, blocking calls in a sync loop (the floor);
* ``trio``: abaco's ZmqSocket, ``await send_multipart`` / ``await recv_multipart`` in
  ``trio.run``; each call is a full trio checkpoint (it yields to the scheduler once);
* ``trio-nowait``: the same sockets, but the burst is sent with ``send_multipart_nowait``
  (awaiting ``send_multipart`` only when it raises WouldBlock) and received by draining
  ``recv_multipart_nowait`` after each awaited ``recv_multipart``: the batching a caller
  can do with the non-blocking twins. Its ping-pong is the same code as ``trio``'s.

Workloads, 100-byte single-frame messages:

1. ping-pong: the benchmark process sends a ping, the peer echoes it; round-trip time per
   ping (after a warm-up), p50 and p99 in microseconds;
2. one-way throughput: the peer sends a burst of messages as fast as it can (back-pressure
   by the default high-water mark of 1000), the benchmark process receives them; msgs/s
   from the first message received to the last.

Each (transport, implementation) runs ``--rounds`` times in alternating order, so the
machine's load hits both alike; latencies pool the rounds, throughput is the median round
(slowest and fastest in the notes). With two cpus or more, the benchmark process and the
peer are pinned to one cpu each (``--no-pin`` to not). The box may be shared: compare
within one run.

Run::

    .venv/bin/python bench/zmq_socket.py             # about 25 s
    .venv/bin/python bench/zmq_socket.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio
import zmq

from abaco._transports._zmqsocket import open_zmq_socket

if TYPE_CHECKING:
    from collections.abc import Iterator

PAYLOAD: Final = b"p" * 100
WARMUP: Final = 500
DONE: Final = b"done"
IMPLS: Final = ("raw", "trio", "trio-nowait")
PEER_CPU: list[int] = []  # the cpu the peer process is pinned to, if any
PEER_TIMEOUT: Final = 30.0  # seconds; a peer whose partner vanished gives up after this


# --------------------------------------------------------------------------- the peer


def peer_raw(endpoint: str, pings: int, burst: int) -> None:
    """Echo ``pings`` messages, send ``burst`` messages, wait for DONE: blocking pyzmq."""
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(PEER_TIMEOUT * 1000))
        sock.setsockopt(zmq.SNDTIMEO, int(PEER_TIMEOUT * 1000))
        sock.connect(endpoint)
        for _ in range(pings):
            sock.send_multipart(sock.recv_multipart())
        frames = [PAYLOAD]
        for _ in range(burst):
            sock.send_multipart(frames)
        assert sock.recv_multipart() == [DONE]


async def peer_trio(endpoint: str, pings: int, burst: int, nowait: bool) -> None:
    """The same as `peer_raw`, with ZmqSocket under trio."""
    with zmq.Context() as ctx, open_zmq_socket(ctx, zmq.DEALER) as sock:
        sock.connect(endpoint)
        with trio.fail_after(PEER_TIMEOUT):
            for _ in range(pings):
                await sock.send_multipart(await sock.recv_multipart())
            frames = [PAYLOAD]
            for _ in range(burst):
                if nowait:
                    try:
                        sock.send_multipart_nowait(frames)
                        continue
                    except trio.WouldBlock:
                        pass
                await sock.send_multipart(frames)
            assert await sock.recv_multipart() == [DONE]


# --------------------------------------------------------------------------- this side


def bench_raw(sock: zmq.Socket[bytes], pings: int, burst: int) -> tuple[list[float], float]:
    """Round-trip times (us) after the warm-up, and the burst's msgs/s: blocking pyzmq."""
    rtts: list[float] = []
    frames = [PAYLOAD]
    for i in range(pings):
        start = time.perf_counter_ns()
        sock.send_multipart(frames)
        sock.recv_multipart()
        if i >= WARMUP:
            rtts.append((time.perf_counter_ns() - start) / 1000)
    sock.recv_multipart()
    start = time.perf_counter_ns()
    for _ in range(burst - 1):
        sock.recv_multipart()
    rate = (burst - 1) / ((time.perf_counter_ns() - start) / 1e9)
    sock.send_multipart([DONE])
    return rtts, rate


async def bench_trio(
    endpoint: str, pings: int, burst: int, nowait: bool
) -> tuple[list[float], float]:
    """The same as `bench_raw`, with ZmqSocket under trio; starts its own peer."""
    impl = "trio-nowait" if nowait else "trio"
    with zmq.Context() as ctx, open_zmq_socket(ctx, zmq.DEALER) as sock:
        with peer_process(impl, sock.bind(endpoint), pings, burst), trio.fail_after(PEER_TIMEOUT):
            rtts: list[float] = []
            frames = [PAYLOAD]
            for i in range(pings):
                start = time.perf_counter_ns()
                await sock.send_multipart(frames)
                await sock.recv_multipart()
                if i >= WARMUP:
                    rtts.append((time.perf_counter_ns() - start) / 1000)
            await sock.recv_multipart()
            start = time.perf_counter_ns()
            left = burst - 1
            while left:
                await sock.recv_multipart()
                left -= 1
                while nowait and left:
                    try:
                        sock.recv_multipart_nowait()
                    except trio.WouldBlock:
                        break
                    left -= 1
            rate = (burst - 1) / ((time.perf_counter_ns() - start) / 1e9)
            await sock.send_multipart([DONE])
        return rtts, rate


def run_raw(endpoint: str, pings: int, burst: int) -> tuple[list[float], float]:
    """Bind a blocking pyzmq DEALER, start a raw peer, run the workloads."""
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(PEER_TIMEOUT * 1000))  # if the peer never comes
        sock.bind(endpoint)
        with peer_process("raw", sock.getsockopt_string(zmq.LAST_ENDPOINT), pings, burst):
            return bench_raw(sock, pings, burst)


@contextlib.contextmanager
def peer_process(impl: str, endpoint: str, pings: int, burst: int) -> Iterator[None]:
    """Run this file as the ``impl`` peer connecting to ``endpoint``; it never outlives us.

    Killed at once if the body fails; otherwise waited for (it exits after DONE), and
    killed if it does not exit in time.
    """
    argv = [sys.executable, __file__, "--peer", impl, endpoint, str(pings), str(burst)]
    if PEER_CPU:
        argv += ["--cpu", str(PEER_CPU[0])]
    peer = subprocess.Popen(argv)
    try:
        yield
        code = peer.wait(timeout=PEER_TIMEOUT + 5)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    if code != 0:
        raise RuntimeError(f"the {impl} peer failed with exit code {code}")


# --------------------------------------------------------------------------- report


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> list[str]:
    """Lines describing this machine and the library versions."""
    return [
        f"platform : {platform.platform()}",
        f"cpu      : {cpu_model()}",
        f"nproc    : {len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        f"python   : {platform.python_implementation()} {platform.python_version()}",
        f"pyzmq    : {zmq.__version__}, libzmq {zmq.zmq_version()}, trio {trio.__version__}",
    ]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    """Run every (transport, implementation) pair ``--rounds`` times and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=5_000, help="round trips per round")
    parser.add_argument("--burst", type=int, default=100_000, help="messages per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, 2000 pings, 20000 msgs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the two processes")
    parser.add_argument("--peer", nargs=4, metavar=("IMPL", "ENDPOINT", "PINGS", "BURST"))
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.peer:
        impl, endpoint, pings, burst = args.peer
        if impl == "raw":
            peer_raw(endpoint, int(pings), int(burst))
        else:
            trio.run(peer_trio, endpoint, int(pings), int(burst), impl == "trio-nowait")
        return
    if args.quick:
        args.rounds, args.pings, args.burst = 1, 2_000, 20_000
    pings = args.pings + WARMUP
    print("\n".join(machine()))
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and not args.no_pin:
        # One cpu per process (each with its zmq io thread): the scheduler's placement of
        # four busy threads on few cpus otherwise swings latencies by 2x from run to run.
        os.sched_setaffinity(0, {cpus[0]})
        PEER_CPU.append(cpus[1])
    pinned = f"bench on cpu {cpus[0]}, peer on cpu {PEER_CPU[0]}" if PEER_CPU else "no"
    print(f"pinning  : {pinned}")
    print(f"workload : {args.pings} round trips (+{WARMUP} warm-up), bursts of {args.burst}")
    print(f"           messages of {len(PAYLOAD)} bytes, {args.rounds} rounds; both ends alike")
    print()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="abaco-zmq-") as tmp:
        endpoints = {"ipc": f"ipc://{tmp}/bench", "tcp": "tcp://127.0.0.1:*"}
        rtts: dict[tuple[str, str], list[float]] = {}
        rates: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for transport, endpoint in endpoints.items():
                for impl in IMPLS if round_ % 2 == 0 else IMPLS[::-1]:
                    if impl == "raw":
                        times, rate = run_raw(endpoint, pings, args.burst)
                    else:
                        nowait = impl == "trio-nowait"
                        times, rate = trio.run(bench_trio, endpoint, pings, args.burst, nowait)
                    rtts.setdefault((transport, impl), []).extend(times)
                    rates.setdefault((transport, impl), []).append(rate)
    header = f"{'transport':<9} {'impl':<11} {'rtt p50 us':>10} {'rtt p99 us':>10} "
    header += f"{'msgs/s':>9} {'x raw':>6}  notes (msgs/s slowest..fastest round)"
    print(header)
    print("-" * len(header))
    for transport in endpoints:
        raw_rate = statistics.median(rates[transport, "raw"])
        for impl in IMPLS:
            times, rate = rtts[transport, impl], statistics.median(rates[transport, impl])
            print(
                f"{transport:<9} {impl:<11} {percentile(times, 0.5):>10.1f} "
                f"{percentile(times, 0.99):>10.1f} {rate:>9,.0f} {rate / raw_rate:>6.2f}  "
                f"{min(rates[transport, impl]):,.0f}..{max(rates[transport, impl]):,.0f}"
            )
    print(f"\n({time.monotonic() - began:.1f} s)")


if __name__ == "__main__":
    main()
