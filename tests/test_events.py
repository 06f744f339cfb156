"""Events, links and webhooks: the pieces, and the events actor in this process.

Webhooks go to a real local HTTP server (:mod:`tests._receiver`); the events actor runs
on the session's Valkey. The API's checks are in ``tests/api/test_events.py`` and the
whole platform in ``tests/e2e/test_events.py``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import subprocess
import sys

import attrs
import pytest
import structlog
import trio

from abaco.actors.mailbox import MailboxMessage, mailbox_of
from abaco.actors.models import Actor, Alias, Execution
from abaco.actors.states import ExecutionStatus
from abaco.channels import open_hub
from abaco.config import EventsSettings, load_settings
from abaco.errors import BadRequest, ConfigError
from abaco.events import (
    EventType,
    actor_event,
    emit_actor_event,
    emit_execution_event,
    events_queue,
    has_cycles,
    link_graph,
)
from abaco.events.delivery import run_events
from abaco.events.model import event_time
from abaco.events.webhooks import (
    WebhookPolicy,
    WebhookRefused,
    check_webhook_url,
    open_webhook_client,
    post_event,
)
from abaco.stores import Stores
from tests._receiver import closed_port_url, open_receiver


def test_no_links_no_cycle():
    """Not an Abaco test: the empty graph."""
    assert not has_cycles({})


# -- the event itself ----------------------------------------------------------------------


def _actor(**fields) -> Actor:
    return Actor(id="a1", name="n", owner="alice", image="org.example/x:1", **fields)


def test_an_event_carries_abaco_fields():
    """Abaco's Event and ActorExecutionEvent: the fields of check_event_logs and more."""
    actor = _actor(link="other", webhook="https://example.org/hook", tenant="t1")
    event = actor_event(actor, EventType.EXECUTION_COMPLETE, execution_id="e1", exit_code=0)
    assert event["event_type"] == "EXECUTION_COMPLETE"
    assert event["tenant_id"] == "t1"
    assert (event["actor_id"], event["actor_dbid"]) == ("a1", "t1_a1")
    assert (event["execution_id"], event["exit_code"]) == ("e1", 0)
    assert event["_abaco_link"] == "other"
    assert event["_abaco_webhook"] == "https://example.org/hook"
    assert event["event_time_utc"] == event["event_time_display"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["event_time_utc"])
    json.dumps(event)  # it travels as JSON


def test_event_time_is_abaco_format():
    """Abaco: ``isoformat()[:23] + 'Z'``."""
    from datetime import UTC, datetime

    assert event_time(datetime(2020, 5, 1, 14, 45, 41, 591234, UTC)) == "2020-05-01T14:45:41.591Z"
    assert event_time(datetime(2020, 5, 1, 14, 45, 41, 0, UTC)) == "2020-05-01T14:45:41.000Z"


# -- the address guard ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),  # shared address space (CGNAT)
        ("::ffff:127.0.0.1", "loopback"),  # IPv4 hidden in IPv6
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_the_guard_refuses_addresses_that_are_not_public(address, kind):
    """Not an Abaco test (Abaco posts anywhere): the SSRF guard, address by address."""
    reason = WebhookPolicy().refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


def test_the_guard_allows_public_addresses_and_what_the_operator_allows():
    """Not an Abaco test: public addresses pass; the allow-list and the switch open the rest."""
    public = [ipaddress.ip_address(a) for a in ("93.184.216.34", "2606:4700::1111")]
    assert all(WebhookPolicy().refusal(a) is None for a in public)
    listed = WebhookPolicy.from_settings(EventsSettings(webhook_allowed_networks="127.0.0.1/32"))
    assert listed.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert listed.refusal(ipaddress.ip_address("127.0.0.2")) is not None
    assert listed.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    everything = WebhookPolicy(allow_private=True)
    assert everything.refusal(ipaddress.ip_address("10.0.0.1")) is None


def test_a_bad_allowed_network_is_a_configuration_error():
    """Not an Abaco test: ``[events] webhook_allowed_networks`` is checked when read."""
    with pytest.raises(ConfigError, match=r"\[events\] webhook_allowed_networks"):
        load_settings(environ={"ABACO__EVENTS__WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, nonsense"})
    read = load_settings(environ={"ABACO__EVENTS__WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, ::1"})
    policy = WebhookPolicy.from_settings(read.events)
    assert policy.allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/hook",
        "file:///etc/passwd",
        "example.org/hook",
        "http://",
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "https://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9000/hook",
        "http://example.org:99999/hook",
    ],
)
def test_a_webhook_url_is_refused_at_registration(url):
    """Not an Abaco test: only http(s), and no literal non-public host."""
    with pytest.raises(WebhookRefused, match="Invalid webhook parameter"):
        check_webhook_url(url, WebhookPolicy())
    assert issubclass(WebhookRefused, BadRequest)  # a 400


def test_a_webhook_url_with_a_public_or_named_host_is_accepted():
    """Not an Abaco test: names are resolved (and checked) only when an event goes out."""
    for url in ("https://example.org/hook", "http://93.184.216.34:8080/x", "http://hooks.internal"):
        check_webhook_url(url, WebhookPolicy())
    check_webhook_url("http://127.0.0.1:1/hook", WebhookPolicy(allow_private=True))


# -- posting to a real receiver -------------------------------------------------------------

_LOCAL = WebhookPolicy(
    allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),), timeout=10, attempts=3, backoff=0.01
)
_EVENT = {"event_type": "ACTOR_READY", "actor_id": "a1", "tenant_id": "default"}


async def test_an_event_is_posted_as_json():
    """Ports the delivery half of Abaco's test_create_actor_with_webhook."""
    async with open_receiver("ok") as receiver, open_webhook_client() as client:
        report = await post_event(client, receiver.url, _EVENT, _LOCAL)
    assert (report.delivered, report.attempts, report.status_code) == (True, 1, 200)
    assert receiver.bodies == [_EVENT]
    assert receiver.headers[0]["content-type"] == "application/json"
    assert receiver.headers[0]["host"] == receiver.url.split("/")[2]


async def test_a_failing_receiver_gets_bounded_attempts_then_the_delivery_gives_up():
    """Not an Abaco test (Abaco tried once): 5xx answers are retried, up to the bound."""
    async with open_receiver("fail") as receiver, open_webhook_client() as client:
        report = await post_event(client, receiver.url, _EVENT, _LOCAL)
        assert len(receiver.bodies) == 3
    assert (report.delivered, report.attempts, report.status_code) == (False, 3, 503)
    assert "503" in report.reason


async def test_a_receiver_that_is_down_gets_bounded_attempts():
    """Not an Abaco test: connection refused is retried, then given up, with the reason."""
    async with open_webhook_client() as client:
        report = await post_event(client, closed_port_url(), _EVENT, _LOCAL)
    assert (report.delivered, report.attempts, report.status_code) == (False, 3, None)
    assert "ConnectError" in report.reason


async def test_a_receiver_that_does_not_answer_times_out_each_attempt():
    """Not an Abaco test: each attempt is bounded by the timeout."""
    policy = attrs.evolve(_LOCAL, timeout=0.3, attempts=2)
    async with open_receiver("hang") as receiver, open_webhook_client() as client:
        report = await post_event(client, receiver.url, _EVENT, policy)
        assert len(receiver.bodies) == 2
    assert (report.delivered, report.attempts) == (False, 2)
    assert "Timeout" in report.reason


async def test_a_client_error_answer_is_not_retried():
    """Not an Abaco test: a 4xx other than 429 will not get better by trying again."""
    async with open_receiver("reject") as receiver, open_webhook_client() as client:
        report = await post_event(client, receiver.url, _EVENT, _LOCAL)
    assert (report.delivered, report.attempts, report.status_code) == (False, 1, 404)
    assert len(receiver.bodies) == 1


async def test_a_private_address_is_refused_without_a_request():
    """Not an Abaco test: the guard at delivery time, on a literal address."""
    async with open_receiver("ok") as receiver, open_webhook_client() as client:
        report = await post_event(client, receiver.url, _EVENT, WebhookPolicy())
    assert (report.delivered, report.attempts) == (False, 1)
    assert "loopback" in report.reason
    assert receiver.bodies == []


async def test_a_name_that_resolves_to_loopback_is_refused():
    """Not an Abaco test: names are resolved and every address they have is checked."""
    async with open_receiver("ok") as receiver, open_webhook_client() as client:
        url = receiver.url.replace("127.0.0.1", "localhost")
        report = await post_event(client, url, _EVENT, WebhookPolicy())
    assert not report.delivered
    assert "loopback" in report.reason
    assert receiver.bodies == []


# -- emitting -------------------------------------------------------------------------------


async def test_only_actors_with_a_link_or_webhook_emit(platform_redis, settings):
    """Abaco's Event.publish: no link and no webhook, nothing published."""
    prefix = settings.redis.key_prefix
    stores = Stores.open(platform_redis, settings)
    quiet = _actor()
    linked = attrs.evolve(_actor(link="other"), id="a2")
    for actor in (quiet, linked):
        await stores.actors.create(actor)
    execution = Execution(id="e1", actor_id="a2", status=ExecutionStatus.COMPLETE, exit_code=3)
    async with open_hub(platform_redis, namespace=prefix) as hub:
        await emit_actor_event(hub, prefix, quiet, EventType.ACTOR_READY)
        await emit_actor_event(hub, prefix, linked, EventType.ACTOR_ERROR)
        await emit_execution_event(stores, hub, prefix, execution, EventType.EXECUTION_COMPLETE)
        queue = events_queue(hub, prefix)
        assert await queue.length() == 2
        first, second = [(await queue.get(timeout=5)).message for _ in range(2)]
    assert first["event_type"] == "ACTOR_ERROR"
    assert first["actor_id"] == "a2"
    assert "status_message" in first
    assert second["event_type"] == "EXECUTION_COMPLETE"
    assert (second["execution_id"], second["status"], second["exit_code"]) == ("e1", "COMPLETE", 3)


async def test_an_event_for_an_actor_that_is_gone_is_skipped(platform_redis, settings):
    """Not an Abaco test: emitting never fails its caller."""
    prefix = settings.redis.key_prefix
    stores = Stores.open(platform_redis, settings)
    async with open_hub(platform_redis, namespace=prefix) as hub:
        gone = Execution(id="e1", actor_id="nobody")
        await emit_execution_event(stores, hub, prefix, gone, EventType.EXECUTION_STARTED)
        assert await events_queue(hub, prefix).length() == 0


# -- the events actor -----------------------------------------------------------------------


@pytest.fixture
def local_settings(settings):
    """Settings whose webhooks may reach this machine, retrying quickly."""
    events = EventsSettings(
        webhook_allowed_networks="127.0.0.1/32", webhook_backoff=0.01, webhook_timeout=60
    )
    return attrs.evolve(settings, events=events)


@pytest.fixture
async def events_actor(platform_redis, local_settings):
    """The events actor running in this process, with a hub to emit on."""
    prefix = local_settings.redis.key_prefix
    async with open_hub(platform_redis, namespace=prefix) as hub, trio.open_nursery() as nursery:
        await nursery.start(functools.partial(run_events, local_settings, platform_redis))
        yield hub
        nursery.cancel_scope.cancel()


async def test_a_linked_actor_gets_the_event_as_a_json_message(
    platform_redis, local_settings, events_actor
):
    """Ports the link half of Abaco's test_execute_event_actor, through an alias."""
    prefix = local_settings.redis.key_prefix
    stores = Stores.open(platform_redis, local_settings)
    target = attrs.evolve(_actor(), id="b1")
    source = _actor(link="the.target")
    await stores.actors.create(target)
    await stores.actors.create(source)
    await stores.aliases.create(Alias(alias="the.target", actor_id="b1", owner="alice"))
    assert await link_graph(stores) == {"a1": "b1"}
    execution = Execution(id="e1", actor_id="a1", status=ExecutionStatus.COMPLETE, exit_code=0)
    hub = events_actor
    await emit_execution_event(stores, hub, prefix, execution, EventType.EXECUTION_COMPLETE)
    mailbox = mailbox_of(hub, prefix, stores.tenant, "b1")
    delivery = await mailbox.get(timeout=30)
    await delivery.ack()
    message = MailboxMessage.from_wire(delivery.message)
    assert (message.content_type, message.username) == ("application/json", "Abaco Event")
    event = json.loads(message.body)
    assert (event["event_type"], event["execution_id"], event["actor_id"]) == (
        "EXECUTION_COMPLETE",
        "e1",
        "a1",
    )
    linked = await stores.executions.get(message.execution_id)
    assert (linked.actor_id, linked.executor, linked.status) == ("b1", "Abaco Event", "SUBMITTED")


async def test_refused_and_failed_deliveries_are_logged_with_the_reason(
    platform_redis, local_settings, events_actor
):
    """Not an Abaco test: a link to nothing and a refused webhook, logged and acknowledged."""
    prefix = local_settings.redis.key_prefix
    stores = Stores.open(platform_redis, local_settings)
    actor = _actor(link="nobody", webhook="http://10.9.9.9/hook")
    await stores.actors.create(actor)
    with structlog.testing.capture_logs() as logs:
        await emit_actor_event(events_actor, prefix, actor, EventType.ACTOR_READY)
        queue = events_queue(events_actor, prefix)
        with trio.fail_after(30):
            # Logged before it is acknowledged: once the queue is empty, both are in.
            while True:
                if await queue.length() == 0:
                    break
                await trio.sleep(0.05)
    refused = next(e for e in logs if e["event"] == "events.link_refused")
    assert "nobody" in refused["reason"]
    failed = next(e for e in logs if e["event"] == "events.webhook_failed")
    assert "10.9.9.9 is a private address" in failed["reason"]


async def test_a_slow_receiver_does_not_hold_up_other_deliveries(
    platform_redis, local_settings, events_actor
):
    """Not an Abaco test: one webhook hangs; another actor's events still go out meanwhile."""
    prefix = local_settings.redis.key_prefix
    stores = Stores.open(platform_redis, local_settings)
    async with open_receiver("hang") as stuck, open_receiver("ok") as fine:
        slow = _actor(webhook=stuck.url)
        quick = attrs.evolve(_actor(webhook=fine.url), id="a2")
        for actor in (slow, quick):
            await stores.actors.create(actor)
        await emit_actor_event(events_actor, prefix, slow, EventType.ACTOR_READY)
        await stuck.wait_until(lambda r: r.open_connections == 1 and len(r.bodies) == 1)
        await emit_actor_event(events_actor, prefix, quick, EventType.ACTOR_READY)
        await fine.wait_until(lambda r: len(r.bodies) == 1)
        # Delivered while the first receiver still holds its request unanswered.
        assert stuck.open_connections == 1
    body = fine.bodies[0]
    assert (body["actor_id"], body["event_type"]) == ("a2", "ACTOR_READY")
    assert (body["_abaco_username"], body["_abaco_Content_Type"]) == (
        "Abaco Event",
        "application/json",
    )


def test_the_events_component_needs_the_platforms_redis(tmp_path):
    """Not an Abaco test: ``abaco events`` is a component like the scheduler."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ABACO")}
    result = subprocess.run(
        [sys.executable, "-m", "abaco", "events"],
        capture_output=True,
        text=True,
        env={**environ, "ABACO__STATE__DIR": str(tmp_path / "state")},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "events: the events actor needs the platform's Redis" in result.stderr
