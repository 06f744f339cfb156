"""The in-actor library: what an actor's code imports to read its message and send results.

Blocking, and light on purpose: it runs inside the sandbox, in a forked child of the
zygote or in a command's own Python, so it imports neither trio nor coredis, and pyzmq
only on the first :func:`send_result`::

    from abaco.actors.context import get_context, log, send_result

    def handle(message):
        context = get_context()
        log("got", len(context["message"]), "from", context["username"])
        send_result(b"one")
        send_result(b"two")

The runner hands over everything through the environment: the message as text in
``MSG`` (a binary message, ``application/octet-stream``, in the file named by
``_abaco_message_file`` instead, since the environment cannot hold arbitrary bytes), the
ids, the actor's state as JSON in ``_abaco_actor_state``, and the ``ipc://`` address of
the runner's results socket in ``_abaco_results_socket``.

Results are 0MQ messages on a PUSH socket, one per result, in order. Because the runner
cannot know from the socket alone whether more results are on their way when the process
ends, the library says how many it sent once they are all flushed: at exit, in the file
``<socket path>.count``; in a zygote's child, to the zygote, which tells the runner.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from typing import Any

__all__ = [
    "BINARY_CONTENT_TYPE",
    "get_context",
    "get_state",
    "log",
    "send_message",
    "send_result",
    "set_state",
]

BINARY_CONTENT_TYPE = "application/octet-stream"
RESULTS_SOCKET_VARIABLE = "_abaco_results_socket"
STATE_VARIABLE = "_abaco_actor_state"
#: First frame of a request to the platform on the results socket (results are one frame).
STATE_TAG = b"\x00abaco:set_state"
MESSAGE_TAG = b"\x00abaco:send_message"
MESSAGE_FILE_VARIABLE = "_abaco_message_file"
MESSAGE_FILE_NAME = "message.bin"
COUNT_SUFFIX = ".count"
# A runner that does not take a result within this long is stuck; say so rather than hang.
SEND_TIMEOUT_MS = 10_000
# How long the end of an execution waits for its last results to leave.
FLUSH_TIMEOUT_MS = 10_000


def get_context() -> dict[str, Any]:
    """The execution's context.

    Keys: ``message`` (``str``, or ``bytes`` for a binary message), ``raw_message`` (the
    bytes of a binary message, else None), ``content_type``, ``execution_id``,
    ``actor_id``, ``worker_id``, ``username``, ``api_server`` (``""`` where unknown) and
    ``state`` (the actor's state decoded from JSON; ``{}`` when it has none).
    """
    env = os.environ
    raw: bytes | None = None
    message_file = env.get(MESSAGE_FILE_VARIABLE)
    if message_file:
        with open(message_file, "rb") as file:
            raw = file.read()
    return {
        "message": raw if raw is not None else env.get("MSG", ""),
        "raw_message": raw,
        "content_type": env.get(
            "_abaco_Content_Type", BINARY_CONTENT_TYPE if raw is not None else "text/plain"
        ),
        "execution_id": env.get("_abaco_execution_id", ""),
        "actor_id": env.get("_abaco_actor_id", ""),
        "worker_id": env.get("_abaco_worker_id", ""),
        "username": env.get("_abaco_username", ""),
        "api_server": env.get("_abaco_api_server", ""),
        "state": _state(env.get("_abaco_actor_state", "")),
    }


def _state(text: str) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON: give it as it came rather than fail the execution


def log(*args: object) -> None:
    """Print to stderr, flushed at once: the execution's log shows it while it runs."""
    print(*args, file=sys.stderr, flush=True)


class _Sender:
    """This process's PUSH socket to the runner."""

    def __init__(self, endpoint: str) -> None:
        import zmq  # here: most executions never send a result

        self.endpoint = endpoint
        self.pid = os.getpid()
        self.sent = 0
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.socket.setsockopt(zmq.LINGER, FLUSH_TIMEOUT_MS)
        self.socket.connect(endpoint)


_sender: _Sender | None = None


def send_result(data: bytes) -> None:
    """Send one result to the platform; results are kept in the order they are sent.

    Raises TimeoutError when the runner does not take it within 10 s, and RuntimeError
    outside an execution (at import time in a zygote, for one).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a result is bytes, not {type(data).__name__}")
    _send([bytes(data)])


def _send(frames: list[bytes]) -> None:
    """Send one message to the runner: a result (one frame) or a request (tag, payload)."""
    global _sender  # one socket per process, made on first use
    if _sender is None or _sender.pid != os.getpid():
        endpoint = os.environ.get(RESULTS_SOCKET_VARIABLE)
        if not endpoint:
            raise RuntimeError(
                f"this works only inside an execution (${RESULTS_SOCKET_VARIABLE} is "
                "not set); module-level code of a Python actor runs in the zygote, not in one"
            )
        # A sender inherited through fork belongs to the parent: never touch its context.
        _sender = _Sender(endpoint)
        atexit.register(_flush_results)
    import zmq

    try:
        _sender.socket.send_multipart(frames)
    except zmq.Again:
        raise TimeoutError(
            f"the runner did not take a message within {SEND_TIMEOUT_MS / 1000:g} s"
        ) from None
    _sender.sent += 1


def _flush_results(*, write_count: bool = True) -> int:
    """Wait for sent results to leave; return how many were sent (idempotent).

    ``write_count``: also write the count beside the socket, for the runner to read (the
    zygote passes False: it hands the count over itself).
    """
    global _sender  # cleared, so that a second call is a no-op
    sender, _sender = _sender, None
    if sender is None or sender.pid != os.getpid():
        return 0
    sender.socket.close()  # the context's term() waits up to LINGER for queued results
    sender.context.term()
    if write_count and sender.endpoint.startswith("ipc://"):
        with open(sender.endpoint.removeprefix("ipc://") + COUNT_SUFFIX, "w") as file:
            file.write(str(sender.sent))
    return sender.sent


def send_message(actor_id: str, message: str) -> str:
    """Send a text message to another actor of the same tenant; returns its execution id.

    The message is delivered when this execution ends (COMPLETE or ERROR); an actor that
    does not exist then gets nothing, and this execution's log says so.
    """
    if not isinstance(actor_id, str) or not isinstance(message, str):
        raise TypeError("send_message takes an actor id and a text message")
    execution_id = _new_execution_id()
    payload = {"actor_id": actor_id, "message": message, "execution_id": execution_id}
    _send([MESSAGE_TAG, json.dumps(payload).encode()])
    return execution_id


def get_state() -> Any:
    """The actor's state as it was when this execution started (stateful actors)."""
    return json.loads(os.environ.get(STATE_VARIABLE) or "{}")


def set_state(state: Any) -> None:
    """Replace the actor's state (any JSON value); stored when this execution ends.

    Only stateful actors have state: for a stateless one the platform ignores it and this
    execution's log says so.
    """
    _send([STATE_TAG, json.dumps(state).encode()])


def _new_execution_id() -> str:
    from abaco.actors.ids import new_id  # light: secrets and time

    return new_id()
