"""The ``abaco`` client commands as real processes against the real API (and a real worker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from abaco.bundles import ArchiveLimits, extract_archive
from tests.api._helpers import IMAGE, push_bundle
from tests.api.test_repository import _build

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Ran:
    """What a finished ``abaco`` process left."""

    returncode: int
    stdout: str
    stderr: str
    raw: bytes


@pytest.fixture
def cli_env(api_url, admin_token, settings):
    """The environment of an ``abaco`` client process: the API and the admin's token."""
    return {
        **os.environ,
        "ABACO_API": api_url,
        "ABACO_TOKEN": admin_token,
        "ABACO__STATE__DIR": str(settings.state.path()),
    }


@pytest.fixture
def abaco(cli_env):
    """``await abaco(*args)`` runs ``python -m abaco ARGS`` to the end."""

    async def run(*args: str, env: dict[str, str] | None = None) -> Ran:
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-m", "abaco", *args],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**cli_env, **(env or {})},
                cwd=ROOT,
            )
        return Ran(done.returncode, done.stdout.decode(), done.stderr.decode(), done.stdout)

    return run


def _fields(table: str) -> dict[str, str]:
    """A two-column record table as a dict."""
    pairs = (line.split(None, 1) for line in table.splitlines() if line.strip())
    return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}


def _rows(table: str) -> tuple[str, list[dict[str, str]]]:
    """A listing: its header line, and each row cut at the header's column starts."""
    header, *lines = table.splitlines()
    names = header.split("  ")
    names = [name.strip() for name in names if name.strip()]
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines:
        cells = [
            line[start : (starts[i + 1] if i + 1 < len(starts) else None)].strip()
            for i, start in enumerate(starts)
        ]
        rows.append(dict(zip(names, cells, strict=True)))
    return header, rows


def _ok(ran: Ran) -> Ran:
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    return ran


def _failed(ran: Ran, *expected: str, code: int = 1) -> str:
    """The error message of a command that must fail cleanly with ``code``."""
    assert ran.returncode == code, (ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("abaco: "), ran.stderr
    for text in expected:
        assert text in ran.stderr
    return last


# -- actors, messages, executions and workers through the API alone ---------------------------


async def test_actors_create_list_show_update_delete(abaco, client, tmp_path):
    await push_bundle(client, tmp_path)
    created = _ok(
        await abaco(
            *("actors", "create", "--image", IMAGE, "--name", "hello"),
            *("--description", "says hello", "--env", "A=1", "--env", "B=two=2"),
            *("--hint", "blue", "--hint", "host:lab", "--max-workers", "2"),
        )
    )
    record = _fields(created.stdout)
    first = record["id"]
    assert (record["name"], record["status"], record["image"]) == ("hello", "SUBMITTED", IMAGE)
    assert record["default_environment"] == "A=1, B=two=2"
    assert record["hints"] == "blue, host:lab"
    assert record["stateless"] == "yes"
    assert "_links" not in record

    as_json = _ok(await abaco("actors", "create", "--image", IMAGE, "--stateful", "--json"))
    second = json.loads(as_json.stdout)
    assert second["stateless"] is False
    assert second["image"] == IMAGE

    listed = _ok(await abaco("actors", "list"))
    header, rows = _rows(listed.stdout)
    assert header.split() == ["ID", "NAME", "STATUS", "IMAGE", "OWNER", "UPDATED"]
    assert {row["ID"]: row["NAME"] for row in rows} == {first: "hello", second["id"]: "-"}
    assert {row["OWNER"] for row in rows} == {"admin"}
    listed_json = json.loads(_ok(await abaco("actors", "list", "--json")).stdout)
    assert sorted(a["id"] for a in listed_json) == sorted([first, second["id"]])

    shown = _ok(await abaco("actors", "show", first, "--json"))
    assert json.loads(shown.stdout) == (await client.get(f"/actors/{first}")).json()["result"]
    assert _fields(_ok(await abaco("actors", "show", first)).stdout)["description"] == "says hello"

    updated = _ok(await abaco("actors", "update", first, "--description", "now quieter", "--json"))
    after = json.loads(updated.stdout)
    assert (after["description"], after["name"], after["revision"]) == ("now quieter", "hello", 1)
    forced = json.loads(_ok(await abaco("actors", "update", first, "--force", "--json")).stdout)
    assert (forced["revision"], forced["status"]) == (2, "SUBMITTED")
    _failed(await abaco("actors", "update", first), "nothing to update")

    deleted = _ok(await abaco("actors", "delete", first))
    assert deleted.stdout.strip() == "Actor deleted successfully."
    gone = _failed(await abaco("actors", "show", first), "(HTTP 404)")
    assert first in gone


async def _at_once(abaco, *commands):
    """Run independent commands (argument tuples, an env dict last if any) all at once."""
    results = [None] * len(commands)

    async def one(index, command):
        env = command[-1] if isinstance(command[-1], dict) else None
        results[index] = await abaco(*(command[:-1] if env else command), env=env)

    async with trio.open_nursery() as nursery:
        for index, command in enumerate(commands):
            nursery.start_soon(one, index, command)
    return results


async def test_errors_are_one_line_without_a_traceback(abaco, client, tmp_path, cli_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (
        bad_image,
        missing,
        bad_env,
        bad_num,
        bad_json,
        reserved,
        bad_token,
        unreachable,
        api_first,
        bad_url,
    ) = await _at_once(
        abaco,
        ("actors", "create", "--image", "org.example/nothing:9.9.9"),
        ("actors", "create"),
        ("send", "someone", "hi", "--env", "NOEQUALS"),
        ("workers", "add", "someone", "--num", "0"),
        ("send", "someone", "{", "--json-body"),
        ("send", "someone", "hi", "--env", "message=x"),
        ("actors", "list", "--token", "not-a-token"),
        ("actors", "list", {"ABACO_API": closed}),
        ("actors", "list", "--api", closed),  # --api wins over $ABACO_API
        ("actors", "list", "--api", "ftp://x"),
    )
    message = _failed(bad_image, "Invalid actor description: image", "(HTTP 400)")
    api = await client.post("/actors", json={"image": "org.example/nothing:9.9.9"})
    assert api.json()["message"] in message
    _failed(missing, "abaco: the following arguments are required: --image", code=2)
    assert missing.stderr.startswith("usage: abaco actors create")
    _failed(bad_env, "expected K=V", code=2)
    _failed(bad_num, "1 or more", code=2)
    _failed(bad_json, "MSG is not JSON")
    _failed(reserved, "--env cannot set message")
    _failed(bad_token, "(HTTP 401)")
    _failed(unreachable, f"cannot reach the API at {closed}")
    _failed(api_first, f"cannot reach the API at {closed}")
    _failed(bad_url, "the API URL must be http")

    # A reader that goes away early (abaco ... | head) ends the command quietly.
    await push_bundle(client, tmp_path)
    _ok(await abaco("actors", "create", "--image", IMAGE))
    reader, writer = os.pipe()
    os.close(reader)
    try:
        with trio.fail_after(60):
            closed_early = await trio.run_process(
                [sys.executable, "-m", "abaco", "actors", "list"],
                stdout=writer,
                capture_stderr=True,
                check=False,
                # Buffered, as stdout to a pipe usually is: the write comes at the end.
                env={k: v for k, v in cli_env.items() if k != "PYTHONUNBUFFERED"},
            )
    finally:
        os.close(writer)
    assert closed_early.returncode == 1
    assert closed_early.stderr == b""


async def test_send_then_executions_and_workers(abaco, client, tmp_path):
    await push_bundle(client, tmp_path)
    actor = json.loads(_ok(await abaco("actors", "create", "--image", IMAGE, "--json")).stdout)
    actor_id = actor["id"]

    plain = _ok(await abaco("send", actor_id, "hello there"))
    first = plain.stdout.strip()
    assert first
    assert "\n" not in first
    sent = json.loads(
        _ok(await abaco("send", actor_id, '{"numbers": [1, 2]}', "--json-body", "--json")).stdout
    )
    assert sent["msg"] == {"numbers": [1, 2]}
    second = sent["execution_id"]

    listed = _ok(await abaco("executions", "list", actor_id))
    totals, table = listed.stdout.split("\n", 1)
    assert totals.startswith(f"2 executions of actor {actor_id}")
    header, rows = _rows(table)
    assert header.split() == ["ID", "STATUS", "RECEIVED", "STARTED", "FINISHED"]
    assert {row["ID"]: row["STATUS"] for row in rows} == {
        first: "SUBMITTED",
        second: "SUBMITTED",
    }
    assert {row["STARTED"] for row in rows} == {"-"}
    summary = json.loads(_ok(await abaco("executions", "list", actor_id, "--json")).stdout)
    assert (summary["total_executions"], sorted(summary["ids"])) == (2, sorted([first, second]))
    page = json.loads(
        _ok(await abaco("executions", "list", actor_id, "--limit", "1", "--json")).stdout
    )
    assert len(page["executions"]) == 1

    shown = _fields(_ok(await abaco("executions", "show", actor_id, first)).stdout)
    assert (shown["id"], shown["status"], shown["executor"]) == (first, "SUBMITTED", "admin")
    # Aborted before any worker ran it, its log never ends: following stops all the same.
    aborted = await client.delete(f"/actors/{actor_id}/executions/{first}")
    assert aborted.status_code == 200, aborted.text
    followed = _ok(await abaco("executions", "logs", actor_id, first, "-f"))
    assert followed.stdout == ""
    _failed(await abaco("executions", "show", actor_id, "nope"), "(HTTP 404)")

    # Creating the actor asked for one worker (no spawner here: it stays REQUESTED).
    (requested,) = json.loads(_ok(await abaco("workers", "list", actor_id, "--json")).stdout)
    assert requested["status"] == "REQUESTED"
    added = _ok(await abaco("workers", "add", actor_id, "--num", "3"))
    assert added.stdout.strip() == (
        "Scheduled 2 new worker(s) to start. Previously, there were 1 workers."
    )
    header, rows = _rows(_ok(await abaco("workers", "list", actor_id)).stdout)
    assert header.split() == ["ID", "STATUS", "HOST", "PID", "CREATED", "LAST", "HEARTBEAT"]
    assert len(rows) == 3
    assert {row["STATUS"] for row in rows} == {"REQUESTED"}
    stopped = _ok(await abaco("workers", "delete", actor_id, requested["id"]))
    assert stopped.stdout.strip() == "Worker scheduled to be stopped."
    after = json.loads(_ok(await abaco("workers", "list", actor_id, "--json")).stdout)
    statuses = {w["id"]: w["status"] for w in after}
    assert statuses[requested["id"]] == "SHUTDOWN_REQUESTED"


# -- with a real worker running the messages -----------------------------------------------

WORKER_ACTOR = b"""
import os, sys, time
from abaco.actors import context

def handle(message):
    if message == "fail":
        print("failing now", flush=True)
        raise SystemExit(3)
    if message.startswith("wait:"):
        go = message.split(":", 1)[1]
        print("first", flush=True)
        while not os.path.exists(go):
            time.sleep(0.02)
        print("second", flush=True)
        return
    if message == "result":
        context.send_result(b"\\x00\\x01 binary")
    print("got", message, os.environ.get("GREETING", "-"), flush=True)
"""


@attrs.frozen
class RunningActor:
    """An actor with a real worker process, and a place for the go files of ``wait:``."""

    id: str
    worker_id: str
    marks: Path

    def go(self, name: str) -> str:
        """A message that prints ``first``, waits for the go file ``name``, prints ``second``."""
        return f"wait:{self.marks / name}"

    def let_go(self, name: str) -> None:
        (self.marks / name).touch()


@pytest.fixture
async def running_actor(client, settings, tmp_path):
    """An actor of :data:`WORKER_ACTOR` whose requested worker runs as a real process."""
    # Set up through the API itself: the commands that do this are tested above.
    archive = tmp_path / "worker-actor.bpk"
    archive.write_bytes(_build(tmp_path, "1.0.0", body=WORKER_ACTOR))
    pushed = await client.put("/bundles/org.example/hello/1.0.0", content=archive.read_bytes())
    assert pushed.status_code == 201, pushed.text
    bundle_dir = tmp_path / "unpacked"
    extract_archive(archive, bundle_dir, limits=ArchiveLimits())
    actor = (await client.post("/actors", json={"image": IMAGE})).json()["result"]
    # Creating the actor asked for a worker; nothing places it here, so this test runs it.
    (worker,) = (await client.get(f"/actors/{actor['id']}/workers")).json()["result"]
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        **os.environ,
        "ABACO__REDIS__URL": settings.redis.url,
        "ABACO__STATE__DIR": str(settings.state.path()),
        "ABACO__WORKER__HEARTBEAT": "0.2",
        # The go files live outside any sandbox.
        "ABACO__WORKER__SANDBOX": "false",
        # A test that failed may leave an execution waiting: do not wait long for it.
        "ABACO__WORKER__STOP_DEADLINE": "2",
    }
    argv = [sys.executable, "-m", "abaco.actors.worker", "--actor", actor["id"]]
    argv += ["--worker", worker["id"], "--tenant", "default", "--bundle-dir", str(bundle_dir)]
    with (tmp_path / "worker.log").open("wb") as log:
        process = await trio.lowlevel.open_process(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        with trio.fail_after(30):
            while True:
                answer = await client.get(f"/actors/{actor['id']}/workers/{worker['id']}")
                if answer.json()["result"]["status"] == "READY":
                    break
                assert process.poll() is None, (tmp_path / "worker.log").read_text()
                await trio.sleep(0.05)
        yield RunningActor(actor["id"], worker["id"], marks)
    finally:
        with trio.CancelScope(shield=True):
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def _started(args, env, **options):
    """``abaco ARGS`` started in the background; killed on the way out if still running."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "abaco", *args], env=env, cwd=ROOT, **options
    )
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _read_until(stream, text: bytes, seen: bytearray) -> None:
    """Read ``stream`` into ``seen`` until ``text`` is in it."""
    with trio.fail_after(30):
        while text not in seen:
            chunk = await stream.receive_some()
            assert chunk, f"ended before {text!r}: {bytes(seen)!r}"
            seen += chunk


async def test_send_wait_prints_status_and_logs_and_results(abaco, running_actor):
    actor_id = running_actor.id
    waited = _ok(await abaco("send", actor_id, "hello", "--wait", "--env", "GREETING=hi"))
    outcome, logs = waited.stdout.split("--- logs ---\n")
    record = _fields(outcome)
    assert (record["status"], record["exit_code"]) == ("COMPLETE", "0")
    assert logs == "got hello hi\n"

    with_result = _ok(await abaco("send", actor_id, "result", "--wait", "--json"))
    done = json.loads(with_result.stdout)
    assert done["execution"]["status"] == "COMPLETE"
    assert done["logs"] == "got result -\n"
    execution_id = done["execution"]["id"]
    results = _ok(await abaco("executions", "results", actor_id, execution_id))
    assert results.raw == b"\x00\x01 binary"
    assert _ok(await abaco("executions", "results", actor_id, execution_id)).raw == b""
    logs_again = _ok(await abaco("executions", "logs", actor_id, execution_id))
    assert logs_again.stdout == "got result -\n"

    failed = _ok(await abaco("send", actor_id, "fail", "--wait"))
    assert _fields(failed.stdout.split("--- logs ---")[0])["status"] == "ERROR"
    assert "failing now" in failed.stdout


async def test_send_wait_shows_progress_on_a_terminal_and_can_give_up(
    abaco, running_actor, cli_env
):
    actor_id = running_actor.id
    primary, secondary = os.openpty()
    terminal = trio.lowlevel.FdStream(primary)
    try:
        argv = ["send", actor_id, running_actor.go("tty"), "--wait"]
        async with _started(argv, cli_env, stdout=subprocess.PIPE, stderr=secondary) as process:
            os.close(secondary)
            secondary = None
            seen = bytearray()
            await _read_until(terminal, b"RUNNING", seen)
            assert b"\r\x1b[K" in seen
            running_actor.let_go("tty")
            stdout = bytearray()
            async for chunk in process.stdout:
                stdout += chunk
            assert await process.wait() == 0
        # Once the process is gone, reading the terminal ends (EIO on Linux).
        with contextlib.suppress(OSError, trio.BrokenResourceError):
            while chunk := await terminal.receive_some():
                seen += chunk
    finally:
        await terminal.aclose()
        if secondary is not None:
            os.close(secondary)
    # The progress line is wiped at the end; the outcome went to stdout.
    assert seen.endswith(b"\r\x1b[K")
    assert _fields(stdout.decode().split("--- logs ---")[0])["status"] == "COMPLETE"

    gave_up = await abaco("send", actor_id, running_actor.go("later"), "--wait", "--timeout", "0.5")
    _failed(gave_up, "is still", "it goes on", code=3)
    running_actor.let_go("later")


async def test_logs_follow_prints_chunks_as_they_come(abaco, running_actor, client, cli_env):
    actor_id = running_actor.id
    sent = await client.post(
        f"/actors/{actor_id}/messages", json={"message": running_actor.go("f")}
    )
    execution_id = sent.json()["result"]["execution_id"]
    argv = ["executions", "logs", actor_id, execution_id, "-f"]
    async with _started(argv, cli_env, stdout=subprocess.PIPE) as process:
        seen = bytearray()
        await _read_until(process.stdout, b"first\n", seen)
        # Printed while the execution still runs: it waits for the go file.
        assert process.poll() is None
        record = (await client.get(f"/actors/{actor_id}/executions/{execution_id}")).json()
        assert record["result"]["status"] == "RUNNING"
        running_actor.let_go("f")
        async for chunk in process.stdout:
            seen += chunk
        assert await process.wait() == 0
    assert seen == b"first\nsecond\n"
    # Following a finished execution prints its whole log and ends.
    again = _ok(await abaco("executions", "logs", actor_id, execution_id, "--follow"))
    assert again.stdout == "first\nsecond\n"


async def test_run_streams_the_logs_and_exits_with_the_outcome(
    abaco, running_actor, client, cli_env
):
    actor_id = running_actor.id
    complete = _ok(await abaco("run", actor_id, "hello", "--env", "GREETING=hey"))
    assert complete.stdout == "got hello hey\n"

    error = await abaco("run", actor_id, "fail")
    assert error.stdout == "failing now\n"
    _failed(error, "ERROR", code=1)

    # Aborted through the API while it runs.
    argv = ["run", actor_id, running_actor.go("never")]
    async with _started(argv, cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        seen = bytearray()
        await _read_until(process.stdout, b"first\n", seen)
        summary = (await client.get(f"/actors/{actor_id}/executions")).json()["result"]
        (running,) = [e["id"] for e in summary["executions"] if e["status"] == "RUNNING"]
        aborted = await client.delete(f"/actors/{actor_id}/executions/{running}")
        assert aborted.status_code == 200, aborted.text
        with trio.fail_after(30):
            assert await process.wait() == 2
        stderr = await process.stderr.receive_some()
        assert b"ABORTED" in stderr
        assert b"Traceback" not in stderr

    unfinished = await abaco("run", actor_id, running_actor.go("late"), "--timeout", "0.5")
    assert unfinished.stdout.startswith("first\n")
    _failed(unfinished, "is still RUNNING after 0.5 s", code=3)
    running_actor.let_go("late")


# -- the formatting, without processes ----------------------------------------------------


def test_tables_are_fixed_width_with_one_line_per_row():
    from abaco import _cli_output as output

    drawn = output.table(
        ("ID", "WHAT"),
        [("a", {"K": "v", "L": None}), ("longer-id", ["x", True]), ("b", "two\nlines")],
    )
    assert drawn.splitlines() == [
        "ID         WHAT",
        "a          K=v, L=-",
        "longer-id  x, yes",
        "b          two\\nlines",
    ]
    assert output.record({"b": 1, "_links": {}, "a": ""}, first=("a", "z")) == "a  -\nb  1"
    assert output.when("2024-05-01T12:00:03.123456Z") == "2024-05-01 12:00:03"
    assert output.table(None, []) == ""
