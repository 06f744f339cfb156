"""The ``abaco`` commands that talk to a running platform through its REST API.

- ``abaco actors create|list|show|update|delete``: register and manage actors;
- ``abaco send ACTOR MSG [--wait]``: send a message (one execution), optionally wait for it;
- ``abaco run ACTOR MSG``: send, stream the execution's logs, exit with its outcome
  (0 COMPLETE, 1 ERROR, 2 ABORTED, 3 when it did not end in time);
- ``abaco executions list|show|logs|results``: an actor's executions;
- ``abaco workers list|add|delete``: an actor's workers.

Every command finds the API at ``--api URL``, else ``$ABACO_API``, else ``[api] host`` and
``port``, and sends ``--token``, else ``$ABACO_TOKEN``, else this machine's admin token
(``abaco bundle push/list`` do the same). Listings and records print as fixed-width
tables; ``--json`` prints the answer's ``result`` as JSON instead. This module parses
nothing itself beyond its sub-commands' options and does no async work: requests go
through the synchronous :class:`abaco.client.ApiClient`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from abaco.client import TERMINAL_STATUSES, ApiClient
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from abaco.config import Settings

    Commands = argparse._SubParsersAction[Any]

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "EXIT_UNFINISHED",
    "add_commands",
    "add_connection_options",
    "api_url",
    "bearer_token",
    "run_command",
]

#: The top-level commands this module adds.
COMMANDS = frozenset({"actors", "send", "run", "executions", "workers"})

#: ``abaco run``'s exit status for each way an execution ends.
EXIT_CODES = {"COMPLETE": 0, "ERROR": 1, "ABORTED": 2}
#: ``abaco run``'s exit status when the execution did not end within ``--timeout``.
EXIT_UNFINISHED = 3

# Query parameters the API reads itself: they cannot be environment variables.
_RESERVED_ENV = frozenset({"message", "_abaco_synchronous", "x-nonce"})

_SPINNER = "|/-\\"


# -- where the API is, and who we are --------------------------------------------------------


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--api`` and ``--token``, for every command that talks to the API."""
    parser.add_argument("--api", help="the API's base URL (default: $ABACO_API, else [api])")
    parser.add_argument(
        "--token", help="bearer token (default: $ABACO_TOKEN, else the admin token)"
    )


def api_url(args: argparse.Namespace, settings: Settings) -> str:
    """The API's base URL: ``--api``, else ``$ABACO_API``, else ``[api] host`` and ``port``."""
    url = args.api or os.environ.get("ABACO_API")
    if not url:
        # Imported only here: the launcher brings the whole platform with it.
        from abaco.launcher import client_host

        url = f"http://{client_host(settings.api.host)}:{settings.api.port}"
    return str(url).rstrip("/")


def bearer_token(args: argparse.Namespace, settings: Settings) -> str:
    """The bearer token: ``--token``, else ``$ABACO_TOKEN``, else this machine's admin token."""
    from abaco.auth import admin_token

    return str(args.token or os.environ.get("ABACO_TOKEN") or admin_token(settings))


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one of :data:`COMMANDS` as parsed into ``args``; returns the exit status."""
    handler: Callable[[ApiClient, argparse.Namespace], int] = args.handler
    with ApiClient(api_url(args, settings), bearer_token(args, settings)) as client:
        return handler(client, args)


# -- the parsers -------------------------------------------------------------------------------


def add_commands(commands: Commands) -> None:
    """Add :data:`COMMANDS` to the ``abaco`` parser's sub-commands."""
    _add_actors(commands.add_parser("actors", help="register and manage actors"))
    send = _command(commands, "send", _send, "send an actor a message", json_output=True)
    _message_options(send)
    send.add_argument("--wait", action="store_true", help="wait for the execution to end")
    send.add_argument("--timeout", type=_seconds, help="with --wait: give up after SECONDS")
    run = _command(commands, "run", _run, "send a message, stream its logs, exit with its outcome")
    _message_options(run)
    run.add_argument("--timeout", type=_seconds, help="give up after SECONDS (exit status 3)")
    run.epilog = "exit status: 0 COMPLETE, 1 ERROR, 2 ABORTED, 3 not ended within --timeout"
    _add_executions(commands.add_parser("executions", help="an actor's executions"))
    _add_workers(commands.add_parser("workers", help="an actor's workers"))


def _command(
    commands: Commands,
    name: str,
    handler: Callable[[ApiClient, argparse.Namespace], int],
    description: str,
    *,
    json_output: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=description, description=description
    )
    parser.set_defaults(handler=handler)
    add_connection_options(parser)
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _subcommands(parser: argparse.ArgumentParser, dest: str) -> Commands:
    return parser.add_subparsers(dest=dest, required=True)


def _add_actors(parser: argparse.ArgumentParser) -> None:
    actions = _subcommands(parser, "actors_command")
    create = _command(actions, "create", _actors_create, "register an actor", json_output=True)
    create.add_argument("--image", required=True, help="a bundle in the repository: GROUP/ID:V")
    _actor_options(create)
    listing = _command(actions, "list", _actors_list, "list the actors", json_output=True)
    _paging_options(listing)
    show = _command(actions, "show", _actors_show, "show one actor", json_output=True)
    show.add_argument("actor", help="the actor's id")
    update = _command(actions, "update", _actors_update, "change an actor", json_output=True)
    update.add_argument("actor", help="the actor's id")
    update.add_argument("--image", help="a new bundle (its workers are replaced)")
    _actor_options(update)
    update.add_argument("--force", action="store_true", help="replace the workers all the same")
    delete = _command(actions, "delete", _actors_delete, "delete an actor")
    delete.add_argument("actor", help="the actor's id")


def _actor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="a name for people")
    parser.add_argument("--description", help="what the actor does")
    parser.add_argument(
        "--env", action="append", type=_pair, metavar="K=V", help="default environment (repeat)"
    )
    parser.add_argument(
        "--stateful", action="store_true", help="one worker at a time, with state between runs"
    )
    parser.add_argument("--hint", action="append", help="a hint, e.g. host:LABEL (repeat)")
    parser.add_argument("--max-workers", type=_count, help="at most N workers")


def _message_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("actor", help="the actor's id")
    parser.add_argument("message", metavar="MSG", help="the message: sent as {'message': MSG}")
    parser.add_argument("--json-body", action="store_true", help="MSG is JSON: send it as the body")
    parser.add_argument(
        "--env", action="append", type=_pair, metavar="K=V", help="environment of this run"
    )


def _paging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_count, default=100, help="at most N (up to 1000)")
    parser.add_argument("--offset", type=_natural, default=0, help="skip the first N")


def _add_executions(parser: argparse.ArgumentParser) -> None:
    actions = _subcommands(parser, "executions_command")
    listing = _command(actions, "list", _executions_list, "list executions", json_output=True)
    listing.add_argument("actor", help="the actor's id")
    _paging_options(listing)
    show = _command(actions, "show", _executions_show, "show one execution", json_output=True)
    logs = _command(
        actions, "logs", _executions_logs, "print an execution's logs", json_output=True
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="print them as they come, until the end"
    )
    results = _command(
        actions, "results", _executions_results, "write the next result's bytes to stdout"
    )
    for parser_ in (show, logs, results):
        parser_.add_argument("actor", help="the actor's id")
        parser_.add_argument("execution", help="the execution's id")


def _add_workers(parser: argparse.ArgumentParser) -> None:
    actions = _subcommands(parser, "workers_command")
    listing = _command(actions, "list", _workers_list, "list workers", json_output=True)
    listing.add_argument("actor", help="the actor's id")
    _paging_options(listing)
    add = _command(actions, "add", _workers_add, "make sure the actor has N workers (admins)")
    add.add_argument("actor", help="the actor's id")
    add.add_argument("--num", type=_count, default=1, help="how many workers in all (default 1)")
    delete = _command(actions, "delete", _workers_delete, "stop a worker after its current run")
    delete.add_argument("actor", help="the actor's id")
    delete.add_argument("worker", help="the worker's id")


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, not {text!r}")
    return key, value


def _count(text: str) -> int:
    value = _natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, not {text!r}")
    return value


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, not {text!r}")
    return value


# -- actors ------------------------------------------------------------------------------------


def _actor_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The actor fields the options name (and only those)."""
    fields: dict[str, Any] = {}
    for option, field in (("image", "image"), ("name", "name"), ("description", "description")):
        if getattr(args, option) is not None:
            fields[field] = getattr(args, option)
    if args.env:
        fields["default_environment"] = dict(args.env)
    if args.stateful:
        fields["stateless"] = False
    if args.hint:
        fields["hints"] = list(args.hint)
    if args.max_workers is not None:
        fields["max_workers"] = args.max_workers
    return fields


def _actors_create(client: ApiClient, args: argparse.Namespace) -> int:
    _show(args, client.create_actor(_actor_fields(args)), _record)
    return 0


def _actors_list(client: ApiClient, args: argparse.Namespace) -> int:
    actors = client.list_actors(limit=args.limit, offset=args.offset)
    _show(args, actors, _actor_table)
    return 0


def _actors_show(client: ApiClient, args: argparse.Namespace) -> int:
    _show(args, client.get_actor(args.actor), _record)
    return 0


def _actors_update(client: ApiClient, args: argparse.Namespace) -> int:
    fields = _actor_fields(args)
    if args.force:
        fields["force"] = True
    if not fields:
        raise BadRequest("nothing to update: name at least one field, or --force")
    _show(args, client.update_actor(args.actor, fields), _record)
    return 0


def _actors_delete(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.delete_actor(args.actor))
    return 0


def _actor_table(actors: list[dict[str, Any]]) -> str:
    return _table(
        ("ID", "NAME", "STATUS", "IMAGE", "OWNER", "UPDATED"),
        (
            (a["id"], a["name"], a["status"], a["image"], a["owner"], _when(a["last_update_time"]))
            for a in actors
        ),
    )


# -- messages ----------------------------------------------------------------------------------


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


def _send(client: ApiClient, args: argparse.Namespace) -> int:
    sent = _sent(client, args)
    execution_id = sent["execution_id"]
    if not args.wait:
        _show(args, sent, lambda result: str(result["execution_id"]))
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
        _print_json({"execution": execution, "logs": logs})
        return 0
    print(_execution_outcome(execution))
    if logs:
        print("--- logs ---")
        _write_text(logs)
    return 0


def _run(client: ApiClient, args: argparse.Namespace) -> int:
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
                raise _Unfinished(client.get_execution(args.actor, execution_id))
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
        _complain(f"execution {execution_id} ended {status}, a status abaco run does not know")
        return EXIT_UNFINISHED
    if code:
        _complain(_execution_outcome(execution).replace("\n", "; "))
    return code


def _gave_up(args: argparse.Namespace, execution_id: str, status: str) -> int:
    _complain(
        f"execution {execution_id} is still {status} after {args.timeout:g} s; it goes on "
        f"(abaco executions show {args.actor} {execution_id})"
    )
    return EXIT_UNFINISHED


def _interrupted(args: argparse.Namespace, execution_id: str) -> int:
    _complain(
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
    progress = _Progress(progress_to, execution_id)
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


class _Progress:
    """A one-line spinner with the status and the time waited, on a terminal only."""

    def __init__(self, stream: TextIO | None, execution_id: str) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._execution_id = execution_id
        self._started = time.monotonic()
        self._frame = 0

    def show(self, status: str) -> None:
        if self._stream is None:
            return
        waited = time.monotonic() - self._started
        spin = _SPINNER[self._frame % len(_SPINNER)]
        self._frame += 1
        line = f"{spin} execution {self._execution_id} {status} {waited:.1f} s"
        self._stream.write(f"\r\x1b[K{line}")
        self._stream.flush()

    def clear(self) -> None:
        if self._stream is not None and self._frame:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _execution_outcome(execution: Mapping[str, Any]) -> str:
    keep = ("id", "status", "exit_code", "runtime", "status_message")
    return _record({key: execution.get(key) for key in keep})


# -- executions --------------------------------------------------------------------------------


def _executions_list(client: ApiClient, args: argparse.Namespace) -> int:
    summary = client.list_executions(args.actor, limit=args.limit, offset=args.offset)
    _show(args, summary, _executions_table)
    return 0


def _executions_table(summary: Mapping[str, Any]) -> str:
    totals = (
        f"{summary['total_executions']} executions of actor {summary['actor_id']}: "
        f"runtime {summary['total_runtime']} s, cpu {summary['total_cpu'] / 1e9:.2f} s, "
        f"io {summary['total_io']} bytes"
    )
    table = _table(
        ("ID", "STATUS", "RECEIVED", "STARTED", "FINISHED"),
        (
            (
                e["id"],
                e["status"],
                _when(e["message_received_time"]),
                _when(e["start_time"]),
                _when(e["finish_time"]),
            )
            for e in summary["executions"]
        ),
    )
    return f"{totals}\n{table}"


def _executions_show(client: ApiClient, args: argparse.Namespace) -> int:
    _show(args, client.get_execution(args.actor, args.execution), _record)
    return 0


def _executions_logs(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.follow:
        logs = client.get_logs(args.actor, args.execution)
        if args.json:
            _print_json({"logs": logs})
        else:
            _write_text(logs)
        return 0
    last = ""
    for chunk in client.follow_logs(args.actor, args.execution):
        if not chunk:
            continue
        if args.json:
            _print_json({"logs": chunk}, indent=None)  # one JSON document per line
        else:
            sys.stdout.write(chunk)
            last = chunk
        sys.stdout.flush()
    if last and not last.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def _executions_results(client: ApiClient, args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(client.get_result(args.actor, args.execution))
    sys.stdout.buffer.flush()
    return 0


# -- workers -----------------------------------------------------------------------------------


def _workers_list(client: ApiClient, args: argparse.Namespace) -> int:
    workers = client.list_workers(args.actor, limit=args.limit, offset=args.offset)
    _show(args, workers, _workers_table)
    return 0


def _workers_table(workers: list[dict[str, Any]]) -> str:
    return _table(
        ("ID", "STATUS", "HOST", "PID", "CREATED", "LAST HEARTBEAT"),
        (
            (
                w["id"],
                w["status"],
                w.get("host_id") or w.get("location"),
                w.get("pid"),
                _when(w["create_time"]),
                _when(w.get("last_health_check_time")),
            )
            for w in workers
        ),
    )


def _workers_add(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.ensure_workers(args.actor, args.num))
    return 0


def _workers_delete(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.delete_worker(args.actor, args.worker))
    return 0


# -- output ------------------------------------------------------------------------------------


def _show(args: argparse.Namespace, result: Any, render: Callable[[Any], str]) -> None:
    """Print ``result`` as JSON with ``--json``, else as ``render`` draws it."""
    if args.json:
        _print_json(result)
    else:
        print(render(result))


def _print_json(value: Any, indent: int | None = 2) -> None:
    print(json.dumps(value, indent=indent, ensure_ascii=False))


def _write_text(text: str) -> None:
    """Write text as is, ending it with a newline if it has none."""
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")


def _complain(message: str) -> None:
    print(f"abaco: {message}", file=sys.stderr)


def _table(headers: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> str:
    """Rows in columns as wide as their widest cell, two spaces apart."""
    lines = [[_cell(value) for value in row] for row in rows]
    if headers is not None:
        lines.insert(0, list(headers))
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _record(record: Mapping[str, Any]) -> str:
    """One record as a two-column table of its fields (links left out)."""
    return _table(None, ((key, value) for key, value in record.items() if key != "_links"))


def _cell(value: object) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    # One line per row: a newline inside a cell would break the columns.
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def _when(timestamp: str | None) -> str | None:
    """An API time (ISO 8601, UTC) to the second, as people read it."""
    if not timestamp:
        return None
    return timestamp[:19].replace("T", " ")
