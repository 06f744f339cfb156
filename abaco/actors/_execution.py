"""What both runners share: an execution's spec and outcome, and its per-execution parts.

Per execution (:func:`workspace`):

1. a fresh work dir ``<work_root>/<execution_id>`` (seen as ``/work/<id>`` by a Python
   execution in its sandbox, ``/work`` by a sandboxed command, the host path without a
   sandbox) holds a binary message (``message.bin``), and is removed after. The runner's
   0MQ PULL socket takes results at the ``ipc://`` socket ``results.sock`` in it (for a
   command) or ``<id>.results.sock`` beside it (for a Python execution, whose zygote
   makes and removes the dir itself: no file system work in the trio thread);
2. the environment is ``spec.environment`` over defaults (PATH, HOME and TMPDIR, LANG,
   MSG for a text message, ``_abaco_Content_Type``, ``_abaco_execution_id``), plus the
   runner's own ``_abaco_results_socket`` and, for a binary message, ``_abaco_message_file``;
3. stdout and stderr, merged, go to the output sink chunk by chunk as they come
   (:class:`Output`). At most ``max_output_bytes`` are forwarded: the head streams live;
   past it, only the last ``min(64 KiB, max_output_bytes / 4)`` bytes are kept and sent
   at the end, after a line saying how much was dropped;
4. results are kept in arrival order, at most ``max_results`` of them and
   ``max_results_bytes`` in all (:class:`Results`); once the process has ended the runner
   waits up to ``results_timeout`` for as many as the execution says it sent.

:func:`outcome` turns a wait status into an :class:`ExecutionOutcome`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs
import trio
import zmq

from abaco._transports._zmqsocket import open_zmq_socket
from abaco.actors.context import (
    BINARY_CONTENT_TYPE,
    COUNT_SUFFIX,
    MESSAGE_FILE_NAME,
    MESSAGE_FILE_VARIABLE,
    MESSAGE_TAG,
    RESULTS_SOCKET_VARIABLE,
    STATE_TAG,
)
from abaco.actors.sandbox import Limits
from abaco.errors import RunnerError

#: First frames of what an execution asks of the platform (set_state, send_message).
REQUEST_TAGS = frozenset({STATE_TAG, MESSAGE_TAG})

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco._transports._zmqsocket import ZmqSocket

__all__ = [
    "DEFAULT_PATH",
    "Ending",
    "ExecutionOutcome",
    "ExecutionSpec",
    "Output",
    "OutputSink",
    "Results",
    "RunnerError",
    "RunnerOptions",
    "Workspace",
    "outcome",
    "usage_fields",
    "workspace",
]

#: The PATH an execution gets unless its environment says otherwise.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_EXECUTION_ID = r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}"
_MAX_IPC_PATH = 107  # sockaddr_un.sun_path, less its NUL

#: Where output goes: a memory channel, or an async function called with each chunk.
OutputSink: TypeAlias = trio.MemorySendChannel[bytes] | Callable[[bytes], Awaitable[None]]


def _check_environment(_spec: object, _attribute: object, env: dict[str, str]) -> None:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment variable {key!r}: no '=' or NUL allowed")


@attrs.frozen(kw_only=True)
class ExecutionSpec:
    """What to run: one message, its environment, and the limits it runs under."""

    execution_id: str = attrs.field(validator=attrs.validators.matches_re(_EXECUTION_ID))
    environment: dict[str, str] = attrs.field(factory=dict, validator=_check_environment)
    message: bytes = b""
    content_type: str = "text/plain"
    #: Wall-clock seconds before the execution is killed.
    timeout: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    limits: Limits = attrs.field(factory=Limits)
    network: bool = False

    @property
    def binary(self) -> bool:
        """Whether the message goes to the actor as bytes rather than text."""
        return self.content_type == BINARY_CONTENT_TYPE


@attrs.frozen(kw_only=True)
class ExecutionOutcome:
    """How an execution ended, with its resource use and results."""

    exit_code: int | None  # None when a signal ended it
    status: Literal["COMPLETE", "ERROR"]
    status_message: str
    runtime: float  # wall-clock seconds
    cpu: float  # user + system seconds
    io: int  # blocks read + written
    max_rss: int  # bytes
    killed: str | None  # "timeout", "memory", "cpu", "signal N"
    results: tuple[bytes, ...] = ()
    #: What the execution asked of the platform, in order: (tag, payload) pairs.
    requests: tuple[tuple[bytes, bytes], ...] = ()
    output_bytes: int = 0  # all the execution wrote
    output_dropped: int = 0  # of which not forwarded


@attrs.frozen(kw_only=True)
class RunnerOptions:
    """Bounds and delays common to both runners."""

    grace: float = 2.0  # SIGTERM, then SIGKILL this long after
    max_output_bytes: int = 1 << 20
    max_results: int = 1000
    max_result_bytes: int = 1 << 20  # one result; a larger one is dropped by 0MQ
    max_results_bytes: int = 16 << 20  # all of one execution's results
    results_timeout: float = 5.0  # for results in flight when the process ends
    start_timeout: float = 60.0  # for the zygote to import the actor


class Output:
    """Forwards output as it comes, keeping to ``limit`` bytes (see the module docstring).

    A sink whose receiving side is closed (a follower that left) stops the forwarding,
    not the execution: what it would have got counts as dropped.
    """

    def __init__(self, sink: OutputSink, limit: int) -> None:
        self._sink = sink.send if isinstance(sink, trio.MemorySendChannel) else sink
        self._tail_limit = min(65536, limit // 4)
        self._head_left = limit - self._tail_limit
        self._tail = bytearray()
        self._gone = False
        self.total = self.dropped = 0

    async def _send(self, data: bytes, *, output: bool = True) -> None:
        if not self._gone:
            try:
                await self._sink(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone = True
        if output:  # the execution's bytes, not the runner's own note
            self.dropped += len(data)

    async def feed(self, data: bytes | bytearray) -> None:
        """Forward ``data``, or keep it for the tail once the head is spent."""
        self.total += len(data)
        if self._head_left > 0:
            head, data = data[: self._head_left], data[self._head_left :]
            self._head_left -= len(head)
            await self._send(bytes(head))
        if data:
            self._tail += data
            excess = len(self._tail) - self._tail_limit
            if excess > 0:
                del self._tail[:excess]
                self.dropped += excess

    async def close(self) -> None:
        """Send the kept tail, after a line saying how much was dropped."""
        if self.dropped:
            note = f"\n[abaco: {self.dropped} bytes of output dropped]\n"
            await self._send(note.encode(), output=False)
        if self._tail:
            tail, self._tail = bytes(self._tail), bytearray()
            await self._send(tail)


class Results:
    """Results in arrival order, bounded; dropped ones are counted."""

    def __init__(self, socket: ZmqSocket, options: RunnerOptions) -> None:
        self._socket, self._options = socket, options
        self.items: list[bytes] = []
        #: Requests to the platform (tag, payload): set_state, send_message.
        self.requests: list[tuple[bytes, bytes]] = []
        self.size = self.dropped = 0
        self._arrived = trio.Event()

    async def collect(self) -> None:
        """Receive results until cancelled."""
        while True:
            frames = await self._socket.recv_multipart()
            data = b"".join(frames)
            fits = self.size + len(data) <= self._options.max_results_bytes
            if len(self.items) + len(self.requests) >= self._options.max_results or not fits:
                self.dropped += 1
            elif len(frames) == 2 and frames[0] in REQUEST_TAGS:
                self.requests.append((frames[0], frames[1]))
                self.size += len(data)
            else:
                self.items.append(data)
                self.size += len(data)
            self._arrived.set()
            self._arrived = trio.Event()

    async def wait_for(self, count: int) -> None:
        """Wait up to ``results_timeout`` until ``count`` results have arrived."""
        with trio.move_on_after(self._options.results_timeout):
            while len(self.items) + len(self.requests) + self.dropped < count:
                await self._arrived.wait()


@attrs.define
class Workspace:
    """One execution's paths (on the host, and as it sees them), environment and results."""

    host_dir: Path
    inside_dir: str
    socket_path: Path
    env: dict[str, str]
    results: Results

    def sent_count(self) -> int:
        """How many results the execution says it sent (0 if it never opened the socket)."""
        # A few bytes, once, beside a socket the runner made: not worth a thread hop.
        with contextlib.suppress(OSError, ValueError):
            return int(Path(f"{self.socket_path}{COUNT_SUFFIX}").read_text())
        return 0


def _prepare(host_dir: Path, message: bytes | None) -> None:
    if host_dir.exists():  # a redelivered message: what its first attempt left is stale
        shutil.rmtree(host_dir)
    host_dir.mkdir(parents=True)
    if message is not None:
        (host_dir / MESSAGE_FILE_NAME).write_bytes(message)


@asynccontextmanager
async def workspace(
    spec: ExecutionSpec,
    *,
    host_dir: Path,
    inside_dir: str,
    tmp: str,
    options: RunnerOptions,
    make_dir: bool,
) -> AsyncIterator[Workspace]:
    """The execution's environment and results socket, and its work dir if ``make_dir``.

    With ``make_dir`` the runner makes the work dir (writing a binary message into it),
    binds the socket inside it, and removes it all afterwards. Without, the zygote makes
    and removes the dir, so the socket sits beside it, as ``<dir>.results.sock``.
    """
    if make_dir:
        socket_path, socket_inside = host_dir / "results.sock", f"{inside_dir}/results.sock"
    else:
        socket_path = host_dir.with_name(f"{host_dir.name}.results.sock")
        socket_inside = f"{inside_dir}.results.sock"
    if len(str(socket_path)) > _MAX_IPC_PATH:
        raise RunnerError(f"{socket_path} is too long for a unix socket: use a shorter work_root")
    env = {"PATH": DEFAULT_PATH, "HOME": inside_dir, "TMPDIR": tmp, "LANG": "C.UTF-8"}
    env |= {"_abaco_Content_Type": spec.content_type, "_abaco_execution_id": spec.execution_id}
    if not spec.binary:
        env["MSG"] = spec.message.decode("utf-8", "replace").replace("\0", "")
    env |= spec.environment
    env[RESULTS_SOCKET_VARIABLE] = f"ipc://{socket_inside}"
    if spec.binary:
        env[MESSAGE_FILE_VARIABLE] = f"{inside_dir}/{MESSAGE_FILE_NAME}"
    if make_dir:
        message = spec.message if spec.binary else None
        await trio.to_thread.run_sync(_prepare, host_dir, message)
    socket = open_zmq_socket(zmq.Context.instance(), zmq.PULL)
    try:
        socket.setsockopt(zmq.MAXMSGSIZE, options.max_result_bytes)
        socket.bind(f"ipc://{socket_path}")
        yield Workspace(host_dir, inside_dir, socket_path, env, Results(socket, options))
    finally:
        socket.close()
        # libzmq unlinks the socket file too, but later, in its own thread.
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
        if make_dir:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(functools.partial(shutil.rmtree, host_dir, True))
        else:  # left by a subprocess of the actor that sent results: one unlink
            with contextlib.suppress(OSError):
                os.unlink(f"{socket_path}{COUNT_SUFFIX}")


@attrs.frozen
class Ending:
    """How the process side ended: a wait status and usage, or what went wrong."""

    status: int | None = None
    usage: dict[str, float] = attrs.field(factory=dict)
    killed: str | None = None
    note: str | None = None  # why there is no status
    sent: int = 0  # results the execution says it sent


def usage_fields(usage: Any) -> dict[str, float]:
    """The fields of an ``os.wait4`` rusage that an outcome reports (maxrss in bytes)."""
    return {
        "utime": usage.ru_utime,
        "stime": usage.ru_stime,
        "maxrss": usage.ru_maxrss * 1024,
        "inblock": usage.ru_inblock,
        "oublock": usage.ru_oublock,
    }


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):g} {unit}"
    return f"{count} bytes"


def _signal_name(signum: int) -> str:
    try:
        return f"{signal.Signals(signum).name} (signal {signum})"
    except ValueError:
        return f"signal {signum}"


def outcome(
    spec: ExecutionSpec,
    ending: Ending,
    ws: Workspace,
    output: Output,
    runtime: float,
    *,
    memory_exit_code: int | None = None,
    signal_exit_codes: bool = False,
) -> ExecutionOutcome:
    """Classify how the execution ended.

    ``memory_exit_code``: the exit code that means "ran out of memory" (the zygote's);
    ``signal_exit_codes``: exit codes above 128 mean "killed by signal code-128" (bwrap's).
    """
    usage, status, killed = ending.usage, ending.status, ending.killed
    cpu = float(usage.get("utime", 0.0) + usage.get("stime", 0.0))
    exit_code: int | None = None
    signum: int | None = None
    if status is not None and os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
    elif status is not None:
        exit_code = os.WEXITSTATUS(status)
        if signal_exit_codes and exit_code > 128:
            signum, exit_code = exit_code - 128, None
    limit = spec.limits
    if killed == "timeout":
        message = f"execution timed out after {spec.timeout:g} s"
    elif ending.note is not None:
        message = ending.note
    elif signum == signal.SIGXCPU or (
        signum == signal.SIGKILL and limit.cpu_seconds and cpu >= limit.cpu_seconds
    ):
        killed, message = "cpu", f"killed: over its CPU time limit of {limit.cpu_seconds} s"
    elif signum is not None:
        killed, message = f"signal {signum}", f"killed by {_signal_name(signum)}"
    elif exit_code is not None and exit_code == memory_exit_code:
        killed = "memory"
        message = "out of memory (MemoryError): " + (
            f"over its memory limit of {_size(limit.memory_bytes)}"
            if limit.memory_bytes
            else "the host has no more to give"
        )
    else:
        message = f"exited with code {exit_code}"
    results, lost = ws.results, ending.sent - len(ws.results.items) - ws.results.dropped
    if lost > 0:
        message += f"; {lost} results were lost"
    if results.dropped:
        message += f"; {results.dropped} results were dropped (over the runner's limits)"
    return ExecutionOutcome(
        exit_code=exit_code,
        status="COMPLETE" if exit_code == 0 and killed is None and status is not None else "ERROR",
        status_message=message,
        runtime=float(usage.get("runtime", runtime)),
        cpu=cpu,
        io=int(usage.get("inblock", 0) + usage.get("oublock", 0)),
        max_rss=int(usage.get("maxrss", 0)),
        killed=killed,
        results=tuple(results.items),
        requests=tuple(results.requests),
        output_bytes=output.total,
        output_dropped=output.dropped,
    )
