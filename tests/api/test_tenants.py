"""Two tenants over real HTTP: nothing of one is visible or reachable from the other.

Ports Abaco's test_tenant_* scenarios (tests/test_abaco_core.py): another tenant sees no
actor, registers its own, lists only its own, and its executions, messages and workers
are its own. Beyond them: ids of one tenant are 404 in the other on every route, the
same alias may exist in both, a grant in one tenant gives nothing in the other, and a
nonce opens only its own tenant's actor.
"""

from __future__ import annotations

import httpx
import pytest

from abaco.auth import Role
from tests.api._helpers import create_actor, push_bundle, user_client

TENANT_A, TENANT_B = "tenant-a", "tenant-b"


@pytest.fixture
async def image(client, tmp_path):
    return await push_bundle(client, tmp_path)


@pytest.fixture
async def tenants(platform_redis, settings, api_url, image):
    """Per tenant: its admin and a user named alike in both ("alice")."""
    clients = {
        (tenant, who): await user_client(
            platform_redis,
            settings,
            api_url,
            "alice" if who == "user" else f"admin-{tenant}",
            Role.USER if who == "user" else Role.ADMIN,
            tenant=tenant,
        )
        for tenant in (TENANT_A, TENANT_B)
        for who in ("user", "admin")
    }
    yield clients
    for http in clients.values():
        await http.aclose()


async def test_tenant_list_actors_and_register_actor(tenants):
    alice_a, alice_b = tenants[TENANT_A, "user"], tenants[TENANT_B, "user"]
    mine = await create_actor(alice_a, name="abaco_test_suite")
    # Passing another tenant results in 0 actors, even for its admin, even for "alice".
    for http in (alice_b, tenants[TENANT_B, "admin"]):
        listed = await http.get("/actors")
        assert (listed.status_code, listed.json()["result"]) == (200, [])
    other = await create_actor(alice_b, name="abaco_test_suite_other_tenant", stateless=False)
    assert (mine["tenant"], other["tenant"]) == (TENANT_A, TENANT_B)
    listed_a = [a["id"] for a in (await tenants[TENANT_A, "admin"].get("/actors")).json()["result"]]
    listed_b = [a["id"] for a in (await tenants[TENANT_B, "admin"].get("/actors")).json()["result"]]
    assert (listed_a, listed_b) == ([mine["id"]], [other["id"]])


async def test_one_tenants_ids_are_404_in_the_other_on_every_route(tenants):
    alice_a = tenants[TENANT_A, "user"]
    actor = await create_actor(alice_a, stateless=False)
    sent = await alice_a.post(f"/actors/{actor['id']}/messages", json={"m": 1})
    assert sent.status_code == 200, sent.text
    execution_id = sent.json()["result"]["execution_id"]
    nonce = await alice_a.post(f"/actors/{actor['id']}/nonces", json={})
    assert nonce.status_code == 200, nonce.text
    nonce_id = nonce.json()["result"]["id"]
    workers = (await tenants[TENANT_A, "admin"].get(f"/actors/{actor['id']}/workers")).json()
    assert workers["result"], "the actor's first worker was requested in its tenant"
    worker_id = workers["result"][0]["id"]
    base = f"/actors/{actor['id']}"
    requests = [
        ("GET", base, None),
        ("PUT", base, {"description": "taken"}),
        ("DELETE", base, None),
        ("GET", f"{base}/state", None),
        ("POST", f"{base}/state", {"x": 1}),
        ("GET", f"{base}/permissions", None),
        ("POST", f"{base}/permissions", {"user": "alice", "level": "UPDATE"}),
        ("GET", f"{base}/messages", None),
        ("POST", f"{base}/messages", {"m": 2}),
        ("DELETE", f"{base}/messages", None),
        ("GET", f"{base}/executions", None),
        ("GET", f"{base}/executions/{execution_id}", None),
        ("GET", f"{base}/executions/{execution_id}/logs", None),
        ("GET", f"{base}/executions/{execution_id}/results", None),
        ("DELETE", f"{base}/executions/{execution_id}", None),
        ("GET", f"{base}/workers", None),
        ("POST", f"{base}/workers", {"num": 2}),
        ("GET", f"{base}/workers/{worker_id}", None),
        ("DELETE", f"{base}/workers/{worker_id}", None),
        ("GET", f"{base}/nonces", None),
        ("POST", f"{base}/nonces", {}),
        ("GET", f"{base}/nonces/{nonce_id}", None),
        ("DELETE", f"{base}/nonces/{nonce_id}", None),
    ]
    for who in ("user", "admin"):
        http = tenants[TENANT_B, who]
        for method, path, body in requests:
            response = await http.request(method, path, json=body)
            assert response.status_code == 404, (who, method, path, response.text)
            assert response.json()["status"] == "error"
    # Untouched in its own tenant.
    kept = await alice_a.get(base)
    assert kept.json()["result"]["description"] == ""
    assert (await alice_a.get(f"{base}/nonces/{nonce_id}")).status_code == 200
    assert (await alice_a.get(f"{base}/executions/{execution_id}")).status_code == 200
    assert (await tenants[TENANT_A, "admin"].get(f"{base}/workers/{worker_id}")).status_code == 200


async def test_the_same_alias_may_exist_in_both_tenants(tenants):
    ids = {}
    for tenant in (TENANT_A, TENANT_B):
        http = tenants[tenant, "user"]
        ids[tenant] = (await create_actor(http))["id"]
        made = await http.post(
            "/actors/aliases", json={"alias": "jane.doe", "actor_id": ids[tenant]}
        )
        assert made.status_code == 200, made.text
    for tenant in (TENANT_A, TENANT_B):
        http = tenants[tenant, "user"]
        alias = (await http.get("/actors/aliases/jane.doe")).json()["result"]
        assert alias["actor_id"] == ids[tenant]
        through = await http.get("/actors/jane.doe")
        assert through.json()["result"]["id"] == ids[tenant]
        listed = (await http.get("/actors/aliases")).json()["result"]
        assert [a["actor_id"] for a in listed] == [ids[tenant]]
    # An alias of A cannot point at an actor of B: B's ids do not exist in A.
    crossed = await tenants[TENANT_A, "user"].post(
        "/actors/aliases", json={"alias": "crossed", "actor_id": ids[TENANT_B]}
    )
    assert crossed.status_code == 404, crossed.text
    deleted = await tenants[TENANT_A, "user"].delete("/actors/aliases/jane.doe")
    assert deleted.status_code == 200
    still = await tenants[TENANT_B, "user"].get("/actors/aliases/jane.doe")
    assert still.status_code == 200


async def test_a_grant_in_one_tenant_gives_nothing_in_the_other(
    tenants, platform_redis, settings, api_url
):
    actor = await create_actor(tenants[TENANT_A, "user"])
    shared = await tenants[TENANT_A, "user"].post(
        f"/actors/{actor['id']}/permissions", json={"user": "bob", "level": "READ"}
    )
    assert shared.status_code == 200
    bob_a = await user_client(platform_redis, settings, api_url, "bob", tenant=TENANT_A)
    bob_b = await user_client(platform_redis, settings, api_url, "bob", tenant=TENANT_B)
    async with bob_a, bob_b:
        assert (await bob_a.get(f"/actors/{actor['id']}")).status_code == 200
        assert (await bob_b.get(f"/actors/{actor['id']}")).status_code == 404
        assert (await bob_b.get("/actors")).json()["result"] == []


async def test_a_nonce_opens_only_its_own_tenants_actor(tenants, api_url):
    actor_a = await create_actor(tenants[TENANT_A, "user"])
    actor_b = await create_actor(tenants[TENANT_B, "user"])
    made = await tenants[TENANT_A, "user"].post(
        f"/actors/{actor_a['id']}/nonces", json={"level": "READ"}
    )
    nonce_id = made.json()["result"]["id"]
    assert nonce_id.startswith(f"{TENANT_A}_")
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as anonymous:
        own = await anonymous.get(f"/actors/{actor_a['id']}", params={"x-nonce": nonce_id})
        other = await anonymous.get(f"/actors/{actor_b['id']}", params={"x-nonce": nonce_id})
        # A nonce id renamed to the other tenant is no nonce at all.
        forged = f"{TENANT_B}_{nonce_id.rpartition('_')[2]}"
        renamed = await anonymous.get(f"/actors/{actor_b['id']}", params={"x-nonce": forged})
    assert own.status_code == 200
    assert own.json()["result"]["tenant"] == TENANT_A
    assert other.status_code == 403
    assert renamed.status_code == 401
