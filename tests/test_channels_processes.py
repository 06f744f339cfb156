"""Channels across threads and real separate processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from abaco.channels import Transport, open_blocking_hub, open_hub

ROOT = Path(__file__).resolve().parent.parent


async def _peer(*args: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests._channel_peer", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


async def _read_line(process: trio.Process) -> str:
    data = b""
    assert process.stdout is not None
    while not data.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        assert chunk, f"peer exited early: {data!r}"
        data += chunk
    return data.decode().strip()


@pytest.fixture(params=["redis", "zmq"])
def transport(request) -> Transport:
    return Transport(request.param)


async def test_a_message_taken_by_a_consumer_killed_with_sigkill_goes_to_another(redis, transport):
    url = redis.url
    async with open_hub(redis, visibility=0.3) as hub:
        queue = hub.open_queue(transport=transport)
        await queue.put("survives")
        peer = await _peer("take", url, queue.address)
        try:
            with trio.fail_after(20):
                assert await _read_line(peer) == "TAKEN survives"
            peer.send_signal(signal.SIGKILL)
            await peer.wait()
            delivery = await queue.get(timeout=10)
            assert delivery.message == "survives"
            await delivery.ack()
        finally:
            peer.kill()
            await peer.wait()
            peer.stdout.close() if peer.stdout else None
    assert peer.returncode == -signal.SIGKILL


async def test_a_batch_held_by_a_consumer_killed_with_sigkill_is_delivered_again(redis, transport):
    async with open_hub(redis, visibility=0.3) as hub:
        queue = hub.open_queue(transport=transport)
        await queue.put_many(list(range(20)))
        peer = await _peer("take-many", redis.url, queue.address, "20")
        try:
            with trio.fail_after(20):
                assert await _read_line(peer) == "TAKEN " + ",".join(map(str, range(20)))
            peer.send_signal(signal.SIGKILL)
            await peer.wait()
            again: set[int] = set()
            while len(again) < 20:
                batch = await queue.get_many(20, timeout=10)
                again.update(d.message for d in batch)
                await hub.ack_many(batch)
            assert again == set(range(20))
            assert await queue.length() == 0
        finally:
            peer.kill()
            await peer.wait()
            if peer.stdout:
                await peer.stdout.aclose()
    assert peer.returncode == -signal.SIGKILL


async def test_producer_and_consumer_processes_pass_every_message(redis, transport):
    async with open_hub(redis) as hub:
        queue = hub.open_queue(transport=transport)
        consumer = await _peer("consume", redis.url, queue.address, "50")
        producer = await _peer("produce", redis.url, queue.address, "50")
        try:
            with trio.fail_after(60):
                got = [await _read_line(consumer) for _ in range(50)]
                assert await producer.wait() == 0
                assert await consumer.wait() == 0
        finally:
            for process in (consumer, producer):
                process.kill()
                await process.wait()
                if process.stdout:
                    await process.stdout.aclose()
    assert got == [f"GOT {i}" for i in range(50)]


async def test_a_request_is_answered_by_another_process(redis, transport):
    async with open_hub(redis) as hub:
        service = hub.open_request(transport=transport)
        server = await _peer("serve", redis.url, service.address, "3")
        try:
            with trio.fail_after(20):
                assert await _read_line(server) == "READY"
                answers = [await service.request(i, timeout=10) for i in range(3)]
                assert await server.wait() == 0
        finally:
            server.kill()
            await server.wait()
            if server.stdout:
                await server.stdout.aclose()
    assert [a["echo"] for a in answers] == [0, 1, 2]
    assert {a["pid"] for a in answers} == {server.pid}


@pytest.mark.parametrize("transport", list(Transport))
def test_threads_share_a_queue_through_blocking_hubs(valkey_server, transport):
    got: list[int] = []
    with open_blocking_hub(valkey_server.url) as producer_hub:
        queue = producer_hub.hub.open_queue(transport=transport)

        def consume() -> None:
            with open_blocking_hub(valkey_server.url) as consumer_hub:
                got.extend(consumer_hub.get(queue, timeout=10) for _ in range(100))

        threads = [threading.Thread(target=consume) for _ in range(2)]
        for thread in threads:
            thread.start()
        for i in range(200):
            producer_hub.put(queue, i)
        for thread in threads:
            thread.join(30)
    assert sorted(got) == list(range(200))
