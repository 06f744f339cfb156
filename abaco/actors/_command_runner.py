"""The command runner: each execution a fresh process, in a fresh sandbox where bwrap is.

The rlimits are set by ``preexec_fn`` in the forked child before it execs (bwrap, or the
command itself), so bwrap's own few processes run under them too. The process is reaped
with ``os.wait4`` for its resource use; under bwrap that usage covers the command and
everything bwrap waited for. bwrap ends with 128+N when the command dies of signal N.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from typing import TYPE_CHECKING

import attrs
import trio

from abaco.actors._execution import (
    Ending,
    ExecutionOutcome,
    ExecutionSpec,
    Output,
    OutputSink,
    RunnerOptions,
    outcome,
    usage_fields,
    workspace,
)
from abaco.actors._process import Child, descendants, spawn
from abaco.actors.sandbox import BUNDLE_DIR, WORK_DIR, Grants, apply_limits, bwrap_argv

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["CommandRunner"]

_DRAIN_SECONDS = 1.0  # for output still in the pipe once the process has ended


class CommandRunner:
    """Each execution a fresh process of ``runtime.argv``; see :func:`open_command_runner`."""

    def __init__(
        self,
        bundle_dir: Path,
        argv: Sequence[str],
        *,
        bwrap: str | None,
        work_root: Path,
        hide: Sequence[Path],
        extra_ro: Sequence[Path],
        options: RunnerOptions,
        grants: Grants = Grants(),  # noqa: B008 - frozen, so sharing is safe
    ) -> None:
        self._bundle_dir, self._argv, self._bwrap = bundle_dir, list(argv), bwrap
        self._grants = grants
        self._work_root, self._hide, self._extra_ro = work_root, hide, extra_ro
        self._options = options
        self._busy = False

    async def run(self, spec: ExecutionSpec, output: OutputSink) -> ExecutionOutcome:
        """Run one execution as a new process (in a new sandbox)."""
        if self._busy:
            raise trio.BusyResourceError("a runner runs one execution at a time")
        self._busy = True
        host_dir = self._work_root / spec.execution_id
        argv, inside, tmp = self._argv, str(host_dir), str(host_dir)
        cwd: str | None = str(self._bundle_dir)
        if self._bwrap is not None:
            sandbox = bwrap_argv(
                bundle_dir=self._bundle_dir,
                work_dir=host_dir,
                network=spec.network,
                extra_ro=self._extra_ro,
                hide=self._hide,
                chdir=BUNDLE_DIR,  # a command runs in its bundle, as the manifest says
                bwrap=self._bwrap,
                grants=self._grants,
            )
            argv, cwd, inside, tmp = [*sandbox, *self._argv], None, WORK_DIR, "/tmp"
        try:
            async with (
                workspace(
                    spec,
                    host_dir=host_dir,
                    inside_dir=inside,
                    tmp=tmp,
                    options=self._options,
                    make_dir=True,
                ) as ws,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(ws.results.collect)
                pump = Output(output, self._options.max_output_bytes)
                started = trio.current_time()
                ending = await self._start_and_supervise(argv, cwd, ws.env, spec, pump)
                runtime = trio.current_time() - started
                await pump.close()
                ending = attrs.evolve(ending, sent=ws.sent_count())
                await ws.results.wait_for(ending.sent)
                nursery.cancel_scope.cancel()
            sandboxed = self._bwrap is not None
            return outcome(spec, ending, ws, pump, runtime, signal_exit_codes=sandboxed)
        finally:
            self._busy = False

    async def _start_and_supervise(
        self,
        argv: list[str],
        cwd: str | None,
        env: dict[str, str],
        spec: ExecutionSpec,
        pump: Output,
    ) -> Ending:
        try:
            process = spawn(
                argv, env=env, cwd=cwd, preexec_fn=functools.partial(apply_limits, spec.limits)
            )
        except OSError as exc:  # without bwrap: no such program, not executable, ...
            return Ending(note=f"the command could not start: {exc}")
        try:
            return await self._supervise(process, spec, pump)
        finally:
            await process.aclose()

    async def _supervise(self, process: Child, spec: ExecutionSpec, pump: Output) -> Ending:
        """Wait for the process (killing it past the timeout), reading its output meanwhile."""
        assert process.stdout is not None
        stdout, ended = process.stdout, trio.Event()

        async def read_output() -> None:
            async for chunk in stdout:
                await pump.feed(chunk)
            ended.set()

        # Without bwrap, what the command left in its group dies with it (in bwrap, the
        # pid namespace does); sent before reaping, while the group id is still taken.
        leftovers = signal.SIGKILL if self._bwrap is None else None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_output)
                killed = None
                with trio.move_on_after(spec.timeout):
                    await process.wait(group_signal=leftovers)
                if process.status is None:
                    killed = "timeout"
                    self._signal(process, signal.SIGTERM)
                    with trio.move_on_after(self._options.grace):
                        await process.wait(group_signal=leftovers)
                    self._signal(process, signal.SIGKILL)  # a no-op if it has ended
                    await process.wait(group_signal=leftovers)
                with trio.move_on_after(_DRAIN_SECONDS):
                    await ended.wait()
                nursery.cancel_scope.cancel()
            assert process.status is not None
            return Ending(process.status, usage_fields(process.usage), killed=killed)
        finally:
            if process.status is None:  # cancelled or failed: never leave it behind
                with trio.CancelScope(shield=True):
                    self._signal(process, signal.SIGKILL)
                    await process.wait(group_signal=leftovers)

    async def aclose(self) -> None:
        """Nothing to stop: each execution's process ends with its ``run``."""
        await trio.lowlevel.checkpoint()

    def _signal(self, process: Child, signum: int) -> None:
        """Signal the execution's processes (a no-op once the outermost is reaped)."""
        if self._bwrap is None:
            process.signal(signum, group=True)
        elif signum == signal.SIGKILL:
            # The outer bwrap; its init dies with it, and the pid namespace with that.
            process.signal(signum)
        elif process.status is None:
            # bwrap does not pass SIGTERM on: tell the processes inside directly.
            for pid in descendants(process.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
