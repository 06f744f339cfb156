"""The ``abaco`` command, run as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from abaco import launcher
from abaco.supervisor import EXIT_UNAVAILABLE


def _abaco(tmp_path, *args, env=None):
    environ = {**os.environ, "ABACO__STATE__DIR": str(tmp_path / "state"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "abaco", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def test_check_shows_the_embedded_data_layer_working(tmp_path):
    result = _abaco(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "data on valkey" in result.stdout
    assert "durable acks yes" in result.stdout
    assert "status=COMPLETE" in result.stdout
    assert "redis request/reply {'echo': 'ping'}" in result.stdout
    assert "zmq   request/reply {'echo': 'ping'}" in result.stdout
    # The embedded server kept its data under the state dir.
    assert (tmp_path / "state" / "valkey" / "appendonlydir").is_dir()


def test_a_bad_configuration_is_a_clear_error_not_a_traceback(tmp_path):
    result = _abaco(tmp_path, "up", "--demo", env={"ABACO__REDIS__DB": "many"})
    assert result.returncode == 1
    assert "ABACO__REDIS__DB" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_redis_is_a_clear_error(tmp_path):
    result = _abaco(tmp_path, "up", "--demo", env={"ABACO__REDIS__URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 1
    assert "redis://127.0.0.1:1/0: Redis unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_version(tmp_path):
    result = _abaco(tmp_path, "version")
    assert result.returncode == 0
    assert result.stdout.strip() == "0.1.0"


def test_the_spawner_command_describes_itself():
    result = subprocess.run(
        [sys.executable, "-c", "from abaco.spawner import main; main(['--help'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "per-host spawner" in result.stdout


async def test_bundle_build_push_and_list_against_a_real_api(tmp_path, api_url):
    import json

    import trio

    from tests.bundles import manifest_dict

    source = tmp_path / "src"
    (source / "hello").mkdir(parents=True)
    (source / "hello" / "main.py").write_text("def handle(message):\n    return message\n")
    (source / "Manifest.json").write_text(json.dumps(manifest_dict()))

    def run(*args):
        return _abaco(tmp_path, *args)

    built = await trio.to_thread.run_sync(run, "bundle", "build", str(source), "-o", str(tmp_path))
    assert built.returncode == 0, built.stderr
    archive = built.stdout.strip()
    assert archive.endswith("hello-1.0.0.bpk")
    pushed = await trio.to_thread.run_sync(run, "bundle", "push", archive, "--api", api_url)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("org.example/hello:1.0.0  sha256=")
    again = await trio.to_thread.run_sync(run, "bundle", "push", archive, "--api", api_url)
    assert again.returncode == 1
    assert "409" in again.stderr
    assert "immutable" in again.stderr
    listed = await trio.to_thread.run_sync(run, "bundle", "list", "--api", api_url)
    assert listed.stdout.split() == ["org.example/hello:1.0.0"]


def test_building_a_directory_without_a_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _abaco(tmp_path, "bundle", "build", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "Manifest.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_persistence_actor_needs_the_platforms_redis(tmp_path):
    result = _abaco(tmp_path, "persistence")
    assert result.returncode == 1
    assert "needs the platform's Redis" in result.stderr


# `abaco up` as a real process -------------------------------------------------------------

BANNER_END = b"press Ctrl-C to stop"
PLATFORM = {"api", "scheduler", "health", "spawner", "persistence", "janitor", "cron", "events"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_of(state_dir: Path) -> dict[int, list[str]]:
    """Live processes of the platform on ``state_dir``, as pid -> argv: those whose
    environment names it, and those working in it (Valkey, which overwrites its
    environment with its process title)."""
    wanted = f"ABACO__STATE__DIR={state_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue  # ended while we looked, or not ours to read
        ours = wanted in environ or cwd.is_relative_to(state_dir)
        if ours and state != "Z":
            found[int(entry.name)] = [arg for arg in argv if arg]
    return found


def _component_of(argv: list[str]) -> str:
    """Which component ``argv`` runs: ``python -m abaco [--config X] NAME`` -> NAME."""
    if "valkey" in Path(argv[0]).name:
        return "valkey"
    if argv[1:3] == ["-m", "abaco"]:
        return argv[-1]
    return " ".join(argv)


class Up:
    """A running ``abaco up`` and what it printed so far."""

    def __init__(self, process: trio.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.stdout = bytearray()

    @property
    def output(self) -> str:
        return self.stdout.decode() + "\n--- stderr ---\n" + self.stderr.read_text()


def _open_for_writing(path: Path):
    return path.open("wb")


async def _run_up(tmp_path, env, *args, task_status=trio.TASK_STATUS_IGNORED):
    """Run ``abaco up ARGS``; ``started`` gets an :class:`Up` once its banner is out."""
    environ = {**os.environ, "ABACO__STATE__DIR": str(tmp_path / "state"), **env}
    stderr = tmp_path / "up.stderr"
    with _open_for_writing(stderr) as file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "abaco", "up", *args],
            stdout=subprocess.PIPE,
            stderr=file,
            env=environ,
        )
    up = Up(process, stderr)
    started = False
    try:
        async for chunk in process.stdout:
            up.stdout += chunk
            if not started and BANNER_END in up.stdout:
                task_status.started(up)
                started = True
        if not started:
            raise AssertionError(f"abaco up ended before its banner:\n{up.output}")
        await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _eventually(predicate, timeout: float = 20.0, poll: float = 0.05):
    """Wait until ``predicate()`` holds; other processes make it so, with nothing to wait on."""
    for _ in range(int(timeout / poll)):
        if value := await predicate():
            return value
        await trio.sleep(poll)
    raise AssertionError(f"not true after {timeout} s")


async def _healthy(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:

        async def answers():
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await _eventually(answers)


async def _stop(up: Up, signum: signal.Signals) -> int:
    up.process.send_signal(signum)
    with trio.fail_after(25):
        return await up.process.wait()


@pytest.mark.slow
async def test_up_runs_every_component_and_stops_them_all_on_ctrl_c(tmp_path):
    state = tmp_path / "state"
    port = _free_port()
    env = {"ABACO__API__PORT": str(port), "ABACO__REDIS__URL": ""}
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            up = await nursery.start(_run_up, tmp_path, env)
        banner = up.stdout.decode()
        assert "data on valkey" in banner
        assert "durable acks yes" in banner
        assert f"api          http://127.0.0.1:{port}" in banner
        assert f"state dir    {state}" in banner
        assert f"admin token  in {state / 'admin-token'}" in banner
        assert (state / "admin-token").read_text().strip() not in banner
        assert all(f"{name}[" in banner for name in PLATFORM)

        await _healthy(f"http://127.0.0.1:{port}")

        async def all_running():
            running = {_component_of(argv) for argv in _processes_of(state).values()}
            return running >= {*PLATFORM, "valkey"}

        try:
            await _eventually(all_running)
        finally:
            before = _processes_of(state)
        assert before, up.output

        # A component that dies is started again.
        (scheduler,) = [pid for pid, argv in before.items() if _component_of(argv) == "scheduler"]
        os.kill(scheduler, signal.SIGKILL)

        async def scheduler_replaced():
            now = _processes_of(state)
            return any(_component_of(argv) == "scheduler" for argv in now.values()) and (
                scheduler not in now
            )

        await _eventually(scheduler_replaced)

        assert await _stop(up, signal.SIGINT) == 0, up.output
    # Everything it started is gone: components, what they started, and Valkey.
    assert _processes_of(state) == {}, (before, up.output)
    assert "killed by SIGKILL" in up.stderr.read_text()
    assert (state / "valkey" / "appendonlydir").is_dir()


@pytest.mark.slow
async def test_up_on_a_configured_redis_starts_no_valkey(tmp_path, valkey_server):
    state = tmp_path / "state"
    port = _free_port()
    env = {"ABACO__API__PORT": str(port), "ABACO__REDIS__URL": valkey_server.url}
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            up = await nursery.start(_run_up, tmp_path, env)
        assert f"url          {valkey_server.url}" in up.stdout.decode()
        await _healthy(f"http://127.0.0.1:{port}")
        components = {_component_of(argv) for argv in _processes_of(state).values()}
        assert "valkey" not in components
        assert await _stop(up, signal.SIGTERM) == 0, up.output
    assert _processes_of(state) == {}
    assert not (state / "valkey").exists()


@pytest.mark.slow
async def test_up_demo_runs_the_sample_actor_through_the_api(tmp_path):
    state = tmp_path / "state"
    environ = {
        **os.environ,
        "ABACO__STATE__DIR": str(state),
        "ABACO__API__PORT": str(_free_port()),
        "ABACO__REDIS__URL": "",
    }
    with trio.fail_after(120):
        result = await trio.run_process(
            [sys.executable, "-m", "abaco", "up", "--demo", "--show-token"],
            capture_stdout=True,
            capture_stderr=True,
            env=environ,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert (state / "admin-token").read_text().strip() in out
    assert '"status": "COMPLETE"' in out
    assert "hello, world!" in out
    assert out.rstrip().endswith("demo: done")
    assert _processes_of(state) == {}


# One component in this process -----------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "scheduler", "health", "spawner", "events"])
def test_a_component_command_runs_that_components_main(name):
    result = subprocess.run(
        [sys.executable, "-m", "abaco", name, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert "--config" in result.stdout


def test_the_config_option_reaches_the_component(tmp_path):
    missing = tmp_path / "nowhere.conf"
    result = _abaco(tmp_path, "--config", str(missing), "scheduler")
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_component_that_is_not_installed_is_a_clear_error():
    # None in sys.modules makes the import fail, as it would for a module not there yet.
    code = (
        "import sys; sys.modules['abaco.scheduler'] = None\n"
        "from abaco.cli import main; main(['scheduler'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == EXIT_UNAVAILABLE
    assert "the scheduler component is not available here" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "reached_at"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "[::1]"),
        ("::1", "[::1]"),
        ("api.example", "api.example"),
    ],
)
def test_the_api_url_reaches_the_host_the_api_listens_on(host, reached_at):
    assert launcher.client_host(host) == reached_at


def test_unknown_arguments_of_other_commands_are_still_errors(tmp_path):
    result = _abaco(tmp_path, "version", "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr
