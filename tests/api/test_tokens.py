"""Tokens issued by the platform: admins issue and revoke them, over HTTP and the CLI."""

from __future__ import annotations

import os
import sys

import httpx
import trio

from tests.api._helpers import create_actor, push_bundle, user_client


async def test_an_admin_issues_a_token_that_works_until_revoked(client, api_url, tmp_path):
    issued = await client.post("/tokens", json={"user": "carol", "role": "privileged"})
    assert issued.status_code == 200, issued.text
    token = issued.json()["result"]["token"]
    assert issued.json()["result"]["tenant"] == "default"
    await push_bundle(client, tmp_path)
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}
    ) as carol:
        actor = await create_actor(carol, max_workers=2)  # privileged may
        assert actor["owner"] == "carol"
        revoked = await client.post("/tokens/revoke", json={"token": token})
        assert revoked.status_code == 200
        assert (await carol.get("/actors")).status_code == 401
    again = await client.post("/tokens/revoke", json={"token": token})
    assert again.status_code == 404


async def test_only_admins_issue_tokens_and_bad_input_is_a_400(
    client, platform_redis, settings, api_url
):
    for body in ({"user": ""}, {"user": "x", "role": "root"}, {"user": "x", "extra": 1}, {}):
        response = await client.post("/tokens", json=body)
        assert response.status_code == 400, (body, response.text)
    user = await user_client(platform_redis, settings, api_url, "dave")
    async with user:
        refused = await user.post("/tokens", json={"user": "dave", "role": "admin"})
    assert refused.status_code == 403


async def test_abaco_tokens_create_prints_a_working_token(client, api_url, admin_token):
    env = {**os.environ, "ABACO_API": api_url, "ABACO_TOKEN": admin_token}
    done = await trio.run_process(
        [sys.executable, "-m", "abaco", "tokens", "create", "--user", "erin", "--role", "limited"],
        capture_stdout=True,
        env=env,
    )
    token = done.stdout.decode().strip()
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}
    ) as erin:
        assert (await erin.get("/actors")).status_code == 200
    await trio.run_process(
        [sys.executable, "-m", "abaco", "tokens", "revoke", token], capture_stdout=True, env=env
    )
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}
    ) as erin:
        assert (await erin.get("/actors")).status_code == 401
