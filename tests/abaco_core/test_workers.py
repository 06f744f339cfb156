"""Abaco's worker scenarios: list, ensure N with ``{"num": N}``, delete one.

A sequence, as in Abaco. ``num`` means "make sure there are N" (issue 9). Abaco's test
asks for two workers of its stateful actor; this platform keeps a stateful actor to one
worker (as Abaco's own registration rule says), so two are asked of a stateless actor and
the stateful actor's refusal is checked.
"""

from __future__ import annotations

import trio

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    DEADLINE,
    basic_response_checks,
    check_actor_is_ready,
    check_worker_fields,
    get_actor_id,
    refused,
    register,
    wait_workers,
)

LIVE = frozenset({"READY", "BUSY"})


async def test_register_actors(api):
    """Setup as Abaco's test_register_actor and test_register_stateless_actor (ported in
    test_actors): abaco_test_suite (stateful) and abaco_test_suite_statelesss."""
    stateful = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)
    stateless = await register(api.admin, image=ABACO_TEST, name="abaco_test_suite_statelesss")
    for actor in (stateful, stateless):
        await check_actor_is_ready(api.admin, actor["id"])


async def test_list_workers(api):
    """Ports test_list_workers."""
    actor_id = await get_actor_id(api.admin)
    workers = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/workers"))
    assert len(workers) > 0
    check_worker_fields(workers[0], (ABACO_TEST,))


async def test_invalid_method_list_workers(api):
    """Ports test_invalid_method_list_workers."""
    actor_id = await get_actor_id(api.admin)
    refused(await api.admin.put(f"/actors/{actor_id}/workers"), 405, "Invalid HTTP method")


async def test_ensure_one_worker(api):
    """Ports test_ensure_one_worker: a POST without a body makes sure there is one."""
    actor_id = await get_actor_id(api.admin)
    answer = await api.admin.post(f"/actors/{actor_id}/workers")
    assert answer.status_code == 200, answer.text
    assert "already had 1 worker(s)" in answer.json()["message"]
    await wait_workers(api.admin, actor_id, 1, LIVE)


async def test_ensure_two_worker(api):
    """Ports test_ensure_two_worker, on the stateless actor (see the module's docstring)."""
    stateful = await get_actor_id(api.admin)
    answer = await api.admin.post(f"/actors/{stateful}/workers", json={"num": 2})
    refused(answer, 400, "stateful actors can only have 1 worker")
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_statelesss")
    answer = await api.admin.post(f"/actors/{actor_id}/workers", data={"num": "2"})
    assert answer.status_code == 200, answer.text
    workers = await wait_workers(api.admin, actor_id, 2, LIVE)
    for worker in workers:
        check_worker_fields(worker, (ABACO_TEST,))
    # "Ensure", not "add": asking again changes nothing.
    again = await api.admin.post(f"/actors/{actor_id}/workers", json={"num": 2})
    assert "already had 2 worker(s)" in again.json()["message"]


async def test_delete_worker(api):
    """Ports test_delete_worker: one of the two goes, from the list and from the store
    (Abaco read its workers store directly; here GET on the worker answers 404)."""
    actor_id = await get_actor_id(api.admin, "abaco_test_suite_statelesss")
    workers = basic_response_checks(await api.admin.get(f"/actors/{actor_id}/workers"))
    assert len(workers) == 2
    worker_id = workers[0]["id"]
    basic_response_checks(await api.admin.delete(f"/actors/{actor_id}/workers/{worker_id}"))
    remaining = await wait_workers(api.admin, actor_id, 1, LIVE)
    assert remaining[0]["id"] != worker_id
    with trio.fail_after(DEADLINE):
        while True:
            if (await api.admin.get(f"/actors/{actor_id}/workers/{worker_id}")).status_code == 404:
                break
            await trio.sleep(0.1)


async def test_only_admins_ensure_workers(api):
    """Abaco's rule behind the worker tests: only admins may POST workers (403; Abaco 400),
    even the actor's owner."""
    actor = await register(api.privileged, image=ABACO_TEST, name="abaco_test_suite_priv")
    answer = await api.privileged.post(f"/actors/{actor['id']}/workers", json={"num": 1})
    refused(answer, 403, "only admins are authorized to update workers")
