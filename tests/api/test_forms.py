"""Resource descriptions sent as forms, as Abaco's clients send them (``data=`` in requests).

A form (urlencoded or multipart) is read into the same description a JSON body gives,
each value as its field's type (:func:`abaco.api.inputs.spec_body`); what JSON refuses,
a form refuses too, with a 400 naming the field.
"""

from __future__ import annotations

import pytest

from tests.api._helpers import create_actor, push_bundle


@pytest.fixture
async def image(client, tmp_path):
    return await push_bundle(client, tmp_path)


async def test_an_actor_is_created_and_updated_from_forms(client, image):
    created = await client.post(
        "/actors",
        data={
            "image": image,
            "name": "formed",
            "stateless": "False",  # what requests sends for Python's False
            "hints": ["sync", "hint_1"],  # a repeated field
            "default_environment": '{"A": "1"}',
            "max_workers": "1",
            "token": "0",
        },
    )
    assert created.status_code == 200, created.text
    actor = created.json()["result"]
    assert (actor["name"], actor["stateless"], actor["token"]) == ("formed", False, False)
    assert actor["hints"] == ["sync", "hint_1"]
    assert actor["default_environment"] == {"A": "1"}
    assert actor["max_workers"] == 1
    updated = await client.put(
        f"/actors/{actor['id']}",
        data={"description": "now with a form", "hints": "one", "use_container_uid": "TRUE"},
    )
    assert updated.status_code == 200, updated.text
    result = updated.json()["result"]
    assert result["description"] == "now with a form"
    assert result["hints"] == ["one"]  # one value is a list of one, as Abaco's hints
    assert result["use_container_uid"] is True
    assert result["stateless"] is False  # left out, so kept


async def test_a_multipart_form_is_read_as_a_urlencoded_one_is(client, image):
    # (None, value): a part without a file name, i.e. a plain field.
    fields = {"image": (None, image), "name": (None, "multi"), "stateless": (None, "true")}
    created = await client.post("/actors", files=fields)
    assert created.status_code == 200, created.text
    assert (created.json()["result"]["name"], created.json()["result"]["stateless"]) == (
        "multi",
        True,
    )
    with_a_file = {"image": (None, image), "name": ("name.txt", b"multi")}
    refused = await client.post("/actors", files=with_a_file)
    assert refused.status_code == 400
    assert "files are not accepted: ['name']" in refused.json()["message"]


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"stateless": "maybe"}, "stateless: expected true or false, not 'maybe'"),
        ({"max_workers": "many"}, "max_workers: expected an integer, not 'many'"),
        ({"default_environment": "{A: 1"}, "default_environment: expected JSON text"),
        ({"default_environment": '["A"]'}, "default_environment"),  # JSON, but not an object
        ({"mounts": "[[[[[[" * 20_000}, "mounts: expected JSON text"),
        ({"name": ["a", "b"]}, "name: given more than once"),
        ({"colour": "red"}, "unknown fields ['colour']"),
    ],
)
async def test_a_bad_form_is_a_400_naming_the_field(client, image, form, says):
    response = await client.post("/actors", data={"image": image, **form})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["message"].startswith("Invalid actor description: ")
    assert says in body["message"]
    assert (await client.get("/actors")).json()["result"] == []


async def test_json_stays_strict(client, image):
    # Only forms carry text for every value: a JSON string is not a boolean.
    response = await client.post("/actors", json={"image": image, "stateless": "false"})
    assert response.status_code == 400
    assert "stateless" in response.json()["message"]


async def test_other_resources_take_forms_too(client, image):
    actor = await create_actor(client, name="target")
    alias = await client.post("/actors/aliases", data={"alias": "jane", "actor_id": actor["id"]})
    assert alias.status_code == 200, alias.text
    grant = await client.post(
        f"/actors/{actor['id']}/permissions", data={"user": "bob", "level": "READ"}
    )
    assert grant.json()["result"]["bob"] == "READ"
    nonce = await client.post(
        f"/actors/{actor['id']}/nonces", data={"level": "READ", "max_uses": "3"}
    )
    assert (nonce.json()["result"]["level"], nonce.json()["result"]["max_uses"]) == ("READ", 3)
    config = await client.post(
        "/actors/configs",
        data={"name": "c", "value": "v", "actors": actor["id"], "is_secret": "False"},
    )
    assert config.json()["result"]["is_secret"] is False
    bad = await client.post(
        "/actors/configs",
        data={"name": "d", "value": "v", "actors": actor["id"], "is_secret": "yes please"},
    )
    assert bad.status_code == 400
    assert "is_secret: expected true or false" in bad.json()["message"]
    # A message is not a resource description: its form field is the message, as before.
    sent = await client.post(f"/actors/{actor['id']}/messages", data={"message": "hi"})
    assert sent.json()["result"]["msg"] == "hi"


async def test_the_openapi_document_says_forms_are_taken_and_which_bodies_are_optional(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    created = paths["/actors"]["post"]["requestBody"]
    assert created["required"] is True
    assert set(created["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    # The state is JSON only, as in Abaco.
    assert set(paths["/actors/{actor_id}/state"]["post"]["requestBody"]["content"]) == {
        "application/json"
    }
    # No body asks for the defaults (one worker; an unlimited EXECUTE nonce).
    for path in (
        "/actors/{actor_id}/workers",
        "/actors/{actor_id}/nonces",
        "/actors/aliases/{alias}/nonces",
    ):
        assert paths[path]["post"]["requestBody"]["required"] is False, path
