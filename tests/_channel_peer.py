"""A separate process that uses channels, for tests: ``python -m tests._channel_peer MODE ...``.

``ADDRESS`` is a channel address on either transport (0MQ ones look like ``ipc://...#id``).
Modes (all print one line per event and flush, so the test can follow along):
- ``take URL ADDRESS``: take one queue message without acknowledging it, print
  ``TAKEN <message>``, then hang until killed.
- ``take-many URL ADDRESS N``: take N queue messages with ``get_many`` without acknowledging
  them, print ``TAKEN <m1>,<m2>,...``, then hang until killed.
- ``consume URL ADDRESS N``: take and acknowledge N messages through the blocking facade,
  print ``GOT <message>`` for each.
- ``produce URL ADDRESS N``: put the numbers 0..N-1 through the blocking facade.
- ``serve URL ADDRESS N``: answer N requests through the async API with ``{"pid": pid, "echo": m}``.
"""

from __future__ import annotations

import os
import sys

import trio

from abaco.channels import QueueChannel, RequestChannel, Transport, open_blocking_hub, open_hub
from abaco.redis_client import open_redis

VISIBILITY = 0.3


def _transport(address: str) -> Transport:
    return Transport.ZMQ if "#" in address else Transport.REDIS


async def _take(url: str, address: str) -> None:
    async with open_redis(url) as redis, open_hub(redis, visibility=VISIBILITY) as hub:
        delivery = await hub.bind(QueueChannel(_transport(address), address)).get(timeout=10)
        print(f"TAKEN {delivery.message}", flush=True)
        await trio.sleep_forever()


async def _take_many(url: str, address: str, count: int) -> None:
    async with open_redis(url) as redis, open_hub(redis, visibility=VISIBILITY) as hub:
        queue = hub.bind(QueueChannel(_transport(address), address))
        taken = []
        while len(taken) < count:
            taken += await queue.get_many(count - len(taken), timeout=10)
        print("TAKEN " + ",".join(str(d.message) for d in taken), flush=True)
        await trio.sleep_forever()


async def _serve(url: str, address: str, count: int) -> None:
    async with open_redis(url) as redis, open_hub(redis, visibility=VISIBILITY) as hub:
        service = hub.bind(RequestChannel(_transport(address), address))
        print("READY", flush=True)
        for _ in range(count):
            request = await service.next_request(timeout=10)
            await request.reply({"pid": os.getpid(), "echo": request.message})


def main() -> None:
    mode, url, address, *rest = sys.argv[1:]
    if mode == "take":
        trio.run(_take, url, address)
    elif mode == "take-many":
        trio.run(_take_many, url, address, int(rest[0]))
    elif mode == "serve":
        trio.run(_serve, url, address, int(rest[0]))
    else:
        queue = QueueChannel(_transport(address), address)
        with open_blocking_hub(url, visibility=VISIBILITY) as hub:
            for i in range(int(rest[0])):
                if mode == "produce":
                    hub.put(queue, i)
                else:
                    print(f"GOT {hub.get(queue, timeout=10)}", flush=True)


if __name__ == "__main__":
    main()
