"""The health supervisor: one pass every ``[health] interval`` seconds, until stopped.

A pass (:func:`check_once`) does, in order:

1. **Dead hosts**: a host that missed ``missed_heartbeats`` spawner heartbeats loses its
   record (so the scheduler places nothing more there).
2. **Workers**, tenant by tenant (:mod:`abaco.health.recovery`): workers on a dead host,
   READY/BUSY workers that missed their heartbeats, and workers stuck in set-up on a host
   that is gone move to ERROR and are deleted; workers of deleted actors are asked to
   stop; records of stopping or failed workers that stayed silent are deleted.
3. **Replacements** for workers lost with their host or stuck in set-up, one for one,
   within the actor's bound (:mod:`abaco.health.scaling`).
4. **Autoscaling** of every actor (:mod:`abaco.health.autoscale` has the rules), which
   also replaces dead workers when the backlog needs them.
5. Every :func:`reconcile_every` passes, the **reconciliation scan**
   (:mod:`abaco.health.reconcile`).

Several supervisors may run at once. Each repair of a record is a compare-and-set, and
the loser treats it as done; scaling and replacements are decided under a short lock per
actor (:mod:`abaco.health.locks`). A pass is idempotent, so cancelling one half-way
leaves nothing that the next pass does not finish: stopping is a plain cancel.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import structlog
import trio

from abaco._component import run_component
from abaco.actors.models import utcnow
from abaco.control import known_tenants
from abaco.errors import AbacoError, StoreUnavailable
from abaco.health.context import PassReport, all_records, open_health
from abaco.health.reconcile import reconcile_executions
from abaco.health.recovery import reap_dead_hosts, repair_workers
from abaco.health.scaling import replace_workers, scale_actors
from abaco.stores import Stores

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from abaco.config import Settings
    from abaco.health.context import Health
    from abaco.redis_client import Redis

__all__ = ["check_once", "check_tenant", "main", "reconcile_every", "run_health"]

_log = structlog.get_logger(__name__)


def reconcile_every(settings: Settings) -> int:
    """How many passes apart reconciliation scans are: about one per ``[worker] visibility``.

    The scan reads every execution record, so it runs far less often than a pass; its
    own deadline (twice the visibility) is the time scale it needs.
    """
    return max(1, math.ceil(settings.worker.visibility / settings.health.interval))


async def check_once(
    health: Health, *, now: datetime | None = None, reconcile: bool = True
) -> PassReport:
    """Run one pass over every host and every known tenant; return what it repaired."""
    now = utcnow() if now is None else now
    report = PassReport()
    hosts = await all_records(health.hosts)
    died = await reap_dead_hosts(health, hosts, now, report)
    alive = {host.id for host in hosts} - died
    for tenant in sorted(await known_tenants(health.redis, health.key_prefix)):
        stores = Stores.open(health.redis, health.settings, tenant)
        try:
            await check_tenant(
                health, stores, now, died=died, alive=alive, reconcile=reconcile, report=report
            )
        except StoreUnavailable:
            raise
        except AbacoError as exc:
            # One tenant's bad record must not keep the others from their repairs.
            _log.exception("health.tenant_failed", tenant=tenant, error=str(exc))
    return report


async def check_tenant(
    health: Health,
    stores: Stores,
    now: datetime,
    *,
    died: Collection[str],
    alive: Collection[str],
    reconcile: bool,
    report: PassReport,
) -> None:
    """Run one pass over one tenant (steps 2 to 5 of the module's list)."""
    actors = await all_records(stores.actors)
    actor_ids = {actor.id for actor in actors}
    owed = await repair_workers(
        health, stores, now, died=died, alive=alive, actors=actor_ids, report=report
    )
    for actor_id, count in sorted(owed.items()):
        await replace_workers(health, stores, actor_id, count, report)
    await scale_actors(health, stores, actors, now, report)
    if reconcile:
        await reconcile_executions(health, stores, now, actors=actor_ids, report=report)


async def run_health(
    settings: Settings,
    redis: Redis,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Supervise the platform until cancelled: one :func:`check_once` per interval."""
    interval = settings.health.interval
    every = reconcile_every(settings)
    async with open_health(settings, redis) as health:
        task_status.started()
        _log.info("health.started", interval=interval, reconcile_every=every)
        passes = 0
        while True:
            started = trio.current_time()
            try:
                report = await check_once(health, reconcile=passes % every == 0)
            except AbacoError as exc:
                # Redis away, most likely: the next pass tries again.
                _log.warning("health.pass_failed", error=str(exc))
            else:
                if any(report.as_dict().values()):
                    _log.info("health.pass", **report.as_dict())
            passes += 1
            await trio.sleep_until(started + interval)


def main(argv: list[str] | None = None) -> None:
    """Run the health supervisor (``python -m abaco.health``); needs ``[redis] url``."""
    run_component(
        "health",
        run_health,
        argv,
        prog="python -m abaco.health",
        description=(
            "Run the health supervisor: dead workers and hosts, replacements, "
            "autoscaling and reconciliation scans."
        ),
        needs="the health supervisor",
    )
