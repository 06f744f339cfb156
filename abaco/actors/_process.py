"""Child processes for the runners: started from the trio thread, reaped with their usage.

Why not ``trio.lowlevel.open_process``: it forks from a thread of trio's thread cache,
and ``PR_SET_PDEATHSIG`` (what bwrap's ``--die-with-parent`` sets) fires when the
*thread* that forked the process exits. Cached threads exit after 10 s idle, so a
sandbox started from one is killed 10 s later, warm zygote included. Forking from the
trio thread instead blocks the event loop briefly: about a millisecond with vfork, a
few with a ``preexec_fn`` (a full fork). trio's own wait reaps with ``waitpid`` and
drops the resource usage, so :meth:`Child.wait` reaps with ``os.wait4``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Child", "descendants", "spawn"]


class Child:
    """A child process in its own session, with trio streams on the pipes asked for."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        streams: dict[str, trio.lowlevel.FdStream],
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = streams.get("stdin")
        self.stdout = streams.get("stdout")
        self.stderr = streams.get("stderr")
        self._pidfd: int | None = os.pidfd_open(self.pid)
        #: The wait status and the ``os.wait4`` rusage, once reaped.
        self.status: int | None = None
        self.usage: Any = None

    def signal(self, signum: int, *, group: bool = False) -> None:
        """Signal the process (or its process group); a no-op once it is reaped.

        Until reaped, its pid (and group id) cannot be taken by another process.
        """
        if self.status is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    async def wait(self, *, group_signal: int | None = None) -> int:
        """Wait until the process ends, reap it, and return its wait status.

        ``group_signal`` goes to its process group once it has ended and before it is
        reaped (its leftovers), while the zombie keeps the group id from being reused.
        """
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
            if group_signal is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, group_signal)
            self._reap()
        assert self.status is not None
        return self.status

    def _reap(self) -> None:
        """Reap the ended process (its pidfd said so: this does not block)."""
        assert self._pidfd is not None
        _, status, usage = os.wait4(self.pid, os.WNOHANG)
        self.status, self.usage = status, usage
        # Tell Popen, so that it neither warns at garbage collection nor waits again.
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        trio.lowlevel.notify_closing(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None

    async def aclose(self) -> None:
        """Close the streams (the process is left alone)."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                await stream.aclose()


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.STDOUT,
    cwd: str | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Child:
    """Start ``argv`` in a new session, from this thread (see the module docstring).

    ``subprocess.PIPE`` gets a trio stream; ``stderr=subprocess.STDOUT`` shares
    stdout's pipe. Raises OSError when the program cannot start.
    """
    streams: dict[str, trio.lowlevel.FdStream] = {}
    ends: dict[str, int | None] = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
    with contextlib.ExitStack() as child_ends, contextlib.ExitStack() as on_failure:
        for name, how in ends.items():
            if how == subprocess.PIPE:
                read, write = os.pipe()
                ours, theirs = (write, read) if name == "stdin" else (read, write)
                child_ends.callback(os.close, theirs)
                streams[name] = trio.lowlevel.FdStream(ours)
                on_failure.callback(streams[name].close)
                ends[name] = theirs
        if stderr == subprocess.STDOUT and stdout == subprocess.PIPE:
            ends["stderr"] = ends["stdout"]
        popen = subprocess.Popen(
            list(argv),
            stdin=ends["stdin"],
            stdout=ends["stdout"],
            stderr=ends["stderr"],
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=preexec_fn,  # setrlimit only: nothing that could deadlock after fork
        )
        on_failure.pop_all()
    return Child(popen, streams)


def descendants(root: int) -> list[int]:
    """Pids of the live descendants of ``root``, from /proc (in memory: no thread needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry.name}/stat", "rb") as file:
                    ppid = int(file.read().rsplit(b")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found
