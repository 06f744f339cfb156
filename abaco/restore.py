"""Restoring the platform after a full restart (EverBEEN's MapStore), and the writes it needs.

Redis/Valkey holds the live state; durable storage receives records through the persist
queue (:mod:`abaco.persist_queue`), drained by the persistence actors. Besides the
worker's records of finished executions, the API (and the worker, for a message one actor
sends another) writes through what a restart needs, never waiting for the database::

    kind              group     id            json
    named-descriptor  tenant    actor id      {"actor_id", "deleted": false, "actor": the Actor
                                               dict, "permissions": {user: "READ"...}}
                                              deleted: {"actor_id", "deleted": true, ...: null}
    descriptor        actor id  execution id  the Execution dict (SUBMITTED) and "message":
                                              {"body", "encoding": "text"|"base64",
                                               "content_type", "environment", "username"}
    outcome           actor id  execution id  the Execution dict once it ended (the worker;
                                              the API for those it aborts or purges)

Storage keeps one row per ``(kind, id)`` and the latest write wins, so an actor's record
says how it was last seen (two changes of one actor drained by two persistence actors at
once may land in either order; the next change of that actor puts it right).
``[persistence] write_through`` decides whether messages are written when accepted
(true) or their executions only when they end (false, write-back); actors and
permissions are written as they change either way.

:func:`restore` runs in ``abaco up`` before any component starts. It does something only
when the platform's Redis has never seen an actor (no tenant is known: a fresh or wiped
Valkey), so live state is never overwritten. It creates every actor storage holds (not
deleted) again, SUBMITTED, with its permissions, and asks for one worker for each; it
creates every execution that has an outcome again as history; and every execution whose
message was accepted but that has no outcome is created again SUBMITTED and its message
goes back into the actor's mailbox, in the order they were received. Workers are not
restored: they died with the platform, and new ones are requested. The tenants are
remembered last, so a restore cut short is done again at the next start (what it had
created already is kept: ``create`` refuses to overwrite).
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import TYPE_CHECKING

import attrs
import structlog

from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.actors.models import Actor, Execution, PermissionLevel, from_dict, to_dict
from abaco.actors.states import ActorStatus
from abaco.channels import Hub, open_hub
from abaco.config import Settings
from abaco.control import known_tenants, remember_tenant, request_workers
from abaco.errors import BadRequest, Conflict, NotFound
from abaco.logconfig import bind_ids
from abaco.persist_queue import EntityRecord, persist_queue_of, submit_records
from abaco.redis_client import Redis
from abaco.storage.base import Storage
from abaco.stores import Stores

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ACTOR_KIND",
    "MESSAGE_KIND",
    "OUTCOME_KIND",
    "RestoreReport",
    "actor_record",
    "message_record",
    "persist_actor",
    "persist_ended",
    "persist_message",
    "restore",
    "storage_url",
]

_log = structlog.get_logger(__name__)

ACTOR_KIND = "named-descriptor"
MESSAGE_KIND = "descriptor"
OUTCOME_KIND = "outcome"


def storage_url(settings: Settings) -> str:
    """The durable storage's URL: ``[persistence] storage_url``, else SQLite in the state dir."""
    return settings.persistence.storage_url or f"sqlite:///{settings.state.path() / 'records.db'}"


# -- the records --------------------------------------------------------------------------


def actor_record(
    tenant: str,
    actor_id: str,
    actor: Actor | None,
    permissions: dict[str, PermissionLevel],
) -> EntityRecord:
    """The record of an actor as it is now; ``actor`` None: it was deleted."""
    document = {
        "actor_id": actor_id,
        "deleted": actor is None,
        "actor": None if actor is None else to_dict(actor),
        "permissions": {user: level.name for user, level in sorted(permissions.items())},
    }
    return EntityRecord.of(ACTOR_KIND, tenant, actor_id, document)


def message_record(execution: Execution, message: MailboxMessage) -> EntityRecord:
    """The record of an accepted message: its execution, and what to put in the mailbox."""
    binary = isinstance(message.body, bytes)
    body = (
        base64.b64encode(message.body).decode() if isinstance(message.body, bytes) else message.body
    )
    document = {
        **to_dict(execution),
        "message": {
            "body": body,
            "encoding": "base64" if binary else "text",
            "content_type": message.content_type,
            "environment": message.environment,
            "username": message.username,
        },
    }
    return EntityRecord.of(MESSAGE_KIND, execution.actor_id, execution.id, document)


def _outcome_record(execution: Execution) -> EntityRecord:
    return EntityRecord.of(OUTCOME_KIND, execution.actor_id, execution.id, to_dict(execution))


# -- writing through ----------------------------------------------------------------------


async def persist_actor(stores: Stores, hub: Hub, settings: Settings, actor_id: str) -> None:
    """Write the actor and its permissions as they are now (deleted when it is gone).

    Read back rather than taken from the caller, so that of two concurrent changes the
    record written last is likely the later state.
    """
    try:
        actor: Actor | None = await stores.actors.get(actor_id)
    except NotFound:
        actor = None
    permissions = {} if actor is None else await stores.permissions.all(actor_id)
    record = actor_record(stores.tenant, actor_id, actor, permissions)
    await submit_records(persist_queue_of(hub, settings.redis.key_prefix), [record])


async def persist_message(
    hub: Hub,
    settings: Settings,
    execution: Execution,
    *,
    body: str | bytes,
    content_type: str,
    environment: dict[str, str],
    username: str,
) -> None:
    """Write an accepted message, when ``[persistence] write_through`` says so."""
    if not settings.persistence.write_through:
        return
    message = MailboxMessage(
        execution_id=execution.id,
        actor_id=execution.actor_id,
        tenant=execution.tenant,
        body=body,
        content_type=content_type,
        environment=environment,
        username=username,
    )
    queue = persist_queue_of(hub, settings.redis.key_prefix)
    await submit_records(queue, [message_record(execution, message)])


async def persist_ended(hub: Hub, settings: Settings, executions: Sequence[Execution]) -> None:
    """Write the outcome of executions that ended without running (aborted, purged).

    Without it, a restore would take their messages for unfinished work and run them.
    """
    if executions:
        queue = persist_queue_of(hub, settings.redis.key_prefix)
        await submit_records(queue, [_outcome_record(e) for e in executions])


# -- restoring ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RestoreReport:
    """What one restore did."""

    #: Actors created again.
    actors: int = 0
    #: Executions created again SUBMITTED, their messages back in the mailboxes.
    requeued: int = 0
    #: Finished executions created again as history.
    history: int = 0
    #: Why nothing was done, when nothing was: "live" (Redis holds the platform's state)
    #: or "empty" (storage holds no actor).
    skipped: str = ""

    def summary(self) -> str:
        """One line for people; empty when nothing was restored."""
        if self.skipped:
            return ""
        return (
            f"{self.actors} actor{'s' * (self.actors != 1)}, "
            f"{self.requeued} message{'s' * (self.requeued != 1)} queued again, "
            f"{self.history} finished execution{'s' * (self.history != 1)}"
        )


async def _all(
    storage: Storage, kind: str, group: str | None = None, page: int = 500
) -> list[EntityRecord]:
    """Every record of ``kind`` (of ``group``), page by page."""
    found: list[EntityRecord] = []
    while True:
        batch = await storage.query(kind=kind, group=group, limit=page, offset=len(found))
        found += batch
        if len(batch) < page:
            return found


def _parse_actor(record: EntityRecord) -> tuple[Actor, dict[str, PermissionLevel]] | None:
    """The actor and permissions of a record; None when deleted or unreadable."""
    try:
        document = json.loads(record.json)
        if document.get("deleted"):
            return None
        actor = from_dict(Actor, document["actor"])
        permissions = {
            str(user): PermissionLevel[level] for user, level in document["permissions"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, BadRequest) as exc:
        _log.warning("restore.bad_actor_record", id=record.id, error=str(exc))
        return None
    return actor, permissions


def _parse_message(record: EntityRecord) -> tuple[Execution, MailboxMessage] | None:
    """A SUBMITTED execution and its mailbox message from a record; None when unreadable."""
    try:
        document = json.loads(record.json)
        stored = document.pop("message")
        seen = from_dict(Execution, document)
        raw = stored["body"]
        body: str | bytes = base64.b64decode(raw) if stored["encoding"] == "base64" else str(raw)
        message = MailboxMessage(
            execution_id=seen.id,
            actor_id=seen.actor_id,
            tenant=seen.tenant,
            body=body,
            content_type=stored["content_type"],
            environment=dict(stored["environment"]),
            username=stored["username"],
        )
    except (ValueError, KeyError, TypeError, AttributeError, BadRequest) as exc:
        _log.warning("restore.bad_message_record", id=record.id, error=str(exc))
        return None
    # Created anew: whatever happened to it after it was accepted is lost with Redis.
    execution = Execution(
        id=seen.id,
        actor_id=seen.actor_id,
        executor=seen.executor,
        message_received_time=seen.message_received_time,
        tenant=seen.tenant,
    )
    return execution, message


def _parse_outcome(record: EntityRecord) -> Execution | None:
    try:
        return from_dict(Execution, json.loads(record.json))
    except (ValueError, BadRequest) as exc:
        _log.warning("restore.bad_outcome_record", id=record.id, error=str(exc))
        return None


@attrs.define
class _Restorer:
    """One restore's connections and counts."""

    settings: Settings
    redis: Redis
    hub: Hub
    storage: Storage
    page: int
    actors: int = 0
    requeued: int = 0
    history: int = 0

    async def actor(self, actor: Actor, permissions: dict[str, PermissionLevel]) -> None:
        """Create one actor again with its permissions, executions and mailbox."""
        stores = Stores.open(self.redis, self.settings, actor.tenant)
        restored = attrs.evolve(actor, status=ActorStatus.SUBMITTED, status_message="")
        with contextlib.suppress(Conflict):  # created by a restore cut short
            await stores.actors.create(restored)
        for user, level in permissions.items():
            await stores.permissions.grant(actor.id, user, level)
        ended: set[str] = set()
        for record in await _all(self.storage, OUTCOME_KIND, actor.id, self.page):
            execution = _parse_outcome(record)
            if execution is None or execution.actor_id != actor.id:
                continue
            ended.add(execution.id)
            with contextlib.suppress(Conflict):
                await stores.executions.create(execution)
                self.history += 1
        pending = [
            parsed
            for record in await _all(self.storage, MESSAGE_KIND, actor.id, self.page)
            if record.id not in ended and (parsed := _parse_message(record)) is not None
        ]
        pending.sort(key=lambda p: (p[0].message_received_time, p[0].id))
        mailbox = mailbox_of(self.hub, self.settings.redis.key_prefix, actor.tenant, actor.id)
        for execution, message in pending:
            if execution.actor_id != actor.id:
                continue
            try:
                await stores.executions.create(execution)
            except Conflict:
                continue  # queued again by a restore cut short
            await mailbox.put(message.to_wire())
            self.requeued += 1
        await request_workers(stores, self.hub, self.settings.redis.key_prefix, restored, 1)
        self.actors += 1


async def restore(
    settings: Settings, redis: Redis, storage: Storage, *, page: int = 500
) -> RestoreReport:
    """Bring actors and unfinished work back from storage into an empty Redis.

    Does nothing (``skipped`` says why) when Redis knows a tenant already: its state is
    live and wins. Raises :class:`~abaco.errors.StoreUnavailable` when storage cannot be
    read.
    """
    prefix = settings.redis.key_prefix
    if await known_tenants(redis, prefix):
        return RestoreReport(skipped="live")
    actors = [
        parsed
        for record in await _all(storage, ACTOR_KIND, page=page)
        if (parsed := _parse_actor(record)) is not None
    ]
    if not actors:
        return RestoreReport(skipped="empty")
    async with open_hub(redis, namespace=prefix) as hub:
        restorer = _Restorer(settings, redis, hub, storage, page)
        for actor, permissions in actors:
            with bind_ids(actor_id=actor.id):
                await restorer.actor(actor, permissions)
    for tenant in sorted({actor.tenant for actor, _ in actors}):
        await remember_tenant(redis, prefix, tenant)
    report = RestoreReport(
        actors=restorer.actors, requeued=restorer.requeued, history=restorer.history
    )
    _log.info("restore.done", **attrs.asdict(report, filter=lambda a, _: a.name != "skipped"))
    return report
