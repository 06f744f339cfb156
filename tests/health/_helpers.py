"""Records for the health tests: written directly, with the ages a scenario needs."""

from __future__ import annotations

from datetime import timedelta

from abaco.actors.ids import new_id
from abaco.actors.models import Actor, Execution, Worker, utcnow
from abaco.actors.states import ActorStatus, WorkerStatus
from abaco.control import PlaceWorker, scheduler_inbox
from abaco.hosts import Host


def ago(seconds: float):
    """A moment ``seconds`` before the test module was loaded."""
    return utcnow() - timedelta(seconds=seconds)


def actor(actor_id: str = "", **fields) -> Actor:
    fields.setdefault("status", ActorStatus.READY)
    return Actor(id=actor_id or new_id(), name="a", owner="alice", image="b:1", **fields)


def worker(actor_id: str, status: WorkerStatus = WorkerStatus.READY, **fields) -> Worker:
    """A worker that beat its heart just now (unless told otherwise)."""
    fields.setdefault("last_health_check_time", utcnow())
    return Worker(id=new_id(), actor_id=actor_id, status=status, **fields)


def host(host_id: str, heartbeat_age: float = 0.0) -> Host:
    return Host(id=host_id, hostname=host_id, capacity=8, last_heartbeat=ago(heartbeat_age))


def running(actor_id: str, worker_id: str, started_age: float) -> Execution:
    from abaco.actors.states import ExecutionStatus

    return Execution(
        id=new_id(),
        actor_id=actor_id,
        worker_id=worker_id,
        status=ExecutionStatus.RUNNING,
        message_received_time=ago(started_age + 1),
        start_time=ago(started_age),
    )


async def placed(hub, key_prefix: str) -> list[PlaceWorker]:
    """Every PlaceWorker on the scheduler's inbox (taken and acknowledged)."""
    inbox = scheduler_inbox(hub, key_prefix)
    commands = []
    for _ in range(await inbox.length()):
        delivery = await inbox.get(timeout=5)
        commands.append(PlaceWorker.from_wire(delivery.message))
        await delivery.ack()
    return commands
