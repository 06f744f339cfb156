"""Messages and executions over real HTTP (no workers: what the API itself records)."""

from __future__ import annotations

import pytest

from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.channels import open_hub
from tests.api._helpers import create_actor, push_bundle


@pytest.fixture
async def actor(client, tmp_path):
    await push_bundle(client, tmp_path)
    return await create_actor(client, name="hello")


@pytest.fixture
async def mailbox(platform_redis, settings, actor):
    prefix = settings.redis.key_prefix
    async with open_hub(platform_redis, namespace=prefix) as hub:
        yield mailbox_of(hub, prefix, settings.stores.tenant, actor["id"])


async def _taken(mailbox) -> MailboxMessage:
    delivery = await mailbox.get(timeout=2)
    await delivery.ack()
    return MailboxMessage.from_wire(delivery.message)


async def test_a_message_attribute_is_a_string_message_with_query_parameters_as_env(
    client, actor, mailbox
):
    path = f"/actors/{actor['id']}/messages"
    response = await client.post(path, json={"message": "hello"}, params={"x": "1", "y": "two"})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["msg"] == "hello"
    assert set(result["_links"]) == {"self", "owner", "messages"}
    assert (await client.get(path)).json()["result"]["messages"] == 1
    message = await _taken(mailbox)
    assert (message.execution_id, message.body, message.content_type) == (
        result["execution_id"],
        "hello",
        "str",
    )
    assert message.environment == {"x": "1", "y": "two"}
    assert message.username == "admin"
    execution = await client.get(f"/actors/{actor['id']}/executions/{result['execution_id']}")
    record = execution.json()["result"]
    assert (record["status"], record["executor"]) == ("SUBMITTED", "admin")


async def test_a_json_body_is_the_message_and_binary_is_binary(client, actor, mailbox):
    path = f"/actors/{actor['id']}/messages"
    as_json = await client.post(path, json={"numbers": [1, 2]})
    assert as_json.json()["result"]["msg"] == {"numbers": [1, 2]}
    message = await _taken(mailbox)
    assert message.content_type == "application/json"
    assert message.body == '{"numbers": [1, 2]}' or '"numbers"' in message.body
    binary = await client.post(
        path, content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}
    )
    assert binary.json()["result"]["msg"] == "binary - omitted"
    message = await _taken(mailbox)
    assert (message.body, message.content_type) == (b"\x00\x01", "application/octet-stream")
    form = await client.post(path, data={"message": "from a form"})
    assert form.json()["result"]["msg"] == "from a form"
    assert (await _taken(mailbox)).content_type == "str"


async def test_a_body_that_is_neither_is_a_400_and_nothing_is_queued(client, actor):
    path = f"/actors/{actor['id']}/messages"
    for content, kind in [(b"just text", "text/plain"), (b"{broken", "application/json")]:
        response = await client.post(path, content=content, headers={"Content-Type": kind})
        assert response.status_code == 400
        assert "Pass JSON data or use the message attribute" in response.json()["message"]
    assert (await client.get(path)).json()["result"]["messages"] == 0
    summary = (await client.get(f"/actors/{actor['id']}/executions")).json()["result"]
    assert summary["total_executions"] == 0


async def test_a_message_over_the_limit_is_a_413(client, actor, settings):
    big = "x" * (settings.api.max_message_bytes + 1)
    response = await client.post(f"/actors/{actor['id']}/messages", json={"message": big})
    assert response.status_code == 413


async def test_a_synchronous_message_is_refused_while_others_wait(client, actor):
    path = f"/actors/{actor['id']}/messages"
    await client.post(path, json={"message": "first"})
    refused = await client.post(
        path, json={"message": "now"}, params={"_abaco_synchronous": "true"}
    )
    assert refused.status_code == 400
    assert "synchronous" in refused.json()["message"]


async def test_purging_the_mailbox_aborts_the_waiting_executions(client, actor):
    path = f"/actors/{actor['id']}/messages"
    ids = [
        (await client.post(path, json={"message": str(i)})).json()["result"]["execution_id"]
        for i in range(3)
    ]
    purged = await client.delete(path)
    assert purged.json()["result"]["purged"] == 3
    assert (await client.get(path)).json()["result"]["messages"] == 0
    for execution_id in ids:
        record = await client.get(f"/actors/{actor['id']}/executions/{execution_id}")
        assert record.json()["result"]["status"] == "ABORTED"


async def test_executions_summary_get_abort_logs_and_results(client, actor, tmp_path):
    base = f"/actors/{actor['id']}"
    ids = [
        (await client.post(f"{base}/messages", json={"message": str(i)})).json()["result"][
            "execution_id"
        ]
        for i in range(3)
    ]
    summary = (await client.get(f"{base}/executions")).json()["result"]
    assert summary["total_executions"] == 3
    assert summary["ids"] == sorted(ids)
    assert {"total_cpu", "total_io", "total_runtime", "owner", "actor_id"} <= set(summary)
    page = (await client.get(f"{base}/executions", params={"limit": 2, "offset": 2})).json()
    assert page["result"]["ids"] == sorted(ids)[2:]

    aborted = await client.delete(f"{base}/executions/{ids[0]}")
    assert aborted.json()["message"] == f"Issued force quit command for execution {ids[0]}."
    record = (await client.get(f"{base}/executions/{ids[0]}")).json()["result"]
    assert (record["status"], record["status_message"]) == ("ABORTED", "Issued force quit command")
    assert record["_links"]["logs"].endswith(f"/executions/{ids[0]}/logs")
    again = await client.delete(f"{base}/executions/{ids[0]}")
    assert again.status_code == 400

    logs = (await client.get(f"{base}/executions/{ids[1]}/logs")).json()["result"]
    assert logs["logs"] == ""
    assert set(logs["_links"]) == {"self", "owner", "execution"}
    results = await client.get(f"{base}/executions/{ids[1]}/results")
    assert (results.status_code, results.content) == (200, b"")
    assert results.headers["content-type"] == "application/octet-stream"

    assert (await client.get(f"{base}/executions/nope")).status_code == 404
    await push_bundle(client, tmp_path / "v2", "2.0.0")
    other = await create_actor(client, image="org.example/hello:2.0.0")
    elsewhere = await client.get(f"/actors/{other['id']}/executions/{ids[1]}")
    assert elsewhere.status_code == 404


async def test_openapi_lists_every_route_and_metrics_count_requests(client, actor, api_url):
    import httpx

    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
        metrics = await anonymous.get("/metrics")
    paths = document["paths"]
    for path in (
        "/actors",
        "/actors/{actor_id}",
        "/actors/{actor_id}/messages",
        "/actors/{actor_id}/executions/{execution_id}/logs",
        "/actors/{actor_id}/workers/{worker_id}",
        "/actors/{actor_id}/permissions",
        "/actors/{actor_id}/state",
    ):
        assert path in paths
    assert (
        paths["/actors"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "additionalProperties"
        ]
        is False
    )
    assert metrics.status_code == 200
    assert 'abaco_http_requests_total{endpoint="actors.create_actor"' in metrics.text
