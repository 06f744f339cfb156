"""Fixtures for the health tests: a supervisor's context on the test's Redis."""

from __future__ import annotations

import pytest

from abaco.control import remember_tenant
from abaco.health import open_health
from abaco.hosts import open_hosts


@pytest.fixture
async def health(settings, redis, stores):
    """A :class:`~abaco.health.Health` on a fresh database whose default tenant is known."""
    await remember_tenant(redis, settings.redis.key_prefix, stores.tenant)
    async with open_health(settings, redis) as opened:
        yield opened


@pytest.fixture
def hosts(redis, settings):
    """The host registry."""
    return open_hosts(redis, settings)
