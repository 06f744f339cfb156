"""Abaco's test helpers (``tests/util.py`` and the checks in ``test_abaco_core.py``), ported.

Abaco polls with ``time.sleep(3)`` ten times; these wait on a deadline instead, polling
often, so a fast platform is not slowed down and a slow one still gets a minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    import httpx

#: How long anything the platform does in the background may take on a loaded machine.
DEADLINE = 60

TERMINAL = frozenset({"COMPLETE", "ERROR", "ABORTED"})


def response_format(response: httpx.Response) -> dict[str, Any]:
    """Abaco's ``response_format``: a JSON envelope, success or error."""
    assert "application/json" in response.headers["content-type"], response.text
    data: dict[str, Any] = response.json()
    assert {"message", "status", "version", "result"} <= data.keys()
    return data


def basic_response_checks(response: httpx.Response) -> Any:
    """Abaco's ``basic_response_checks``: a 200 envelope; returns its ``result``.

    Abaco also checks that ``tenant`` is not in the result; issue 9 lists ``tenant`` among
    the fields of an actor, so that check is left out.
    """
    assert response.status_code in (200, 201), response.text
    data = response_format(response)
    assert data["status"] == "success"
    return data["result"]


def refused(response: httpx.Response, status: int, words: str = "") -> dict[str, Any]:
    """An error envelope with ``status`` whose message contains ``words``."""
    assert response.status_code == status, response.text
    data = response_format(response)
    assert data["status"] == "error"
    assert words in data["message"], data["message"]
    return data


async def get_actor_id(http: httpx.AsyncClient, name: str = "abaco_test_suite") -> str:
    """Abaco's ``get_actor_id``: the id of the caller's actor called ``name``."""
    listed = basic_response_checks(await http.get("/actors", params={"limit": 1000}))
    ids = [actor["id"] for actor in listed if actor["name"] == name]
    assert len(ids) == 1, f"no single actor named {name}: {listed}"
    return str(ids[0])


async def register(
    http: httpx.AsyncClient, *, as_json: bool = False, **fields: Any
) -> dict[str, Any]:
    """Register an actor as Abaco's registration tests do, with their common checks.

    The description goes as a form, as most of Abaco's tests send it (a list is a
    repeated field), or as JSON with ``as_json``, as the others do.
    """
    answer = await (
        http.post("/actors", json=fields) if as_json else http.post("/actors", data=fields)
    )
    actor: dict[str, Any] = basic_response_checks(answer)
    assert "description" in actor
    assert "owner" in actor
    assert actor["image"] == fields["image"]
    assert actor["name"] == fields["name"]
    assert actor["id"] is not None
    return actor


async def check_actor_is_ready(http: httpx.AsyncClient, actor_id: str) -> dict[str, Any]:
    """Abaco's ``check_actor_is_ready``: the actor once it is READY."""
    with trio.fail_after(DEADLINE):
        while True:
            actor: dict[str, Any] = basic_response_checks(await http.get(f"/actors/{actor_id}"))
            if actor["status"] == "READY":
                return actor
            assert actor["status"] != "ERROR", actor
            await trio.sleep(0.1)


def check_execution_details(result: dict[str, Any], actor_id: str, execution_id: str) -> None:
    """Abaco's ``check_execution_details`` (snake case)."""
    assert result["actor_id"] == actor_id
    for field in ("worker_id", "exit_code", "final_state", "message_received_time"):
        assert field in result
    assert "start_time" in result
    assert result["id"] == execution_id
    assert "io" in result
    assert "runtime" in result


async def wait_execution(
    http: httpx.AsyncClient, actor_id: str, execution_id: str, status: str = "COMPLETE"
) -> dict[str, Any]:
    """The execution once it has ended, which must be with ``status``."""
    path = f"/actors/{actor_id}/executions/{execution_id}"
    with trio.fail_after(DEADLINE):
        while True:
            execution: dict[str, Any] = basic_response_checks(await http.get(path))
            if execution["status"] in TERMINAL:
                assert execution["status"] == status, execution
                return execution
            await trio.sleep(0.1)


async def execute_actor(
    http: httpx.AsyncClient,
    actor_id: str,
    *,
    data: dict[str, str] | None = None,
    json_data: Any = None,
    binary: bytes | None = None,
) -> dict[str, Any]:
    """Abaco's ``execute_actor`` (asynchronous): send, check the answer, wait for COMPLETE.

    ``data`` is sent as a form, ``json_data`` as JSON, ``binary`` as octet-stream.
    """
    path = f"/actors/{actor_id}/messages"
    if data is not None:
        response = await http.post(path, data=data)
    elif json_data is not None:
        response = await http.post(path, json=json_data)
    else:
        assert binary is not None
        headers = {"Content-Type": "application/octet-stream"}
        response = await http.post(path, content=binary, headers=headers)
    answer = basic_response_checks(response)
    if data is not None:
        assert data["message"] in answer["msg"]
    execution_id = answer["execution_id"]
    assert execution_id
    listed = basic_response_checks(await http.get(f"/actors/{actor_id}/executions"))
    assert execution_id in listed["ids"]
    result = await wait_execution(http, actor_id, execution_id)
    check_execution_details(result, actor_id, execution_id)
    return result


async def wait_workers(
    http: httpx.AsyncClient, actor_id: str, count: int, statuses: frozenset[str]
) -> list[dict[str, Any]]:
    """The actor's workers once there are ``count`` of them, all in ``statuses``.

    Abaco's worker tests sleep 8 seconds and then count; this waits for the count instead.
    """
    with trio.fail_after(DEADLINE):
        while True:
            workers: list[dict[str, Any]] = basic_response_checks(
                await http.get(f"/actors/{actor_id}/workers")
            )
            if len(workers) == count and all(w["status"] in statuses for w in workers):
                return workers
            await trio.sleep(0.1)


async def remove_all_actors(http: httpx.AsyncClient) -> None:
    """Abaco's clean-up: delete every actor the caller can see, then check none is left."""
    for actor in basic_response_checks(await http.get("/actors", params={"limit": 1000})):
        basic_response_checks(await http.delete(f"/actors/{actor['id']}"))
    assert basic_response_checks(await http.get("/actors")) == []


def check_nonce_fields(
    nonce: dict[str, Any],
    *,
    actor_id: str | None = None,
    alias: str | None = None,
    current_uses: int | None = None,
    max_uses: int | None = None,
    remaining_uses: int | None = None,
    level: str | None = None,
) -> None:
    """Abaco's ``check_nonce_fields`` (snake case).

    Where Abaco checks a count only when it is truthy (``if current_uses:``), this checks
    it whenever it is given, 0 included; ``last_use_time`` must be present (null before
    the first use: Abaco's check that it is truthy held only for its display string).
    """
    assert nonce["id"]
    assert nonce["id"].rsplit("_", 1)[0]
    assert nonce["owner"]
    assert nonce["level"]
    if level is not None:
        assert nonce["level"] == level
    assert nonce["roles"]
    if alias is not None:
        assert nonce["alias"] == alias
    if actor_id is not None:
        assert nonce["actor_id"] == actor_id
    assert nonce["api_server"]
    assert nonce["create_time"]
    assert "last_use_time" in nonce
    assert nonce["max_uses"]
    for field, value in (
        ("current_uses", current_uses),
        ("max_uses", max_uses),
        ("remaining_uses", remaining_uses),
    ):
        assert field in nonce
        if value is not None:
            assert nonce[field] == value, (field, nonce)


def check_worker_fields(worker: dict[str, Any], images: tuple[str, ...]) -> None:
    """Abaco's ``check_worker_fields`` (snake case), with ``pid`` for Docker's ``cid``."""
    assert worker["status"] in ("READY", "BUSY")
    assert worker["image"] in images
    assert worker["location"]
    assert worker["pid"]
    assert worker["tenant"]
    assert worker["ch_name"]
    assert "last_execution_time" in worker
    assert "last_health_check_time" in worker
