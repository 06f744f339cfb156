"""The control plane's channels and commands: how the api, scheduler, spawners and health talk.

Channels (Redis queues, durable, under ``P:_platform``)::

    P:_platform:scheduler          PlaceWorker    api, health -> scheduler
    P:_platform:spawner:HOST       StartWorker    scheduler   -> the spawner of HOST

A worker is asked for by creating its record (``REQUESTED``) and sending the scheduler a
:class:`PlaceWorker` (:func:`request_workers`). The scheduler picks a host, writes
``host_id`` into the record and sends that host's spawner a :class:`StartWorker`. The
spawner walks the record through its set-up statuses and starts the worker process, which
takes it to ``READY``. A worker is stopped by :func:`stop_worker`: its record moves to
``SHUTDOWN_REQUESTED`` and a :class:`~abaco.actors.mailbox.StopWorker` goes to its control
channel; whoever holds a worker that is not started yet drops it when it sees that status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from abaco.actors.ids import new_id
from abaco.actors.mailbox import StopWorker, control_of
from abaco.actors.models import Worker
from abaco.actors.states import ActorStatus, WorkerStatus
from abaco.channels import QueueChannel, Transport
from abaco.errors import BadRequest, InvalidTransition, NotFound
from abaco.events import EventType, emit_actor_event

if TYPE_CHECKING:
    from abaco.actors.models import Actor
    from abaco.channels import Hub
    from abaco.redis_client import Redis
    from abaco.stores import Stores

__all__ = [
    "PlaceWorker",
    "StartWorker",
    "fail_actor",
    "known_tenants",
    "remember_tenant",
    "request_workers",
    "scheduler_inbox",
    "spawner_inbox",
    "stop_worker",
]


@attrs.frozen(kw_only=True)
class PlaceWorker:
    """Ask the scheduler to find a host for a worker whose record is ``REQUESTED``."""

    tenant: str
    actor_id: str
    worker_id: str

    def to_wire(self) -> dict[str, Any]:
        """The command as a plain dict for the channel."""
        return {"kind": "place", **attrs.asdict(self)}

    @classmethod
    def from_wire(cls, data: Any) -> PlaceWorker:
        """Read a command; :class:`BadRequest` when it is not a place command."""
        return cls(**_fields(data, "place", cls))


@attrs.frozen(kw_only=True)
class StartWorker:
    """Tell a spawner to start a worker placed on its host."""

    tenant: str
    actor_id: str
    worker_id: str

    def to_wire(self) -> dict[str, Any]:
        """The command as a plain dict for the channel."""
        return {"kind": "start", **attrs.asdict(self)}

    @classmethod
    def from_wire(cls, data: Any) -> StartWorker:
        """Read a command; :class:`BadRequest` when it is not a start command."""
        return cls(**_fields(data, "start", cls))


def _fields(data: Any, kind: str, cls: type) -> dict[str, str]:
    names = {f.name for f in attrs.fields(cls)}
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise BadRequest(f"not a {kind} command: {data!r:.80}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    if set(fields) != names or not all(isinstance(v, str) for v in fields.values()):
        raise BadRequest(f"malformed {kind} command: {data!r:.80}")
    return fields


def scheduler_inbox(hub: Hub, key_prefix: str) -> QueueChannel:
    """The scheduler's command queue, bound to ``hub``."""
    channel: QueueChannel = hub.bind(
        QueueChannel(Transport.REDIS, f"{key_prefix}:_platform:scheduler")
    )
    return channel


def spawner_inbox(hub: Hub, key_prefix: str, host_id: str) -> QueueChannel:
    """The command queue of the spawner of ``host_id``, bound to ``hub``."""
    channel: QueueChannel = hub.bind(
        QueueChannel(Transport.REDIS, f"{key_prefix}:_platform:spawner:{host_id}")
    )
    return channel


async def request_workers(
    stores: Stores, hub: Hub, key_prefix: str, actor: Actor, count: int
) -> list[Worker]:
    """Create ``count`` REQUESTED workers of ``actor`` and ask the scheduler to place them."""
    inbox = scheduler_inbox(hub, key_prefix)
    workers = []
    for _ in range(count):
        worker = Worker(id=new_id(), actor_id=actor.id, tenant=actor.tenant, image=actor.image)
        await stores.workers.create(worker)
        await inbox.put(
            PlaceWorker(tenant=actor.tenant, actor_id=actor.id, worker_id=worker.id).to_wire()
        )
        workers.append(worker)
    return workers


async def stop_worker(
    stores: Stores, hub: Hub, key_prefix: str, worker_id: str, reason: str = ""
) -> None:
    """Ask a worker to stop after its current execution (nothing when it is stopping already)."""
    try:
        await stores.workers.move(worker_id, WorkerStatus.SHUTDOWN_REQUESTED)
    except (InvalidTransition, NotFound):
        return
    await control_of(hub, key_prefix, stores.tenant, worker_id).put(
        StopWorker(reason=reason).to_wire()
    )
    if not await stores.workers.exists(worker_id):
        # Deleted between the move and the put (a worker not started yet is dropped at
        # once): the put made its control queue again, and deleting the record, which
        # is gone already, deletes that queue.
        await stores.workers.delete(worker_id)


async def fail_actor(
    stores: Stores, hub: Hub, key_prefix: str, actor_id: str, status_message: str
) -> None:
    """Move an actor to ERROR, saying why, and report it (an ACTOR_ERROR event).

    An actor in ERROR gets no new workers until it is updated (as in Abaco), so a bundle
    that cannot start does not make the platform start workers for it again and again.
    Nothing happens to an actor that is gone or in ERROR already.
    """
    try:
        failed = await stores.actors.move(
            actor_id, ActorStatus.ERROR, status_message=status_message
        )
    except (InvalidTransition, NotFound):
        return
    await emit_actor_event(hub, key_prefix, failed, EventType.ACTOR_ERROR)


def _tenants_key(key_prefix: str) -> str:
    return f"{key_prefix}:_platform:tenants"


async def remember_tenant(redis: Redis, key_prefix: str, tenant: str) -> None:
    """Note that ``tenant`` has actors, so platform-wide actors (health) visit it."""
    await redis.sadd(_tenants_key(key_prefix), tenant)


async def known_tenants(redis: Redis, key_prefix: str) -> set[str]:
    """Every tenant that has (or had) actors."""
    return await redis.smembers(_tenants_key(key_prefix))
