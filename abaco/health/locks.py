"""A short Redis lock per actor, so that several supervisors never scale one actor at once.

Key: ``P:_platform:health:lock:T:ACTOR`` (a string holding the holder's random token,
with a TTL so a holder that dies frees it). The holder reads the actor's workers,
decides and requests under the lock; a worker it requests has its record created before
the lock is released, so the next holder counts it. Release checks the token first;
the check and the delete are two commands, which is safe because the lock is held for
milliseconds and lives for :data:`LOCK_TTL` seconds.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from abaco.redis_client import Redis

__all__ = ["LOCK_TTL", "actor_lock", "lock_key"]

#: Seconds a lock outlives a holder that died holding it.
LOCK_TTL = 10.0

_RETRY = 0.01


def lock_key(key_prefix: str, tenant: str, actor_id: str) -> str:
    """The lock of one actor."""
    return f"{key_prefix}:_platform:health:lock:{tenant}:{actor_id}"


@contextlib.asynccontextmanager
async def actor_lock(redis: Redis, key: str, *, wait: float = 0.0) -> AsyncIterator[bool]:
    """Hold the lock ``key`` for the block; yields False when it could not be had.

    ``wait``: seconds to keep trying while another holder has it (0: try once).
    """
    token = secrets.token_hex(8).encode()
    deadline = trio.current_time() + wait
    while True:
        held = await redis.set(key, token, ttl_ms=int(LOCK_TTL * 1000), only_new=True)
        if held or trio.current_time() >= deadline:
            break
        await trio.sleep(_RETRY)
    try:
        yield held
    finally:
        if held:
            with trio.CancelScope(shield=True):
                if await redis.get(key) == token:
                    await redis.delete(key)
