"""The platform as separate processes, for end-to-end tests over real HTTP.

``platform`` runs api, scheduler and health as processes (see :mod:`tests._platform`), on
the session's Valkey under a key prefix of its own, with one spawner ``host-a`` and the
echo bundle. Further spawners are started by the test (``await
platform.start_spawner(...)``) outside the supervisor, so that a test can kill one for
good.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests._platform import ECHO_IMAGE, FAST, Platform, push_echo, running_platform

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from abaco.valkey import EmbeddedValkey

__all__ = ["ECHO_IMAGE", "FAST", "Platform", "platform", "push_echo"]


@pytest.fixture
async def platform(
    request: pytest.FixtureRequest, valkey_server: EmbeddedValkey, tmp_path: Path
) -> AsyncIterator[Platform]:
    """api, scheduler and health as processes, one spawner ``host-a``, the echo bundle.

    Parametrize it indirectly with a dict of ``ABACO__*`` variables to change settings.
    """
    settings = getattr(request, "param", {})
    async with running_platform(valkey_server.url, tmp_path / "state", settings) as running:
        await running.start_spawner("host-a")
        await push_echo(running.http, tmp_path)
        yield running
