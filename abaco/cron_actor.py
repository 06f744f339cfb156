"""The cron actor: sends actors their scheduled messages (Abaco's cron).

Every ``[cron] tick`` seconds it makes a pass (:func:`tick_once`) over the actors of every
known tenant (:func:`abaco.control.known_tenants`). An actor with a ``cron_schedule``
whose ``cron_next_ex`` has come is *claimed*: a compare-and-set on the actor's record
moves ``cron_next_ex`` to the schedule's first run after now, on the condition that it
still holds the run that was seen. Of several cron actors that see the same run due,
exactly one wins that write, and only the winner sends; a loser re-reads the record,
finds the run taken and sends nothing. So each scheduled run sends at most one message
however many cron actors run.

The winner sends, when ``cron_on`` is true, Abaco's cron message ("This is your cron
execution", a ``str`` message from the user ``cron``) exactly as
``POST /actors/ID/messages`` would (:func:`abaco.api.messages.accept_message`). When
``cron_on`` is false the run is passed over, as in Abaco: ``cron_next_ex`` moves on and
nothing is sent, so turning cron on again does not send the runs missed meanwhile. A run
missed because no cron actor ran (or all were late) is sent once, late, and the schedule
resumes at its next run after now.

The claim comes before the send: a cron actor that dies between the two loses that run
rather than letting another send it twice (at most once).

Each instance notes its last pass in ``P:_platform:cron:instances`` (a hash: instance id
-> JSON with host, pid, tick, last pass time and messages sent; the key and its reader
are in :mod:`abaco.api.cron`, which shows them); an instance removes its entry when it
stops, and entries silent for :data:`STALE_TICKS` ticks are removed by the others.

Run it with ``python -m abaco.cron_actor [--config PATH]`` (``abaco cron``); ``abaco up``
runs one.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from abaco._component import run_component
from abaco.actors.ids import new_id
from abaco.actors.models import utcnow
from abaco.api.cron import instances, instances_key
from abaco.api.envelope import TooManyRequests
from abaco.api.messages import accept_message
from abaco.channels import open_hub
from abaco.control import known_tenants
from abaco.cron import CRON_MESSAGE, format_time, parse_schedule, parse_time
from abaco.errors import AbacoError, BadRequest, NotFound, StoreUnavailable
from abaco.logconfig import bind_ids
from abaco.restore import persist_actor
from abaco.stores import Stores

if TYPE_CHECKING:
    from abaco.actors.models import Actor
    from abaco.channels import Hub
    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = [
    "CRON_USER",
    "STALE_TICKS",
    "TickReport",
    "main",
    "run_cron",
    "tick_once",
]

_log = structlog.get_logger(__name__)

#: The user cron messages come from (Abaco's executor ``cron``).
CRON_USER = "cron"

#: Ticks an instance may stay silent before the others drop its entry.
STALE_TICKS = 10

_PAGE = 200


@attrs.define
class TickReport:
    """What one pass did."""

    #: Messages sent.
    sent: int = 0
    #: Runs passed over because the actor's cron is off.
    passed: int = 0
    #: Runs this instance saw due but another instance claimed first.
    lost: int = 0
    #: Runs not sent for an error: the mailbox full, a write that failed.
    failed: int = 0


class _NotDue(Exception):
    """The run seen due is no longer the actor's next run: another claimed it, or it changed."""


def _due_run(actor: Actor, now: datetime) -> str | None:
    """The actor's ``cron_next_ex`` if that run has come, else None."""
    if not actor.cron_schedule or not actor.cron_next_ex:
        return None
    try:
        due = parse_time(actor.cron_next_ex) <= now
    except BadRequest:
        return None
    return actor.cron_next_ex if due else None


def _advanced(actor: Actor, seen: str, now: datetime) -> Actor:
    """``actor`` with its next run moved past ``now``, if ``seen`` is still its next run."""
    if actor.cron_next_ex != seen or not actor.cron_schedule:
        raise _NotDue
    # Stored schedules were checked when set; seconds stay allowed once accepted.
    schedule = parse_schedule(actor.cron_schedule, allow_seconds=True)
    following = schedule.after(parse_time(seen), now)
    next_ex = None if following is None else format_time(following, schedule.resolution)
    return attrs.evolve(actor, cron_next_ex=next_ex)


async def _claim(stores: Stores, actor_id: str, seen: str, now: datetime) -> Actor | None:
    """The actor with its run ``seen`` claimed by this instance; None when another has it."""
    try:
        return await stores.actors.transaction(actor_id, lambda a: _advanced(a, seen, now))
    except (_NotDue, NotFound):
        return None


async def _run_actor(
    settings: Settings,
    stores: Stores,
    hub: Hub,
    actor: Actor,
    seen: str,
    now: datetime,
    report: TickReport,
) -> None:
    try:
        claimed = await _claim(stores, actor.id, seen, now)
    except BadRequest as exc:
        _log.warning("cron.bad_schedule", schedule=actor.cron_schedule, error=str(exc))
        return
    if claimed is None:
        report.lost += 1
        return
    await persist_actor(stores, hub, settings, actor.id)  # write-through (abaco.restore)
    if not claimed.cron_on:
        report.passed += 1
        return
    try:
        execution = await accept_message(
            stores,
            hub,
            settings,
            claimed,
            body=CRON_MESSAGE,
            content_type="str",
            environment={},
            username=CRON_USER,
        )
    except TooManyRequests as exc:
        report.failed += 1
        _log.warning("cron.mailbox_full", error=str(exc))
        return
    report.sent += 1
    _log.info("cron.sent", execution_id=execution.id, next_ex=claimed.cron_next_ex)


async def _tenant_pass(
    settings: Settings, stores: Stores, hub: Hub, now: datetime, report: TickReport
) -> None:
    cursor: str | None = None
    while True:
        page = await stores.actors.list(cursor=cursor, limit=_PAGE)
        for actor in page.items:
            seen = _due_run(actor, now)
            if seen is None:
                continue
            with bind_ids(actor_id=actor.id):
                try:
                    await _run_actor(settings, stores, hub, actor, seen, now, report)
                except StoreUnavailable:
                    raise
                except AbacoError as exc:
                    # One actor's failed send must not hold up the others' runs.
                    report.failed += 1
                    _log.warning("cron.send_failed", error=str(exc))
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def tick_once(
    settings: Settings, redis: Redis, hub: Hub, *, now: datetime | None = None
) -> TickReport:
    """One pass: claim and send every due run of every known tenant's actors."""
    now = utcnow() if now is None else now
    report = TickReport()
    for tenant in sorted(await known_tenants(redis, settings.redis.key_prefix)):
        try:
            await _tenant_pass(settings, Stores.open(redis, settings, tenant), hub, now, report)
        except StoreUnavailable:
            raise
        except AbacoError as exc:
            # One tenant's bad record must not keep the others from their runs.
            _log.warning("cron.tenant_failed", tenant=tenant, error=str(exc))
    return report


async def _note_pass(
    redis: Redis, settings: Settings, instance_id: str, now: datetime, sent: int
) -> None:
    """Note this instance's pass, and drop the entries of instances long silent."""
    key = instances_key(settings.redis.key_prefix)
    tick = settings.cron.tick
    noted = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "tick": tick,
        "last_tick": now.isoformat().replace("+00:00", "Z"),
        "sent": sent,
    }
    await redis.hset(key, {instance_id: json.dumps(noted).encode()})
    stale = now - timedelta(seconds=STALE_TICKS * max(tick, 1.0))
    for other in await instances(redis, settings.redis.key_prefix):
        last = other.get("last_tick")
        try:
            silent = isinstance(last, str) and datetime.fromisoformat(last) < stale
        except ValueError:
            silent = True
        if silent:
            await redis.hdel(key, other["id"])


async def run_cron(
    settings: Settings,
    redis: Redis,
    *,
    instance_id: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Make a pass every ``[cron] tick`` seconds until cancelled."""
    instance_id = instance_id or new_id()
    tick = settings.cron.tick
    sent = 0
    async with open_hub(redis, namespace=settings.redis.key_prefix) as hub:
        task_status.started()
        _log.info("cron.started", instance=instance_id, tick=tick)
        try:
            while True:
                started = trio.current_time()
                now = utcnow()
                try:
                    report = await tick_once(settings, redis, hub, now=now)
                    sent += report.sent
                    await _note_pass(redis, settings, instance_id, now, sent)
                except AbacoError as exc:
                    # Redis away, most likely: the next pass tries again.
                    _log.warning("cron.pass_failed", error=str(exc))
                else:
                    if report.sent or report.failed:
                        _log.info("cron.pass", **attrs.asdict(report))
                await trio.sleep_until(started + tick)
        finally:
            with trio.move_on_after(2, shield=True):
                await redis.hdel(instances_key(settings.redis.key_prefix), instance_id)


def main(argv: list[str] | None = None) -> None:
    """Run the cron actor (``python -m abaco.cron_actor``); needs ``[redis] url``."""
    run_component(
        "cron",
        run_cron,
        argv,
        prog="python -m abaco.cron_actor",
        description="Send actors their scheduled messages.",
        needs="the cron actor",
    )


if __name__ == "__main__":
    main()
