"""Acting on an actor's worker count: replacements and autoscaling, under the actor's lock.

Both read the actor and its workers fresh while holding :func:`~abaco.health.locks.actor_lock`,
so two supervisors never decide from the same counts: whoever comes second counts the
workers the first requested, and no actor goes beyond its bound.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import structlog

from abaco.actors.mailbox import mailbox_of
from abaco.control import request_workers, stop_worker
from abaco.errors import NotFound
from abaco.health.autoscale import Census, ScalePlan, plan_scaling, worker_bound
from abaco.health.context import all_records
from abaco.health.locks import LOCK_TTL, actor_lock, lock_key
from abaco.logconfig import bind_ids

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from abaco.actors.models import Actor, Worker
    from abaco.health.context import Health, PassReport
    from abaco.stores import Stores

__all__ = ["replace_workers", "scale_actor", "scale_actors"]

_log = structlog.get_logger(__name__)

_FEWER = "the autoscaler needs fewer workers"


async def replace_workers(
    health: Health, stores: Stores, actor_id: str, count: int, report: PassReport
) -> int:
    """Request up to ``count`` workers for ``actor_id`` to replace failed ones, within its bound.

    Waits for the actor's lock (a replacement is owed; the holder is done in milliseconds).
    Returns how many were requested.
    """
    key = lock_key(health.key_prefix, stores.tenant, actor_id)
    with bind_ids(actor_id=actor_id):
        async with actor_lock(health.redis, key, wait=LOCK_TTL) as held:
            if not held:
                _log.warning("health.replace_skipped", reason="actor locked", wanted=count)
                return 0
            try:
                actor = await stores.actors.get(actor_id)
            except NotFound:
                return 0
            live = Census.of(await all_records(stores.workers, parent=actor_id)).live
            count = min(count, worker_bound(actor, health.policy.max_workers) - live)
            if count <= 0:
                return 0
            workers = await request_workers(stores, health.hub, health.key_prefix, actor, count)
        _log.info("health.replaced", worker_ids=[w.id for w in workers])
        report.add(replaced=len(workers))
        return len(workers)


async def scale_actors(
    health: Health, stores: Stores, actors: Iterable[Actor], now: datetime, report: PassReport
) -> None:
    """Autoscale every actor of ``actors`` that needs it.

    A first look from one listing of the tenant's workers, without locks, picks the
    actors whose plan is not empty; only those are locked and decided again, fresh, by
    :func:`scale_actor`. A quiet actor costs one XLEN per pass.
    """
    by_actor: dict[str, list[Worker]] = defaultdict(list)
    for worker in await all_records(stores.workers):
        by_actor[worker.actor_id].append(worker)
    for actor in actors:
        mailbox = mailbox_of(health.hub, health.key_prefix, stores.tenant, actor.id)
        length = await mailbox.length()
        if plan_scaling(actor, by_actor[actor.id], length, now, health.policy) != ScalePlan():
            await scale_actor(health, stores, actor.id, now, report)


async def scale_actor(
    health: Health, stores: Stores, actor_id: str, now: datetime, report: PassReport
) -> None:
    """Grow or shrink one actor's workers by :func:`~abaco.health.autoscale.plan_scaling`.

    Skips the actor when another supervisor holds its lock: that one is scaling it now.
    """
    key = lock_key(health.key_prefix, stores.tenant, actor_id)
    with bind_ids(actor_id=actor_id):
        async with actor_lock(health.redis, key) as held:
            if not held:
                return
            try:
                actor = await stores.actors.get(actor_id)
            except NotFound:
                return
            workers = await all_records(stores.workers, parent=actor_id)
            mailbox = mailbox_of(health.hub, health.key_prefix, stores.tenant, actor_id)
            length = await mailbox.length()
            plan = plan_scaling(actor, workers, length, now, health.policy)
            if plan.grow:
                added = await request_workers(
                    stores, health.hub, health.key_prefix, actor, plan.grow
                )
                _log.info(
                    "health.scale_up",
                    mailbox=length,
                    live=Census.of(workers).live,
                    worker_ids=[w.id for w in added],
                )
                report.add(scaled_up=len(added))
            for worker_id in plan.stop:
                await stop_worker(
                    stores,
                    health.hub,
                    health.key_prefix,
                    worker_id,
                    reason="autoscaler: fewer workers needed",
                )
                _log.info("health.scale_down", worker_id=worker_id, mailbox=length)
                report.add(scaled_down=1)
