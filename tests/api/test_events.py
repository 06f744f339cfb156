"""Links and webhooks over real HTTP: what the API accepts and refuses on create and update."""

from __future__ import annotations

import attrs
import pytest

from abaco.config import EventsSettings
from tests.api._helpers import create_actor, push_bundle, user_client

CYCLE = "Error: this update would result in a cycle of linked actors."


@pytest.fixture
async def event_link(client, tmp_path):
    """Ports Abaco's test_create_event_link_actor: the actor others link to."""
    await push_bundle(client, tmp_path)
    return await create_actor(client, name="abaco_test_suite_event-link", stateless=False)


async def test_create_actor_with_link(client, event_link):
    """Ports Abaco's test_create_actor_with_link."""
    actor = await create_actor(client, name="abaco_test_suite_event", link=event_link["id"])
    assert actor["link"] == event_link["id"]
    shown = (await client.get(f"/actors/{actor['id']}")).json()["result"]
    assert shown["link"] == event_link["id"]


async def test_a_link_may_name_an_alias(client, event_link):
    """Abaco's link: "May be an actor id or an alias"."""
    made = await client.post(
        "/actors/aliases", json={"alias": "the.link", "actor_id": event_link["id"]}
    )
    assert made.status_code == 200, made.text
    actor = await create_actor(client, link="the.link")
    assert actor["link"] == "the.link"


async def test_cant_create_link_with_cycle(client, event_link):
    """Ports Abaco's test_cant_create_link_with_cycle: a chain of six, closed by an update."""
    first = await create_actor(client, name="abaco_test_suite_create_link")
    new_ids = []
    previous = first["id"]
    for _ in range(5):
        previous = (await create_actor(client, link=previous))["id"]
        new_ids.append(previous)
    response = await client.put(f"/actors/{new_ids[0]}", json={"link": new_ids[4]})
    assert response.status_code == 400
    assert response.json()["message"] == CYCLE
    assert response.json()["status"] == "error"
    # Nothing was changed: the first link still points where it did.
    assert (await client.get(f"/actors/{new_ids[0]}")).json()["result"]["link"] == first["id"]


async def test_cant_update_link_with_cycle(client, event_link):
    """Ports Abaco's test_cant_update_link_with_cycle: a chain hanging off event-link."""
    new_ids = []
    link = event_link["id"]
    for _ in range(5):
        link = (await create_actor(client, name="abaco_test_suite_event", link=link))["id"]
        new_ids.append(link)
    response = await client.put(f"/actors/{new_ids[0]}", json={"link": new_ids[4]})
    assert response.status_code == 400
    assert "this update would result in a cycle of linked actors" in response.json()["message"]
    # A link through an alias closes a cycle just the same.
    made = await client.post("/actors/aliases", json={"alias": "last", "actor_id": new_ids[4]})
    assert made.status_code == 200, made.text
    response = await client.put(f"/actors/{new_ids[0]}", json={"link": "last"})
    assert response.status_code == 400
    assert response.json()["message"] == CYCLE
    # Re-linking along the chain without a cycle is fine.
    fine = await client.put(f"/actors/{new_ids[4]}", json={"link": event_link["id"]})
    assert fine.status_code == 200, fine.text


async def test_an_actor_cannot_link_to_itself(client, event_link):
    """Abaco's validate_link: "An actor cannot link to itself."."""
    response = await client.put(f"/actors/{event_link['id']}", json={"link": event_link["id"]})
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid link parameter. An actor cannot link to itself."


async def test_a_link_to_nothing_is_refused(client, event_link):
    """Abaco's validate_link: the link must resolve."""
    for link in ("nosuchactor", "no:such", "_ids"):
        response = await client.post("/actors", json={"image": event_link["image"], "link": link})
        assert response.status_code == 400, link
        assert response.json()["message"].startswith(
            "Invalid link parameter; unable to retrieve linked actor data."
        )


async def test_a_link_needs_execute_on_the_linked_actor(
    client, event_link, platform_redis, settings, api_url
):
    """Abaco's validate_link (EXECUTE on the linked actor); refused with 403, Abaco's words."""
    alice = await user_client(platform_redis, settings, api_url, "alice")
    try:
        image = event_link["image"]
        path = f"/actors/{event_link['id']}/permissions"
        for level in ("READ", "EXECUTE"):
            refused = await alice.post("/actors", json={"image": image, "link": event_link["id"]})
            if level == "EXECUTE":
                assert refused.status_code == 200, refused.text
                break
            assert refused.status_code == 403
            assert refused.json()["message"].startswith(
                "Invalid link parameter. The link must be a valid actor id or alias for which "
                "you have EXECUTE permission."
            )
            granted = await client.post(path, json={"user": "alice", "level": "EXECUTE"})
            assert granted.status_code == 200, granted.text
        # An actor of another tenant is not there at all.
        other = await user_client(platform_redis, settings, api_url, "carol", tenant="other")
        try:
            response = await other.post("/actors", json={"image": image, "link": event_link["id"]})
            assert response.status_code == 400
            assert response.json()["message"].startswith("Invalid link parameter; unable")
        finally:
            await other.aclose()
    finally:
        await alice.aclose()


@pytest.mark.parametrize(
    "webhook",
    [
        "ftp://example.org/hook",
        "not a url",
        "http://127.0.0.1:5000/hook",
        "http://10.0.0.8/hook",
        "http://[::1]:80/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/hook",
    ],
)
async def test_a_webhook_that_is_not_http_or_goes_to_a_private_address_is_refused(
    client, event_link, webhook
):
    """Not an Abaco test (Abaco took any string): refused with a 400 on create and update."""
    image = event_link["image"]
    created = await client.post("/actors", json={"image": image, "webhook": webhook})
    assert created.status_code == 400
    assert created.json()["message"].startswith("Invalid webhook parameter")
    updated = await client.put(f"/actors/{event_link['id']}", json={"webhook": webhook})
    assert updated.status_code == 400


async def test_a_public_webhook_is_stored(client, event_link):
    """The webhook half of Abaco's test_create_actor_with_webhook (registration)."""
    actor = await create_actor(client, webhook="https://hooks.example.org/abaco")
    assert actor["webhook"] == "https://hooks.example.org/abaco"
    cleared = await client.put(f"/actors/{actor['id']}", json={"webhook": ""})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["result"]["webhook"] == ""


class TestWhenTheOperatorAllowsLocalWebhooks:
    """``[events] webhook_allowed_networks`` opens the listed networks only."""

    @pytest.fixture
    def settings(self, settings):
        return attrs.evolve(settings, events=EventsSettings(webhook_allowed_networks="127.0.0.1"))

    async def test_a_listed_address_is_accepted_and_others_are_not(self, client, event_link):
        actor = await create_actor(client, webhook="http://127.0.0.1:8000/hook")
        assert actor["webhook"] == "http://127.0.0.1:8000/hook"
        refused = await client.post(
            "/actors", json={"image": event_link["image"], "webhook": "http://10.0.0.1/hook"}
        )
        assert refused.status_code == 400
