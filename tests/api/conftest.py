"""The API served by a real hypercorn on 127.0.0.1:0, and an HTTP client for it."""

from __future__ import annotations

import httpx
import pytest

from abaco.api import create_app, serve_api


@pytest.fixture
async def api_url(settings):
    app = create_app(settings)
    async with serve_api(app, "127.0.0.1", 0) as url:
        yield url


@pytest.fixture
async def client(api_url):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http
