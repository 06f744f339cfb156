"""Fixtures for the execution tests: bundle dirs, short work roots, both isolation modes,
and a test actor with one function per behaviour under test."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from abaco.actors.runners import ExecutionSpec, RunnerOptions, open_python_runner
from abaco.actors.sandbox import find_bwrap
from abaco.bundles.manifest import PythonRuntime

needs_bwrap = pytest.mark.skipif(
    find_bwrap() is None,
    reason="needs bubblewrap (bwrap) for the sandbox; install the bubblewrap package "
    "(scripts/test does where it can, and CI installs it)",
)


@pytest.fixture
def work_root() -> Iterator[Path]:
    """A work root with a short path: unix socket paths inside it must fit in 107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="abw-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(
    params=[pytest.param(True, marks=needs_bwrap, id="bwrap"), pytest.param(False, id="plain")]
)
def sandbox(request: pytest.FixtureRequest) -> bool:
    """Each test on it runs in bubblewrap and again with rlimits only."""
    return bool(request.param)


def make_bundle(root: Path, files: dict[str, str]) -> Path:
    """A bundle dir under ``root`` holding ``files`` (dedented)."""
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    for name, text in files.items():
        (bundle / name).write_text(textwrap.dedent(text))
    return bundle


def descendants(root: int | None = None) -> set[int]:
    """Live (not zombie) descendants of ``root`` (this process by default)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(stat.parent.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.add(pid)
            stack.append(pid)
    return found


async def wait_descendants(expected: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until this process's descendants are ``expected``; return them as they end up."""
    # /proc has no event to wait on: look again every 20 ms.
    for _ in range(int(timeout / 0.02)):
        if descendants() == expected:
            break
        await trio.sleep(0.02)
    return descendants()


class Collected:
    """An output sink that keeps every chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()


ACTOR = """
    import os, subprocess, sys, time
    from abaco.actors.context import get_context, log, send_result

    SEEN = []

    def echo(message):
        print("echo:", message)

    def remember(message):
        print("seen before:", len(SEEN))
        SEEN.append(message)

    def fail(message):
        sys.exit(int(message))

    def boom(message):
        raise ValueError("no good: " + message)

    def hog(message):
        block = bytearray(512 << 20)
        print("allocated", len(block))

    def sleep(message):
        print("sleeping", flush=True)
        time.sleep(float(message))

    def spawn(message):
        subprocess.Popen(["sleep", "60"])
        print("spawned")

    def three(message):
        for part in (b"one", b"two", b"three"):
            send_result(part)

    def binary(message):
        context = get_context()
        send_result(message)
        send_result(context["raw_message"])
        send_result(context["content_type"].encode())

    def wait_for_go(message):
        print("first")
        while not os.path.exists("go"):
            time.sleep(0.01)
        print("second")

    def environment(message):
        print(" ".join(sorted(os.environ)))

    def context(message):
        c = get_context()
        log(c["execution_id"], c["actor_id"], c["username"], c["state"], repr(c["message"]))

    def kill_zygote(message):
        os.kill(os.getppid(), 9)
        time.sleep(5)

    def chatty(message):
        sys.stdout.write("x" * 300_000 + "\\nthe end\\n")

    def burn(message):
        while True:
            pass
"""


def spec(execution_id: str, message: str = "", **overrides) -> ExecutionSpec:
    return ExecutionSpec(execution_id=execution_id, message=message.encode(), **overrides)


async def python_run(tmp_path, work_root, sandbox, function, *specs, options=None):
    """Run ``specs`` one after the other through one zygote importing ``actor:function``."""
    options = RunnerOptions(grace=0.5) if options is None else options
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    outcomes, outputs = [], []
    async with open_python_runner(
        bundle,
        PythonRuntime(f"actor:{function}"),
        work_root=work_root,
        sandbox=sandbox,
        options=options,
    ) as runner:
        for one in specs:
            outputs.append(Collected())
            outcomes.append(await runner.run(one, outputs[-1]))
    return outcomes, outputs
