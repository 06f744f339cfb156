"""The host runtime under the spawner: this host's record, its bundle cache, worker processes.

Worker processes are forked from the trio thread (:func:`abaco.actors._process.spawn`), not
with ``trio.lowlevel.open_process``, which forks from a thread of trio's cache: the
``PR_SET_PDEATHSIG`` each worker gets fires when the *thread* that forked it ends, and a
cached thread ends after 10 s idle, long before the spawner does.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from abaco.actors._process import Child, spawn
from abaco.actors.ids import new_id
from abaco.actors.models import utcnow
from abaco.bundles import ArchiveLimits
from abaco.hosts import Host
from abaco.spawner.fetcher import BundleCache

if TYPE_CHECKING:
    from collections.abc import Callable

    from abaco.config import Settings
    from abaco.control import StartWorker

__all__ = [
    "cpus",
    "end_process",
    "exit_reason",
    "launch_worker",
    "load_sample",
    "new_host",
    "open_cache",
]

_PR_SET_PDEATHSIG = 1


def cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def new_host(settings: Settings, host_id: str | None) -> Host:
    """This host's record as ``[spawner]`` describes it (capacity 0: four per CPU)."""
    options = settings.spawner
    return Host(
        id=host_id or new_id(),
        hostname=socket.gethostname(),
        queue=options.queue,
        labels=[label.strip() for label in options.labels.split(",") if label.strip()],
        capacity=options.capacity or 4 * cpus(),
        pid=os.getpid(),
    )


def load_sample(workers: int, capacity: int, *, draining: bool) -> dict[str, object]:
    """The fields of one load sample (also the host's heartbeat)."""
    return {
        "workers": workers,
        "load": workers / capacity,
        "cpu_load": os.getloadavg()[0] / cpus(),
        "draining": draining,
        "last_heartbeat": utcnow(),
    }


def open_cache(settings: Settings) -> BundleCache:
    """The host's bundle cache, fetching from ``[fetcher] repository_url`` (or the API)."""
    fetcher, repository = settings.fetcher, settings.repository
    root = (
        Path(fetcher.cache_dir).expanduser().absolute()
        if fetcher.cache_dir
        else settings.state.path() / "bundle-cache"
    )
    url = fetcher.repository_url or f"http://{settings.api.host}:{settings.api.port}"
    limits = ArchiveLimits(
        max_members=repository.max_members,
        max_total_bytes=repository.max_unpacked_bytes,
        max_member_bytes=repository.max_unpacked_bytes,
        max_ratio=repository.max_ratio,
    )
    return BundleCache(
        root,
        url,
        max_bytes=fetcher.max_cache_bytes,
        limits=limits,
        download_timeout=fetcher.download_timeout,
    )


@functools.cache
def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: SIGTERM to the child when the thread that forked it ends."""
    # Looked up once, here, so that the forked child only calls it.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def launch_worker(command: StartWorker, bundle_dir: Path, config: Path | None) -> Child:
    """Start ``python -m abaco.actors.worker`` for ``command``; OSError if it cannot start.

    Its environment is this process's (so ``ABACO__*`` overrides reach it), its output
    goes where this process's goes, and it is sent SIGTERM if this process dies.
    """
    argv = [sys.executable, "-m", "abaco.actors.worker", "--actor", command.actor_id]
    argv += ["--worker", command.worker_id, "--tenant", command.tenant]
    argv += ["--bundle-dir", str(bundle_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    return spawn(
        argv,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=None,
        stderr=None,
        preexec_fn=_die_with_parent(),
    )


async def end_process(process: Child, grace: float) -> int:
    """SIGTERM, up to ``grace`` seconds, then SIGKILL; returns the wait status (shielded)."""
    with trio.CancelScope(shield=True) as scope:
        process.signal(signal.SIGTERM)
        scope.deadline = trio.current_time() + grace
        await process.wait()
    if process.status is None:
        process.signal(signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await process.wait()
    assert process.status is not None
    return process.status


def exit_reason(status: int) -> str:
    """How a process ended, for people: its exit code or the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"
