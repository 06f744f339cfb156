"""Steps the end-to-end tests share: create actors, wait for statuses, send messages."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.e2e.conftest import ECHO_IMAGE

TERMINAL = {"COMPLETE", "ERROR", "ABORTED"}


async def result(response: httpx.Response) -> Any:
    """The envelope's result of a successful answer."""
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def ready_actor(http: httpx.AsyncClient, timeout: float = 60, **fields: Any) -> dict:
    """Create an echo actor and wait until it is READY."""
    actor = await result(await http.post("/actors", json={"image": ECHO_IMAGE, **fields}))
    return await wait_actor(http, actor["id"], "READY", timeout)


async def wait_actor(http: httpx.AsyncClient, actor_id: str, status: str, timeout: float = 60):
    """The actor once its status is ``status``."""
    with trio.fail_after(timeout):
        while True:
            actor = await result(await http.get(f"/actors/{actor_id}"))
            if actor["status"] == status:
                return actor
            await trio.sleep(0.1)


async def workers(http: httpx.AsyncClient, actor_id: str) -> list[dict]:
    """The actor's workers."""
    return await result(await http.get(f"/actors/{actor_id}/workers"))


async def wait_workers(
    http: httpx.AsyncClient, actor_id: str, ready: int, timeout: float = 60
) -> list[dict]:
    """The actor's workers once exactly ``ready`` of them are READY or BUSY and none other."""
    with trio.fail_after(timeout):
        while True:
            found = await workers(http, actor_id)
            if len(found) == ready and all(w["status"] in ("READY", "BUSY") for w in found):
                return found
            await trio.sleep(0.1)


async def send(http: httpx.AsyncClient, actor_id: str, message: str) -> str:
    """Send a message; returns the execution id."""
    answer = await result(
        await http.post(f"/actors/{actor_id}/messages", json={"message": message})
    )
    return str(answer["execution_id"])


async def finished(
    http: httpx.AsyncClient, actor_id: str, execution_id: str, timeout: float = 60
) -> dict:
    """The execution once it has ended."""
    with trio.fail_after(timeout):
        while True:
            execution = await result(
                await http.get(f"/actors/{actor_id}/executions/{execution_id}")
            )
            if execution["status"] in TERMINAL:
                return execution
            await trio.sleep(0.1)
