"""Execution runners: one isolated execution per call, output streamed, results collected.

* :func:`open_python_runner` starts a warm zygote (:mod:`abaco.actors.zygote`) once, in
  bubblewrap where it exists, and runs each execution as a fork of it;
* :func:`open_command_runner` starts a fresh process per execution, each in its own
  bubblewrap sandbox where it exists, with the rlimits set by ``preexec_fn``.

Both serve one execution at a time: ``outcome = await runner.run(spec, output)``. What
happens around each execution (work dir, environment, output bounds, results) is
described in :mod:`abaco.actors._execution`. Past ``spec.timeout`` the execution's
processes get SIGTERM, then SIGKILL ``options.grace`` seconds later; a cancelled ``run``
kills them at once and returns only once they are gone.

This module is the public face; the parts live in private modules: ``_execution`` (what
both runners share), ``_process`` (spawning and reaping, and why not with trio's
``open_process``), ``_python_runner`` (the zygote's parent side) and ``_command_runner``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import trio

from abaco.actors._command_runner import CommandRunner as CommandRunner
from abaco.actors._execution import DEFAULT_PATH as DEFAULT_PATH
from abaco.actors._execution import ExecutionOutcome as ExecutionOutcome
from abaco.actors._execution import ExecutionSpec as ExecutionSpec
from abaco.actors._execution import OutputSink as OutputSink
from abaco.actors._execution import RunnerError as RunnerError
from abaco.actors._execution import RunnerOptions as RunnerOptions
from abaco.actors._python_runner import PythonRunner as PythonRunner
from abaco.actors.sandbox import (
    BUNDLE_DIR,
    Grants,
    bwrap_argv,
    find_bwrap,
    python_layout,
    sandbox_path,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from abaco.bundles.manifest import CommandRuntime, PythonRuntime

__all__ = [
    "DEFAULT_PATH",
    "CommandRunner",
    "ExecutionOutcome",
    "ExecutionSpec",
    "OutputSink",
    "PythonRunner",
    "Runner",
    "RunnerError",
    "RunnerOptions",
    "open_command_runner",
    "open_python_runner",
]


class Runner(Protocol):
    """Runs executions, one at a time."""

    async def run(self, spec: ExecutionSpec, output: OutputSink) -> ExecutionOutcome:
        """Run one execution, streaming its output to ``output``."""
        ...

    async def aclose(self) -> None:
        """Stop; what runs is killed."""
        ...


if TYPE_CHECKING:  # both runners are Runners, and mypy says so if one stops being one

    def _are_runners(python: PythonRunner, command: CommandRunner) -> tuple[Runner, Runner]:
        return python, command


@asynccontextmanager
async def open_python_runner(
    bundle_dir: Path,
    runtime: PythonRuntime,
    *,
    work_root: Path,
    sandbox: bool = True,
    hide: Sequence[Path] = (),
    extra_ro: Sequence[Path] = (),
    network: bool = False,
    options: RunnerOptions = RunnerOptions(),  # noqa: B008 - frozen, so sharing is safe
    grants: Grants = Grants(),  # noqa: B008 - frozen, so sharing is safe
) -> AsyncIterator[PythonRunner]:
    """A runner whose zygote has imported ``runtime.entry_point`` from ``bundle_dir``.

    ``sandbox``: use bubblewrap if it is installed (:func:`find_bwrap` warns once if
    not). ``work_root`` is the zygote's ``/work``, all of it: give each runner its own.
    ``hide``: paths the sandbox must not show (the platform's state dir, its config);
    ``extra_ro``: more host paths to show read-only (see :func:`bwrap_argv`).
    ``grants``: the actor's mounts and privileged mode (:class:`~abaco.actors.sandbox.Grants`;
    bwrap only). ``network`` is how the zygote starts; a spec asking otherwise restarts it. Raises
    :class:`RunnerError` if the module does not import; a zygote that dies later is
    started again by the next ``run``.
    """
    bwrap = find_bwrap() if sandbox else None
    await trio.Path(work_root).mkdir(parents=True, exist_ok=True)
    layout = python_layout()

    def command(network: bool) -> list[str]:
        prefix, python, bundle, tail = [], layout.executable, str(bundle_dir), []
        if bwrap is not None:
            prefix = bwrap_argv(
                bundle_dir=bundle_dir,
                work_dir=work_root,
                network=network,
                extra_ro=extra_ro,
                hide=hide,
                bwrap=bwrap,
                layout=layout,
                grants=grants,
            )
            python, bundle = sandbox_path(layout.executable), BUNDLE_DIR
            tail = ["--tmp", "/tmp", "--kill-all"]
        argv = [python, "-P", "-m", "abaco.actors.zygote", "--bundle", bundle]
        return [*prefix, *argv, "--entry", runtime.entry_point, *tail]

    runner = PythonRunner(
        command,
        bwrap=bwrap is not None,
        work_root=work_root,
        entry_point=runtime.entry_point,
        options=options,
    )
    try:
        await runner._start(network)
        yield runner
    finally:
        await runner.aclose()


@asynccontextmanager
async def open_command_runner(
    bundle_dir: Path,
    runtime: CommandRuntime,
    *,
    work_root: Path,
    sandbox: bool = True,
    hide: Sequence[Path] = (),
    extra_ro: Sequence[Path] = (),
    options: RunnerOptions = RunnerOptions(),  # noqa: B008 - frozen, so sharing is safe
    grants: Grants = Grants(),  # noqa: B008 - frozen, so sharing is safe
) -> AsyncIterator[CommandRunner]:
    """A runner of ``runtime.argv`` in ``bundle_dir``, a fresh process per execution.

    The command runs in the bundle dir (``/bundle`` in the sandbox), as the manifest
    says; its work dir ``<work_root>/<id>`` is its HOME, seen as ``/work`` in the
    sandbox. Without bwrap it runs with rlimits only. ``sandbox``, ``hide``, ``extra_ro``
    and ``grants`` are as for :func:`open_python_runner`.
    """
    await trio.Path(work_root).mkdir(parents=True, exist_ok=True)
    bwrap = find_bwrap() if sandbox else None
    yield CommandRunner(
        bundle_dir,
        runtime.argv,
        bwrap=bwrap,
        work_root=work_root,
        hide=hide,
        extra_ro=extra_ro,
        options=options,
        grants=grants,
    )
