"""The channel library on real servers, for every transport.

``hub`` and ``other_hub`` are two independent hubs (as two processes would have) on the
same server; tests in ``test_channels_processes.py`` use real separate processes.
"""

from __future__ import annotations

import contextlib
import random

import pytest
import trio

from abaco.channels import (
    DuplexChannel,
    MembershipEvent,
    QueueChannel,
    ReplyChannel,
    TopicChannel,
    Transport,
    open_hub,
)
from abaco.errors import (
    Aborted,
    ChannelClosed,
    ChannelTimeout,
    DestinationUnavailable,
    RemoteError,
    SendFailed,
    WireError,
)

VISIBILITY = 0.3


@pytest.fixture(params=["redis", "zmq"])
def transport(request) -> Transport:
    return Transport(request.param)


class _OnTransport:
    """A hub whose ``open_*`` make channels on the transport under test."""

    def __init__(self, hub, transport):
        self._hub = hub
        self._transport = transport

    def __getattr__(self, name):
        found = getattr(self._hub, name)
        if name.startswith("open_"):
            return lambda *a, **kw: found(*a, transport=self._transport, **kw)
        return found


@pytest.fixture
async def hub(redis, transport):
    async with open_hub(redis, visibility=VISIBILITY, lease=1.0) as h:
        yield _OnTransport(h, transport)


@pytest.fixture
async def other_hub(redis, transport):
    async with open_hub(redis, visibility=VISIBILITY, lease=1.0) as h:
        yield _OnTransport(h, transport)


# -- queues -----------------------------------------------------------------------------


async def test_a_queue_delivers_messages_in_order_and_ack_removes_them(hub):
    queue = hub.open_queue()
    for i in range(5):
        await queue.put({"n": i})
    assert await queue.length() == 5
    received = []
    for _ in range(5):
        delivery = await queue.get(timeout=1)
        received.append(delivery.message["n"])
        await delivery.ack()
    assert received == [0, 1, 2, 3, 4]
    assert await queue.length() == 0


async def test_put_many_appends_in_order(hub):
    queue = hub.open_queue()
    await queue.put_many([{"n": i} for i in range(5)])
    await queue.put_many([])
    received = []
    for _ in range(5):
        delivery = await queue.get(timeout=1)
        received.append(delivery.message["n"])
        await delivery.ack()
    assert received == [0, 1, 2, 3, 4]


async def test_waiting_counts_only_messages_nobody_has_taken(hub):
    queue = hub.open_queue()
    assert await queue.waiting() == 0
    for i in range(3):
        await queue.put({"n": i})
    assert (await queue.waiting(), await queue.length()) == (3, 3)
    taken = await queue.get(timeout=1)
    assert (await queue.waiting(), await queue.length()) == (2, 3)
    await taken.ack()
    assert (await queue.waiting(), await queue.length()) == (2, 2)


async def test_each_message_goes_to_exactly_one_of_many_consumers(hub, other_hub):
    queue = hub.open_queue()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    async def consume(name, channel):
        with contextlib.suppress(ChannelTimeout):
            while True:
                async with channel.receive(timeout=0.5) as message:
                    seen[name].append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, "a", queue)
        nursery.start_soon(consume, "b", other_hub.bind(queue))
        for i in range(200):
            await queue.put(i)
    assert sorted(seen["a"] + seen["b"]) == list(range(200))
    assert seen["a"]
    assert seen["b"]
    assert await queue.length() == 0


async def test_get_times_out_with_channel_timeout(hub):
    with pytest.raises(ChannelTimeout):
        await hub.open_queue().get(timeout=0.05)


async def test_an_unacknowledged_message_of_a_dead_consumer_goes_to_another(redis, hub):
    queue = hub.open_queue()
    await queue.put("precious")
    async with open_hub(redis, visibility=VISIBILITY) as doomed:
        taken = await doomed.bind(queue).get(timeout=1)
        assert taken.message == "precious"
    # The consumer is gone without acknowledging; after the visibility timeout it is
    # delivered again, to whoever asks.
    delivery = await queue.get(timeout=5)
    assert delivery.message == "precious"
    await delivery.ack()
    assert await queue.length() == 0


async def test_a_consumer_that_lost_its_delivery_cannot_acknowledge_it(hub, other_hub):
    queue = hub.open_queue()
    await queue.put("job")
    slow = await queue.get(timeout=1)
    await trio.sleep(VISIBILITY * 1.5)  # no renewal: presumed dead
    fast = await other_hub.bind(queue).get(timeout=1)
    assert fast.message == "job"
    with pytest.raises(Aborted, match="reclaimed"):
        await slow.ack()
    with pytest.raises(Aborted):
        await slow.renew()
    await fast.ack()


async def test_receive_renews_a_long_delivery_so_nobody_else_takes_it(hub, other_hub):
    queue = hub.open_queue()
    await queue.put("long job")
    async with queue.receive(timeout=1) as message:
        assert message == "long job"
        await trio.sleep(VISIBILITY * 3)
        with pytest.raises(ChannelTimeout):
            await other_hub.bind(queue).get(timeout=VISIBILITY)
    assert await queue.length() == 0


async def test_receive_does_not_acknowledge_when_the_block_fails(hub):
    queue = hub.open_queue()
    await queue.put("retry me")
    with pytest.raises(ZeroDivisionError):
        async with queue.receive(timeout=1):
            1 / 0  # noqa: B018
    async with queue.receive(timeout=1) as message:
        assert message == "retry me"


async def test_cancelling_pending_gets_never_loses_a_message(hub, other_hub):
    queue = hub.open_queue()
    total = 150
    received: list[int] = []

    async def produce():
        for i in range(total):
            await other_hub.bind(queue).put(i)
            await trio.sleep(random.uniform(0, 0.003))

    async def consume_with_cancels():
        while len(set(received)) < total:
            delivery = None
            with trio.move_on_after(random.uniform(0.0005, 0.01)):
                delivery = await queue.get(timeout=5)
            if delivery is not None:
                received.append(delivery.message)
                await delivery.ack()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume_with_cancels)
    # The queue is at-least-once: nothing may be lost; a message whose get was cancelled
    # may (rarely) come twice, and the contract allows that.
    assert set(received) == set(range(total))
    assert len(received) - total <= total // 10


async def test_a_channel_is_usable_only_through_a_hub(hub):
    unbound = QueueChannel(Transport.REDIS, hub.open_queue().address)
    with pytest.raises(ChannelClosed, match="not bound to a hub"):
        await unbound.put(1)
    await hub.bind(unbound).put(1)


async def test_a_closed_hub_refuses_work(redis):
    async with open_hub(redis) as hub:
        queue = hub.open_queue()
    with pytest.raises(ChannelClosed):
        await queue.put(1)


# -- channels inside messages -------------------------------------------------------------


async def test_channels_inside_messages_arrive_working_and_equal(hub, other_hub):
    requests = hub.open_queue()
    reply_queue = hub.open_queue()
    topic = hub.open_topic()
    await requests.put({"to": [reply_queue, {"deep": (topic,)}], "again": reply_queue})

    delivery = await other_hub.bind(requests).get(timeout=1)
    received = delivery.message
    assert received["to"][0] == reply_queue == received["again"]
    assert hash(received["to"][0]) == hash(reply_queue)
    assert received["to"][1]["deep"][0] == topic
    await received["to"][0].put("answer")  # works: bound to other_hub on arrival
    assert received["to"][0].hub is other_hub._hub
    assert (await reply_queue.get(timeout=1)).message == "answer"


async def test_statistics_count_messages_and_bytes(hub):
    queue = hub.open_queue()
    await queue.put(b"x" * 100)
    delivery = await queue.get(timeout=1)
    stats = queue.statistics()
    assert (stats.sent, stats.received) == (1, 1)
    assert stats.bytes_sent == stats.bytes_received > 100
    await delivery.ack()


# -- topics -----------------------------------------------------------------------------


async def _collect(subscription, count, into):
    async for topic, message in subscription:
        into.append((topic, message))
        if len(into) == count:
            return


async def test_every_subscriber_gets_every_message_it_follows(hub, other_hub):
    topic = hub.open_topic()
    everything: list = []
    only_logs: list = []
    async with (
        topic.subscribe() as all_sub,
        other_hub.bind(topic).subscribe("log.") as log_sub,
    ):
        await topic.publish("log.info", 1)
        await topic.publish("metric.cpu", 2)
        await topic.publish("log.error", 3)
        with trio.fail_after(5):
            await _collect(all_sub, 3, everything)
            await _collect(log_sub, 2, only_logs)
    assert everything == [("log.info", 1), ("metric.cpu", 2), ("log.error", 3)]
    assert only_logs == [("log.info", 1), ("log.error", 3)]


async def test_a_local_zmq_subscriber_that_falls_behind_slows_the_publisher_down(redis):
    # The subscriber's hub owns the topic; 12,000 messages overrun its 10,000 buffer while
    # it sleeps, so the broker waits for it instead of dropping what does not fit.
    async with (
        open_hub(redis, visibility=VISIBILITY, lease=1.0) as owner,
        open_hub(redis, visibility=VISIBILITY, lease=1.0) as publisher,
    ):
        topic = owner.open_topic(transport=Transport.ZMQ)
        total = 12_000
        got: list = []
        overrun = trio.Event()
        async with topic.subscribe() as sub:

            async def publish() -> None:
                remote = publisher.bind(topic)
                for i in range(total):
                    await remote.publish("t", i)
                    if i == 10_500:  # the subscriber's buffer is full by then
                        overrun.set()

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish)
                    await overrun.wait()
                    await _collect(sub, total, got)
    assert [message for _, message in got] == list(range(total))


async def test_a_subscriber_sees_only_messages_published_after_it_subscribed(hub):
    topic = hub.open_topic()
    await topic.publish("t", "before")
    got: list = []
    async with topic.subscribe() as sub:
        await topic.publish("t", "after")
        with trio.fail_after(5):
            await _collect(sub, 1, got)
    assert got == [("t", "after")]


async def test_follow_and_unfollow_change_the_filters(hub):
    topic = hub.open_topic()
    got: list = []
    async with topic.subscribe("a") as sub:
        sub.follow("b")
        sub.unfollow("a")
        await topic.publish("a", 1)
        await topic.publish("b", 2)
        with trio.fail_after(5):
            await _collect(sub, 1, got)
    assert got == [("b", 2)]
    assert isinstance(topic, TopicChannel)


# -- request / reply ----------------------------------------------------------------------


async def _serve(channel, handler, count=1):
    for _ in range(count):
        request = await channel.next_request(timeout=5)
        try:
            answer = handler(request.message)
        except Exception as exc:
            await request.fail(exc)
        else:
            await request.reply(answer)


async def test_request_gets_its_answer(hub, other_hub):
    service = hub.open_request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, other_hub.bind(service), lambda m: {"echo": m}, 3)
        for i in range(3):
            assert await service.request(i, timeout=5) == {"echo": i}


async def test_concurrent_requests_get_their_own_answers(hub, other_hub):
    service = hub.open_request()
    answers: dict[int, int] = {}

    async def ask(i):
        answers[i] = await service.request(i, timeout=10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, other_hub.bind(service), lambda m: m * 10, 20)
        for i in range(20):
            nursery.start_soon(ask, i)
    assert answers == {i: i * 10 for i in range(20)}


async def test_a_request_nobody_answers_times_out(hub):
    with pytest.raises(ChannelTimeout, match="no answer"):
        await hub.open_request().request("anyone?", timeout=0.2)


async def test_a_failed_request_raises_remote_error_naming_its_origin(hub, other_hub):
    service = hub.open_request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, other_hub.bind(service), lambda m: 1 / m)
        with pytest.raises(RemoteError, match="ZeroDivisionError") as info:
            await service.request(0, timeout=5)
    assert info.value.type_name == "ZeroDivisionError"
    assert info.value.origin == service.address
    assert "division by zero" in info.value.remote_traceback


async def test_answering_a_requester_that_is_gone_is_destination_unavailable(redis, hub):
    service = hub.open_request()
    async with open_hub(redis) as requester:
        with pytest.raises(ChannelTimeout):
            await requester.bind(service).request("hello", timeout=0.1)
    request = await service.next_request(timeout=1)
    assert isinstance(request.reply_to, ReplyChannel)
    with pytest.raises(DestinationUnavailable, match="owner is gone"):
        await request.reply("too late")
    assert await hub.bind(QueueChannel(Transport.REDIS, service.address)).length() == 0


# -- duplex -----------------------------------------------------------------------------


async def test_duplex_members_send_to_each_other_by_name(hub, other_hub):
    group = hub.open_duplex()
    async with group.join("alice") as alice, other_hub.bind(group).join("bob") as bob:
        assert await group.membership() == ["alice", "bob"]
        await alice.send("bob", "hi bob")
        await bob.send("alice", "hi alice")
        assert await bob.receive(timeout=1) == "hi bob"
        assert await alice.receive(timeout=1) == "hi alice"
    assert await group.membership() == []


async def test_sending_to_a_non_member_is_destination_unavailable(hub):
    group = hub.open_duplex()
    with pytest.raises(DestinationUnavailable, match="'carol' is not a member"):
        await group.send("carol", "hello?")


async def test_membership_changes_are_announced(hub, other_hub):
    group = hub.open_duplex()
    events: list[MembershipEvent] = []
    async with group.watch() as watched:
        async with other_hub.bind(group).join("bob"):
            pass
        with trio.fail_after(5):
            async for event in watched:
                events.append(event)
                if len(events) == 2:
                    break
    assert events == [MembershipEvent("joined", "bob"), MembershipEvent("left", "bob")]
    assert isinstance(group, DuplexChannel)


# -- bad frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\xc1", "malformed"),  # a byte msgpack never uses
        (b"\x92\x01", "truncated"),  # an array of two with one element
        (b"\xc7\x03\x63abc", "ext"),  # an extension type that is not ours
        (b"\xc4\xff" + b"x" * 255, "over"),  # bigger than the receiving hub accepts
    ],
)
async def test_a_bad_frame_is_a_wire_error_and_the_next_message_still_arrives(
    redis, transport, frame, error
):
    async with open_hub(redis, max_frame=200) as hub:
        queue = hub.open_queue(transport=transport)
        await hub.transport(queue).queue_put(queue.address, frame)  # bypasses the encoder
        await queue.put("fine")
        with pytest.raises(WireError):
            await queue.get(timeout=1)
        delivery = await queue.get(timeout=1)
        assert delivery.message == "fine"
        await delivery.ack()
        assert await queue.length() == 0


async def test_a_message_over_the_frame_limit_is_refused_at_the_sender(redis, transport):
    async with open_hub(redis, max_frame=100) as hub:
        queue = hub.open_queue(transport=transport)
        with pytest.raises(SendFailed, match="over 100"):
            await queue.put(b"x" * 200)
        assert await queue.length() == 0


async def test_a_bad_request_frame_is_dropped_and_the_server_goes_on(redis, transport):
    async with open_hub(redis) as hub:
        service = hub.open_request(transport=transport)
        await hub.transport(service).queue_put(service.address, b"\xc1")
        await hub.bind(QueueChannel(transport, service.address)).put("not a request")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, service, lambda m: m + 1)
            assert await service.request(41, timeout=5) == 42


async def test_zmq_channels_served_over_tcp_work_like_ipc_ones(redis):
    async with (
        open_hub(redis, zmq_endpoint="tcp://127.0.0.1:*") as owner,
        open_hub(redis) as user,
    ):
        queue = owner.open_queue(transport=Transport.ZMQ)
        assert queue.address.startswith("tcp://127.0.0.1:")
        await user.bind(queue).put("over tcp")
        delivery = await queue.get(timeout=5)
        assert delivery.message == "over tcp"
        await delivery.ack()


async def test_a_zmq_channel_whose_owner_is_gone_is_destination_unavailable(redis):
    async with open_hub(redis) as owner:
        queue = owner.open_queue(transport=Transport.ZMQ)
    async with open_hub(redis, answer_timeout=0.2) as user:
        with pytest.raises(DestinationUnavailable, match="owner is gone"):
            await user.bind(queue).put("anyone?")


async def test_pipelined_puts_to_a_vanished_owner_fail_on_a_later_put(redis):
    async with open_hub(redis, zmq_endpoint="tcp://127.0.0.1:*") as owner:
        queue = owner.open_queue(transport=Transport.ZMQ)
    async with open_hub(redis, answer_timeout=0.2) as user:
        vanished = user.bind(queue)

        async def put_until_it_fails():
            while True:
                await vanished.put("into the void")
                await trio.sleep(0.02)

        with trio.fail_after(10), pytest.raises(DestinationUnavailable, match="confirmed none"):
            await put_until_it_fails()


async def test_pipelined_puts_all_arrive_in_order(redis):
    async with open_hub(redis) as owner, open_hub(redis) as producer:
        queue = owner.open_queue(transport=Transport.ZMQ)
        remote = producer.bind(queue)
        for i in range(3000):  # more than the confirmation window
            await remote.put(i)
        received = []
        for _ in range(3000):
            delivery = await queue.get(timeout=5)
            received.append(delivery.message)
            await delivery.ack()
    assert received == list(range(3000))


async def test_ack_many_acknowledges_a_batch_and_is_fenced(hub, other_hub):
    queue = hub.open_queue()
    for i in range(5):
        await queue.put(i)
    batch = [await queue.get(timeout=1) for _ in range(4)]
    await hub.ack_many(batch[:3])
    assert await queue.length() == 2
    await trio.sleep(VISIBILITY * 1.5)  # no renewal: the last two are reclaimable
    taken = [await other_hub.bind(queue).get(timeout=5) for _ in range(2)]
    with pytest.raises(Aborted):
        await hub.ack_many(batch[3:])
    await other_hub.ack_many(taken)
    assert await queue.length() == 0


async def test_get_many_takes_what_is_waiting_in_one_go(hub, transport):
    queue = hub.open_queue()
    for i in range(10):
        await queue.put(i)
    first = await queue.get_many(4, timeout=1)
    rest = []
    while len(first) + len(rest) < 10:
        rest += await queue.get_many(10, timeout=1)
    got = [d.message for d in first + rest]
    assert got == list(range(10))
    await queue.put("one more")
    await queue.put("and another")
    single = await queue.get_many(1, timeout=1)
    assert [d.message for d in single] == ["one more"]  # no more than asked for
    rest += single + await queue.get_many(1, timeout=1)
    assert len(first) == 4  # all that was asked for: they were all there
    await hub.ack_many(first + rest)
    assert await queue.length() == 0


async def test_batches_between_hubs_arrive_whole_and_in_order(hub, other_hub):
    queue = hub.open_queue()
    await other_hub.bind(queue).put_many(list(range(2500)))  # more than one 0MQ request
    taken = []
    while len(taken) < 2500:
        taken += await other_hub.bind(queue).get_many(700, timeout=5)
    assert [d.message for d in taken] == list(range(2500))
    assert len(taken[0:700]) == 700
    await other_hub.ack_many(taken)
    assert await queue.length() == 0


async def test_cancelling_pending_batch_gets_of_another_hub_never_loses_a_message(hub, other_hub):
    queue = hub.open_queue()
    total = 300
    received: list[int] = []

    async def produce():
        for i in range(0, total, 3):
            await queue.put_many([i, i + 1, i + 2])
            await trio.sleep(random.uniform(0, 0.003))

    async def consume_with_cancels():
        remote = other_hub.bind(queue)
        while len(set(received)) < total:
            batch = []
            with trio.move_on_after(random.uniform(0.0005, 0.01)):
                batch = await remote.get_many(5, timeout=5)
            received.extend(d.message for d in batch)
            await other_hub.ack_many(batch)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume_with_cancels)
    assert set(received) == set(range(total))
    assert len(received) - total <= total // 10


async def test_a_malformed_zmq_batch_is_refused_and_the_owner_goes_on(redis):
    async with open_hub(redis) as owner, open_hub(redis) as user:
        queue = owner.open_queue(transport=Transport.ZMQ)
        transport = user.transport(queue)
        for pack in (b"\xc1", b"\x92\x01\x02", b"\x91\xa3str"):  # no msgpack; ints; a str
            answer = await transport.call(queue.address, b"putm", payload=[pack])
            assert answer == [b"bad"]
        await user.bind(queue).put_many(["still", "fine"])
        assert [d.message for d in await queue.get_many(2, timeout=5)] == ["still", "fine"]


async def test_a_redis_queue_deleted_under_its_consumer_starts_again_empty(redis):
    # The platform retires the control queues of workers it forgot by deleting them; a
    # consumer still reading (a paused worker) must go on, not fail.
    async with open_hub(redis, visibility=VISIBILITY, lease=1.0) as hub:
        queue = hub.open_queue(transport=Transport.REDIS)
        await queue.put("before")
        await (await queue.get(timeout=1)).ack()
        await redis.delete(queue.address)  # between two reads
        await queue.put("after")
        assert (await queue.get(timeout=1)).message == "after"
        async with trio.open_nursery() as nursery:  # during a blocking read
            nursery.start_soon(redis.delete, queue.address)
            with pytest.raises(ChannelTimeout):
                await queue.get(timeout=0.3)
        await queue.put("again")
        assert (await queue.get(timeout=1)).message == "again"
