"""End to end: the abaco platform through its HTTP API, next to RQ and Celery, in one run.

One embedded Valkey serves all three systems, each on a database of its own (abaco 1,
RQ 2, Celery 3). Each runs the same two workloads on a trivial Python function and two
workers:

* **throughput**: ``--messages`` messages (2,000), sent ``--concurrency`` (32) at a time,
  timed from the first send until every one has finished; messages/s is the count over
  that time (the table also shows how fast the sends alone were answered: when that is
  close to the throughput, the front door, not the workers, set the pace);
* **latency**: ``--sync`` (300) messages one after the other, each sent and its answer
  awaited; p50/p95/p99 of those round trips.

abaco runs as its users run it: ``abaco up`` as a child process (api, scheduler, health,
spawner, persistence and janitor, each a process of its own) on the shared Valkey, driven
only over HTTP with httpx. The bench pushes a bundle whose handler does nothing, registers
an actor on it (``max_workers`` 2, so that the autoscaler does not add more), asks for two
workers and waits until both are READY. Throughput: ``POST /actors/ID/messages``; the run
ends when the mailbox is empty (``GET /actors/ID/messages``: a worker acknowledges a
message only after its execution is COMPLETE or ERROR), which ``GET /actors/ID/executions``
then confirms for every execution sent (the summary reads every record, so polling it
alone would load the two cores the workers need). Latency: ``POST
/actors/ID/messages?_abaco_synchronous=true``, answered with the execution's logs. The
platform then stops on SIGINT. Settings the bench changes from the defaults: the per-user
request rate (the burst would get 429s) and the drain deadlines (a quicker stop).

Two more rows measure abaco alone, on a platform of their own (``--rows``):

* **nonce**: ``--nonce-messages`` (1,000) ``POST /actors/ID/messages`` sent
  ``--concurrency`` at a time, first with the bearer token, then authenticated by
  ``?x-nonce=ID`` alone (an unlimited EXECUTE nonce: each request spends one use, a write);
  requests/s and p50/p99 of the POST;
* **search**: 10,000 execution records (``--search-records``) written straight through
  the stores (a search reads records, however they were made), then ``--searches`` (50)
  timed ``GET /actors/search/executions`` for each of three queries: an equality with a
  limit, a ``.like`` and a ``.between`` on a time; p50/p99.

RQ and Celery (:mod:`bench._e2e_baselines`): two RQ worker processes; one Celery worker
with a prefork pool of two. Every system first runs one warm-up message per worker, not
counted. The box has two cores and may be shared: compare within one run. The goals are
printed last, each with this run's figure and met or MISSED: throughput above RQ's, and a
synchronous p50 under 20 ms.

Run::

    .venv/bin/python bench/e2e.py                         # 2,000 + 300 on all three
    .venv/bin/python bench/e2e.py --quick                 # seconds: a smoke test
    .venv/bin/python bench/e2e.py --only abaco --messages 500
    .venv/bin/python bench/e2e.py --rows nonce,search     # only the nonce and search rows
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abaco.actors.ids import new_id
from abaco.actors.models import Execution
from abaco.actors.sandbox import find_bwrap
from abaco.actors.states import ExecutionStatus
from abaco.bundles import ArchiveLimits, build_bundle, inspect_archive
from abaco.config import load_settings
from abaco.logconfig import configure_logging
from abaco.redis_client import open_configured_redis
from abaco.stores import Stores
from abaco.valkey import EmbeddedValkey
from bench._e2e_baselines import BaselineFailed, Figures, run_celery, run_rq
from bench._machine import machine

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from abaco.valkey import AppendFsync

SYSTEMS = ("abaco", "rq", "celery")
#: The table of the three systems, and abaco's own rows.
ROWS = ("table", "nonce", "search")
#: The issue's goal for synchronous messages (the other: throughput above RQ's).
SYNC_P50_GOAL_MS = 20.0
Result = TypeVar("Result")

_DATABASES = {"abaco": 1, "rq": 2, "celery": 3, "abaco-rows": 4}
_WORKERS = 2
_HANDLER = "def handle(message):\n    pass\n"
_MANIFEST = {
    "spec": "abaco.bundle/v1",
    "name": "abaco.bench/noop",
    "version": "1.0.0",
    "runtime": {"type": "python", "entry_point": "noop:handle"},
}
# Seconds allowed for the platform to come up, an actor or its workers to get READY.
_SETUP_TIMEOUT = 120.0
# Seconds `abaco up` gets to stop after SIGINT (its drain deadlines are set to 5 s).
_STOP_TIMEOUT = 60.0
_POLL = 0.01
# Seconds the processes of a stopped platform get to be gone before they count as left.
_LEFTOVER_GRACE = 3.0


class BenchFailed(RuntimeError):
    """The platform did not do what the benchmark asked of it; says which step and why."""


# -- the platform, as a child process ------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _platform_env(state: Path, redis_url: str, db: int, port: int, token: str) -> dict[str, str]:
    # Nothing of the caller's abaco configuration: the run is the defaults plus these.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABACO")}
    root = str(Path(__file__).resolve().parent.parent)
    path = env.get("PYTHONPATH")
    env.update(
        {
            "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root,
            "ABACO__STATE__DIR": str(state),
            "ABACO__REDIS__URL": redis_url,
            "ABACO__REDIS__DB": str(db),
            "ABACO__API__PORT": str(port),
            "ABACO__AUTH__ADMIN_TOKEN": token,
            # One client sending thousands of messages is the workload, not abuse.
            "ABACO__API__REQUESTS_PER_SECOND": "1000000",
            # Only the stop at the end waits on these.
            "ABACO__SPAWNER__DRAIN_DEADLINE": "5",
            "ABACO__WORKER__STOP_DEADLINE": "5",
        }
    )
    return env


def _process_table() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, start time), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone already
        # After the command name, which may hold spaces and parentheses: state, ppid, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """The processes under ``root`` now: pid -> start time (which tells a reused pid)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][1]
            todo.append(child)
    return found


def _marked(state: Path) -> dict[int, str]:
    """Processes with our state dir in their environment (the platform's): pid -> start."""
    marker = f"ABACO__STATE__DIR={state}".encode()
    table = _process_table()
    found = {}
    for pid, (_, start) in table.items():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found[pid] = start
    return found


def _still_running(started: dict[int, str]) -> list[int]:
    table = _process_table()
    return sorted(pid for pid, start in started.items() if table.get(pid, (0, ""))[1] == start)


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def _kill_leftovers(started: dict[int, str]) -> None:
    """SIGKILL those of ``started`` (pid -> start time) still running after a short grace."""
    deadline = time.monotonic() + _LEFTOVER_GRACE
    left = _still_running(started)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _still_running(started)
    for pid in left:
        print(f"left behind by abaco up, killed: {pid} {_command_line(pid)}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _abaco_up(env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``abaco up`` as a child; stopped with SIGINT, then made sure nothing of it is left."""
    state = Path(env["ABACO__STATE__DIR"])
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "abaco", "up"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            # Components and workers have process groups of their own, so the group of
            # abaco up is not all of it: what ran under it, and what carries our state dir.
            started = {**_descendants(process.pid), **_marked(state)}
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"abaco up did not stop within {_STOP_TIMEOUT:.0f} s: killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            _kill_leftovers({**started, **_marked(state)})


# -- talking to the API --------------------------------------------------------------------


def _result(response: httpx.Response, step: str) -> Any:
    """The ``result`` of an Abaco envelope; BenchFailed with the API's message otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    if response.status_code >= 400 or body.get("status") != "success":
        raise BenchFailed(f"{step}: the API answered {response.status_code}: {body.get('message')}")
    return body.get("result")


async def _until(
    step: str, timeout: float, check: Callable[[], Awaitable[Any]], interval: float = 0.1
) -> Any:
    """Call ``check`` until it returns something other than None, for ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = await check()
            if value is not None:
                return value
            await trio.sleep(interval)
    raise BenchFailed(f"{step}: not done after {timeout:.0f} s")


async def _wait_healthy(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    async def check() -> bool | None:
        if process.poll() is not None:
            raise BenchFailed(f"abaco up exited with status {process.returncode}")
        try:
            response = await http.get("/healthz")
        except httpx.TransportError:
            return None  # not listening yet
        return True if response.status_code == 200 else None

    await _until("waiting for GET /healthz", _SETUP_TIMEOUT, check)


async def _push_bundle(http: httpx.AsyncClient, scratch: Path) -> str:
    source = scratch / "bundle-src"
    source.mkdir()
    (source / "noop.py").write_text(_HANDLER)
    (source / "Manifest.json").write_text(json.dumps(_MANIFEST))
    dist = scratch / "dist"
    dist.mkdir()
    path = build_bundle(source, dist)
    bundle = inspect_archive(path, limits=ArchiveLimits()).bundle_id
    data = path.read_bytes()
    response = await http.put(
        f"/bundles/{bundle.group}/{bundle.id}/{bundle.version}",
        content=data,
        headers={"Bundle-Sha256": hashlib.sha256(data).hexdigest()},
    )
    _result(response, "pushing the bundle")
    return str(bundle)


async def _ready_actor(http: httpx.AsyncClient, image: str) -> str:
    """An actor on ``image`` with two READY workers."""
    body = {"image": image, "name": "bench-noop", "max_workers": _WORKERS}
    actor_id = str(_result(await http.post("/actors", json=body), "registering the actor")["id"])

    async def actor_ready() -> bool | None:
        actor = _result(await http.get(f"/actors/{actor_id}"), "reading the actor")
        if actor["status"] == "ERROR":
            raise BenchFailed(f"the actor went to ERROR: {actor.get('status_message', '')}")
        return True if actor["status"] == "READY" else None

    await _until("waiting for the actor to be READY", _SETUP_TIMEOUT, actor_ready)
    asked = await http.post(f"/actors/{actor_id}/workers", json={"num": _WORKERS})
    _result(asked, "asking for workers")

    async def workers_ready() -> bool | None:
        workers = _result(await http.get(f"/actors/{actor_id}/workers"), "reading workers")
        ready = [w for w in workers if w["status"] == "READY"]
        return True if len(ready) >= _WORKERS else None

    await _until(f"waiting for {_WORKERS} READY workers", _SETUP_TIMEOUT, workers_ready)
    return actor_id


async def _send(http: httpx.AsyncClient, actor_id: str, text: str) -> str:
    sent = await http.post(f"/actors/{actor_id}/messages", json={"message": text})
    return str(_result(sent, f"sending {text!r}")["execution_id"])


async def _send_all(
    http: httpx.AsyncClient, actor_id: str, messages: int, concurrency: int
) -> list[str]:
    """Send ``messages`` messages, ``concurrency`` requests in flight; the execution ids.

    The first request that fails stops the run: BenchFailed says which, and when.
    """
    ids: list[str] = []
    numbers = iter(range(messages))
    start = time.perf_counter()
    failures: list[str] = []

    async def sender(nursery: trio.Nursery) -> None:
        # ``numbers`` is shared: each number is taken by one sender.
        for number in numbers:
            try:
                ids.append(await _send(http, actor_id, f"message {number}"))
            except (httpx.HTTPError, BenchFailed) as exc:
                failures.append(f"message {number}: {exc!r}")
                nursery.cancel_scope.cancel()
                return

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(sender, nursery)
    if failures:
        raise BenchFailed(
            f"a send failed {time.perf_counter() - start:.1f} s into the run, after "
            f"{len(ids)} had been answered: {failures[0]}"
        )
    return ids


async def _summaries(http: httpx.AsyncClient, actor_id: str) -> dict[str, dict[str, Any]]:
    """Every execution of the actor as the executions list shows it, page by page."""
    found: dict[str, dict[str, Any]] = {}
    offset, limit = 0, 1000
    while True:
        page = _result(
            await http.get(
                f"/actors/{actor_id}/executions", params={"limit": limit, "offset": offset}
            ),
            "listing executions",
        )
        found.update((e["id"], e) for e in page["executions"])
        offset += limit
        if offset >= page["total_executions"]:
            return found


def _median_run_ms(summaries: dict[str, dict[str, Any]], ids: list[str]) -> float:
    """The median time from start to finish that the records of ``ids`` show, in ms."""
    spans = sorted(
        (
            datetime.fromisoformat(summaries[i]["finish_time"])
            - datetime.fromisoformat(summaries[i]["start_time"])
        ).total_seconds()
        for i in ids
        if summaries.get(i, {}).get("start_time") and summaries[i].get("finish_time")
    )
    return _percentile(spans, 0.5) if spans else math.nan


async def _until_complete(
    http: httpx.AsyncClient, actor_id: str, ids: list[str], timeout: float
) -> float:
    """Wait until every execution in ``ids`` is COMPLETE; when, on ``perf_counter``."""

    async def mailbox_empty() -> float | None:
        count = _result(await http.get(f"/actors/{actor_id}/messages"), "counting messages")
        return time.perf_counter() if count["messages"] == 0 else None

    emptied: float = await _until("waiting for the mailbox", timeout, mailbox_empty, _POLL)

    async def all_complete() -> float | None:
        checked = time.perf_counter()
        summaries = await _summaries(http, actor_id)
        states = [summaries[i]["status"] if i in summaries else "MISSING" for i in ids]
        failed = [s for s in states if s in ("ERROR", "ABORTED", "MISSING")]
        if failed:
            raise BenchFailed(f"{len(failed)} executions did not complete: {sorted(set(failed))}")
        return checked if all(s == "COMPLETE" for s in states) else None

    # A worker acknowledges a message after its execution's record says COMPLETE: so when
    # the first look confirms it, everything was COMPLETE when the mailbox emptied.
    if await all_complete() is not None:
        return emptied
    # Otherwise the platform broke that order, and the time it took to show is counted.
    checked: float = await _until("waiting for COMPLETE executions", timeout, all_complete)
    print(f"abaco: the mailbox was empty {checked - emptied:.2f} s before all were COMPLETE")
    return checked


async def _round_trip(http: httpx.AsyncClient, actor_id: str, text: str) -> None:
    answer = await http.post(
        f"/actors/{actor_id}/messages",
        params={"_abaco_synchronous": "true"},
        json={"message": text},
    )
    if answer.status_code != 200:
        _result(answer, f"synchronous message {text!r}")
        raise BenchFailed(f"synchronous message {text!r}: answered {answer.status_code}")


@contextlib.asynccontextmanager
async def _warm_actor(
    url: str, token: str, process: subprocess.Popen[bytes], scratch: Path, options: Options
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the platform and an actor whose workers have each run one message."""
    limits = httpx.Limits(max_connections=options.concurrency + 4)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=options.timeout,
        limits=limits,
    ) as http:
        await _wait_healthy(http, process)
        image = await _push_bundle(http, scratch)
        actor_id = await _ready_actor(http, image)
        for number in range(_WORKERS):
            await _round_trip(http, actor_id, f"warm-up {number}")
        yield http, actor_id


async def _abaco_workloads(
    url: str,
    token: str,
    env: dict[str, str],
    process: subprocess.Popen[bytes],
    scratch: Path,
    options: Options,
) -> Figures:
    async with _warm_actor(url, token, process, scratch, options) as (http, actor_id):
        start = time.perf_counter()
        ids = await _send_all(http, actor_id, options.messages, options.concurrency)
        sent = time.perf_counter() - start
        end = await _until_complete(http, actor_id, ids, options.timeout)
        seconds = end - start
        run_ms = _median_run_ms(await _summaries(http, actor_id), ids)
        print(
            f"abaco: the executions' records span a median {run_ms:.1f} ms from start to "
            f"finish; each worker finished one every {seconds * _WORKERS / len(ids) * 1000:.1f}"
            " ms",
            flush=True,
        )

        latencies = []
        for number in range(options.sync):
            began = time.perf_counter()
            await _round_trip(http, actor_id, f"sync {number}")
            latencies.append(time.perf_counter() - began)
    return Figures(options.messages, seconds, sent, latencies)


def _on_platform(
    name: str,
    workload: Callable[..., Awaitable[Result]],
    valkey: EmbeddedValkey,
    scratch: Path,
    options: Options,
) -> Result:
    """Run ``workload`` on a platform of its own (``abaco up`` on database ``name``)."""
    db = _DATABASES[name]
    port = _free_port()
    token = secrets.token_urlsafe(24)
    redis_url = f"redis://{valkey.host}:{valkey.port}/{db}"
    env = _platform_env(scratch / f"{name}-state", redis_url, db, port, token)
    log = options.logs(scratch) / f"{name}-up.log"
    scratch = scratch / name
    scratch.mkdir()
    try:
        with _abaco_up(env, scratch, log) as process:
            url = f"http://127.0.0.1:{port}"
            return trio.run(workload, url, token, env, process, scratch, options)
    except BaseException:
        _print_tail("abaco up", log)
        raise


def run_abaco(valkey: EmbeddedValkey, scratch: Path, options: Options) -> Figures:
    """The whole platform under ``abaco up`` on ``valkey``, driven over HTTP."""
    return _on_platform("abaco", _abaco_workloads, valkey, scratch, options)


# -- abaco's own rows: nonce-authenticated messages, and search ----------------------------


class Timing:
    """One row of abaco's own table: requests made, over how long, and each one's time."""

    def __init__(self, what: str, seconds: float, latencies: list[float]) -> None:
        self.what = what
        self.seconds = seconds
        self.latencies = sorted(latencies)

    def __str__(self) -> str:
        count = len(self.latencies)
        rate = count / self.seconds if self.seconds else 0.0
        return (
            f"| {self.what} | {count:,} | {rate:,.0f} | "
            f"{_percentile(self.latencies, 0.50):.1f} | {_percentile(self.latencies, 0.99):.1f} |"
        )


async def _timed_posts(
    http: httpx.AsyncClient,
    actor_id: str,
    messages: int,
    concurrency: int,
    params: dict[str, str] | None,
) -> tuple[float, list[float]]:
    """Send ``messages`` messages, ``concurrency`` in flight; the time and each POST's."""
    latencies: list[float] = []
    numbers = iter(range(messages))

    async def sender() -> None:
        for number in numbers:
            began = time.perf_counter()
            sent = await http.post(
                f"/actors/{actor_id}/messages", params=params, json={"message": f"m {number}"}
            )
            latencies.append(time.perf_counter() - began)
            _result(sent, f"sending message {number}")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(sender)
    return time.perf_counter() - start, latencies


async def _drained(http: httpx.AsyncClient, actor_id: str, timeout: float) -> None:
    """Wait until the actor's mailbox is empty (the workers took every message)."""

    async def empty() -> bool | None:
        count = _result(await http.get(f"/actors/{actor_id}/messages"), "counting messages")
        return True if count["messages"] == 0 else None

    await _until("waiting for the mailbox", timeout, empty, 0.1)


async def _nonce_rows(
    http: httpx.AsyncClient, url: str, actor_id: str, options: Options
) -> list[Timing]:
    """POST /messages with the bearer token, then with ``?x-nonce=`` alone."""
    nonce = _result(
        await http.post(f"/actors/{actor_id}/nonces", json={"level": "EXECUTE"}),
        "creating a nonce",
    )
    rows = []
    limits = httpx.Limits(max_connections=options.concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=options.timeout, limits=limits) as bare:
        for what, client, params in (
            ("POST message, bearer token", http, None),
            ("POST message, ?x-nonce (unlimited uses)", bare, {"x-nonce": str(nonce["id"])}),
        ):
            seconds, latencies = await _timed_posts(
                client, actor_id, options.nonce_messages, options.concurrency, params
            )
            rows.append(Timing(what, seconds, latencies))
            await _drained(http, actor_id, options.timeout)
    return rows


_SEARCH_SPAN = 86_400.0  # seconds over which the records' receive times are spread


async def _write_executions(env: dict[str, str], actor_id: str, count: int) -> float:
    """Write ``count`` finished executions of ``actor_id`` through the stores; the seconds.

    One in ten is ERROR, the rest COMPLETE; receive times spread over a day from now - 1 day.
    """
    settings = load_settings(environ=env)
    start = time.perf_counter()
    origin = datetime.now(UTC) - timedelta(seconds=_SEARCH_SPAN)
    numbers = iter(range(count))
    async with open_configured_redis(settings.redis) as redis:
        stores = Stores.open(redis, settings)

        async def writer() -> None:
            for number in numbers:
                received = origin + timedelta(seconds=_SEARCH_SPAN * number / count)
                await stores.executions.create(
                    Execution(
                        id=new_id(),
                        actor_id=actor_id,
                        executor="bench",
                        status=ExecutionStatus.ERROR
                        if number % 10 == 0
                        else ExecutionStatus.COMPLETE,
                        message_received_time=received,
                        start_time=received,
                        finish_time=received + timedelta(milliseconds=5),
                        runtime=number % 7,
                        tenant=stores.tenant,
                    )
                )

        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(writer)
    return time.perf_counter() - start


async def _search_rows(
    http: httpx.AsyncClient, env: dict[str, str], actor_id: str, options: Options
) -> list[Timing]:
    """Time searches over ``options.search_records`` executions."""
    count = options.search_records
    middle = datetime.now(UTC) - timedelta(seconds=_SEARCH_SPAN / 2)
    hour_later = middle + timedelta(hours=1)

    def z(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    # What the platform's own executions (warm-ups, the nonce rows') add to each count.
    complete = {"status": "COMPLETE", "limit": "0"}
    before = _result(await http.get("/actors/search/executions", params=complete), "counting")
    queries = [
        (
            "status=COMPLETE&limit=10",
            {"status": "COMPLETE", "limit": "10"},
            before["_metadata"]["total_count"] + count - (count + 9) // 10,
        ),
        ("status.like=^ERR&limit=10", {"status.like": "^ERR", "limit": "10"}, (count + 9) // 10),
        (
            "message_received_time.between=(one hour)",
            {"message_received_time.between": f"{z(middle)},{z(hour_later)}"},
            None,
        ),
    ]
    seconds = await _write_executions(env, actor_id, count)
    print(f"abaco: wrote {count:,} execution records in {seconds:.1f} s", flush=True)
    rows = []
    for what, params, expected in queries:
        latencies = []
        start = time.perf_counter()
        for _ in range(options.searches):
            began = time.perf_counter()
            found = _result(
                await http.get("/actors/search/executions", params=params), f"searching {what}"
            )
            latencies.append(time.perf_counter() - began)
            total = found["_metadata"]["total_count"]
            if expected is not None and total != expected:
                raise BenchFailed(f"search {what}: {total} matches, expected {expected}")
        rows.append(
            Timing(
                f"GET search/executions?{what} ({total:,} matches)",
                time.perf_counter() - start,
                latencies,
            )
        )
    return rows


async def _abaco_rows(
    url: str,
    token: str,
    env: dict[str, str],
    process: subprocess.Popen[bytes],
    scratch: Path,
    options: Options,
) -> list[Timing]:
    async with _warm_actor(url, token, process, scratch, options) as (http, actor_id):
        rows: list[Timing] = []
        if "nonce" in options.rows:
            rows += await _nonce_rows(http, url, actor_id, options)
        if "search" in options.rows:
            rows += await _search_rows(http, env, actor_id, options)
    return rows


def run_abaco_rows(valkey: EmbeddedValkey, scratch: Path, options: Options) -> list[Timing]:
    """abaco's own rows, on a platform (and a database) of their own."""
    return _on_platform("abaco-rows", _abaco_rows, valkey, scratch, options)


# -- the run -------------------------------------------------------------------------------


class Options:
    """Sizes and choices from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        quick = bool(args.quick)
        self.messages: int = args.messages or (50 if quick else 2000)
        self.sync: int = args.sync or (10 if quick else 300)
        self.concurrency: int = args.concurrency
        self.timeout: float = args.timeout
        self.appendfsync: AppendFsync = args.appendfsync
        self.log_dir: Path | None = Path(args.logs) if args.logs else None
        self.only: list[str] = [s.strip() for s in args.only.split(",") if s.strip()]
        self.rows: list[str] = [r.strip() for r in args.rows.split(",") if r.strip()]
        self.nonce_messages: int = args.nonce_messages or (50 if quick else 1000)
        self.searches: int = args.searches or (5 if quick else 50)
        self.search_records: int = args.search_records or (1000 if quick else 10_000)
        sizes = (self.messages, self.sync, self.concurrency, self.nonce_messages, self.searches)
        if min(*sizes, self.search_records) < 1:
            raise SystemExit(
                "--messages, --sync, --concurrency, --nonce-messages, --searches and "
                "--search-records take numbers >= 1"
            )
        if set(self.rows) - set(ROWS) or not self.rows:
            raise SystemExit(f"--rows takes some of {', '.join(ROWS)}, not {args.rows!r}")
        unknown = set(self.only) - set(SYSTEMS)
        if unknown or not self.only:
            raise SystemExit(f"--only takes some of {', '.join(SYSTEMS)}, not {args.only!r}")

    def logs(self, scratch: Path) -> Path:
        """Where the systems' output goes: ``--logs``, else the run's scratch directory."""
        if self.log_dir is None:
            return scratch
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir


def _print_tail(what: str, log: Path, chars: int = 4000) -> None:
    with contextlib.suppress(OSError):
        print(f"--- last output of {what} ({log}) ---")
        print(log.read_text(errors="replace")[-chars:])


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples, in ms."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


class Row:
    """One line of the table."""

    def __init__(self, system: str, figures: Figures) -> None:
        ordered = sorted(figures.latencies)
        self.system = system
        self.rate = figures.rate
        self.send_rate = figures.messages / figures.send_seconds if figures.send_seconds else 0.0
        self.p50, self.p95, self.p99 = (_percentile(ordered, q) for q in (0.50, 0.95, 0.99))

    def __str__(self) -> str:
        return (
            f"| {self.system} | {self.rate:,.0f} | {self.send_rate:,.0f} | {self.p50:.1f} "
            f"| {self.p95:.1f} | {self.p99:.1f} |"
        )


def _ratios(abaco: Row, other: Row) -> str:
    return (
        f"abaco/{other.system}: throughput {abaco.rate / other.rate:.2f}x, latency p50 "
        f"{abaco.p50 / other.p50:.2f}x, p95 {abaco.p95 / other.p95:.2f}x, "
        f"p99 {abaco.p99 / other.p99:.2f}x"
    )


def _verdicts(rows: dict[str, Row]) -> list[str]:
    """The issue's goals, each with what this run measured: met or MISSED."""
    abaco = rows["abaco"]
    lines = []
    if "rq" in rows:
        ratio = abaco.rate / rows["rq"].rate
        lines.append(
            f"goal: throughput above RQ's: {ratio:.2f}x RQ ({'met' if ratio > 1 else 'MISSED'})"
        )
    lines.append(
        f"goal: synchronous p50 under {SYNC_P50_GOAL_MS:g} ms: {abaco.p50:.1f} ms "
        f"({'met' if abaco.p50 < SYNC_P50_GOAL_MS else 'MISSED'})"
    )
    return lines


def _run(system: str, valkey: EmbeddedValkey, scratch: Path, options: Options) -> Figures:
    base = f"redis://{valkey.host}:{valkey.port}/{_DATABASES[system]}"
    if system == "abaco":
        return run_abaco(valkey, scratch, options)
    log = options.logs(scratch) / f"{system}-workers.log"
    try:
        if system == "rq":
            return run_rq(
                base,
                messages=options.messages,
                sync=options.sync,
                concurrency=options.concurrency,
                workers=_WORKERS,
                log=log,
            )
        return run_celery(
            base,
            messages=options.messages,
            sync=options.sync,
            concurrency=options.concurrency,
            log=log,
        )
    except BaseException:
        _print_tail(f"the {system} workers", log)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, help="messages in the throughput run (2000)")
    parser.add_argument("--sync", type=int, help="synchronous round trips (300)")
    parser.add_argument(
        "--only", default=",".join(SYSTEMS), help="systems to run, comma-separated (all)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="sends in flight in the throughput run (32)"
    )
    parser.add_argument("--quick", action="store_true", help="50 messages, 10 round trips")
    parser.add_argument(
        "--appendfsync",
        choices=["always", "everysec"],
        default="always",
        help="Valkey's AOF fsync policy (always: abaco's default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds any one wait may take (600)"
    )
    parser.add_argument("--logs", help="keep the systems' output in this directory")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help="what to run, comma-separated: table (the three systems), nonce, search (all)",
    )
    parser.add_argument("--nonce-messages", type=int, help="messages per nonce row (1000)")
    parser.add_argument("--searches", type=int, help="timed searches per query (50)")
    parser.add_argument("--search-records", type=int, help="executions to search (10000)")
    options = Options(parser.parse_args())
    configure_logging("warning", "console")  # this process's own events: the Valkey's start
    print(machine())
    sandbox = "present: abaco sandboxes" if find_bwrap() else "absent: abaco runs unsandboxed"
    if "table" in options.rows:
        print(
            f"{options.messages} messages ({options.concurrency} in flight) and {options.sync} "
            f"synchronous round trips per system, {_WORKERS} workers each, one Valkey "
            f"(appendfsync {options.appendfsync}); bubblewrap {sandbox}",
            flush=True,
        )
    if set(options.rows) - {"table"}:
        print(
            f"abaco rows: {options.nonce_messages} messages per nonce row "
            f"({options.concurrency} in flight), {options.searches} searches per query over "
            f"{options.search_records:,} executions; appendfsync {options.appendfsync}; "
            f"bubblewrap {sandbox}",
            flush=True,
        )
    rows: dict[str, Row] = {}
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="abe2e-", dir="/tmp") as directory:
        scratch = Path(directory)
        with EmbeddedValkey(scratch / "valkey", appendfsync=options.appendfsync) as valkey:
            try:
                for system in options.only if "table" in options.rows else []:
                    began, load = time.perf_counter(), os.getloadavg()[0]
                    try:
                        figures = _run(system, valkey, scratch, options)
                    except (BenchFailed, BaselineFailed) as exc:
                        _print_tail("Valkey", valkey.log_path, 1000)
                        raise SystemExit(f"{system}: {exc}") from None
                    rows[system] = Row(system, figures)
                    print(
                        f"{system}: done in {time.perf_counter() - began:.0f} s; load average "
                        f"(1 min) {load:.1f} before, {os.getloadavg()[0]:.1f} after",
                        flush=True,
                    )
                if set(options.rows) - {"table"}:
                    began = time.perf_counter()
                    try:
                        timings = run_abaco_rows(valkey, scratch, options)
                    except BenchFailed as exc:
                        _print_tail("Valkey", valkey.log_path, 1000)
                        raise SystemExit(f"abaco rows: {exc}") from None
                    print(f"abaco rows: done in {time.perf_counter() - began:.0f} s", flush=True)
            finally:
                if options.log_dir is not None:
                    with contextlib.suppress(OSError):
                        shutil.copy(valkey.log_path, options.logs(scratch) / "valkey.log")
    if rows:
        print()
        print("| system | throughput msg/s | sends answered/s | p50 ms | p95 ms | p99 ms |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in rows.values():
            print(row)
    if timings:
        print()
        print(f"abaco ({options.concurrency} POSTs in flight; searches one at a time):")
        print("| request | count | per s | p50 ms | p99 ms |")
        print("| --- | --- | --- | --- | --- |")
        for timing in timings:
            print(timing)
    if "abaco" in rows:
        print()
        for other in ("rq", "celery"):
            if other in rows:
                print(_ratios(rows["abaco"], rows[other]))
        print()
        for line in _verdicts(rows):
            print(line)


if __name__ == "__main__":
    main()
