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
tables; ``--json`` prints the answer's ``result`` as JSON instead.

This module holds the sub-commands' options and the short commands; ``send`` and ``run``
(waiting for an execution) live in :mod:`abaco._cli_messages`, the printing in
:mod:`abaco._cli_output`. Nothing here is async: requests go through the synchronous
:class:`abaco.client.ApiClient`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from abaco import _cli_messages
from abaco import _cli_output as output
from abaco.client import ApiClient
from abaco.errors import BadRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from abaco.config import Settings

    Commands = argparse._SubParsersAction[Any]

__all__ = [
    "COMMANDS",
    "add_commands",
    "add_connection_options",
    "api_url",
    "bearer_token",
    "run_command",
]

#: The top-level commands this module adds.
COMMANDS = frozenset({"actors", "send", "run", "executions", "workers", "tokens"})

# The fields a person looks for first in a record (the API sorts them by name).
_ACTOR_FIRST = ("id", "name", "status", "status_message", "image", "owner", "description")
_EXECUTION_FIRST = ("id", "actor_id", "status", "status_message", "exit_code", "worker_id")


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
    send = _command(
        commands, "send", _cli_messages.send, "send an actor a message", json_output=True
    )
    _message_options(send)
    send.add_argument("--wait", action="store_true", help="wait for the execution to end")
    send.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="with --wait: give up after SECONDS"
    )
    run = _command(
        commands, "run", _cli_messages.run, "send a message, stream its logs, exit with its outcome"
    )
    _message_options(run)
    run.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="give up after SECONDS (exit status 3)"
    )
    run.epilog = "exit status: 0 COMPLETE, 1 ERROR, 2 ABORTED, 3 not ended within --timeout"
    _add_executions(commands.add_parser("executions", help="an actor's executions"))
    _add_workers(commands.add_parser("workers", help="an actor's workers"))
    _add_tokens(commands.add_parser("tokens", help="issue and revoke users' tokens (admins)"))


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
    parser.add_argument("--max-workers", type=_count, metavar="N", help="at most N workers")


def _message_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("actor", help="the actor's id")
    parser.add_argument("message", metavar="MSG", help="the message: sent as {'message': MSG}")
    parser.add_argument("--json-body", action="store_true", help="MSG is JSON: send it as the body")
    parser.add_argument(
        "--env", action="append", type=_pair, metavar="K=V", help="environment of this run"
    )


def _paging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=_count, metavar="N", default=100, help="at most N (up to 1000)"
    )
    parser.add_argument("--offset", type=_natural, metavar="N", default=0, help="skip the first N")


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
    add.add_argument(
        "--num", type=_count, metavar="N", default=1, help="how many workers in all (default 1)"
    )
    delete = _command(actions, "delete", _workers_delete, "stop a worker after its current run")
    delete.add_argument("actor", help="the actor's id")
    delete.add_argument("worker", help="the worker's id")


def _add_tokens(parser: argparse.ArgumentParser) -> None:
    actions = _subcommands(parser, "tokens_command")
    create = _command(actions, "create", _tokens_create, "issue a token", json_output=True)
    create.add_argument("--user", required=True, help="the user the token stands for")
    create.add_argument("--tenant", help="the user's tenant (default: the admin's)")
    create.add_argument(
        "--role", choices=["admin", "privileged", "user", "limited"], help="default: user"
    )
    revoke = _command(actions, "revoke", _tokens_revoke, "revoke a token")
    revoke.add_argument("revoked", metavar="TOKEN", help="the token to revoke")


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
    output.show(args.json, client.create_actor(_actor_fields(args)), _actor_record)
    return 0


def _actors_list(client: ApiClient, args: argparse.Namespace) -> int:
    actors = client.list_actors(limit=args.limit, offset=args.offset)
    output.show(args.json, actors, _actor_table)
    return 0


def _actors_show(client: ApiClient, args: argparse.Namespace) -> int:
    output.show(args.json, client.get_actor(args.actor), _actor_record)
    return 0


def _actors_update(client: ApiClient, args: argparse.Namespace) -> int:
    fields = _actor_fields(args)
    if args.force:
        fields["force"] = True
    if not fields:
        raise BadRequest("nothing to update: name at least one field, or --force")
    output.show(args.json, client.update_actor(args.actor, fields), _actor_record)
    return 0


def _actors_delete(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.delete_actor(args.actor))
    return 0


def _actor_record(actor: Mapping[str, Any]) -> str:
    return output.record(actor, _ACTOR_FIRST)


def _actor_table(actors: list[dict[str, Any]]) -> str:
    return output.table(
        ("ID", "NAME", "STATUS", "IMAGE", "OWNER", "UPDATED"),
        (
            (
                a["id"],
                a["name"],
                a["status"],
                a["image"],
                a["owner"],
                output.when(a["last_update_time"]),
            )
            for a in actors
        ),
    )


# -- executions --------------------------------------------------------------------------------


def _executions_list(client: ApiClient, args: argparse.Namespace) -> int:
    summary = client.list_executions(args.actor, limit=args.limit, offset=args.offset)
    output.show(args.json, summary, _executions_table)
    return 0


def _executions_table(summary: Mapping[str, Any]) -> str:
    totals = (
        f"{summary['total_executions']} executions of actor {summary['actor_id']}: "
        f"runtime {summary['total_runtime']} s, cpu {summary['total_cpu'] / 1e9:.2f} s, "
        f"io {summary['total_io']} bytes"
    )
    table = output.table(
        ("ID", "STATUS", "RECEIVED", "STARTED", "FINISHED"),
        (
            (
                e["id"],
                e["status"],
                output.when(e["message_received_time"]),
                output.when(e["start_time"]),
                output.when(e["finish_time"]),
            )
            for e in summary["executions"]
        ),
    )
    return f"{totals}\n{table}"


def _executions_show(client: ApiClient, args: argparse.Namespace) -> int:
    execution = client.get_execution(args.actor, args.execution)
    output.show(args.json, execution, lambda found: output.record(found, _EXECUTION_FIRST))
    return 0


def _executions_logs(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.follow:
        logs = client.get_logs(args.actor, args.execution)
        if args.json:
            output.print_json({"logs": logs})
        else:
            output.write_text(logs)
        return 0
    last = ""
    for chunk in client.follow_logs(args.actor, args.execution):
        if not chunk:
            continue
        if args.json:
            output.print_json({"logs": chunk}, indent=None)  # one JSON document per line
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
    output.show(args.json, workers, _workers_table)
    return 0


def _workers_table(workers: list[dict[str, Any]]) -> str:
    return output.table(
        ("ID", "STATUS", "HOST", "PID", "CREATED", "LAST HEARTBEAT"),
        (
            (
                w["id"],
                w["status"],
                w.get("host_id") or w.get("location"),
                w.get("pid"),
                output.when(w["create_time"]),
                output.when(w.get("last_health_check_time")),
            )
            for w in workers
        ),
    )


def _tokens_create(client: ApiClient, args: argparse.Namespace) -> int:
    issued = client.issue_token(args.user, args.tenant, args.role)
    if args.json:
        output.print_json(issued)
    else:
        print(issued["token"])
    return 0


def _tokens_revoke(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.revoke_token(args.revoked))
    return 0


def _workers_add(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.ensure_workers(args.actor, args.num))
    return 0


def _workers_delete(client: ApiClient, args: argparse.Namespace) -> int:
    print(client.delete_worker(args.actor, args.worker))
    return 0
