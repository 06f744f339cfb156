"""Abaco's tenancy scenarios: the same user name in a second tenant sees nothing of the
first, and what it registers lives apart.

A sequence, as in Abaco (its tests switch the JWT header from DEV-DEVELOP to DEV-STAGING;
here the second tenant's ``testuser`` has a token of its own).
"""

from __future__ import annotations

from tests.abaco_core._bundles import ABACO_TEST
from tests.abaco_core._checks import (
    basic_response_checks,
    check_actor_is_ready,
    check_worker_fields,
    get_actor_id,
    refused,
    register,
    remove_all_actors,
)

NAME = "abaco_test_suite_other_tenant"


async def test_register_actor(api):
    """Setup as Abaco's test_register_actor (ported in test_actors), in the first tenant."""
    await register(api.admin, image=ABACO_TEST, name="abaco_test_suite", stateless=False)


async def test_tenant_list_actors(api):
    """Ports test_tenant_list_actors: the other tenant has no actors."""
    assert basic_response_checks(await api.other_tenant.get("/actors")) == []


async def test_tenant_register_actor(api):
    """Ports test_tenant_register_actor."""
    actor = await register(api.other_tenant, image=ABACO_TEST, name=NAME, stateless=False)
    assert actor["tenant"] == api.world.other_tenant


async def test_tenant_actor_is_ready(api):
    """Ports test_tenant_actor_is_ready."""
    await check_actor_is_ready(api.other_tenant, await get_actor_id(api.other_tenant, NAME))


async def test_tenant_list_registered_actors(api):
    """Ports test_tenant_list_registered_actors: one actor in each tenant, each seen only
    in its own (no bleed-over either way, even by id)."""
    other = basic_response_checks(await api.other_tenant.get("/actors"))
    assert [a["name"] for a in other] == [NAME]
    first = basic_response_checks(await api.admin.get("/actors"))
    assert [a["name"] for a in first] == ["abaco_test_suite"]
    refused(await api.admin.get(f"/actors/{other[0]['id']}"), 404)
    refused(await api.other_tenant.get(f"/actors/{first[0]['id']}"), 404)


async def test_tenant_list_actor(api):
    """Ports test_tenant_list_actor."""
    actor_id = await get_actor_id(api.other_tenant, NAME)
    actor = basic_response_checks(await api.other_tenant.get(f"/actors/{actor_id}"))
    assert "description" in actor
    assert actor["image"] == ABACO_TEST
    assert actor["name"] == NAME
    assert actor["id"] == actor_id


async def test_tenant_list_executions(api):
    """Ports test_tenant_list_executions."""
    actor_id = await get_actor_id(api.other_tenant, NAME)
    summary = basic_response_checks(await api.other_tenant.get(f"/actors/{actor_id}/executions"))
    assert summary["executions"] == []


async def test_tenant_list_messages(api):
    """Ports test_tenant_list_messages."""
    actor_id = await get_actor_id(api.other_tenant, NAME)
    answer = basic_response_checks(await api.other_tenant.get(f"/actors/{actor_id}/messages"))
    assert answer["messages"] == 0


async def test_tenant_list_workers(api):
    """Ports test_tenant_list_workers: the worker is the other tenant's."""
    actor_id = await get_actor_id(api.other_tenant, NAME)
    workers = basic_response_checks(await api.other_tenant.get(f"/actors/{actor_id}/workers"))
    assert len(workers) > 0
    check_worker_fields(workers[0], (ABACO_TEST,))
    assert workers[0]["tenant"] == api.world.other_tenant


async def test_tenant_remove_final_actors(api):
    """Ports test_tenant_remove_final_actors: clearing the other tenant leaves the first
    tenant's actor alone."""
    await remove_all_actors(api.other_tenant)
    first = basic_response_checks(await api.admin.get("/actors"))
    assert [a["name"] for a in first] == ["abaco_test_suite"]
