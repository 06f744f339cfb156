"""The zygote: a warm, plain (non-async) process that forks one child per execution.

Run as ``python -m abaco.actors.zygote --bundle DIR --entry MODULE:FUNCTION`` (plus
``--tmp /tmp --kill-all`` in the sandbox). It imports the actor's module once, from the
bundle dir, then serves commands until its stdin ends. Each execution is a fresh
``fork()``, so nothing one execution does (memory, modules, globals) reaches the next;
only the import is shared.

**Protocol.** Commands arrive on fd 0 and events leave on fd 1; every frame is a 4-byte
big-endian length and a msgpack map whose ``t`` names it (tractor-style tagged messages)::

    runner -> zygote   run      id, work_dir, env, message (bytes), binary, rlimits
                                (``[resource, soft, hard]`` triples), memory_bytes
                       kill     signal: signal the running execution's process group
                       (EOF)    stop: kill any running execution, then exit 0
    zygote -> runner   ready    pid, output: the module is imported (and printed output)
                       error    message (a traceback), output: the import failed; exit 1
                       started  pid: the child is forked
                       output   data: a chunk of the child's stdout and stderr, as it comes
                       finished status (a wait status), runtime, utime, stime, maxrss
                                (bytes), inblock, oublock (``os.wait4``), results: how
                                many results the child says it sent

The child's stdout and stderr go to a pipe per execution that the zygote relays as
``output`` frames, so every chunk reaches the runner before ``finished``.

**A child** joins a process group of its own, takes exactly the execution's environment,
creates and enters its work dir (writing a binary message there), applies the rlimits,
and calls the entry function with the message (``str`` for text, ``bytes`` for binary).
It exits 0 when the function returns, 1 with the traceback on stderr when it raises,
and :data:`EXIT_OUT_OF_MEMORY` with a one-line explanation on ``MemoryError``. When it
ends, the zygote kills what is left of its process group (with ``--kill-all``, in its
own pid namespace, every process but itself and init), then, after ``finished``,
removes the work dir and empties the tmp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import mmap
import os
import select
import shutil
import signal
import struct
import sys
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import msgpack  # type: ignore[import-untyped]

from abaco.actors.context import MESSAGE_FILE_NAME
from abaco.actors.sandbox import set_rlimits

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["EXIT_OUT_OF_MEMORY", "FrameDecoder", "encode_frame", "main"]

#: The exit code of an execution that ran out of memory (a ``MemoryError``).
EXIT_OUT_OF_MEMORY = 90
_HEADER = struct.Struct(">I")
_CHUNK = 65536
# Frames from the runner carry the message; frames to it stay far smaller.
_MAX_COMMAND = 1 << 28
_MAX_TEXT = 65536  # of a traceback sent in an error frame
_DRAIN_SECONDS = 1.0  # to read what the child's leftovers wrote, once they are killed
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
_COUNT = struct.Struct("=q")


def encode_frame(message: dict[str, Any]) -> bytes:
    """One frame: the length of the msgpack body, then the body."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Cuts a byte stream into frames; raises ValueError on a malformed one."""

    def __init__(self, max_frame: int) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes | bytearray) -> list[dict[str, Any]]:
        """Add ``data``; return the frames it completes, in order."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > self._max_frame:
                raise ValueError(f"a frame of {size} bytes is over the limit of {self._max_frame}")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            frame = msgpack.unpackb(bytes(self._buffer[_HEADER.size : end]), raw=False)
            del self._buffer[:end]
            if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
                raise ValueError(f"a frame is not a tagged map: {frame!r:.80}")
            frames.append(frame)
        return frames


class _Zygote:
    """The serving loop; one execution at a time."""

    def __init__(self, entry: Callable[[Any], object], tmp_dir: str | None, kill_all: bool) -> None:
        # Private copies of the protocol fds (os.dup makes them non-inheritable).
        self.commands, self.events = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)  # a stray print() must not corrupt the protocol
        self.entry, self.tmp_dir = entry, tmp_dir
        # kill(-1) reaches every process but init and ourselves: only safe as pid 2 of
        # our own pid namespace, which is what bwrap makes us.
        self.kill_all = kill_all and os.getppid() == 1
        self.stopping = False
        # libc's prctl, looked up once here so that children need not.
        self.prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        # Non-dumpable: a child (same uid) cannot ptrace the zygote or read its memory.
        # The child turns it back on for itself.
        self.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        # The child writes how many results it sent here; the zygote reads it after.
        self.shared = mmap.mmap(-1, _COUNT.size)
        self.decoder = FrameDecoder(_MAX_COMMAND)
        self.pending: deque[dict[str, Any]] = deque()

    def send(self, **message: Any) -> None:
        """Write one event frame, whole."""
        view = memoryview(encode_frame(message))
        while view:
            view = view[os.write(self.events, view) :]

    def receive(self) -> dict[str, Any] | None:
        """The next command, or None at the end of stdin."""
        while not self.pending:
            chunk = os.read(self.commands, _CHUNK)
            if not chunk:
                return None
            self.pending.extend(self.decoder.feed(chunk))
        return self.pending.popleft()

    def serve(self) -> None:
        """Run commands until stdin ends."""
        while not self.stopping:
            command = self.receive()
            if command is None:
                return
            if command.get("t") == "run":  # a "kill" with nothing running: nothing to do
                self.run(command)

    def run(self, command: dict[str, Any]) -> None:
        """Fork the execution, relay its output, report how it ended, clean up after it."""
        out_read, out_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        _COUNT.pack_into(self.shared, 0, 0)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(out_read)
            _child(self, command, out_write)
        os.close(out_write)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # the child does it too; whoever comes first wins the race
        self.send(t="started", pid=pid)
        try:
            status, usage = self._watch(pid, out_read)
        finally:
            os.close(out_read)
        runtime = time.monotonic() - started
        self.send(
            t="finished",
            status=status,
            runtime=runtime,
            utime=usage.ru_utime,
            stime=usage.ru_stime,
            maxrss=usage.ru_maxrss * 1024,  # kibibytes on Linux
            inblock=usage.ru_inblock,
            oublock=usage.ru_oublock,
            results=_COUNT.unpack_from(self.shared)[0],
        )
        # After "finished": the runner wraps up meanwhile, and the next "run" waits in
        # the pipe until this is done.
        shutil.rmtree(command["work_dir"], ignore_errors=True)
        self._clean_tmp()

    def _watch(self, pid: int, out_read: int) -> tuple[int, Any]:
        """Relay output and commands until the child has ended and its output is read."""
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (out_read, pidfd, self.commands):
            poller.register(fd, select.POLLIN)
        ended: tuple[int, Any] | None = None
        output_open, drain_until = True, 0.0
        try:
            while ended is None or (output_open and time.monotonic() < drain_until):
                timeout = None if ended is None else max(0.0, drain_until - time.monotonic()) * 1e3
                # Commands already read (behind another in one read) are not "readable".
                ready = [(self.commands, 0)] if self.pending else poller.poll(timeout)
                for fd, _ in ready:
                    if fd == out_read:
                        data = os.read(out_read, _CHUNK)
                        if data:
                            self.send(t="output", data=data)
                        else:
                            output_open = False
                            poller.unregister(out_read)
                    elif fd == pidfd:
                        # Leftovers (background processes) die with the execution: now,
                        # while the unreaped child holds its pid and group id.
                        self._signal(pid, signal.SIGKILL)
                        _, status, usage = os.wait4(pid, 0)
                        ended = status, usage
                        poller.unregister(pidfd)
                        drain_until = time.monotonic() + _DRAIN_SECONDS
                    elif fd == self.commands:
                        self._command(pid if ended is None else None, poller)
        finally:
            os.close(pidfd)
        assert ended is not None
        return ended

    def _command(self, pid: int | None, poller: select.poll) -> None:
        """A command during an execution; ``pid`` is None once the child is reaped."""
        command = self.receive()
        signum = int(command["signal"]) if command and command.get("t") == "kill" else None
        if command is None:  # the runner is gone: end the execution, then stop
            self.stopping = True
            poller.unregister(self.commands)
            signum = signal.SIGKILL
        if pid is not None and signum is not None:
            self._signal(pid, signum)

    def _signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        if self.kill_all:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signum)

    def _clean_tmp(self) -> None:
        if self.tmp_dir is None:
            return
        with contextlib.suppress(OSError), os.scandir(self.tmp_dir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _child(zygote: _Zygote, command: dict[str, Any], out_write: int) -> NoReturn:
    """Become the execution; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        for fd in (zygote.commands, zygote.events):
            os.close(fd)
        os.dup2(out_write, 1)
        os.dup2(out_write, 2)
        os.close(out_write)
        zygote.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        zygote.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # if the zygote is killed
        os.environ.update(command["env"])  # the zygote's own is empty
        if "tempfile" in sys.modules:  # it caches the zygote's tmp dir: forget it
            import tempfile

            tempfile.tempdir = None
        work_dir = command["work_dir"]
        try:
            os.mkdir(work_dir)
        except FileExistsError:  # left by an attempt whose zygote was killed: stale
            shutil.rmtree(work_dir)
            os.mkdir(work_dir)
        os.chdir(work_dir)
        message = command["message"]
        if command["binary"]:
            with open(MESSAGE_FILE_NAME, "wb") as file:
                file.write(message)
        set_rlimits(command["rlimits"])
        zygote.entry(message if command["binary"] else message.decode("utf-8", "replace"))
        code = 0
    except SystemExit as exc:  # as the interpreter would: None is 0, a message is 1
        code = exc.code & 0xFF if isinstance(exc.code, int) else int(exc.code is not None)
        if not isinstance(exc.code, int | None):
            with contextlib.suppress(BaseException):
                print(exc.code, file=sys.stderr)
    except MemoryError:
        code = EXIT_OUT_OF_MEMORY
        limit = command.get("memory_bytes")
        where = f"its memory limit of {limit} bytes" if limit else "the memory available"
        with contextlib.suppress(BaseException):
            sys.stderr.write(f"MemoryError: the execution ran out of memory ({where})\n")
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    _exit(code, zygote.shared)


def _exit(code: int, shared: mmap.mmap) -> NoReturn:
    """Flush what the execution wrote, and results it sent, then leave at once.

    ``os._exit`` skips the zygote's atexit handlers and finalizers, which are not the
    execution's to run.
    """
    context = sys.modules.get("abaco.actors.context")
    if context is not None:
        with contextlib.suppress(BaseException):
            _COUNT.pack_into(shared, 0, context._flush_results(write_count=False))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def _captured() -> Iterator[Callable[[], str]]:
    """Send what is printed inside (the import) to a file; yield a reader of its tail.

    The runner reads the zygote's stderr only when the zygote dies, so a module that
    prints a lot at import must not fill that pipe.
    """
    import tempfile

    saved, text = os.dup(2), ""
    with tempfile.TemporaryFile() as capture:
        for fd in (1, 2):
            os.dup2(capture.fileno(), fd)
        try:
            yield lambda: text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd in (1, 2):
                os.dup2(saved, fd)
            os.close(saved)
            capture.seek(max(0, capture.seek(0, os.SEEK_END) - _MAX_TEXT))
            text = capture.read().decode("utf-8", "replace")


def _load(entry_point: str) -> Callable[[Any], object]:
    module_name, _, function_name = entry_point.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if not callable(function):
        raise TypeError(f"{entry_point} is not callable")
    return function  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    """Import the entry point, say ``ready``, and serve until stdin ends."""
    parser = argparse.ArgumentParser(prog="python -m abaco.actors.zygote")
    parser.add_argument("--bundle", required=True, help="the unpacked bundle (imported from)")
    parser.add_argument("--entry", required=True, help="MODULE:FUNCTION")
    parser.add_argument("--tmp", help="a shared tmp dir to empty after each run")
    parser.add_argument("--kill-all", action="store_true", help="in our own pid namespace")
    args = parser.parse_args(argv)
    zygote = _Zygote(lambda _: None, args.tmp, args.kill_all)
    sys.path.insert(0, args.bundle)
    os.chdir(args.bundle)
    failure: str | None = None
    with _captured() as printed:
        try:
            zygote.entry = _load(args.entry)
        except BaseException:
            failure = traceback.format_exc()[-_MAX_TEXT:]
    if failure is not None:
        zygote.send(t="error", message=failure, output=printed())
        return 1
    with contextlib.suppress(ImportError):
        # What send_result imports, imported once here rather than in every child. An
        # import makes no 0MQ context, hence no thread, so forking stays safe.
        import zmq  # noqa: F401
    # Done once here rather than in every child, where each write to memory inherited
    # from the zygote costs a page copy:
    # - line buffering, so that a follower sees each line as it is printed;
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # - an empty environment, so that a child only adds the execution's;
    os.environ.clear()
    # - imported objects out of the collector's sight, so that a child collecting
    #   garbage does not touch every page of the zygote's heap.
    gc.freeze()
    zygote.send(t="ready", pid=os.getpid(), output=printed())
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
