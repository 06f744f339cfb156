"""Trivial executions through the runners, next to the physical limits measured alongside.

For each isolation mode (``none``: rlimits only; ``bwrap``: bubblewrap, when installed),
N executions (default 1000) of an actor that does nothing, one after the other:

* **zygote**: ``open_python_runner`` on ``def handle(message): pass``: each execution is
  a fork of the warm zygote, with its work dir, results socket, environment and rlimits;
* **command**: ``open_command_runner`` on ``python -c pass``: a fresh process (and, with
  bwrap, a fresh sandbox) per execution.

The physical limits, measured in the same run:

* **bare fork**: ``fork()``, ``_exit(0)`` in the child, ``wait4()`` in a warm process
  that imported what the zygote imports (abaco's zygote module and the actor), so that
  it forks a process of the same size; with bwrap, that process runs in the sandbox;
* **bare python**: ``subprocess.run([python, "-c", "pass"])`` from this process (inside
  ``bwrap`` with the same command line as the command runner's, for the bwrap row).

Executions/s is N over the wall time of the loop; the latencies are of each execution
(each ``await runner.run(...)``, each fork/wait, each ``subprocess.run``). The box may be
shared and is noisy: compare within one run.

Run::

    .venv/bin/python bench/executions.py            # N = 1000, about a minute
    .venv/bin/python bench/executions.py --n 200    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abaco.actors.runners import (
    ExecutionSpec,
    open_command_runner,
    open_python_runner,
)
from abaco.actors.sandbox import bwrap_argv, find_bwrap, python_layout, sandbox_path
from abaco.bundles.manifest import CommandRuntime, PythonRuntime
from bench._machine import machine

ACTOR = "def handle(message):\n    pass\n"
# Forks in a process the zygote's size: its imports, then the loop; prints the latencies.
FORKS = """
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
import abaco.actors.zygote, actor
n = int(sys.argv[1])
latencies = []
start = time.perf_counter()
for _ in range(n):
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.wait4(pid, 0)
    latencies.append(time.perf_counter() - began)
print(json.dumps([time.perf_counter() - start, latencies]))
"""


class Row:
    """One line of the table: executions/s and latency percentiles."""

    def __init__(self, label: str, mode: str, total: float, latencies: list[float]) -> None:
        self.label, self.mode = label, mode
        self.rate = len(latencies) / total
        ordered = sorted(latencies)
        self.p50 = statistics.median(ordered) * 1000
        self.p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000

    def __str__(self) -> str:
        return (
            f"| {self.label} | {self.mode} | {self.rate:,.0f} | {self.p50:.2f} | {self.p99:.2f} |"
        )


def python_argv(sandboxed: bool) -> tuple[str, dict[str, str]]:
    """The interpreter to run, and the environment that lets it import abaco."""
    layout = python_layout()
    if not sandboxed:
        return layout.executable, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return sandbox_path(layout.executable), {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": sandbox_path(layout.package_root),
    }


def bare_fork(n: int, bundle: Path, work: Path, bwrap: str | None) -> Row:
    python, env = python_argv(bwrap is not None)
    argv = [python, "-P", "-c", FORKS, str(n)]
    if bwrap is None:
        argv.append(str(bundle))
    else:
        prefix = bwrap_argv(bundle_dir=bundle, work_dir=work, network=False, bwrap=bwrap)
        argv = [*prefix, *argv, "/bundle"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    total, latencies = json.loads(result.stdout)
    return Row("bare fork+exit+wait (warm, zygote-sized)", mode(bwrap), total, latencies)


def bare_python(n: int, bundle: Path, work: Path, bwrap: str | None) -> Row:
    python, env = python_argv(bwrap is not None)
    argv = [python, "-c", "pass"]
    if bwrap is not None:
        prefix = bwrap_argv(bundle_dir=bundle, work_dir=work, network=False, bwrap=bwrap)
        argv = [*prefix, *argv]
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        began = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        latencies.append(time.perf_counter() - began)
    return Row(
        "bare `python -c pass` (subprocess.run)",
        mode(bwrap),
        time.perf_counter() - start,
        latencies,
    )


async def ignore(chunk: bytes) -> None:
    """Output goes nowhere: a trivial actor writes none anyway."""


async def through(runner, n: int, prefix: str) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for number in range(n):
        began = time.perf_counter()
        outcome = await runner.run(ExecutionSpec(execution_id=f"{prefix}{number}"), ignore)
        latencies.append(time.perf_counter() - began)
        if outcome.status != "COMPLETE":
            raise SystemExit(f"execution {number} failed: {outcome}")
    return time.perf_counter() - start, latencies


async def zygote(n: int, bundle: Path, work: Path, bwrap: str | None) -> Row:
    async with open_python_runner(
        bundle, PythonRuntime("actor:handle"), work_root=work, sandbox=bwrap is not None
    ) as runner:
        await through(runner, min(n, 50), "warm")
        total, latencies = await through(runner, n, "z")
    return Row("zygote runner (fork per execution)", mode(bwrap), total, latencies)


async def command(n: int, bundle: Path, work: Path, bwrap: str | None) -> Row:
    python, _ = python_argv(bwrap is not None)
    async with open_command_runner(
        bundle, CommandRuntime((python, "-c", "pass")), work_root=work, sandbox=bwrap is not None
    ) as runner:
        total, latencies = await through(runner, n, "c")
    return Row("command runner (`python -c pass`)", mode(bwrap), total, latencies)


def mode(bwrap: str | None) -> str:
    return "none" if bwrap is None else "bwrap"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="executions per row (1000)")
    args = parser.parse_args()
    print(machine())
    bwrap = find_bwrap()
    modes = [None] if bwrap is None else [None, bwrap]
    if bwrap is None:
        print("bubblewrap is not installed: the bwrap rows are left out")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="abb-", dir="/tmp") as scratch:
        root = Path(scratch)
        bundle = root / "bundle"
        bundle.mkdir()
        (bundle / "actor.py").write_text(ACTOR)
        for sandbox in modes:
            work = root / f"work-{mode(sandbox)}"
            work.mkdir()
            rows.append(bare_fork(args.n, bundle, work, sandbox))
            rows.append(trio.run(zygote, args.n, bundle, work, sandbox))
            rows.append(bare_python(args.n, bundle, work, sandbox))
            rows.append(trio.run(command, args.n, bundle, work, sandbox))
    print(f"\n{args.n} executions per row, one at a time\n")
    print("| path | sandbox | executions/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    print()
    for sandbox in modes:
        fork, runner = (r for r in rows if r.mode == mode(sandbox) and "fork" in r.label)
        ratio = fork.rate / runner.rate
        met = runner.rate >= 300 and ratio <= 3
        print(
            f"goal, {mode(sandbox)}: zygote >= 300 executions/s and within 3x of bare fork: "
            f"{runner.rate:,.0f}/s, {ratio:.1f}x bare fork -> {'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
