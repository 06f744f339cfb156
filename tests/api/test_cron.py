"""Cron fields of actors over real HTTP, and GET /actors/cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from abaco.api.ops import openapi_document
from abaco.cron import parse_time
from tests.api._helpers import create_actor, push_bundle, user_client


@pytest.fixture
async def image(client, tmp_path):
    return await push_bundle(client, tmp_path)


def _tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")


async def test_register_actor_with_cron(client, image):
    """Ports test_register_actor_with_cron: the schedule is kept, cron is on, next run set."""
    day = _tomorrow()
    cron_str = f"{day} 23 + 6 hours"
    actor = await create_actor(client, name="abaco_test_suite_cron", cron_schedule=cron_str)
    assert actor["cron_schedule"] == cron_str
    assert actor["cron_on"] is True
    year, month, mday = (int(part) for part in day.split("-"))
    assert actor["cron_next_ex"] == f"{year}-{month}-{mday} 23"


async def test_register_actor_with_incorrect_cron(client, image):
    """Ports test_register_actor_with_incorrect_cron: an unknown unit is a 400."""
    answer = await client.post(
        "/actors",
        json={
            "image": image,
            "name": "abaco_test_suite_cron",
            "cron_schedule": f"{_tomorrow()} 14 + 6 flimflams",
        },
    )
    assert answer.status_code == 400
    assert answer.json()["message"] == "flimflams is an invalid unit of time"


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ("2020-06-21 14 + 6 hours", "The starting datetime is old. The current UTC time is "),
        ("2078-13-06 20 + 1 day", "The starting date 2078-13-06 20 is not in the correct format"),
        ("now + 0 hours", "The cron is not in the correct format"),
        ("every day at noon", "The cron is not in the correct format"),
        ("61 * * * *", "The cron is not in the correct format"),
        ("0 0 31 2 *", "The cron is not in the correct format"),
        ("now + 2 seconds", "seconds is an invalid unit of time"),
    ],
)
async def test_bad_schedules_are_400s_with_abacos_messages(client, image, schedule, says):
    answer = await client.post("/actors", json={"image": image, "cron_schedule": schedule})
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith(says)
    existing = await create_actor(client)
    answer = await client.put(f"/actors/{existing['id']}", json={"cron_schedule": schedule})
    assert answer.status_code == 400, answer.text


async def test_update_cron(client, image):
    """Ports test_update_cron: a new schedule on PUT, with its next run."""
    actor = await create_actor(client, cron_schedule=f"{_tomorrow()} 23 + 6 hours")
    answer = await client.put(
        f"/actors/{actor['id']}",
        json={"image": image, "stateless": False, "cron_schedule": "2078-09-6 20 + 3 months"},
    )
    assert answer.status_code == 200, answer.text
    updated = answer.json()["result"]
    assert updated["cron_schedule"] == "2078-09-6 20 + 3 months"
    assert updated["cron_next_ex"] == "2078-9-6 20"


async def test_update_cron_switch(client, image):
    """Ports test_update_cron_switch: cron_on false with the schedule turns cron off."""
    actor = await create_actor(client, cron_schedule=f"{_tomorrow()} 23 + 6 hours")
    answer = await client.put(
        f"/actors/{actor['id']}",
        json={
            "image": image,
            "stateless": False,
            "cron_schedule": "2078-09-6 20 + 3 months",
            "cron_on": False,
        },
    )
    assert answer.status_code == 200, answer.text
    updated = answer.json()["result"]
    assert updated["image"] == image
    assert updated["cron_on"] is False
    # And back on, alone.
    answer = await client.put(f"/actors/{actor['id']}", json={"cron_on": True})
    assert answer.json()["result"]["cron_on"] is True


async def test_now_and_crontab_schedules_start_from_the_current_time(client, image):
    before = datetime.now(UTC)
    hourly = await create_actor(client, cron_schedule="now + 1 hour")
    every_five = await create_actor(client, cron_schedule="*/5 * * * *")
    after = datetime.now(UTC)
    first = parse_time(hourly["cron_next_ex"])
    assert before.replace(minute=0, second=0, microsecond=0) <= first <= after
    assert ":" not in hourly["cron_next_ex"]  # Abaco's hour form
    next_five = parse_time(every_five["cron_next_ex"])
    assert next_five.minute % 5 == 0
    assert before < next_five <= after + timedelta(minutes=5)


async def test_sending_back_the_actor_as_read_keeps_its_schedule(client, image):
    actor = await create_actor(client, cron_schedule="now + 1 hour")
    answer = await client.put(
        f"/actors/{actor['id']}", json={"image": image, "cron_schedule": "now + 1 hour"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["cron_next_ex"] == actor["cron_next_ex"]


async def test_a_client_cannot_set_the_next_run_itself(client, image):
    answer = await client.post("/actors", json={"image": image, "cron_next_ex": "2078-9-6 20"})
    assert answer.status_code == 400


async def test_get_actors_cron_shows_the_cron_and_the_tenants_scheduled_actors(
    client, image, settings
):
    scheduled = await create_actor(client, cron_schedule="*/5 * * * *")
    await create_actor(client)  # no schedule: not listed
    answer = await client.get("/actors/cron")
    assert answer.status_code == 200, answer.text
    status = answer.json()["result"]
    assert status["tick"] == settings.cron.tick
    assert status["instances"] == []  # no cron actor runs in this test
    assert status["actors"] == [
        {
            "id": scheduled["id"],
            "owner": scheduled["owner"],
            "cron_schedule": "*/5 * * * *",
            "cron_on": True,
            "cron_next_ex": scheduled["cron_next_ex"],
        }
    ]


async def test_get_actors_cron_is_for_admins_and_not_taken_for_an_actor_id(
    client, image, platform_redis, settings, api_url
):
    user = await user_client(platform_redis, settings, api_url, "alice")
    try:
        answer = await user.get("/actors/cron")
    finally:
        await user.aclose()
    # The cron route's own refusal, not "No actor found with identifier: cron." (404).
    assert answer.status_code == 403
    assert answer.json()["message"] == (
        "Not authorized -- only admins are authorized to view the cron."
    )
    assert (await client.post("/actors/cron", json={})).status_code == 405


def test_get_actors_cron_is_in_the_openapi_document(settings):
    from abaco.api import create_app

    document = openapi_document(create_app(settings))
    assert "get" in document["paths"]["/actors/cron"]
