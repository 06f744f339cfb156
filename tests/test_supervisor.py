"""The process supervisor, on small real processes: restarts, back-off, stopping, output."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
import trio

from abaco.supervisor import (
    EXIT_UNAVAILABLE,
    SUPERVISOR_PID_VARIABLE,
    Backoff,
    Component,
    stop_with_supervisor,
    supervise,
)

FAST = Backoff(initial=0.01, maximum=0.05, factor=2.0, reset_after=60.0)


def python(name: str, code: str) -> Component:
    """A component that runs ``code`` (dedented) in a fresh Python."""
    return Component(name, [sys.executable, "-c", textwrap.dedent(code)])


def sleeper(name: str = "sleeper") -> Component:
    return python(name, "import time; time.sleep(60)")


def crasher(after: float = 0.05) -> Component:
    return python("crasher", f"import time; time.sleep({after}); raise SystemExit(1)")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _written(path: Path) -> str | None:
    """What another process wrote to ``path``, once it ended its line; else None."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


async def eventually(predicate, timeout: float = 10.0, poll: float = 0.01):
    """Wait until ``predicate()`` is truthy and return it; another process makes it so,
    with nothing to wait on but /proc and the file system, so look again every ``poll``."""
    for _ in range(int(timeout / poll)):
        if value := predicate():
            return value
        await trio.sleep(poll)
    raise AssertionError(f"still false after {timeout} s: {predicate}")


async def wait_for_file(path: Path) -> str:
    return await eventually(lambda: _written(path))


async def test_a_crashing_component_is_restarted_with_growing_capped_backoff():
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            supervision = await nursery.start(
                lambda task_status: supervise(
                    [sleeper(), crasher()], restart_backoff=FAST, task_status=task_status
                )
            )
            with trio.fail_after(20):
                stats = await supervision.wait_until(lambda s: s["crasher"].restarts >= 5)
            nursery.cancel_scope.cancel()
    assert stats["crasher"].last_exit == 1
    assert stats["sleeper"].restarts == 0
    assert stats["sleeper"].running
    restarts = [event for event in logs if event["event"] == "supervisor.restarting"]
    assert all(event["component"] == "crasher" for event in restarts)
    assert restarts[0]["exit"] == "exited with status 1"
    assert [event["delay_seconds"] for event in restarts[:5]] == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert [event["restarts"] for event in restarts[:5]] == [1, 2, 3, 4, 5]


async def test_the_backoff_starts_over_after_a_run_that_lasted():
    backoff = Backoff(initial=0.01, maximum=1.0, factor=2.0, reset_after=0.05)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            supervision = await nursery.start(
                lambda task_status: supervise(
                    [crasher(after=0.1)], restart_backoff=backoff, task_status=task_status
                )
            )
            with trio.fail_after(20):
                await supervision.wait_until(lambda s: s["crasher"].restarts >= 3)
            nursery.cancel_scope.cancel()
    delays = [event["delay_seconds"] for event in logs if event["event"] == "supervisor.restarting"]
    assert delays[:3] == [0.01, 0.01, 0.01]


def test_backoff_delays_double_up_to_the_cap():
    backoff = Backoff(initial=0.5, maximum=30.0, factor=2.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10**9) == 30.0
    assert Backoff(initial=1, maximum=5, factor=1e300).delay(5) == 5


async def test_cancelling_stops_every_component_with_sigterm(tmp_path):
    marker = tmp_path / "drained"
    ready = tmp_path / "ready"
    drains = python(
        "drains",
        f"""
        import signal, sys, time
        def stop(signum, frame):
            open({str(marker)!r}, "w").write(signal.Signals(signum).name + "\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        open({str(ready)!r}, "w").write("ready\\n")
        time.sleep(60)
        """,
    )
    async with trio.open_nursery() as nursery:
        supervision = await nursery.start(
            lambda task_status: supervise(
                [drains, sleeper()], stop_deadline=10, task_status=task_status
            )
        )
        await wait_for_file(ready)
        pids = [stats.pid for stats in supervision.statistics().values()]
        nursery.cancel_scope.cancel()
    stats = supervision.statistics()
    assert marker.read_text() == "SIGTERM\n"
    assert stats["drains"].last_exit == 0
    assert stats["sleeper"].last_exit == -signal.SIGTERM
    assert not any(s.running for s in stats.values())
    assert not any(alive(pid) for pid in pids if pid is not None)


async def test_a_component_ignoring_sigterm_is_killed_after_the_deadline(tmp_path):
    ready = tmp_path / "ready"
    stubborn = python(
        "stubborn",
        f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(ready)!r}, "w").write("ready\\n")
        time.sleep(60)
        """,
    )
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            supervision = await nursery.start(
                lambda task_status: supervise(
                    [stubborn], stop_deadline=0.2, task_status=task_status
                )
            )
            await wait_for_file(ready)
            nursery.cancel_scope.cancel()
    assert supervision.statistics()["stubborn"].last_exit == -signal.SIGKILL
    assert [event["component"] for event in logs if event["event"] == "supervisor.killing"] == [
        "stubborn"
    ]


async def test_what_a_component_started_goes_with_it(tmp_path):
    """A helper process left in the component's group is killed when the component ends."""
    helper_pid = tmp_path / "helper"
    leaves_helper = python(
        "leaver",
        f"""
        import subprocess, time
        helper = subprocess.Popen(["sleep", "60"])
        open({str(helper_pid)!r}, "w").write(f"{{helper.pid}}\\n")
        time.sleep(60)
        """,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: supervise([leaves_helper], task_status=task_status))
        pid = int(await wait_for_file(helper_pid))
        assert alive(pid)
        nursery.cancel_scope.cancel()
    # Killed, then reaped by init: no longer a live process.
    await eventually(lambda: not alive(pid))


async def test_output_is_forwarded_line_by_line_after_the_component_name(capfd):
    talker = python(
        "talker",
        f"""
        import os, sys
        print("greeting:", os.environ["GREETING"])
        print("supervisor:", os.environ[{SUPERVISOR_PID_VARIABLE!r}] == str(os.getppid()))
        print("oops", file=sys.stderr)
        sys.stdout.write("no newline at the end")
        sys.exit({EXIT_UNAVAILABLE})
        """,
    )
    async with trio.open_nursery() as nursery:
        supervision = await nursery.start(
            lambda task_status: supervise(
                [talker, sleeper("quiet")], env={"GREETING": "hello"}, task_status=task_status
            )
        )
        with trio.fail_after(10):
            stats = await supervision.wait_until(lambda s: s["talker"].given_up)
        nursery.cancel_scope.cancel()
    out, err = capfd.readouterr()
    # Unconfigured structlog (the supervisor's own events) writes to stdout too.
    assert [line for line in out.splitlines() if line.startswith("talker")] == [
        "talker | greeting: hello",
        "talker | supervisor: True",
        "talker | no newline at the end",
    ]
    assert err.splitlines() == ["talker | oops"]
    # EX_UNAVAILABLE: a component that cannot run here is not started again.
    assert stats["talker"].restarts == 0
    assert stats["talker"].last_exit == EXIT_UNAVAILABLE


async def test_a_component_that_cannot_start_at_all_stops_the_others():
    missing = Component("missing", ["/nonexistent/abaco-component"])
    with pytest.RaisesGroup(FileNotFoundError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: supervise([sleeper(), missing], task_status=task_status)
            )


async def test_component_names_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        await supervise([sleeper(), sleeper()])


def test_stop_with_supervisor_ignores_a_supervisor_that_is_not_the_parent():
    environ = {SUPERVISOR_PID_VARIABLE: str(os.getpid())}  # we are not our own parent
    stop_with_supervisor(environ)
    assert environ == {}


async def test_a_component_stops_when_its_supervisor_is_killed(tmp_path):
    """SIGKILL of the supervisor leaves no orphan: the component sees it and stops."""
    component_pid = tmp_path / "component"
    component = python(
        "orphan",
        f"""
        import os, time
        from abaco.supervisor import stop_with_supervisor
        stop_with_supervisor()
        open({str(component_pid)!r}, "w").write(f"{{os.getpid()}}\\n")
        time.sleep(60)
        """,
    )
    supervisor_code = textwrap.dedent(
        f"""
        import trio
        from abaco.supervisor import Component, supervise
        trio.run(lambda: supervise([Component("orphan", {list(component.argv)!r})]))
        """
    )
    process = await trio.lowlevel.open_process([sys.executable, "-c", supervisor_code])
    try:
        pid = int(await wait_for_file(component_pid))
        process.kill()
        await process.wait()
        await eventually(lambda: not alive(pid))
    finally:
        process.kill()
        await process.wait()
