"""The events actor: takes events off the events queue and delivers them.

For an event whose actor has a ``link``, the linked actor (an id or alias of the same
tenant, resolved now) gets the event as a JSON message, accepted exactly as the API
accepts one (:func:`abaco.api.messages.accept_message`), sent by "Abaco Event". For a
``webhook``, the event is POSTed as JSON with Abaco's ``_abaco_Content_Type``,
``_abaco_username`` and ``_abaco_api_server`` added, under the address guard, timeout and
bounded retries of :mod:`abaco.events.webhooks`.

Events are worked on concurrently, up to ``[events] concurrency`` at once, so a slow or
dead receiver holds up only its own events. An event is acknowledged once handled,
delivered or not (as in Abaco; what failed is logged with the reason); one whose delivery
actor dies meanwhile goes to another (at-least-once). Several delivery actors may share
the queue.

Run it with ``python -m abaco.events [--config PATH]`` (``abaco events``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog
import trio

from abaco._component import run_component
from abaco.api.messages import accept_message
from abaco.channels import open_hub
from abaco.errors import AbacoError, Aborted, BadRequest, NotFound, WireError
from abaco.events.emit import events_queue
from abaco.events.links import resolve_link
from abaco.events.model import EVENT_USERNAME
from abaco.events.webhooks import WebhookPolicy, open_webhook_client, post_event
from abaco.logconfig import bind_ids
from abaco.stores import Stores

if TYPE_CHECKING:
    import httpx

    from abaco.channels import Delivery, Hub, QueueChannel
    from abaco.config import Settings
    from abaco.redis_client import Redis

__all__ = ["EventsActor", "main", "run_events"]

_log = structlog.get_logger(__name__)


class EventsActor:
    """One delivery actor: its connections, its policy, the events it holds."""

    def __init__(
        self, settings: Settings, redis: Redis, hub: Hub, client: httpx.AsyncClient
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._hub = hub
        self._client = client
        self._policy = WebhookPolicy.from_settings(settings.events)
        self._slots = trio.Semaphore(settings.events.concurrency)
        # Deliveries being handled: one held long comes back on this consumer's takes.
        self._held: set[bytes] = set()

    async def serve(
        self, inbox: QueueChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Take events until cancelled, each handled in its own task, a bounded number at once."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._slots.acquire()
                handed_on = False
                try:
                    delivery = await inbox.get()
                    if delivery.delivery_id not in self._held:
                        self._held.add(delivery.delivery_id)
                        nursery.start_soon(self._handle, delivery)
                        handed_on = True
                except WireError:
                    pass  # dropped by the hub: nobody could read it
                finally:
                    if not handed_on:
                        self._slots.release()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            event = delivery.message
            if _is_event(event):
                async with delivery.renewing():
                    try:
                        await self.deliver(event)
                    except AbacoError as exc:  # the stores failed: this event is lost
                        _log.error("events.delivery_failed", reason=str(exc))
            else:
                _log.warning("events.bad_event", event=repr(event)[:200])
            try:
                await delivery.ack()
            except Aborted:
                _log.warning("events.ack_refused")  # another delivery actor took it over
        finally:
            self._held.discard(delivery.delivery_id)
            self._slots.release()

    async def deliver(self, event: dict[str, Any]) -> None:
        """Deliver one event to its actor's link and webhook (both at once)."""
        with bind_ids(actor_id=event["actor_id"], execution_id=event.get("execution_id")):
            try:
                stores = Stores.open(self._redis, self._settings, event["tenant_id"])
            except BadRequest as exc:
                _log.warning("events.bad_event", error=str(exc))
                return
            async with trio.open_nursery() as nursery:
                if event.get("_abaco_link"):
                    nursery.start_soon(self._to_link, stores, event)
                if event.get("_abaco_webhook"):
                    nursery.start_soon(self._to_webhook, stores, event)

    async def _to_link(self, stores: Stores, event: dict[str, Any]) -> None:
        link = str(event["_abaco_link"])
        kind = str(event["event_type"])
        try:
            target = await resolve_link(stores, link)
        except NotFound:
            _log.warning(
                "events.link_refused",
                link=link,
                event_type=kind,
                reason=f"no actor or alias {link!r} in tenant {stores.tenant}",
            )
            return
        try:
            execution = await accept_message(
                stores,
                self._hub,
                self._settings,
                target,
                body=json.dumps(event),
                content_type="application/json",
                environment={},
                username=EVENT_USERNAME,
            )
        except AbacoError as exc:
            _log.warning(
                "events.link_failed",
                link=link,
                event_type=kind,
                reason=str(exc),
            )
            return
        _log.info(
            "events.linked",
            link=link,
            event_type=kind,
            linked_actor_id=target.id,
            linked_execution_id=execution.id,
        )

    async def _to_webhook(self, stores: Stores, event: dict[str, Any]) -> None:
        url = str(event["_abaco_webhook"])
        kind = str(event["event_type"])
        payload = {
            **event,
            "_abaco_Content_Type": "application/json",
            "_abaco_username": EVENT_USERNAME,
            "_abaco_api_server": await self._api_server(stores, str(event["actor_id"])),
        }
        report = await post_event(self._client, url, payload, self._policy)
        if report.delivered:
            _log.info(
                "events.webhook_delivered",
                webhook=url,
                event_type=kind,
                attempts=report.attempts,
                status_code=report.status_code,
            )
        else:
            _log.warning(
                "events.webhook_failed",
                webhook=url,
                event_type=kind,
                attempts=report.attempts,
                status_code=report.status_code,
                reason=report.reason,
            )

    async def _api_server(self, stores: Stores, actor_id: str) -> str:
        try:
            return (await stores.actors.get(actor_id)).api_server
        except NotFound:
            return ""  # the actor is gone; its events still go out


def _is_event(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and all(isinstance(message.get(key), str) for key in ("tenant_id", "actor_id"))
        and isinstance(message.get("event_type"), str)
    )


async def run_events(
    settings: Settings,
    redis: Redis,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Deliver events until cancelled."""
    prefix = settings.redis.key_prefix
    async with (
        open_hub(redis, namespace=prefix, visibility=settings.worker.visibility) as hub,
        open_webhook_client() as client,
    ):
        actor = EventsActor(settings, redis, hub, client)
        _log.info("events.serving")
        await actor.serve(events_queue(hub, prefix), task_status=task_status)


def main(argv: list[str] | None = None) -> None:
    """Run the events actor (``python -m abaco.events``); needs ``[redis] url``."""
    run_component(
        "events",
        run_events,
        argv,
        prog="python -m abaco.events",
        description="Deliver actor events to linked actors and webhooks.",
        needs="the events actor",
    )


if __name__ == "__main__":
    main()
