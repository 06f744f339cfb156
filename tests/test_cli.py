"""The ``abaco`` command, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys


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
