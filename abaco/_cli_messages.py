"""``abaco send`` and ``abaco run``: send a message, then wait for its execution.

Waiting polls ``GET .../executions/EID`` (quickly at first, then twice a second) until the
execution ends, drawing a progress line on stderr when it is a terminal; ``run`` follows
the logs instead (``?follow=true``) and exits with the execution's outcome
(:data:`EXIT_CODES`). With ``--timeout`` both give up, say so, and leave the execution
running; so does Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from abaco import _cli_output as output
from abaco.client import TERMINAL_STATUSES
from abaco.errors import BadRequest

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import TextIO

    from abaco.client import ApiClient

__all__ = ["EXIT_CODES", "EXIT_UNFINISHED", "run", "send"]

#: ``abaco run``'s exit status for each way an execution ends.
EXIT_CODES = {"COMPLETE": 0, "ERROR": 1, "ABORTED": 2}
#: ``abaco run``'s exit status when the execution did not end within ``--timeout``.
EXIT_UNFINISHED = 3

# Query parameters the API reads itself: they cannot be environment variables.
_RESERVED_ENV = frozenset({"message", "_abaco_synchronous", "x-nonce"})


def _sent(client: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    """Send the message ``args`` describes; returns the API's result."""
    environment = dict(args.env or [])
    reserved = sorted(_RESERVED_ENV & set(environment))
    if reserved:
        raise BadRequest(f"--env cannot set {', '.join(reserved)}: the API reads it itself")
    if not args.json_body:
        return client.send_message(args.actor, args.message, environment=environment)
    try:
        body = json.loads(args.message)
    except ValueError as exc:
        raise BadRequest(f"MSG is not JSON ({exc}), and --json-body says it is") from None
    return client.send_json(args.actor, body, environment=environment)


def send(client: ApiClient, args: argparse.Namespace) -> int:
    """``abaco send``: print the execution id, or with ``--wait`` its outcome and logs."""
    sent = _sent(client, args)
    execution_id = sent["execution_id"]
    if not args.wait:
        output.show(args.json, sent, lambda result: str(result["execution_id"]))
        return 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        execution = _finished(client, args.actor, execution_id, deadline, sys.stderr)
    except _Unfinished as unfinished:
        return _gave_up(args, execution_id, unfinished.status)
    except KeyboardInterrupt:
        return _interrupted(args, execution_id)
    logs = client.get_logs(args.actor, execution_id)
    if args.json:
        output.print_json({"execution": execution, "logs": logs})
        return 0
    print(_execution_outcome(execution))
    if logs:
        print("--- logs ---")
        output.write_text(logs)
    return 0


def run(client: ApiClient, args: argparse.Namespace) -> int:
    """``abaco run``: stream the execution's logs to stdout; returns its exit status."""
    execution_id = _sent(client, args)["execution_id"]
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        last = ""
        for chunk in client.follow_logs(args.actor, execution_id, quiet=_quiet(deadline)):
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
                last = chunk
            if deadline is not None and time.monotonic() >= deadline:
                break  # _finished says whether it ended meanwhile
        if last and not last.endswith("\n"):
            sys.stdout.write("\n")
        execution = _finished(client, args.actor, execution_id, deadline, None)
    except _Unfinished as unfinished:
        return _gave_up(args, execution_id, unfinished.status)
    except KeyboardInterrupt:
        return _interrupted(args, execution_id)
    status = execution["status"]
    code = EXIT_CODES.get(status)
    if code is None:
        output.complain(
            f"execution {execution_id} ended {status}, a status abaco run does not know"
        )
        return EXIT_UNFINISHED
    if code:
        why = execution.get("status_message") or "no message"
        exit_code = execution.get("exit_code")
        output.complain(f"execution {execution_id} ended {status} (exit code {exit_code}): {why}")
    return code


def _gave_up(args: argparse.Namespace, execution_id: str, status: str) -> int:
    output.complain(
        f"execution {execution_id} is still {status} after {args.timeout:g} s; it goes on "
        f"(abaco executions show {args.actor} {execution_id})"
    )
    return EXIT_UNFINISHED


def _interrupted(args: argparse.Namespace, execution_id: str) -> int:
    output.complain(
        f"stopped waiting; execution {execution_id} goes on "
        f"(abaco executions show {args.actor} {execution_id})"
    )
    return 130


class _Unfinished(Exception):
    """An execution that had not ended by the deadline."""

    def __init__(self, execution: Mapping[str, Any]) -> None:
        super().__init__(execution["id"])
        self.status = str(execution["status"])


def _quiet(deadline: float | None) -> float:
    """How long a log stream may be silent before the execution is looked at."""
    return 5.0 if deadline is None else max(0.2, min(5.0, deadline - time.monotonic()))


def _finished(
    client: ApiClient,
    actor_id: str,
    execution_id: str,
    deadline: float | None,
    progress_to: TextIO | None,
) -> dict[str, Any]:
    """Poll the execution until it ends; shows progress on ``progress_to`` if a terminal."""
    progress = output.Progress(progress_to, f"execution {execution_id}")
    delay = 0.05
    try:
        while True:
            execution = client.get_execution(actor_id, execution_id)
            if execution["status"] in TERMINAL_STATUSES:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise _Unfinished(execution)
            progress.show(execution["status"])
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
    finally:
        progress.clear()


def _execution_outcome(execution: Mapping[str, Any]) -> str:
    keep = ("id", "status", "exit_code", "runtime", "status_message")
    return output.record({key: execution.get(key) for key in keep})
