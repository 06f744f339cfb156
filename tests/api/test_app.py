"""The application shell: envelope on every answer, JSON errors, body limits."""

from __future__ import annotations

import abaco


async def test_healthz_answers_in_the_abaco_envelope(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "message": "abaco is up.",
        "result": {"healthy": True},
        "version": abaco.__version__,
    }


async def test_an_unknown_route_is_a_json_404(client):
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == "error"


async def test_a_wrong_method_is_a_json_405_with_abacos_message(client):
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.json()["message"] == "Invalid HTTP method on requested resource."
