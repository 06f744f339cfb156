"""The RQ and Celery sides of ``bench/e2e.py``: the same two workloads on a Redis broker.

Each system gets its own database on the shared server, and its workers run as child
processes started here and stopped here:

* **RQ**: two ``rq`` workers (the stock :class:`rq.Worker`, which forks a work horse per
  job) on one queue, the job :func:`noop`;
* **Celery**: one worker with a prefork pool of two processes, the task ``abaco_bench.noop``
  (the same :func:`noop`), Redis as broker and result backend.

Both worker kinds are started through this module (``python -m bench._e2e_baselines
rq-worker|celery-worker URL``) rather than their stock commands, so that the job's module
is imported once in the worker, as RQ's and Celery's docs advise for speed, and as abaco's
zygote does for an actor, instead of once per job in RQ's work horses.

Throughput: ``messages`` jobs sent with ``concurrency`` threads, timed from the first send
until every job has finished (RQ: its finished-job registry counts them all; Celery: each
result is fetched). Latency: one job sent and its result awaited (RQ: ``latest_result``
with a timeout, Celery: ``delay().get()``), ``sync`` times in a row; each round trip is a
sample.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_ROOT = Path(__file__).resolve().parent.parent
_QUEUE = "abaco-bench"
_TASK = "abaco_bench.noop"
# Seconds a worker gets to stop by itself (SIGTERM: warm shutdown) before SIGKILL.
_STOP_TIMEOUT = 10.0
_POLL = 0.005


class BaselineFailed(RuntimeError):
    """A baseline system did not do what the benchmark asked of it."""


def noop(message: str) -> None:
    """The trivial job: takes the message and does nothing with it."""


@attrs.frozen
class Figures:
    """One system's results: throughput run and synchronous round trips."""

    #: Jobs in the throughput run, and its wall time from first send to last finish.
    messages: int
    seconds: float
    #: Of that time, until the last send was answered (the rest is the workers' backlog).
    send_seconds: float
    #: Seconds of each synchronous round trip.
    latencies: list[float]

    @property
    def rate(self) -> float:
        """Messages per second of the throughput run."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


# -- workers, as child processes -----------------------------------------------------------


def _worker_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{_ROOT}{os.pathsep}{path}" if path else str(_ROOT)}


@contextlib.contextmanager
def _children(argvs: list[list[str]], log: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run each argv as a child in a session of its own; stop them all (and theirs) after."""
    processes: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as output:
        try:
            # One by one (list.extend consumes the generator as it goes): if a start
            # fails, the ones started before it are in the list, and stopped below.
            processes.extend(
                subprocess.Popen(
                    argv,
                    cwd=_ROOT,
                    env=_worker_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for argv in argvs
            )
            yield processes
        finally:
            _stop(processes)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (both systems then finish their current job), wait, then SIGKILL each group."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        # Each child leads its own group (start_new_session): this reaches its pool
        # processes or work horse too, and nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _check_alive(processes: list[subprocess.Popen[bytes]], log: Path) -> None:
    for process in processes:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BaselineFailed(f"worker {process.args!r} exited {process.returncode}:\n{tail}")


def _this_module(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench._e2e_baselines", *args]


# -- the workloads, common to both systems -------------------------------------------------


def _send_all(send: Callable[[int], Any], messages: int, concurrency: int) -> list[Any]:
    """``send(i)`` for each message, ``concurrency`` at a time; the handles, in order."""
    if concurrency <= 1:
        return [send(i) for i in range(messages)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(send, range(messages)))


def _round_trips(round_trip: Callable[[int], None], sync: int) -> list[float]:
    latencies = []
    for number in range(sync):
        began = time.perf_counter()
        round_trip(number)
        latencies.append(time.perf_counter() - began)
    return latencies


# -- RQ ------------------------------------------------------------------------------------


def run_rq(
    url: str, *, messages: int, sync: int, concurrency: int, workers: int, log: Path
) -> Figures:
    """RQ: ``workers`` worker processes on ``url``; the throughput run, then the round trips."""
    from redis import Redis
    from rq import Queue, Worker

    connection = Redis.from_url(url)
    connection.flushdb()
    queue = Queue(_QUEUE, connection=connection)
    argvs = [_this_module("rq-worker", url) for _ in range(workers)]
    with _children(argvs, log) as processes:
        deadline = time.monotonic() + 60
        while Worker.count(queue=queue) < workers:
            _check_alive(processes, log)
            if time.monotonic() > deadline:
                raise BaselineFailed(f"RQ: {workers} workers did not register within 60 s")
            time.sleep(0.05)
        for number in range(workers):
            job = queue.enqueue(noop, f"warm-up {number}")
            if job.latest_result(timeout=60) is None:
                _check_alive(processes, log)
                raise BaselineFailed("RQ: no worker ran the warm-up job within 60 s")
        finished = queue.finished_job_registry
        failed = queue.failed_job_registry
        before = finished.count

        start = time.perf_counter()
        _send_all(lambda i: queue.enqueue(noop, f"message {i}"), messages, concurrency)
        sent = time.perf_counter() - start
        while finished.count - before < messages:
            if failed.count:
                raise BaselineFailed(f"RQ: {failed.count} jobs failed")
            _check_alive(processes, log)
            time.sleep(_POLL)
        seconds = time.perf_counter() - start

        def round_trip(number: int) -> None:
            job = queue.enqueue(noop, f"sync {number}")
            result = job.latest_result(timeout=60)
            if result is None or result.type != result.Type.SUCCESSFUL:
                raise BaselineFailed(f"RQ: job {job.id} ended {job.get_status()}: {result}")

        latencies = _round_trips(round_trip, sync)
    return Figures(messages, seconds, sent, latencies)


def _rq_worker(url: str) -> None:
    from redis import Redis
    from rq import Queue, Worker

    # As the job's module, imported before the worker forks: work horses find it loaded.
    importlib.import_module(__spec__.name if __spec__ else __name__)
    connection = Redis.from_url(url)
    worker = Worker([Queue(_QUEUE, connection=connection)], connection=connection)
    worker.work(logging_level="WARNING")


# -- Celery --------------------------------------------------------------------------------


def _celery_app(url: str) -> Any:
    from celery import Celery  # type: ignore[import-untyped]

    app = Celery("abaco_bench", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # The same message (a str) as RQ's and abaco's; JSON is Celery's default anyway.
        task_serializer="json",
        result_serializer="json",
    )
    app.task(name=_TASK)(noop)
    return app


def run_celery(url: str, *, messages: int, sync: int, concurrency: int, log: Path) -> Figures:
    """Celery: one prefork worker of ``concurrency`` 2 on ``url``; the same two workloads."""
    from redis import Redis

    Redis.from_url(url).flushdb()
    # Celery subscribes to a task's result as it sends the task, on the app's one pub/sub
    # connection, which is not thread-safe: each sending thread gets an app of its own.
    local = threading.local()
    apps: list[Any] = []

    def task() -> Any:
        if not hasattr(local, "app"):
            local.app = _celery_app(url)
            apps.append(local.app)
        return local.app.tasks[_TASK]

    try:
        with _children([_this_module("celery-worker", url)], log) as processes:
            try:
                task().delay("warm-up").get(timeout=60)
            except Exception as exc:
                _check_alive(processes, log)
                raise BaselineFailed(f"Celery: the warm-up task did not finish: {exc!r}") from exc

            start = time.perf_counter()
            results = _send_all(lambda i: task().delay(f"message {i}"), messages, concurrency)
            sent = time.perf_counter() - start
            for result in results:
                result.get(timeout=600)
            seconds = time.perf_counter() - start

            def round_trip(number: int) -> None:
                task().delay(f"sync {number}").get(timeout=60)

            latencies = _round_trips(round_trip, sync)
    finally:
        for app in apps:
            app.close()
    return Figures(messages, seconds, sent, latencies)


def _celery_worker(url: str) -> None:
    app = _celery_app(url)
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            # Cluster chatter that a single worker has no use for; it slows the start only.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def main() -> None:
    """Run one worker: ``rq-worker URL`` or ``celery-worker URL``."""
    parser = argparse.ArgumentParser(description="A worker of an e2e baseline.")
    parser.add_argument("kind", choices=["rq-worker", "celery-worker"])
    parser.add_argument("url")
    args = parser.parse_args()
    if args.kind == "rq-worker":
        _rq_worker(args.url)
    else:
        _celery_worker(args.url)


if __name__ == "__main__":
    main()
