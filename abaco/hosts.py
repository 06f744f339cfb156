"""The host registry: every live spawner's host, its labels, capacity and load.

Hosts are platform-wide (not per tenant): ``P:_platform:host:ID`` hashes, written by
their spawner at each load sample. A host's samples are its heartbeat: the health
supervisor takes a host whose ``last_heartbeat`` is older than a few heartbeats for dead.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import attrs

from abaco._records import RecordStore
from abaco.actors.models import converter, utcnow

if TYPE_CHECKING:
    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = ["PLACEMENT_HINT", "Host", "open_hosts", "platform_namespace", "required_labels"]

#: An actor hint ``host:LABEL`` places its workers only on hosts labelled LABEL.
PLACEMENT_HINT = "host:"


@attrs.define(frozen=True, kw_only=True)
class Host:
    """One host that runs workers, as its spawner last reported it."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    hostname: str
    #: The pool the host's spawner serves (an actor's ``queue``).
    queue: str = "default"
    labels: list[str] = attrs.field(factory=list)
    #: Most workers the host runs.
    capacity: int = 1
    #: Workers running there now.
    workers: int = 0
    #: What the scheduler compares: workers / capacity (lower is lighter).
    load: float = 0.0
    #: The host's 1-minute load average per CPU, for people.
    cpu_load: float = 0.0
    #: A draining host takes no new workers.
    draining: bool = False
    pid: int = 0
    started: datetime = attrs.field(factory=utcnow)
    last_heartbeat: datetime = attrs.field(factory=utcnow)

    def fits(self, queue: str, labels: frozenset[str]) -> bool:
        """Whether a new worker of an actor in ``queue`` needing ``labels`` may go here."""
        return (
            not self.draining
            and self.queue == queue
            and labels <= set(self.labels)
            and self.workers < self.capacity
        )


def platform_namespace(settings: Settings) -> str:
    """The key namespace of platform-wide records (hosts, scheduler, tokens)."""
    return f"{settings.redis.key_prefix}:_platform"


def open_hosts(redis: Redis, settings: Settings) -> RecordStore[Host]:
    """The host registry.

    A host's record takes its spawner's command queue (:func:`abaco.control.spawner_inbox`)
    with it when deleted: a dead host's workers are replaced elsewhere, and a spawner
    that was only paused starts on an empty queue when it registers again.
    """
    return RecordStore(
        redis,
        namespace=platform_namespace(settings),
        kind="host",
        cls=Host,
        converter=converter,
        companions=("spawner",),
        cas_retries=settings.stores.cas_retries,
    )


def required_labels(hints: list[str]) -> frozenset[str]:
    """The host labels an actor's hints ask for (``host:LABEL``); other hints are free tags."""
    return frozenset(h[len(PLACEMENT_HINT) :] for h in hints if h.startswith(PLACEMENT_HINT))
