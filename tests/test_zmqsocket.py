"""ZmqSocket: pyzmq under trio, over real inproc, ipc and tcp endpoints."""

from __future__ import annotations

import random
import time
import uuid
from functools import partial

import pytest
import trio
import trio.testing
import zmq

from abaco._transports._zmqsocket import ZmqSocket, open_zmq_socket


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture(params=["inproc", "ipc", "tcp"])
def endpoint(request, tmp_path_factory):
    """A bindable endpoint of each transport (ipc under a short temporary path)."""
    if request.param == "inproc":
        return f"inproc://{uuid.uuid4().hex}"
    if request.param == "ipc":
        return f"ipc://{tmp_path_factory.mktemp('zmq')}/s"
    return "tcp://127.0.0.1:*"


def pair(context, endpoint, bind_type, connect_type) -> tuple[ZmqSocket, ZmqSocket]:
    """Two sockets: one bound to ``endpoint``, one connected to where it got bound."""
    bound = open_zmq_socket(context, bind_type)
    connected = open_zmq_socket(context, connect_type)
    connected.connect(bound.bind(endpoint))
    return bound, connected


async def test_bind_returns_the_real_endpoint(context, endpoint):
    with open_zmq_socket(context, zmq.PULL) as sock:
        real = sock.bind(endpoint)
    assert "*" not in real
    assert real.split("://")[0] == endpoint.split("://")[0]


async def test_push_pull_round_trip(context, endpoint):
    pull, push = pair(context, endpoint, zmq.PULL, zmq.PUSH)
    with pull, push:
        await push.send_multipart([b"a", b"", b"c" * 10_000])
        assert await pull.recv_multipart() == [b"a", b"", b"c" * 10_000]


async def test_dealer_router_round_trip(context, endpoint):
    router, dealer = pair(context, endpoint, zmq.ROUTER, zmq.DEALER)
    with router, dealer:
        await dealer.send_multipart([b"hello"])
        identity, body = await router.recv_multipart()
        assert body == b"hello"
        await router.send_multipart([identity, b"world"])
        assert await dealer.recv_multipart() == [b"world"]


async def test_req_rep_round_trips(context, endpoint):
    rep, req = pair(context, endpoint, zmq.REP, zmq.REQ)

    async def serve():
        for _ in range(100):
            [n] = await rep.recv_multipart()
            await rep.send_multipart([b"%d" % (int(n) + 1)])

    with rep, req, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            for i in range(100):
                await req.send_multipart([b"%d" % i])
                assert await req.recv_multipart() == [b"%d" % (i + 1)]


async def test_nowait_twins_raise_wouldblock(context):
    pull, push = pair(context, f"inproc://{uuid.uuid4().hex}", zmq.PULL, zmq.PUSH)
    with pull, push:
        with pytest.raises(trio.WouldBlock):
            pull.recv_multipart_nowait()
        push.send_multipart_nowait([b"x"])
        with trio.fail_after(30):
            assert await pull.recv_multipart() == [b"x"]
        with pytest.raises(ValueError, match="at least one frame"):
            push.send_multipart_nowait([])


async def test_many_senders_and_receivers_on_one_socket(context, endpoint):
    """4 tasks send and 2 tasks receive on ONE socket; a peer echoes; low HWMs force waits."""
    here = open_zmq_socket(context, zmq.DEALER)
    echo = open_zmq_socket(context, zmq.DEALER)
    for sock in (here, echo):
        sock.setsockopt(zmq.SNDHWM, 50)
        sock.setsockopt(zmq.RCVHWM, 50)
    here.connect(echo.bind(endpoint))
    n_senders, per_sender, total = 4, 2_500, 10_000
    received: list[bytes] = []

    async def send(sender):
        for i in range(per_sender):
            await here.send_multipart([b"%d-%d" % (sender, i)])

    async def receive(stop: trio.Event):
        while True:
            [body] = await here.recv_multipart()
            received.append(body)
            if len(received) == total:
                stop.set()

    async def echo_loop():
        for _ in range(total):
            await echo.send_multipart(await echo.recv_multipart())

    with here, echo, trio.fail_after(60):
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_loop)
            for _ in range(2):
                nursery.start_soon(receive, done)
            for sender in range(n_senders):
                nursery.start_soon(send, sender)
            await done.wait()
            nursery.cancel_scope.cancel()
    expected = {b"%d-%d" % (s, i) for s in range(n_senders) for i in range(per_sender)}
    assert len(received) == total
    assert set(received) == expected


async def test_cancelled_recv_loses_no_message(context, endpoint):
    pull, push = pair(context, endpoint, zmq.PULL, zmq.PUSH)
    total = 2_000
    got: list[int] = []
    cancels = 0

    async def produce():
        for i in range(total):
            await push.send_multipart([b"%d" % i])
            if i % 7 == 0:
                await trio.sleep(0.0002)

    with pull, push, trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            rng = random.Random(1)
            while len(got) < total:
                with trio.CancelScope() as scope:
                    # Deadlines from "already passed" to a little while: cancel before,
                    # during and (rarely) right after the wait.
                    scope.deadline = trio.current_time() + rng.choice([-1, 0, 1e-5, 1e-4, 1e-3])
                    [body] = await pull.recv_multipart()
                    got.append(int(body))
                cancels += scope.cancelled_caught
    assert got == list(range(total))
    assert cancels > 100


async def test_recv_many_takes_what_is_queued_up_to_its_limit(context, endpoint):
    pull, push = pair(context, endpoint, zmq.PULL, zmq.PUSH)
    with pull, push, trio.fail_after(10):
        for i in range(5):
            await push.send_multipart([b"%d" % i, b"x"])
        got: list[list[bytes]] = []
        while len(got) < 3:  # the five may still be on their way
            got += await pull.recv_multipart_many(3 - len(got))
        assert got == [[b"0", b"x"], [b"1", b"x"], [b"2", b"x"]]
        while len(got) < 5:
            got += await pull.recv_multipart_many(10)
        assert [m[0] for m in got] == [b"%d" % i for i in range(5)]


async def test_cancelled_recv_many_loses_no_message(context, endpoint):
    pull, push = pair(context, endpoint, zmq.PULL, zmq.PUSH)
    total = 2_000
    got: list[int] = []

    async def produce():
        for i in range(total):
            await push.send_multipart([b"%d" % i])
            if i % 7 == 0:
                await trio.sleep(0.0002)

    with pull, push, trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            rng = random.Random(2)
            while len(got) < total:
                with trio.move_on_at(trio.current_time() + rng.choice([-1, 0, 1e-5, 1e-3])):
                    got.extend(int(body) for [body] in await pull.recv_multipart_many(16))
    assert got == list(range(total))


async def test_cancelled_send_sends_nothing(context):
    """A PUSH with no peer cannot send: a cancelled send leaves nothing behind."""
    with open_zmq_socket(context, zmq.PUSH) as push:
        address = push.bind(f"inproc://{uuid.uuid4().hex}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push.send_multipart, [b"lost", b"half"])
            await trio.testing.wait_all_tasks_blocked()  # the send waits for a peer
            nursery.cancel_scope.cancel()
        with open_zmq_socket(context, zmq.PULL) as pull:
            pull.connect(address)
            await push.send_multipart([b"kept"])
            with trio.fail_after(30):
                assert await pull.recv_multipart() == [b"kept"]
            with pytest.raises(trio.WouldBlock):
                pull.recv_multipart_nowait()


async def test_high_water_mark_back_pressure_without_peer(context, endpoint):
    """SNDHWM=1 and no reader: the nowait send refuses, the send waits for a reader."""
    with open_zmq_socket(context, zmq.PUSH) as push:
        push.setsockopt(zmq.SNDHWM, 1)
        real = push.bind(endpoint)
        with pytest.raises(trio.WouldBlock):
            push.send_multipart_nowait([b"x"])
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(push.send_multipart, [b"waited"])
                await trio.testing.wait_all_tasks_blocked()  # the send is really waiting
                with open_zmq_socket(context, zmq.PULL) as pull:
                    pull.connect(real)
                    assert await pull.recv_multipart() == [b"waited"]


async def test_high_water_mark_back_pressure_with_slow_reader(context):
    """A reader that does not read fills the queues; the waiting send goes once it reads."""
    pull, push = pair(context, f"inproc://{uuid.uuid4().hex}", zmq.PULL, zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 1)
    pull.setsockopt(zmq.RCVHWM, 1)
    with pull, push, trio.fail_after(30):
        sent = 0
        while True:
            try:
                push.send_multipart_nowait([b"%d" % sent])
            except trio.WouldBlock:
                break
            sent += 1
        assert sent >= 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push.send_multipart, [b"%d" % sent])
            await trio.testing.wait_all_tasks_blocked()
            got = [int((await pull.recv_multipart())[0]) for _ in range(sent + 1)]
    assert got == list(range(sent + 1))


@pytest.mark.parametrize("role", ["receivers", "senders"])
async def test_close_wakes_waiters_with_closed_resource_error(context, role):
    """Three tasks wait (one asleep on the fd, two parked); closing wakes them all."""
    sock = open_zmq_socket(context, zmq.PUSH if role == "senders" else zmq.PULL)
    sock.bind(f"inproc://{uuid.uuid4().hex}")  # no peer: nothing to send to or receive
    failures: list[BaseException] = []

    async def wait_on_it():
        try:
            if role == "senders":
                await sock.send_multipart([b"x"])
            else:
                await sock.recv_multipart()
        except trio.ClosedResourceError as exc:
            failures.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait_on_it)
            await trio.testing.wait_all_tasks_blocked()
            sock.close()
    assert len(failures) == 3
    with pytest.raises(trio.ClosedResourceError):
        sock.recv_multipart_nowait()
    with pytest.raises(trio.ClosedResourceError):
        await sock.send_multipart([b"x"])
    sock.close()  # idempotent


async def test_interleaved_send_and_recv_on_one_socket_never_hang(context, endpoint):
    """The lost wakeup: one task sleeps in recv while another task sends on the same socket.

    A send makes libzmq process the socket's pending commands (at most once a millisecond),
    which eats the fd edge that announced the pong the sleeping recv waits for. Every 100th
    round forces that order: with the receiver asleep on the fd, send a ping, block the trio
    thread while a raw pyzmq socket in a worker thread echoes it, then send the next ping.
    Without the re-check after each send, the recv sleeps forever at the first such round.
    """
    here = open_zmq_socket(context, zmq.DEALER)
    there = context.socket(zmq.DEALER)
    there.setsockopt(zmq.LINGER, 0)
    there.setsockopt(zmq.RCVTIMEO, 5_000)  # the echo thread ends even if the test hangs
    there.connect(here.bind(endpoint))
    rounds = 5_000
    window = trio.Semaphore(2)  # two pings in flight: sends overlap a waiting recv

    def echo():
        with there:
            for _ in range(rounds):
                there.send_multipart(there.recv_multipart())

    async def ping():
        i = 0
        while i < rounds:
            await window.acquire()
            if i % 100 == 50:  # (not 0: a tcp connection may not be up yet)
                await window.acquire()  # every pong is in...
                window.release()
                await trio.testing.wait_all_tasks_blocked()  # ...and the receiver asleep
                here.send_multipart_nowait([b"%d" % i])
                time.sleep(0.002)  # noqa: ASYNC251 -- on purpose: the pong lands meanwhile
                window.acquire_nowait()
                i += 1
            await here.send_multipart([b"%d" % i])  # processes commands: eats the edge
            i += 1

    with here, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.to_thread.run_sync, echo))
            nursery.start_soon(ping)
            for i in range(rounds):
                assert await here.recv_multipart() == [b"%d" % i]
                window.release()


async def test_aclose_and_async_context_manager(context):
    async with open_zmq_socket(context, zmq.PAIR) as sock:
        assert not sock.closed
        assert sock.getsockopt(zmq.LINGER) == 0
    assert sock.closed
    await sock.aclose()
