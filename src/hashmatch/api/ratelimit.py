"""Per-key token buckets: a key may spend ``burst`` requests at once, refilled at ``rate``/s."""

from __future__ import annotations

import math
import threading
import time

from hashmatch.errors import HashmatchError


class RateLimited(HashmatchError, code="rate_limited"):
    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenBuckets:
    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)

    def take(self, key_id: int, now: float | None = None) -> None:
        """Spend one token of ``key_id`` or raise :class:`RateLimited`."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(key_id, (self.burst, moment))
            tokens = min(self.burst, tokens + (moment - at) * self.rate)
            if tokens < 1:
                self._buckets[key_id] = (tokens, moment)
                wait = (1 - tokens) / self.rate
                raise RateLimited(
                    f"rate limit of {self.rate:g} requests/s exceeded; retry in {wait:.2f} s",
                    retry_after=wait,
                )
            self._buckets[key_id] = (tokens - 1, moment)


def retry_after_header(error: RateLimited) -> str:
    return str(max(1, math.ceil(error.retry_after)))
