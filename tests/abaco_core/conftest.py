"""Fixtures of the Abaco scenarios: one platform for the package, users of every role.

- ``abaco_platform`` (package scope): api, scheduler, health, events and cron as separate
  processes (:func:`tests._platform.running_platform`) with :data:`SETTINGS`, a spawner
  for the default queue and one for the queue ``special``, and the bundles of
  :mod:`tests.abaco_core._bundles`. Trio
  fixtures can only be function-scoped, so the platform lives in a thread of its own that
  runs its own trio loop for the whole package; tests reach it over HTTP only.
- ``world`` (module scope): two tenants of the module's own, so each module starts from
  nothing as Abaco's suite does; tokens (:func:`abaco.auth.issue_token`) for Abaco's
  users, one of each role in tenant A and the admin ``testuser`` again in tenant B. When
  the module ends, every actor of both tenants is deleted (its workers stop).
- ``api`` (per test): an HTTP client for each of those users, and one without a token.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

import attrs
import httpx
import pytest
import trio

from abaco.auth import Identity, Role, issue_token
from abaco.config import load_settings
from abaco.redis_client import open_redis
from tests._platform import push_python_bundle, running_platform
from tests.abaco_core._bundles import BUNDLES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from abaco.valkey import EmbeddedValkey

#: The queue of the second spawner (Abaco's CH_NAME_1).
SPECIAL_QUEUE = "special"
#: Its host.
SPECIAL_HOST = "host-special"
#: The host of the default queue.
DEFAULT_HOST = "host-a"

#: What Abaco's suite needs of the platform beyond the defaults: privileged actors allowed
#: (test_priv_user_can_create_priv_actor; a limited user is refused them all the same),
#: webhooks to this host (the API's own messages URL, as in test_create_actor_with_webhook),
#: and a cron that passes every half second and takes schedules in seconds.
SETTINGS = {
    "ABACO__WORKER__ALLOW_PRIVILEGED": "true",
    "ABACO__EVENTS__WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "ABACO__CRON__TICK": "0.5",
    "ABACO__CRON__ALLOW_SECONDS": "true",
}

#: Abaco's users (util.py's JWTs): the admin, and one user of each other role.
ADMIN = "testuser"
PRIVILEGED = "testshareuser"
LIMITED = "testotheruser"
USER = "testregularuser"
_ROLES = {ADMIN: Role.ADMIN, PRIVILEGED: Role.PRIVILEGED, USER: Role.USER, LIMITED: Role.LIMITED}


@attrs.frozen
class Running:
    """What tests know of the platform: where it answers, and its settings."""

    api_url: str
    admin_token: str
    env: dict[str, str]


@attrs.frozen
class _Started:
    running: Running
    trio_token: trio.lowlevel.TrioToken
    stop: trio.Event


def _serve(root: Path, redis_url: str, handoff: queue.Queue[_Started | BaseException]) -> None:
    """The platform thread: start everything, hand it over, run until told to stop."""

    async def main() -> None:
        async with running_platform(
            redis_url, root / "state", SETTINGS, extra_components=("cron",)
        ) as platform:
            await platform.start_spawner(DEFAULT_HOST, capacity=32)
            await platform.start_spawner(SPECIAL_HOST, capacity=4, queue=SPECIAL_QUEUE)
            for image, source in BUNDLES.items():
                await push_python_bundle(platform.http, root, image, source)
            stop = trio.Event()
            running = Running(platform.api_url, platform.token, dict(platform.env))
            handoff.put(_Started(running, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    try:
        trio.run(main)
    except BaseException as exc:
        handoff.put(exc)  # seen by the fixture if it is still waiting for the start


@pytest.fixture(scope="package")
def abaco_platform(
    valkey_server: EmbeddedValkey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The platform, running for the whole package."""
    handoff: queue.Queue[_Started | BaseException] = queue.Queue()
    root = tmp_path_factory.mktemp("abaco-core")
    thread = threading.Thread(
        target=_serve, args=(root, valkey_server.url, handoff), name="abaco-core-platform"
    )
    thread.start()
    started = handoff.get(timeout=180)
    if isinstance(started, BaseException):
        thread.join()
        raise started
    try:
        yield started.running
    finally:
        trio.from_thread.run_sync(started.stop.set, trio_token=started.trio_token)
        thread.join(120)


@attrs.frozen
class World:
    """One module's tenants and its users' tokens."""

    running: Running
    tenant: str
    other_tenant: str
    #: user name -> token, in ``tenant``.
    tokens: dict[str, str]
    #: The admin ``testuser`` of ``other_tenant``.
    other_tenant_token: str


async def _issue(running: Running, tenant: str, other_tenant: str) -> World:
    settings = load_settings(environ=running.env)
    async with open_redis(settings.redis.url) as redis:
        tokens = {
            user: await issue_token(redis, settings, Identity(user, tenant, role))
            for user, role in _ROLES.items()
        }
        other = await issue_token(redis, settings, Identity(ADMIN, other_tenant, Role.ADMIN))
    return World(running, tenant, other_tenant, tokens, other)


async def _delete_every_actor(world: World) -> None:
    for token in (world.tokens[ADMIN], world.other_tenant_token):
        async with _client(world.running, token) as http:
            listed = await http.get("/actors", params={"limit": 1000})
            for actor in listed.json()["result"]:
                await http.delete(f"/actors/{actor['id']}")


@pytest.fixture(scope="module")
def world(abaco_platform: Running, request: pytest.FixtureRequest) -> Iterator[World]:
    """Two tenants of this module's own (``develop-AREA``, ``staging-AREA``), and tokens."""
    area = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    made = trio.run(_issue, abaco_platform, f"develop-{area}", f"staging-{area}")
    yield made
    trio.run(_delete_every_actor, made)


def _client(
    running: Running, token: str | None, transport: httpx.AsyncHTTPTransport | None = None
) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=running.api_url, headers=headers, timeout=60, transport=transport
    )


@attrs.frozen
class Api:
    """An HTTP client per user: Abaco's ``headers``, ``priv_headers()``, ``limited_headers()``,
    ``get_role_headers('user')``, the other tenant's headers, and no headers at all."""

    admin: httpx.AsyncClient
    privileged: httpx.AsyncClient
    user: httpx.AsyncClient
    limited: httpx.AsyncClient
    other_tenant: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    world: World

    def by_role(self, role: str) -> httpx.AsyncClient:
        """The client of the user with Abaco's role type ``role``."""
        return {"privileged": self.privileged, "user": self.user, "limited": self.limited}[role]


@pytest.fixture
async def api(world: World) -> AsyncIterator[Api]:
    """Clients for this module's users."""
    running = world.running
    # One transport for all six: a client of its own each would build an SSL context
    # each (plain HTTP needs none), which costs more than many of these tests.
    async with httpx.AsyncHTTPTransport(verify=False) as transport:
        clients = {
            "admin": _client(running, world.tokens[ADMIN], transport),
            "privileged": _client(running, world.tokens[PRIVILEGED], transport),
            "user": _client(running, world.tokens[USER], transport),
            "limited": _client(running, world.tokens[LIMITED], transport),
            "other_tenant": _client(running, world.other_tenant_token, transport),
            "anonymous": _client(running, None, transport),
        }
        yield Api(world=world, **clients)
