"""What one health supervisor holds while it runs, and what one pass did.

:func:`open_health` opens it (a hub for the mailboxes and control channels); every step
of a pass takes the :class:`Health` and adds what it did to a :class:`PassReport`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from abaco.channels import Hub, open_hub
from abaco.config import Settings
from abaco.health.autoscale import ScalePolicy
from abaco.health.heartbeats import Deadlines
from abaco.hosts import Host, open_hosts
from abaco.redis_client import Redis
from abaco.stores import RecordStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Health", "PassReport", "all_records", "open_health"]

R = TypeVar("R", bound=attrs.AttrsInstance)

_PAGE = 500


@attrs.frozen(kw_only=True)
class Health:
    """A running supervisor's settings, connections and derived rules."""

    settings: Settings
    redis: Redis
    hub: Hub
    hosts: RecordStore[Host]
    deadlines: Deadlines
    policy: ScalePolicy

    @property
    def key_prefix(self) -> str:
        """``[redis] key_prefix``."""
        return self.settings.redis.key_prefix


@attrs.define
class PassReport:
    """How many repairs one pass made, by kind (each also logged as it happened)."""

    #: Hosts found dead and deleted.
    dead_hosts: int = 0
    #: Workers failed and deleted: dead, stuck in set-up, or on a dead host.
    dead_workers: int = 0
    #: Worker records of stopping or failed workers that stayed silent, deleted.
    stale_workers: int = 0
    #: Workers whose actor is gone, asked to stop.
    orphans_stopped: int = 0
    #: Workers requested to replace failed ones.
    replaced: int = 0
    #: Workers requested for the mailbox's backlog (or an actor's first).
    scaled_up: int = 0
    #: Idle or surplus workers asked to stop.
    scaled_down: int = 0
    #: RUNNING executions whose worker was lost, moved to ERROR.
    lost_executions: int = 0

    def add(self, **counts: int) -> None:
        """Add to some counters."""
        for name, count in counts.items():
            setattr(self, name, getattr(self, name) + count)

    def as_dict(self) -> dict[str, Any]:
        """The counters, for a log event."""
        return attrs.asdict(self)


@contextlib.asynccontextmanager
async def open_health(settings: Settings, redis: Redis) -> AsyncIterator[Health]:
    """A :class:`Health` for the duration of the block."""
    async with open_hub(
        redis, namespace=settings.redis.key_prefix, visibility=settings.worker.visibility
    ) as hub:
        yield Health(
            settings=settings,
            redis=redis,
            hub=hub,
            hosts=open_hosts(redis, settings),
            deadlines=Deadlines.from_settings(settings),
            policy=ScalePolicy.from_settings(settings),
        )


async def all_records(store: RecordStore[R], *, parent: str | None = None) -> list[R]:
    """Every record of ``store`` (of one parent, when given), page by page."""
    records: list[R] = []
    cursor: str | None = None
    while True:
        page = await store.list(parent=parent, cursor=cursor, limit=_PAGE)
        records += page.items
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor
