"""The sandbox: its command line and rlimits as data, then what an execution inside can do.

The tests marked ``needs_bwrap`` run real executions in bubblewrap and are skipped, with
the reason, where bwrap is not installed.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import structlog
import trio

from abaco.actors import sandbox
from abaco.actors.runners import (
    ExecutionSpec,
    RunnerError,
    open_command_runner,
    open_python_runner,
)
from abaco.actors.sandbox import (
    Limits,
    PythonLayout,
    apply_limits,
    bwrap_argv,
    find_bwrap,
    sandbox_path,
)
from abaco.bundles.manifest import CommandRuntime, PythonRuntime
from tests.actors.conftest import (
    Collected,
    descendants,
    make_bundle,
    needs_bwrap,
    wait_descendants,
)

LAYOUT = PythonLayout(
    executable="/opt/py/bin/python3",
    prefixes=("/opt/py", "/work/app/.venv"),
    package_dir="/work/app/abaco",
)


def argv(tmp_path: Path, **overrides) -> list[str]:
    arguments = {
        "bundle_dir": tmp_path / "bundle",
        "work_dir": tmp_path / "work",
        "network": False,
        "layout": LAYOUT,
        **overrides,
    }
    return bwrap_argv(**arguments)


def pairs(args: list[str], option: str) -> list[tuple[str, str]]:
    """The (source, target) pairs that follow each ``option`` in ``args``."""
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def test_the_sandbox_drops_privileges_and_unshares_everything(tmp_path):
    args = argv(tmp_path)
    text = " ".join(args)
    for part in (
        "--unshare-all --unshare-user --uid 65534 --gid 65534",
        "--cap-drop ALL --die-with-parent --new-session",
        "--proc /proc --dev /dev --remount-ro /dev --tmpfs /tmp",
    ):
        assert part in text
    assert "--share-net" not in args
    assert args[-5:] == ["--remount-ro", "/", "--chdir", "/work", "--"]
    assert "--share-net" in argv(tmp_path, network=True)


def test_only_the_work_dir_is_bound_writable(tmp_path):
    args = argv(tmp_path)
    assert pairs(args, "--bind") == [(str(tmp_path / "work"), "/work")]
    assert (str(tmp_path / "bundle"), "/bundle") in pairs(args, "--ro-bind")


def test_etc_is_not_bound_whole(tmp_path):
    sources = {source for source, _ in pairs(argv(tmp_path), "--ro-bind-try")}
    assert {"/etc/passwd", "/etc/ld.so.cache", "/usr", "/lib64"} <= sources
    assert "/etc" not in sources
    assert "/etc/shadow" not in sources
    assert "/etc/resolv.conf" not in sources
    network = {source for source, _ in pairs(argv(tmp_path, network=True), "--ro-bind-try")}
    assert "/etc/resolv.conf" in network


def test_python_and_abaco_are_bound_where_they_do_not_collide(tmp_path):
    binds = pairs(argv(tmp_path), "--ro-bind")
    assert ("/opt/py", "/opt/py") in binds
    assert ("/work/app/.venv", "/run/abaco/host/work/app/.venv") in binds
    assert ("/work/app/abaco", "/run/abaco/host/work/app/abaco") in binds
    # A Python under /usr is visible through /usr already.
    system = PythonLayout("/usr/bin/python3", ("/usr",), "/usr/lib/python3/dist-packages/abaco")
    sources = {source for source, _ in pairs(argv(tmp_path, layout=system), "--ro-bind")}
    assert sources == {str(tmp_path / "bundle")}


def test_sandbox_path_moves_only_colliding_paths():
    assert sandbox_path("/root/.pyenv/versions/3.11.7") == "/root/.pyenv/versions/3.11.7"
    assert (
        sandbox_path("/work/main/.venv/bin/python") == "/run/abaco/host/work/main/.venv/bin/python"
    )
    assert sandbox_path("/tmp/x/../y") == "/run/abaco/host/tmp/y"
    assert sandbox_path("/run/abaco/x") == "/run/abaco/host/run/abaco/x"
    assert sandbox_path("/workshop") == "/workshop"


def test_hidden_paths_are_covered_wherever_a_bind_shows_them(tmp_path):
    shared = tmp_path / "shared"
    (shared / "state").mkdir(parents=True)
    (shared / "abaco.conf").write_text("password = 1\n")
    hide = [shared / "state", shared / "abaco.conf", tmp_path / "elsewhere", shared / "gone"]
    args = argv(tmp_path, extra_ro=[shared], hide=hide)
    inside = sandbox_path(shared)
    text = " ".join(args)
    assert f"--tmpfs {inside}/state --remount-ro {inside}/state" in text
    assert f"--ro-bind /dev/null {inside}/abaco.conf" in text
    assert "elsewhere" not in text  # not visible anyway
    assert "gone" not in text  # nothing there to hide
    # Hiding comes after the binds it covers, and before the root turns read-only.
    assert args.index(inside) < args.index(f"{inside}/state") < args.index("/")


def test_limits_are_checked():
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=0)
    with pytest.raises(ValueError, match="processes"):
        Limits(processes=-1)
    assert (resource.RLIMIT_CORE, 0, 0) in Limits().rlimits()


def test_apply_limits_sets_every_rlimit_in_the_child():
    limits = Limits(memory_bytes=256 << 20, cpu_seconds=5, processes=50, file_bytes=1 << 20)
    code = (
        "import resource as r; print([r.getrlimit(getattr(r, n)) for n in "
        "('RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', "
        "'RLIMIT_CORE')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=partial(apply_limits, limits),
        capture_output=True,
        text=True,
        check=True,
    )
    mib = 1 << 20
    expected = [(256 * mib,) * 2, (5, 6), (50, 50), (mib, mib), (1024, 1024), (0, 0)]
    assert result.stdout.strip() == str(expected)


def test_a_missing_bwrap_is_said_once(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_warned_missing", False)
    with structlog.testing.capture_logs() as logs:
        assert find_bwrap() is None
        assert find_bwrap() is None
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert "WITHOUT a sandbox" in logs[0]["event"]


PROBE = """
    import json, os, socket, subprocess

    def probe(message):
        name, _, argument = message.partition(" ")
        print(json.dumps(globals()[name](argument)))

    def identity(_):
        status = dict(
            line.split(":", 1) for line in open("/proc/self/status").read().splitlines()
        )
        return {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "CapEff": status["CapEff"].strip(),
            "CapPrm": status["CapPrm"].strip(),
        }

    def processes(_):
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    found.append(open(f"/proc/{name}/cmdline", "rb").read().decode())
                except OSError:
                    pass
        return found

    def network(port):
        interfaces = [
            line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]
        ]
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
            connected = "connected"
        except OSError as exc:
            connected = type(exc).__name__
        return {"interfaces": interfaces, "connect": connected}

    def writes(paths):
        outcome = {}
        for path in json.loads(paths):
            try:
                with open(path, "w") as file:
                    file.write("x")
                outcome[path] = "written"
            except OSError as exc:
                outcome[path] = type(exc).__name__
        return outcome

    def escape(_):
        subprocess.Popen(["sleep", "60"], start_new_session=True)
        return "spawned"

    def reads(paths):
        seen = {}
        for path in json.loads(paths):
            try:
                if os.path.isdir(path):
                    seen[path] = sorted(os.listdir(path))
                else:
                    seen[path] = open(path).read()
            except OSError as exc:
                seen[path] = type(exc).__name__
        return seen
"""


async def probe(tmp_path, work_root, *messages, network=False, **runner_options):
    """Run each message through ``probe`` in one sandboxed zygote; return the JSON printed."""
    bundle = make_bundle(tmp_path / "b", {"probe.py": PROBE})
    answers = []
    async with open_python_runner(
        bundle, PythonRuntime("probe:probe"), work_root=work_root, **runner_options
    ) as runner:
        for number, message in enumerate(messages):
            output = Collected()
            spec = ExecutionSpec(
                execution_id=f"p{number}", message=message.encode(), network=network
            )
            outcome = await runner.run(spec, output)
            assert outcome.status == "COMPLETE", (outcome, output.text)
            answers.append(json.loads(output.text))
    return answers


@needs_bwrap
async def test_the_execution_runs_as_nobody_without_capabilities(tmp_path, work_root):
    [identity] = await probe(tmp_path, work_root, "identity")
    assert identity == {
        "uid": 65534,
        "gid": 65534,
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
    }


@needs_bwrap
async def test_a_command_runs_as_nobody_without_capabilities(tmp_path, work_root):
    bundle = make_bundle(tmp_path, {})
    script = "id -u; id -g; grep CapEff /proc/self/status"
    output = Collected()
    async with open_command_runner(
        bundle, CommandRuntime(("sh", "-c", script)), work_root=work_root
    ) as runner:
        outcome = await runner.run(ExecutionSpec(execution_id="c1"), output)
    assert outcome.status == "COMPLETE"
    assert output.text.split() == ["65534", "65534", "CapEff:", "0000000000000000"]


@needs_bwrap
async def test_the_execution_sees_no_host_process(tmp_path, work_root):
    [seen] = await probe(tmp_path, work_root, "processes")
    programs = sorted(Path(line.split("\0")[0]).name for line in seen)
    # bwrap's init, the zygote and the execution itself: nothing of the host.
    python = Path(sandbox_path(sys.executable)).name
    assert programs == sorted(["bwrap", python, python])


@needs_bwrap
async def test_network_is_denied_unless_asked_for(tmp_path, work_root):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        [denied] = await probe(tmp_path, work_root, f"network {port}")
        [allowed] = await probe(tmp_path / "net", work_root, f"network {port}", network=True)
    # Its own loopback only (bwrap brings it up), where nothing listens.
    assert denied == {"interfaces": ["lo"], "connect": "ConnectionRefusedError"}
    assert allowed["connect"] == "connected"


@needs_bwrap
async def test_nothing_is_writable_but_work_and_tmp(tmp_path, work_root):
    targets = ["/x", "/usr/x", "/etc/x", "/bundle/x", "/root/x", "/run/x", "/dev/x"]
    targets += [f"{sandbox_path(Path(sandbox.__file__).parent)}/x", "/proc/x"]
    targets += ["/work/p0/x", "/tmp/x"]
    [writes] = await probe(tmp_path, work_root, f"writes {json.dumps(targets)}")
    written = {path for path, result in writes.items() if result == "written"}
    assert written == {"/work/p0/x", "/tmp/x"}, writes


@needs_bwrap
async def test_tmp_is_emptied_between_executions(tmp_path, work_root):
    answers = await probe(
        tmp_path, work_root, 'writes ["/tmp/left"]', 'reads ["/tmp/left", "/tmp"]'
    )
    assert answers == [{"/tmp/left": "written"}, {"/tmp/left": "FileNotFoundError", "/tmp": []}]


@needs_bwrap
async def test_the_state_dir_and_config_are_invisible_even_under_a_bound_dir(tmp_path, work_root):
    shared = tmp_path / "shared"  # say, a dir the operator bound for every actor
    state = shared / "state"
    state.mkdir(parents=True)
    (state / "secret.txt").write_text("the state dir's secret\n")
    config = shared / "abaco.conf"
    config.write_text('[redis]\npassword = "hunter2"\n')
    (shared / "public.txt").write_text("public\n")
    inside = sandbox_path(shared)
    paths = [f"{inside}/state", f"{inside}/state/secret.txt", f"{inside}/abaco.conf"]
    paths += [f"{inside}/public.txt", "/bundle/probe.py"]
    # The bundle itself lives in the state dir (the fetcher's cache does): still at /bundle.
    [seen] = await probe(
        state, work_root, f"reads {json.dumps(paths)}", extra_ro=[shared], hide=[state, config]
    )
    assert seen.pop("/bundle/probe.py").startswith("\nimport json")
    assert seen == {
        f"{inside}/state": [],  # an empty tmpfs
        f"{inside}/state/secret.txt": "FileNotFoundError",
        f"{inside}/abaco.conf": "PermissionError",  # /dev/null, on a nodev mount
        f"{inside}/public.txt": "public\n",
    }


@needs_bwrap
async def test_processes_that_leave_the_process_group_end_with_the_execution(tmp_path, work_root):
    bundle = make_bundle(tmp_path, {"probe.py": PROBE})
    async with open_python_runner(
        bundle, PythonRuntime("probe:probe"), work_root=work_root
    ) as runner:
        warm = descendants()
        outcome = await runner.run(ExecutionSpec(execution_id="e1", message=b"escape"), Collected())
        assert outcome.status == "COMPLETE"
        # In its own pid namespace, the zygote ends every process but itself and init.
        assert await wait_descendants(warm) == warm


@needs_bwrap
async def test_the_sandbox_outlives_idle_trio_threads(tmp_path, work_root, monkeypatch):
    """bwrap's --die-with-parent follows the *thread* that started it: not a cached one.

    trio's cached threads exit after 10 s idle; here after 10 ms, so that a sandbox
    started from one would be dead by the second execution.
    """
    import trio._core._thread_cache as thread_cache

    monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 0.01)
    bundle = make_bundle(tmp_path, {"probe.py": PROBE})
    async with open_python_runner(
        bundle, PythonRuntime("probe:probe"), work_root=work_root
    ) as runner:
        first = await runner.run(ExecutionSpec(execution_id="i1", message=b"identity"), Collected())
        await trio.to_thread.run_sync(lambda: None)  # a cached thread, which then idles
        await trio.sleep(0.5)
        second = await runner.run(
            ExecutionSpec(execution_id="i2", message=b"identity"), Collected()
        )
    assert (first.status, second.status) == ("COMPLETE", "COMPLETE"), second


@needs_bwrap
async def test_a_sandbox_that_cannot_start_says_why(tmp_path, work_root):
    bundle = make_bundle(tmp_path, {"probe.py": PROBE})
    missing = tmp_path / "no-such-dir"
    with pytest.raises(
        RunnerError, match=r"did not start: the zygote exited: bwrap: .*no-such-dir"
    ):
        async with open_python_runner(
            bundle, PythonRuntime("probe:probe"), work_root=work_root, extra_ro=[missing]
        ):
            pass
