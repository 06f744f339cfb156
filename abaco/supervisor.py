"""Running the platform's components as child processes: started, restarted, stopped.

``abaco up`` runs each component (api, scheduler, health, spawner, persistence, janitor)
as its own process under :func:`supervise`:

- A component that exits is started again after a back-off that doubles with each exit
  in a row, up to a cap, and starts over once a run lasted ``reset_after`` seconds. Every
  exit is unexpected: only the supervisor stops components. The exception is
  :data:`EXIT_UNAVAILABLE` (sysexits' ``EX_UNAVAILABLE``), which ``abaco NAME`` uses for a
  component that is not installed: starting it again cannot help, so it is left stopped.
- Cancelling :func:`supervise` stops every child at once: SIGTERM (each component drains
  on it), up to ``stop_deadline`` seconds to exit, then SIGKILL to the child's whole
  process group. Every child is reaped before :func:`supervise` returns.

Output: each child's stdout and stderr come through pipes and go out on ours, every line
prefixed with the component's name, as foreman and honcho do. Six processes share one
terminal, and a JSON log line does not say which process wrote it. The pipes are drained
to the end even while stopping, so a child that logs on its way out never blocks on a
full pipe.

Process groups: each child leads a session of its own. A Ctrl-C at the terminal then
reaches the supervisor alone, which stops the children in order, rather than reaching
every child at once and racing the restart logic; and the final SIGKILL goes to the
child's group, so helpers a component started go with it. A child notices that its
supervisor died without stopping it (SIGKILL, a crash) with :func:`stop_with_supervisor`:
``PR_SET_PDEATHSIG`` cannot do that here, as it fires when the *thread* that forked the
child ends, and trio forks from short-lived worker threads.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, NoReturn, TextIO

import attrs
import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence

__all__ = [
    "EXIT_UNAVAILABLE",
    "SUPERVISOR_PID_VARIABLE",
    "Backoff",
    "Component",
    "ComponentStatistics",
    "Supervision",
    "stop_with_supervisor",
    "supervise",
]

_log = structlog.get_logger(__name__)

EXIT_UNAVAILABLE = 69
"""Exit status of a component that cannot run here at all; it is not restarted."""

SUPERVISOR_PID_VARIABLE = "ABACO_SUPERVISOR_PID"
"""Set in each child's environment: the pid of the supervisor that started it."""

# A line longer than this is passed on in pieces rather than held in memory.
_MAX_LINE = 1 << 16
# How long output may keep coming after a child is gone: only a process that left the
# child's group can still hold the pipe, and it must not hold up the supervisor.
_DRAIN_GRACE = 1.0
# How often a supervised child checks that its supervisor is still there.
_PARENT_POLL = 0.5


def _to_argv(argv: Iterable[str]) -> tuple[str, ...]:
    return tuple(argv)


@attrs.frozen
class Component:
    """One process to keep running: its name (for logs and output) and its command line."""

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    argv: tuple[str, ...] = attrs.field(converter=_to_argv, validator=attrs.validators.min_len(1))


@attrs.frozen(kw_only=True)
class Backoff:
    """How long to wait before starting a component again after it exited."""

    initial: float = 0.5
    """Seconds before the first restart."""
    maximum: float = 30.0
    """The cap on the wait, however often the component exits."""
    factor: float = 2.0
    """Each exit in a row multiplies the wait by this."""
    reset_after: float = 60.0
    """A run at least this long counts as healthy: the next wait is ``initial`` again."""

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` exits in a row (1 for the first)."""
        # min() before the power would overflow for a component that failed all week.
        exponent = min(max(failures - 1, 0), 1000)
        try:
            return min(self.initial * self.factor**exponent, self.maximum)
        except OverflowError:
            return self.maximum


@attrs.frozen(kw_only=True)
class ComponentStatistics:
    """What the supervisor knows of one component, at the moment it was asked."""

    name: str
    """The component's name."""
    pid: int | None
    """Its current process, or None between runs."""
    running: bool
    """Whether a process of it is running now."""
    restarts: int
    """How many times it was started again after exiting."""
    last_exit: int | None
    """The status of its last exit (negative: killed by that signal), None before any."""
    given_up: bool
    """Whether it exited with :data:`EXIT_UNAVAILABLE` and so stays stopped."""


@attrs.define
class _State:
    component: Component
    process: trio.Process | None = None
    restarts: int = 0
    last_exit: int | None = None
    given_up: bool = False

    def statistics(self) -> ComponentStatistics:
        process = self.process
        running = process is not None and process.returncode is None
        return ComponentStatistics(
            name=self.component.name,
            pid=process.pid if process is not None and running else None,
            running=running,
            restarts=self.restarts,
            last_exit=self.last_exit,
            given_up=self.given_up,
        )


class Supervision:
    """The running supervisor, as :func:`supervise` hands it to ``nursery.start``."""

    def __init__(self, components: Sequence[Component]) -> None:
        self._states = {component.name: _State(component) for component in components}
        self._changed = trio.Event()

    def statistics(self) -> dict[str, ComponentStatistics]:
        """Every component's statistics, by name, in the order they were given."""
        return {name: state.statistics() for name, state in self._states.items()}

    async def wait_until(
        self, predicate: Callable[[dict[str, ComponentStatistics]], bool]
    ) -> dict[str, ComponentStatistics]:
        """Wait until ``predicate(statistics())`` holds; return those statistics."""
        while not predicate(statistics := self.statistics()):
            await self._changed.wait()
        return statistics

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _write(target: TextIO, data: bytes) -> None:
    # Our own print()s go through the text layer's buffer: flush it so that lines keep
    # their order. A closed or broken output must not stop the draining of the pipes.
    try:
        target.flush()
        target.buffer.write(data)
        target.buffer.flush()
    except (BrokenPipeError, ValueError):
        pass


async def _forward(stream: trio.abc.ReceiveStream, prefix: bytes, target: TextIO) -> None:
    """Copy ``stream`` to ``target`` line by line, each line after ``prefix``."""
    pending = b""
    async for chunk in stream:
        complete, newline, pending = (pending + chunk).rpartition(b"\n")
        if newline:
            _write(target, b"".join(prefix + line + b"\n" for line in complete.split(b"\n")))
        if len(pending) >= _MAX_LINE:
            _write(target, prefix + pending + b"\n")
            pending = b""
    if pending:
        _write(target, prefix + pending + b"\n")


def _kill_group(pgid: int) -> bool:
    """SIGKILL every process in group ``pgid``; False when none was left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Only members we may not signal are left (a setuid helper): nothing more to do.
        _log.warning("supervisor.cannot_kill_group", pgid=pgid)
    return True


async def _stop(process: trio.Process, name: str, deadline: float) -> None:
    """SIGTERM ``process``, then SIGKILL its group if it has not exited after ``deadline``."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(deadline):
        await process.wait()
    if process.returncode is None:
        _log.warning("supervisor.killing", component=name, pid=process.pid, after_seconds=deadline)
        # Not reaped yet, so the pid is still this child's and names its group.
        _kill_group(process.pid)
        await process.wait()


class _Supervisor:
    def __init__(
        self,
        supervision: Supervision,
        *,
        env: Mapping[str, str],
        backoff: Backoff,
        stop_deadline: float,
        width: int,
    ) -> None:
        self.supervision = supervision
        self.env = dict(env)
        self.backoff = backoff
        self.stop_deadline = stop_deadline
        self.width = width

    async def keep_running(
        self, state: _State, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run ``state``'s component, and again each time it exits, until cancelled."""
        name = state.component.name
        failures = 0
        first = True
        while True:
            started = trio.current_time()
            try:
                code = await self._run_once(state, task_status)
            except OSError as exc:
                if first:
                    raise  # the very first start: a wrong command, not bad luck
                _log.error("supervisor.start_failed", component=name, error=str(exc))
                code = None
            first = False
            task_status = trio.TASK_STATUS_IGNORED
            if code == EXIT_UNAVAILABLE:
                state.given_up = True
                self.supervision._notify()
                _log.error("supervisor.unavailable", component=name, action="not restarted")
                return
            healthy = trio.current_time() - started >= self.backoff.reset_after
            failures = 1 if healthy else failures + 1
            delay = self.backoff.delay(failures)
            _log.warning(
                "supervisor.restarting",
                component=name,
                exit=None if code is None else _describe_exit(code),
                ran_seconds=round(trio.current_time() - started, 3),
                delay_seconds=delay,
                restarts=state.restarts + 1,
            )
            await trio.sleep(delay)
            state.restarts += 1

    async def _run_once(self, state: _State, task_status: trio.TaskStatus[None]) -> int:
        """Start the component, forward its output until it exits, return its status."""
        component = state.component
        process = await trio.lowlevel.open_process(
            list(component.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            start_new_session=True,
        )
        # No checkpoint until the try below, so no cancellation can leave the child behind.
        state.process = process
        try:
            self.supervision._notify()
            _log.info("supervisor.started", component=component.name, pid=process.pid)
            task_status.started()
            draining = trio.CancelScope(shield=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, process, component.name, draining)
                try:
                    await process.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await _stop(process, component.name, self.stop_deadline)
                    if _kill_group(process.pid):
                        _log.warning("supervisor.killed_leftovers", component=component.name)
                    draining.deadline = trio.current_time() + _DRAIN_GRACE
        finally:
            code = process.returncode
            state.last_exit = code
            self.supervision._notify()
        assert code is not None  # _stop reaped it
        return code

    async def _drain(self, process: trio.Process, name: str, scope: trio.CancelScope) -> None:
        prefix = f"{name:<{self.width}} | ".encode()
        assert process.stdout is not None
        assert process.stderr is not None
        with scope:
            async with process.stdout, process.stderr, trio.open_nursery() as nursery:
                nursery.start_soon(_forward, process.stdout, prefix, sys.stdout)
                nursery.start_soon(_forward, process.stderr, prefix, sys.stderr)


async def supervise(
    components: Sequence[Component],
    *,
    env: Mapping[str, str] | None = None,
    restart_backoff: Backoff | None = None,
    stop_deadline: float = 10.0,
    task_status: trio.TaskStatus[Supervision] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run every component as a child process until cancelled, restarting those that exit.

    ``env`` is added to this process's environment for the children;
    ``restart_backoff`` defaults to :class:`Backoff`'s defaults. ``started`` gets a
    :class:`Supervision` once every component was started once. On cancellation, each
    child gets SIGTERM and ``stop_deadline`` seconds to exit before its process group gets
    SIGKILL; all are reaped before this returns. A component that cannot be started the
    first time (``OSError``: no such program) stops them all and raises.
    """
    names = [component.name for component in components]
    if len(set(names)) != len(names):
        raise ValueError(f"component names must be distinct: {names}")
    if not math.isfinite(stop_deadline) or stop_deadline < 0:
        raise ValueError(f"stop_deadline must be a number >= 0, not {stop_deadline!r}")
    supervision = Supervision(components)
    supervisor = _Supervisor(
        supervision,
        env={**os.environ, **(env or {}), SUPERVISOR_PID_VARIABLE: str(os.getpid())},
        backoff=restart_backoff or Backoff(),
        stop_deadline=stop_deadline,
        width=max(map(len, names), default=0),
    )
    async with trio.open_nursery() as nursery:
        for state in supervision._states.values():
            await nursery.start(supervisor.keep_running, state)
        task_status.started(supervision)
        await trio.sleep_forever()


def stop_with_supervisor(environ: MutableMapping[str, str] | None = None) -> None:
    """In a supervised child: SIGTERM this process when its supervisor goes away.

    Does nothing unless this process is a direct child of the supervisor named in
    ``environ`` (``os.environ`` by default), and removes that name from ``environ`` so
    that processes this one starts do not watch a supervisor that is not their parent.
    """
    environ = os.environ if environ is None else environ
    supervisor = environ.pop(SUPERVISOR_PID_VARIABLE, "")
    if not supervisor.isdigit() or os.getppid() != int(supervisor):
        return
    watcher = threading.Thread(
        target=_watch_parent, args=(int(supervisor),), name="abaco-supervisor-watch", daemon=True
    )
    watcher.start()


def _watch_parent(parent: int) -> None:
    # Polling getppid() is the portable way: an orphan is adopted by init or a subreaper.
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL)
    os.kill(os.getpid(), signal.SIGTERM)
    # After the signal: our output went to the supervisor's pipes, which may be gone.
    with contextlib.suppress(OSError):
        _log.warning("supervisor.gone", supervisor_pid=parent, action="stopping")
