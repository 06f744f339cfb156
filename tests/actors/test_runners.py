"""The runners on real processes: a warm zygote for Python actors, a process per command.

Tests that take the ``sandbox`` fixture run twice: in bubblewrap (skipped, saying so,
where bwrap is missing) and with rlimits only.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from abaco.actors.runners import (
    ExecutionSpec,
    RunnerError,
    RunnerOptions,
    open_command_runner,
    open_python_runner,
)
from abaco.actors.sandbox import Limits, python_layout, sandbox_path
from abaco.bundles.manifest import CommandRuntime, PythonRuntime
from tests.actors.conftest import (
    ACTOR,
    Collected,
    descendants,
    make_bundle,
    python_run,
    spec,
    wait_descendants,
)


async def test_python_actor_echoes_its_message(tmp_path, work_root, sandbox):
    [outcome], [output] = await python_run(tmp_path, work_root, sandbox, "echo", spec("e1", "hi"))
    assert outcome.status == "COMPLETE", outcome
    assert (outcome.exit_code, outcome.killed) == (0, None)
    assert output.text == "echo: hi\n"
    assert outcome.cpu > 0
    assert outcome.max_rss > 0
    assert outcome.output_bytes == len("echo: hi\n")


async def test_command_actor_echoes_its_message(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"run.sh": 'echo "msg=$MSG"\n'})
    output = Collected()
    async with open_command_runner(
        bundle, CommandRuntime(("sh", "run.sh")), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("c1", "hello there"), output)
    assert outcome.status == "COMPLETE", outcome
    assert output.text == "msg=hello there\n"
    assert list(work_root.iterdir()) == []  # the work dir is gone


async def test_command_exiting_non_zero_is_an_error_with_its_code(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {})
    async with open_command_runner(
        bundle, CommandRuntime(("sh", "-c", "exit 7")), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("c2"), Collected())
    assert (outcome.status, outcome.exit_code) == ("ERROR", 7)
    assert outcome.status_message == "exited with code 7"


async def test_python_exit_code_and_traceback_make_an_error(tmp_path, work_root, sandbox):
    [exited], _ = await python_run(tmp_path, work_root, sandbox, "fail", spec("f1", "3"))
    assert (exited.status, exited.exit_code, exited.killed) == ("ERROR", 3, None)
    assert exited.status_message == "exited with code 3"
    [raised], [output] = await python_run(
        tmp_path / "again", work_root, sandbox, "boom", spec("b1", "bad input")
    )
    assert (raised.status, raised.exit_code) == ("ERROR", 1)
    assert "ValueError: no good: bad input" in output.text
    assert "Traceback" in output.text


async def test_memory_hog_is_stopped_with_a_clear_message(tmp_path, work_root, sandbox):
    limits = Limits(memory_bytes=128 << 20)
    [outcome], [output] = await python_run(
        tmp_path, work_root, sandbox, "hog", spec("m1", limits=limits)
    )
    assert (outcome.status, outcome.killed) == ("ERROR", "memory"), output.text
    assert outcome.status_message == (
        "out of memory (MemoryError): over its memory limit of 128 MiB"
    )
    assert "ran out of memory" in output.text
    assert "allocated" not in output.text


async def test_python_execution_past_its_timeout_is_killed(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    async with open_python_runner(
        bundle, PythonRuntime("actor:sleep"), work_root=work_root, sandbox=sandbox
    ) as runner:
        warm = descendants()  # the zygote (and its sandbox), nothing else
        output = Collected()
        outcome = await runner.run(spec("t1", "60", timeout=0.5), output)
        assert (outcome.status, outcome.killed) == ("ERROR", "timeout")
        assert outcome.status_message == "execution timed out after 0.5 s"
        assert output.text == "sleeping\n"
        assert await wait_descendants(warm) == warm


async def test_command_past_its_timeout_is_killed(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {})
    argv = ("sh", "-c", "echo started; sleep 60 & sleep 60")
    async with open_command_runner(
        bundle, CommandRuntime(argv), work_root=work_root, sandbox=sandbox
    ) as runner:
        before = descendants()
        output = Collected()
        outcome = await runner.run(spec("t2", timeout=0.5), output)
        assert (outcome.status, outcome.killed) == ("ERROR", "timeout")
        assert outcome.status_message == "execution timed out after 0.5 s"
        assert output.text == "started\n"
        assert await wait_descendants(before) == before


async def test_background_processes_end_with_the_execution(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    async with open_python_runner(
        bundle, PythonRuntime("actor:spawn"), work_root=work_root, sandbox=sandbox
    ) as runner:
        warm = descendants()
        outcome = await runner.run(spec("s1"), Collected())
        assert outcome.status == "COMPLETE"
        assert await wait_descendants(warm) == warm


async def test_cancelling_run_kills_the_execution(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    async with open_python_runner(
        bundle, PythonRuntime("actor:sleep"), work_root=work_root, sandbox=sandbox
    ) as runner:
        warm = descendants()
        async with trio.open_nursery() as nursery:

            async def cancel_once_running(chunk: bytes) -> None:
                nursery.cancel_scope.cancel()

            nursery.start_soon(runner.run, spec("x1", "60"), cancel_once_running)
        assert await wait_descendants(warm) == warm
        # The zygote is still warm (or warm again) for the next execution.
        outcome = await runner.run(spec("x2", "0"), Collected())
        assert outcome.status == "COMPLETE"


async def test_cancelling_a_command_kills_it(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {})
    argv = ("sh", "-c", "echo started; sleep 60 & sleep 60")
    async with open_command_runner(
        bundle, CommandRuntime(argv), work_root=work_root, sandbox=sandbox
    ) as runner:
        before = descendants()
        async with trio.open_nursery() as nursery:

            async def cancel_once_running(chunk: bytes) -> None:
                nursery.cancel_scope.cancel()

            nursery.start_soon(runner.run, spec("x3"), cancel_once_running)
        assert await wait_descendants(before) == before
        assert list(work_root.iterdir()) == []


async def test_three_results_come_back_in_order(tmp_path, work_root, sandbox):
    [outcome], _ = await python_run(tmp_path, work_root, sandbox, "three", spec("r1"))
    assert outcome.status == "COMPLETE", outcome
    assert outcome.results == (b"one", b"two", b"three")


async def test_command_results_come_back_in_order(tmp_path, work_root, sandbox):
    code = (
        "from abaco.actors.context import send_result\n"
        "for part in (b'one', b'two', b'three'): send_result(part)\n"
    )
    layout = python_layout()
    python = sandbox_path(layout.executable) if sandbox else layout.executable
    root = sandbox_path(layout.package_root) if sandbox else layout.package_root
    bundle = make_bundle(tmp_path, {})
    async with open_command_runner(
        bundle, CommandRuntime((python, "-c", code)), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("r2", environment={"PYTHONPATH": root}), Collected())
    assert outcome.status == "COMPLETE", outcome
    assert outcome.results == (b"one", b"two", b"three")


async def test_binary_message_reaches_the_actor_as_bytes(tmp_path, work_root, sandbox):
    message = ExecutionSpec(
        execution_id="bin1", message=b"\x00\xffraw", content_type="application/octet-stream"
    )
    [outcome], _ = await python_run(tmp_path, work_root, sandbox, "binary", message)
    assert outcome.results == (b"\x00\xffraw", b"\x00\xffraw", b"application/octet-stream")


async def test_consecutive_executions_share_no_memory(tmp_path, work_root, sandbox):
    _, outputs = await python_run(
        tmp_path, work_root, sandbox, "remember", spec("n1", "a"), spec("n2", "b")
    )
    assert [output.text for output in outputs] == ["seen before: 0\n"] * 2


async def test_output_arrives_while_the_execution_runs(tmp_path, work_root, sandbox):
    """The actor waits for a file that the test writes only once it has seen "first"."""
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    output = Collected()

    async def follow(chunk: bytes) -> None:
        await output(chunk)
        if b"first" in chunk:
            (work_root / "w1" / "go").touch()

    async with open_python_runner(
        bundle, PythonRuntime("actor:wait_for_go"), work_root=work_root, sandbox=sandbox
    ) as runner:
        with trio.fail_after(60):  # without streaming, the actor would wait for ever
            outcome = await runner.run(spec("w1"), follow)
    assert outcome.status == "COMPLETE"
    assert output.chunks[0] == b"first\n"
    assert output.text == "first\nsecond\n"


async def test_command_output_arrives_while_it_runs(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {})
    script = 'echo first; while [ ! -e "$HOME/go" ]; do sleep 0.01; done; echo second'
    output = Collected()

    async def follow(chunk: bytes) -> None:
        await output(chunk)
        if b"first" in chunk:
            (work_root / "w2" / "go").touch()

    async with open_command_runner(
        bundle, CommandRuntime(("sh", "-c", script)), work_root=work_root, sandbox=sandbox
    ) as runner:
        with trio.fail_after(60):
            outcome = await runner.run(spec("w2"), follow)
    assert outcome.status == "COMPLETE"
    assert output.text == "first\nsecond\n"


async def test_the_environment_is_exactly_the_executions(tmp_path, work_root, sandbox):
    one = spec("v1", "m", environment={"_abaco_actor_id": "a1", "GREETING": "hi"})
    [outcome], [output] = await python_run(tmp_path, work_root, sandbox, "environment", one)
    assert outcome.status == "COMPLETE"
    assert output.text.split() == sorted(
        [
            *("GREETING", "HOME", "LANG", "MSG", "PATH", "TMPDIR"),
            *("_abaco_Content_Type", "_abaco_actor_id", "_abaco_execution_id"),
            "_abaco_results_socket",
        ]
    )


async def test_get_context_reads_ids_state_and_message(tmp_path, work_root, sandbox):
    environment = {
        "_abaco_actor_id": "a1",
        "_abaco_username": "ann",
        "_abaco_actor_state": '{"n": 2}',
    }
    one = spec("ctx1", "héllo", environment=environment)
    [outcome], [output] = await python_run(tmp_path, work_root, sandbox, "context", one)
    assert outcome.status == "COMPLETE"
    assert output.text == "ctx1 a1 ann {'n': 2} 'héllo'\n"


async def test_output_is_bounded_and_keeps_its_tail(tmp_path, work_root, sandbox):
    options = RunnerOptions(max_output_bytes=64 << 10)
    [outcome], [output] = await python_run(
        tmp_path, work_root, sandbox, "chatty", spec("o1"), options=options
    )
    forwarded = b"".join(output.chunks)
    assert outcome.output_bytes == 300_000 + len("\nthe end\n")
    assert outcome.output_dropped == outcome.output_bytes - (64 << 10)
    assert f"[abaco: {outcome.output_dropped} bytes of output dropped]".encode() in forwarded
    assert forwarded.endswith(b"x\nthe end\n")
    assert len(forwarded) < (64 << 10) + 100


async def test_a_dead_zygote_fails_its_execution_and_comes_back(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    async with open_python_runner(
        bundle, PythonRuntime("actor:kill_zygote"), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("z1"), Collected())
        assert outcome.status == "ERROR"
        assert outcome.status_message.startswith("the zygote failed during the execution")
        # The next run gets a new zygote (which this actor kills again, as it should).
        again = await runner.run(spec("z2"), Collected())
        assert again.status_message.startswith("the zygote failed during the execution")


async def test_cpu_limit_kills_a_busy_loop(tmp_path, work_root, sandbox):
    [outcome], _ = await python_run(
        tmp_path, work_root, sandbox, "burn", spec("u1", limits=Limits(cpu_seconds=1))
    )
    assert (outcome.status, outcome.killed) == ("ERROR", "cpu")
    assert outcome.status_message == "killed: over its CPU time limit of 1 s"


async def test_an_actor_that_does_not_import_is_a_runner_error(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"broken.py": "import no_such_module_here\n"})
    with pytest.raises(RunnerError, match="No module named 'no_such_module_here'"):
        async with open_python_runner(
            bundle, PythonRuntime("broken:handle"), work_root=work_root, sandbox=sandbox
        ):
            pass


async def test_one_execution_at_a_time(tmp_path, work_root):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    async with (
        open_python_runner(
            bundle, PythonRuntime("actor:sleep"), work_root=work_root, sandbox=False
        ) as runner,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(runner.run, spec("o1", "0.5"), Collected())
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await runner.run(spec("o2", "0"), Collected())


def test_execution_ids_and_environments_are_checked():
    with pytest.raises(ValueError, match="execution_id"):
        ExecutionSpec(execution_id="../escape")
    with pytest.raises(ValueError, match="bad environment variable"):
        ExecutionSpec(execution_id="ok", environment={"A=B": "x"})
    with pytest.raises(ValueError, match="timeout"):
        ExecutionSpec(execution_id="ok", timeout=0)


def test_work_root_paths_must_fit_a_unix_socket(tmp_path):
    # tmp_path is long on purpose here: the runner says so instead of failing obscurely.
    deep = tmp_path / ("d" * 100)
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})

    async def main():
        async with open_python_runner(
            bundle, PythonRuntime("actor:echo"), work_root=deep, sandbox=False
        ) as runner:
            await runner.run(spec("p1"), Collected())

    with pytest.raises(RunnerError, match="too long for a unix socket"):
        trio.run(main)


async def test_a_follower_that_leaves_does_not_stop_the_execution(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    send, receive = trio.open_memory_channel[bytes](0)
    receive.close()  # the follower is gone before the first line
    async with open_python_runner(
        bundle, PythonRuntime("actor:echo"), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("g1", "hi"), send)
    assert outcome.status == "COMPLETE"
    assert outcome.output_dropped == outcome.output_bytes == len("echo: hi\n")


async def test_output_can_go_to_a_memory_channel(tmp_path, work_root):
    bundle = make_bundle(tmp_path, {"actor.py": ACTOR})
    send, receive = trio.open_memory_channel[bytes](100)
    async with open_python_runner(
        bundle, PythonRuntime("actor:echo"), work_root=work_root, sandbox=False
    ) as runner:
        outcome = await runner.run(spec("g2", "hi"), send)
    assert outcome.status == "COMPLETE"
    assert receive.receive_nowait() == b"echo: hi\n"


async def test_a_command_that_cannot_start_is_an_error(tmp_path, work_root, sandbox):
    bundle = make_bundle(tmp_path, {})
    output = Collected()
    async with open_command_runner(
        bundle, CommandRuntime(("no-such-program-here",)), work_root=work_root, sandbox=sandbox
    ) as runner:
        outcome = await runner.run(spec("n1"), output)
    assert outcome.status == "ERROR"
    if sandbox:  # bwrap says so, and exits 1
        assert outcome.exit_code == 1
        assert "no-such-program-here" in output.text
    else:
        assert outcome.status_message.startswith("the command could not start: ")


def test_the_in_actor_library_refuses_to_work_outside_an_execution(monkeypatch):
    from abaco.actors import context

    monkeypatch.delenv("_abaco_results_socket", raising=False)
    for call in (
        lambda: context.send_result(b"x"),
        lambda: context.send_message("a1", "hi"),
        lambda: context.set_state({}),
    ):
        with pytest.raises(RuntimeError, match="only inside an execution"):
            call()
    monkeypatch.setenv("_abaco_actor_state", '{"count": 2}')
    assert context.get_state() == {"count": 2}
    with pytest.raises(TypeError, match="text message"):
        context.send_message("a1", b"bytes")
    with pytest.raises(TypeError, match="bytes"):
        context.send_result("text")
