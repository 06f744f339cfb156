"""What ``abaco up --demo`` does once the platform runs: one actor, one message, its logs.

Every step goes through the REST API, as a user's would: build the sample bundle and
push it to the software repository, register an actor on it, wait until it is READY,
send it a message, wait until the execution ends, print the execution record and its
logs, and delete the actor again. A step that fails or takes too long raises
:class:`DemoFailed` saying which step and what the API answered.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from abaco.bundles import ArchiveLimits, build_bundle, inspect_archive
from abaco.errors import AbacoError
from abaco.examples import HELLO

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DemoFailed", "run_demo"]

# The API is another process: there is nothing to wait on but its answers.
_POLL = 0.2
_TERMINAL = frozenset({"COMPLETE", "ERROR", "ABORTED"})


class DemoFailed(AbacoError):
    """A step of the demo failed; the message says which and why."""


def _say(text: str) -> None:
    print(text, flush=True)


def _result(response: httpx.Response, step: str) -> Any:
    """The result of an Abaco envelope; DemoFailed with the API's message otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if response.status_code >= 400 or body.get("status") != "success":
        raise DemoFailed(f"{step}: the API answered {response.status_code}: {body.get('message')}")
    return body.get("result")


async def _until(step: str, timeout: float, check: Callable[[], Awaitable[Any]]) -> Any:
    """Call ``check`` until it returns something other than None, for ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = await check()
            if value is not None:
                return value
            await trio.sleep(_POLL)
    raise DemoFailed(f"{step}: not done after {timeout} s")


async def _wait_healthy(http: httpx.AsyncClient, timeout: float) -> None:
    async def check() -> bool | None:
        try:
            response = await http.get("/healthz")
        except httpx.TransportError:
            return None  # not listening yet
        return True if response.status_code == 200 else None

    await _until("waiting for the API", timeout, check)


async def _push_hello(http: httpx.AsyncClient) -> str:
    with tempfile.TemporaryDirectory(prefix="abaco-demo-") as directory:
        path = await trio.to_thread.run_sync(build_bundle, HELLO, Path(directory))
        manifest = await trio.to_thread.run_sync(
            lambda: inspect_archive(path, limits=ArchiveLimits())
        )
        data = await trio.Path(path).read_bytes()
    bundle = manifest.bundle_id
    response = await http.put(
        f"/bundles/{bundle.group}/{bundle.id}/{bundle.version}",
        content=data,
        headers={"Bundle-Sha256": hashlib.sha256(data).hexdigest()},
    )
    if response.status_code == 409:
        # Pushed by an earlier demo: the same version is the same code.
        _say(f"demo: bundle {bundle} is in the repository already")
    else:
        _result(response, "pushing the sample bundle")
        _say(f"demo: pushed bundle {bundle}")
    return str(bundle)


async def _register(http: httpx.AsyncClient, image: str, timeout: float) -> str:
    actor = _result(
        await http.post("/actors", json={"image": image, "name": "hello"}),
        "registering the actor",
    )
    actor_id = str(actor["id"])
    _say(f"demo: registered actor {actor_id} on {image}: {actor['status']}")

    async def ready() -> str | None:
        actor = _result(await http.get(f"/actors/{actor_id}"), "reading the actor")
        if actor["status"] == "ERROR":
            raise DemoFailed(f"the actor went to ERROR: {actor.get('status_message', '')}")
        return actor_id if actor["status"] == "READY" else None

    await _until("waiting for the actor to be READY", timeout, ready)
    _say(f"demo: actor {actor_id} is READY")
    return actor_id


async def _execute(http: httpx.AsyncClient, actor_id: str, timeout: float) -> dict[str, Any]:
    sent = _result(
        await http.post(f"/actors/{actor_id}/messages", json={"message": "world"}),
        "sending the message",
    )
    execution_id = sent["execution_id"]
    _say(f"demo: sent 'world' to actor {actor_id}: execution {execution_id}")
    link = f"/actors/{actor_id}/executions/{execution_id}"

    async def finished() -> dict[str, Any] | None:
        record: dict[str, Any] = _result(await http.get(link), "reading the execution")
        return record if record["status"] in _TERMINAL else None

    record: dict[str, Any] = await _until("waiting for the execution", timeout, finished)
    _say("execution " + json.dumps(record, indent=2, sort_keys=True))
    logs = _result(await http.get(f"{link}/logs"), "reading the logs")["logs"]
    _say("logs\n" + "".join(f"  {line}\n" for line in logs.splitlines()))
    return record


async def run_demo(api_url: str, token: str, *, timeout: float = 60.0) -> None:
    """Show the platform at ``api_url`` running the sample actor; ``token`` is an admin's.

    ``timeout`` bounds each step that waits (the API answering, the actor becoming
    READY, the execution ending). Raises :class:`DemoFailed` when a step fails.
    """
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        await _wait_healthy(http, timeout)
        image = await _push_hello(http)
        actor_id = await _register(http, image, timeout)
        record = await _execute(http, actor_id, timeout)
        deleted = await http.delete(f"/actors/{actor_id}")
        if deleted.status_code >= 400:
            _say(f"demo: could not delete actor {actor_id}: {deleted.status_code}")
    if record["status"] != "COMPLETE":
        raise DemoFailed(f"the execution ended {record['status']}")
    _say("demo: done")
