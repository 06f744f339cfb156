"""A token bucket per caller: the published requests-per-second limit of one API process."""

from __future__ import annotations

import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allows ``rate`` requests per second per key, in bursts of up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._clock = time.monotonic
        # key -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True
