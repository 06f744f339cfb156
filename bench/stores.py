"""What the store layer costs over the raw client: ops/s for get, put, update, transaction.

Each store operation runs next to the raw coredis calls that do the same work on the
wire, in the same run, on a fresh embedded Valkey (``appendfsync always``, as
``abaco up`` runs it, and ``everysec`` for comparison):

- get:          ``stores.executions.get``        vs raw ``HGETALL``
- put:          ``stores.executions.put``        vs raw ``HSET`` of the same encoded fields
- update:       ``stores.executions.update``     vs raw ``HSET`` of one field
- transaction:  ``stores.executions.transaction`` vs raw ``HGETALL`` then ``HSET``

Run: ``.venv/bin/python bench/stores.py [--n 3000]``. The goal is store/raw <= 1.5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from abaco.actors.ids import new_id
from abaco.actors.models import Execution
from abaco.actors.states import ExecutionStatus
from abaco.config import load_settings
from abaco.redis_client import Redis, open_redis
from abaco.stores import Stores
from abaco.valkey import EmbeddedValkey
from bench._machine import machine


async def _rate(n: int, op: Callable[[int], Awaitable[object]]) -> float:
    for i in range(min(200, n)):  # warm the pool and the script cache
        await op(i)
    start = time.perf_counter()
    for i in range(n):
        await op(i)
    return n / (time.perf_counter() - start)


async def _measure(redis: Redis, n: int) -> list[tuple[str, float, float]]:
    settings = load_settings(environ={})
    stores = Stores.open(redis, settings, "bench")
    executions = stores.executions
    record = Execution(id=new_id(), actor_id="a1", status=ExecutionStatus.RUNNING)
    await executions.put(record)
    key = executions.key(record.id)
    raw = redis.raw
    encoded = dict(zip(*[iter(executions._encode(record))] * 2, strict=True))
    raw_key = key + ":raw"
    await raw.hset(raw_key, encoded)

    async def raw_transaction(_: int) -> None:
        await raw.hgetall(raw_key)
        await raw.hset(raw_key, encoded)

    rows = [
        (
            "get",
            await _rate(n, lambda _: executions.get(record.id)),
            await _rate(n, lambda _: raw.hgetall(raw_key)),
        ),
        (
            "put",
            await _rate(n, lambda _: executions.put(record)),
            await _rate(n, lambda _: raw.hset(raw_key, encoded)),
        ),
        (
            "update",
            await _rate(n, lambda i: executions.update(record.id, status_message=str(i))),
            await _rate(n, lambda i: raw.hset(raw_key, {"status_message": f'"{i}"'})),
        ),
        (
            "transaction",
            await _rate(
                n,
                lambda _: executions.transaction(
                    record.id, lambda e: attrs.evolve(e, cpu=e.cpu + 1)
                ),
            ),
            await _rate(n, raw_transaction),
        ),
    ]
    return rows


async def _run(url: str, n: int) -> list[tuple[str, float, float]]:
    async with open_redis(url) as redis:
        return await _measure(redis, n)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="operations per measurement")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{'fsync':9} {'op':12} {'store ops/s':>12} {'raw ops/s':>11} {'raw/store':>10}")
    for fsync in ("always", "everysec"):
        with tempfile.TemporaryDirectory() as tmp:
            server = EmbeddedValkey(Path(tmp), appendfsync=fsync)
            with server:
                rows = trio.run(_run, server.url, args.n)
        for op, store_rate, raw_rate in rows:
            print(
                f"{fsync:9} {op:12} {store_rate:12.0f} {raw_rate:11.0f} "
                f"{raw_rate / store_rate:9.2f}x"
            )


if __name__ == "__main__":
    main()
