"""Message routes: ``/actors/ID/messages``, Abaco's way.

A POST becomes one execution: the record is written SUBMITTED, then the message goes into
the actor's mailbox (both durable before the answer), and the answer carries the
execution id. What the body means follows Abaco:

- a ``message`` field (form, JSON object or query string) is a string message (``str``);
- ``application/octet-stream`` is a binary message (Content-Length required and bounded);
- any other JSON body *is* the message (``application/json``; the actor sees its text);
- anything else is a 400 saying to pass JSON or use the message attribute.

Other query parameters become environment variables of that execution.
``?_abaco_synchronous=true`` waits for the execution and answers with its first result
(binary) or else its logs (text); it is refused while messages wait in the mailbox.
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request

from abaco.actors.mailbox import enqueue, mailbox_of, prepare
from abaco.actors.models import PermissionLevel
from abaco.actors.states import ExecutionStatus, is_terminal
from abaco.api.access import actor_for
from abaco.api.context import api_server, hub, identity, settings, stores
from abaco.api.envelope import PayloadTooLarge, TooManyRequests, ok
from abaco.api.inputs import flag
from abaco.control import request_workers
from abaco.errors import BadRequest, ChannelTimeout, InvalidTransition, NotFound
from abaco.logconfig import bind_ids
from abaco.restore import persist_ended, persist_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from abaco.actors.models import Actor, Execution
    from abaco.channels import Hub, QueueChannel
    from abaco.config import Settings
    from abaco.stores import Stores

__all__ = ["accept_message", "blueprint", "purge_mailbox"]

blueprint = Blueprint("messages", __name__)

#: Query parameters that steer the request rather than become environment variables.
_RESERVED = frozenset({"_abaco_synchronous", "message", "x-nonce"})

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _mailbox(actor: Actor) -> QueueChannel:
    return mailbox_of(hub(), settings().redis.key_prefix, actor.tenant, actor.id)


def _links(actor: Actor) -> dict[str, str]:
    base = api_server()
    return {
        "self": f"{base}/actors/{actor.id}/messages",
        "owner": f"{base}/profiles/v2/{actor.owner}",
    }


async def _message() -> tuple[str | bytes, str]:
    """The message of a POST and its ``_abaco_Content_Type``."""
    mimetype = request.mimetype
    if "message" in request.args:
        return request.args["message"], "str"
    if mimetype in _FORMS:
        form = await request.form
        if "message" in form:
            return form["message"], "str"
        raise BadRequest(
            "message POST body could not be serialized. Pass JSON data or use the message "
            "attribute."
        )
    raw = await request.get_data(as_text=False)
    data = raw.encode() if isinstance(raw, str) else raw
    if mimetype == "application/octet-stream":
        if request.content_length is None:
            raise BadRequest("Content Length required for application/octet-stream.")
        return data, "application/octet-stream"
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            "message POST body could not be serialized. Pass JSON data or use the message "
            "attribute."
        ) from None
    if isinstance(parsed, dict) and "message" in parsed:
        text = parsed["message"]
        return (text if isinstance(text, str) else json.dumps(text)), "str"
    return data.decode(), "application/json"


def _shown(body: str | bytes, content_type: str) -> Any:
    """The ``msg`` of the answer: the message as Abaco echoes it."""
    if isinstance(body, bytes):
        return "binary - omitted"
    return json.loads(body) if content_type == "application/json" else body


async def accept_message(
    stores: Stores,
    hub: Hub,
    settings: Settings,
    actor: Actor,
    *,
    body: str | bytes,
    content_type: str,
    environment: dict[str, str],
    username: str,
    synchronous: bool = False,
) -> Execution:
    """Accept a message for ``actor`` as the API does, outside any request.

    Checks its size and the mailbox's limits (refusing a synchronous message while others
    wait), records its execution and puts it in the mailbox, writes it through to durable
    storage, and asks for a worker if the actor has none.
    """
    size = len(body.encode() if isinstance(body, str) else body)
    limit = settings.api.max_message_bytes
    if size > limit:
        raise PayloadTooLarge(f"Message exceeds max content length of: {limit}")
    prefix = settings.redis.key_prefix
    mailbox = mailbox_of(hub, prefix, actor.tenant, actor.id)
    # Reads and writes that do not depend on each other go out together: each is a round
    # trip, and each write waits for the disk.
    counts: dict[str, int] = {}

    async def count(name: str, read: Callable[[], Awaitable[int]]) -> None:
        counts[name] = await read()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count, "queued", mailbox.length)
        nursery.start_soon(
            count, "workers", functools.partial(stores.workers.count, parent=actor.id)
        )
        if synchronous:
            nursery.start_soon(count, "waiting", mailbox.waiting)
    if counts.get("waiting", 0) > 0:
        raise BadRequest("Cannot issue synchronous execution when actor message queue > 0.")
    queued = settings.api.max_queued_messages
    if counts["queued"] >= queued:
        raise TooManyRequests(
            f"The mailbox of actor {actor.id} holds {queued} messages: the limit."
        )
    execution, message = prepare(
        stores.tenant,
        actor_id=actor.id,
        body=body,
        content_type=content_type,
        environment=environment,
        username=username,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(enqueue, stores, mailbox, execution, message)
        # Write-through (abaco.restore): both writes land before the message is accepted.
        nursery.start_soon(
            functools.partial(
                persist_message,
                hub,
                settings,
                execution,
                body=body,
                content_type=content_type,
                environment=environment,
                username=username,
            )
        )
    if counts["workers"] == 0:
        await request_workers(stores, hub, prefix, actor, 1)
    return execution
    return execution


@blueprint.get("/actors/<actor_id>/messages")
async def count_messages(actor_id: str) -> dict[str, Any]:
    """How many messages are in the actor's mailbox (waiting or being run)."""
    actor = await actor_for(actor_id, PermissionLevel.READ)
    return ok({"messages": await _mailbox(actor).length(), "_links": _links(actor)})


@blueprint.post("/actors/<actor_id>/messages")
async def send_message(actor_id: str) -> Any:
    """Send the actor a message: one new execution."""
    actor = await actor_for(actor_id, PermissionLevel.EXECUTE)
    body, content_type = await _message()
    synchronous = flag("_abaco_synchronous")
    environment = {k: v for k, v in request.args.items() if k not in _RESERVED}
    execution = await accept_message(
        stores(),
        hub(),
        settings(),
        actor,
        body=body,
        content_type=content_type,
        environment=environment,
        username=identity().user,
        synchronous=synchronous,
    )
    if synchronous:
        return await _synchronous_answer(await _finished(execution.id))
    base = api_server()
    result = {
        "execution_id": execution.id,
        "msg": _shown(body, content_type),
        "_links": {
            "self": f"{base}/actors/{actor.id}/executions/{execution.id}",
            "owner": f"{base}/profiles/v2/{actor.owner}",
            "messages": f"{base}/actors/{actor.id}/messages",
        },
    }
    return ok(result)


async def _finished(execution_id: str) -> Execution:
    """Wait for an execution to end, up to the execution timeout.

    Woken by the end of the execution's log (the worker closes it as it records the
    outcome, so the outcome may land a moment later), and looking at the record at least
    every quarter second in case the execution never runs (aborted, purged).
    """
    st = stores()
    bound = settings().worker.execution_timeout + settings().worker.visibility
    log_ended = False
    with trio.move_on_after(bound):
        while True:
            execution = await st.executions.get(execution_id)
            if is_terminal(execution.status):
                return execution
            if log_ended:
                # The log ended but the outcome has not landed yet: it is a write behind.
                await trio.sleep(0.0005)
            with trio.move_on_after(0.25) as waiting:
                async for _ in st.logs.follow(execution_id, poll_ms=250):
                    pass
            log_ended = not waiting.cancelled_caught
    raise ChannelTimeout(
        f"Execution {execution_id} did not finish within {bound:.0f} s; "
        "see GET /actors/ID/executions/EID."
    )


async def _synchronous_answer(execution: Execution) -> Response:
    st = stores()
    answer: dict[str, Any] = {}

    async def pop_result() -> None:
        answer["result"] = await st.results.pop(execution.id)

    async def read_logs() -> None:
        answer["logs"] = await st.logs.read(execution.id)

    # Both at once: one round trip's wait instead of two (the logs go unused after a result).
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pop_result)
        nursery.start_soon(read_logs)
    if answer["result"] is not None:
        return Response(answer["result"], content_type="application/octet-stream")
    return Response(answer["logs"].text, content_type="text/plain; charset=utf-8")


async def purge_mailbox(actor: Actor) -> int:
    """Take every message nobody is running out of the mailbox and abort its execution."""
    mailbox = _mailbox(actor)
    executions = stores().executions
    purged = 0
    with bind_ids(actor_id=actor.id):
        while True:
            try:
                deliveries = await mailbox.get_many(100, timeout=0.05)
            except ChannelTimeout:
                return purged
            aborted = []
            for delivery in deliveries:
                message = delivery.message
                execution_id = message.get("execution_id") if isinstance(message, dict) else None
                if isinstance(execution_id, str):
                    with contextlib.suppress(InvalidTransition, NotFound):
                        aborted.append(
                            await executions.move(
                                execution_id,
                                ExecutionStatus.ABORTED,
                                status_message="The actor's mailbox was purged.",
                            )
                        )
            await persist_ended(hub(), settings(), aborted)  # so restore won't rerun them
            await hub().ack_many(deliveries)
            purged += len(deliveries)


@blueprint.delete("/actors/<actor_id>/messages")
async def purge_messages(actor_id: str) -> dict[str, Any]:
    """Empty the actor's mailbox; the purged executions end ABORTED."""
    actor = await actor_for(actor_id, PermissionLevel.UPDATE)
    purged = await purge_mailbox(actor)
    return ok({"msg": "Actor mailbox purged.", "purged": purged, "_links": _links(actor)})
