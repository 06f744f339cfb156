"""The Python runner: each execution a fork of one warm zygote (see :mod:`.zygote`).

The runner speaks the zygote's protocol over the zygote's stdin and stdout. What the
actor's module prints at import arrives in the ``ready`` (or ``error``) frame and is
logged; the zygote's stderr is read only once it has died (bwrap's complaints, a crash),
for the error. The runner treats the zygote as untrusted: the actor's own code ran in it
at import, so frames are bounded and checked, and a zygote that dies, hangs or talks
nonsense is killed (with its sandbox) and started again for the next execution.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from abaco.actors._execution import (
    DEFAULT_PATH,
    Ending,
    ExecutionOutcome,
    ExecutionSpec,
    Output,
    OutputSink,
    RunnerError,
    RunnerOptions,
    Workspace,
    outcome,
    workspace,
)
from abaco.actors._process import Child, spawn
from abaco.actors.sandbox import WORK_DIR, python_layout, sandbox_path
from abaco.actors.zygote import EXIT_OUT_OF_MEMORY, FrameDecoder, encode_frame

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["PythonRunner"]

_log = structlog.get_logger("abaco.actors.runners")
_MAX_EVENT = 1 << 20  # an output chunk is 64 KiB, a traceback at most 64 KiB


class PythonRunner:
    """A Python actor's executions as forks of one warm zygote; see :func:`open_python_runner`."""

    def __init__(
        self,
        command: Callable[[bool], list[str]],
        *,
        bwrap: bool,
        work_root: Path,
        entry_point: str,
        options: RunnerOptions,
    ) -> None:
        """``command(network)`` is the zygote's command line, in bwrap or not."""
        self._command, self._bwrap, self._work_root = command, bwrap, work_root
        self._entry_point, self._options = entry_point, options
        self._process: Child | None = None
        self._network = self._busy = False
        self._child_pid: int | None = None
        self._decoder = FrameDecoder(_MAX_EVENT)
        self._frames: deque[dict[str, Any]] = deque()

    async def _start(self, network: bool) -> None:
        """Start the zygote and wait until it has imported the actor's module.

        Its stderr is read only when it dies: bwrap's complaints and crashes are short,
        and what the module prints at import comes in the ``ready`` or ``error`` frame.
        """
        env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        if self._bwrap:  # only the package dir is bound: the venv's .pth cannot find it
            env["PYTHONPATH"] = sandbox_path(python_layout().package_root)
        # In a session of its own (spawn's doing): the terminal's ^C is not its to take.
        argv = self._command(network)
        pipe = subprocess.PIPE
        self._process = spawn(argv, env=env, stdin=pipe, stdout=pipe, stderr=pipe)
        self._network, self._decoder = network, FrameDecoder(_MAX_EVENT)
        self._frames.clear()
        try:
            with trio.fail_after(self._options.start_timeout):
                frame = await self._next()
        except (RunnerError, trio.TooSlowError) as exc:
            await self._kill()
            raise RunnerError(f"the zygote of {self._entry_point} did not start: {exc}") from exc
        printed = frame.get("output")
        if printed:
            _log.info("actor module wrote at import", entry_point=self._entry_point, text=printed)
        if frame["t"] != "ready":
            await self._kill()
            raise RunnerError(f"importing {self._entry_point} failed:\n{frame.get('message')}")

    async def _next(self) -> dict[str, Any]:
        """The zygote's next frame; RunnerError when it is gone or talks nonsense."""
        assert self._process is not None
        assert self._process.stdout is not None
        while not self._frames:
            try:
                data = await self._process.stdout.receive_some(65536)
                self._frames.extend(self._decoder.feed(data))
            except (ValueError, TypeError, trio.ClosedResourceError) as exc:
                raise RunnerError(f"bad frame from the zygote: {exc}") from exc
            if not data:
                raise RunnerError(f"the zygote exited: {await self._last_words()}")
        return self._frames.popleft()

    async def _last_words(self) -> str:
        """What the dead zygote (or bwrap) wrote to stderr: its last 4 KiB, logged too."""
        assert self._process is not None
        assert self._process.stderr is not None
        text = bytearray()
        with trio.move_on_after(1), contextlib.suppress(trio.ClosedResourceError):
            async for chunk in self._process.stderr:
                text = (text + chunk)[-4096:]
        words = text.decode("utf-8", "replace").strip() or "(nothing on stderr)"
        _log.warning("zygote exited", entry_point=self._entry_point, stderr=words)
        return words

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        try:
            await self._process.stdin.send_all(encode_frame(frame))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise RunnerError("the zygote is gone") from exc

    async def _kill(self) -> None:
        """End the zygote and whatever it runs; the next ``run`` starts a new one."""
        process, self._process = self._process, None
        if process is None:
            return
        with trio.CancelScope(shield=True):
            if self._child_pid is not None and not self._bwrap:  # in a group of its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._child_pid, signal.SIGKILL)
            process.signal(signal.SIGKILL)  # bwrap's --die-with-parent takes the sandbox
            await process.wait()
            await process.aclose()

    async def run(self, spec: ExecutionSpec, output: OutputSink) -> ExecutionOutcome:
        """Run one execution as a fork of the zygote (restarted first if it died).

        Raises RunnerError only if a zygote must be started and cannot be; anything
        that goes wrong once it runs is in the outcome. ``output`` raising anything but
        a closed-channel error is a bug of the caller's, and ends the execution.
        """
        if self._busy:
            raise trio.BusyResourceError("a runner runs one execution at a time")
        self._busy = True
        try:
            if self._process is None or self._network != spec.network:
                await self._kill()
                await self._start(spec.network)
            inside = f"{WORK_DIR if self._bwrap else self._work_root}/{spec.execution_id}"
            tmp = "/tmp" if self._bwrap else inside
            host_dir = self._work_root / spec.execution_id
            async with (
                workspace(
                    spec,
                    host_dir=host_dir,
                    inside_dir=inside,
                    tmp=tmp,
                    options=self._options,
                    make_dir=False,  # the zygote's child makes it, the zygote removes it
                ) as ws,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(ws.results.collect)
                pump = Output(output, self._options.max_output_bytes)
                started = trio.current_time()
                ending = await self._execute(spec, ws, pump)
                runtime = trio.current_time() - started
                await pump.close()
                await ws.results.wait_for(ending.sent)
                nursery.cancel_scope.cancel()
            return outcome(spec, ending, ws, pump, runtime, memory_exit_code=EXIT_OUT_OF_MEMORY)
        finally:
            self._busy = False

    async def _execute(self, spec: ExecutionSpec, ws: Workspace, pump: Output) -> Ending:
        frame = {
            "t": "run",
            "id": spec.execution_id,
            "work_dir": ws.inside_dir,
            "env": ws.env,
            "message": spec.message,
            "binary": spec.binary,
            "rlimits": spec.limits.rlimits(),
            "memory_bytes": spec.limits.memory_bytes,
        }
        self._child_pid = None
        try:
            with trio.move_on_after(spec.timeout):
                await self._send(frame)
                return await self._until_finished(pump)
            return attrs.evolve(await self._stop(pump, soft=True), killed="timeout")
        except RunnerError as exc:
            await self._kill()
            return Ending(note=f"the zygote failed during the execution ({exc})")
        except BaseException:  # cancelled: never leave the execution running
            with trio.CancelScope(shield=True):
                await self._stop(None, soft=False)
            raise

    async def _until_finished(self, pump: Output | None) -> Ending:
        while True:
            frame = await self._next()
            if frame["t"] == "output" and isinstance(frame.get("data"), bytes):
                if pump is not None:
                    await pump.feed(frame["data"])
            elif frame["t"] == "started" and isinstance(frame.get("pid"), int):
                self._child_pid = frame["pid"]
            elif frame["t"] == "finished" and isinstance(frame.get("status"), int):
                fields = ("runtime", "utime", "stime", "maxrss", "inblock", "oublock")
                usage = {
                    k: float(frame[k]) for k in fields if isinstance(frame.get(k), int | float)
                }
                sent = frame.get("results")
                sent = sent if isinstance(sent, int) and 0 <= sent < 1 << 32 else 0
                return Ending(status=frame["status"], usage=usage, sent=sent)
            else:
                raise RunnerError(f"unexpected frame from the zygote: {frame!r:.200}")

    async def _stop(self, pump: Output | None, *, soft: bool) -> Ending:
        """Kill the execution (SIGTERM first when ``soft``); kill the zygote if it is stuck."""
        with contextlib.suppress(RunnerError):
            for signum in (signal.SIGTERM, signal.SIGKILL) if soft else (signal.SIGKILL,):
                with trio.move_on_after(self._options.grace):
                    await self._send({"t": "kill", "signal": int(signum)})
                    return await self._until_finished(pump)
        await self._kill()
        return Ending(note="the zygote did not stop the execution, so it was killed")

    async def aclose(self) -> None:
        """Stop the zygote: close its stdin and wait ``grace`` seconds, then SIGKILL."""
        process = self._process
        if process is None:
            return
        with trio.CancelScope(shield=True):
            assert process.stdin is not None
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdin.aclose()
            with trio.move_on_after(self._options.grace):
                await process.wait()
            await self._kill()
