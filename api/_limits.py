"""Per-caller rate limits of the gateway: a token bucket per signed-in user or client address.

In-process, so each gateway replica enforces its own share; a deployment with N replicas
behind a balancer lets a caller through at up to N times the rate.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from recommender.errors import RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    """``take(key, n)`` spends n tokens of the key's bucket (``per_minute`` capacity, refilled evenly)."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000, clock=time.monotonic):
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, n: int = 1) -> None:
        """Spend ``n`` tokens of ``key``. Raises RateLimited (with the wait) when it has too few.

        A limit of 0 means no limit. A call larger than the whole bucket can never pass: it
        is refused with the size to split it to.
        """
        if self.per_minute <= 0 or n <= 0:
            return
        if n > self.per_minute:
            raise RateLimited(f"{n} events in one call is over this caller's {self.per_minute} per minute; "
                              f"send at most {self.per_minute} per call", retry_after_s=60.0)
        rate_s = self.per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate_s)
            if tokens < n:
                self._buckets[key] = (tokens, now)
                wait_s = (n - tokens) / rate_s
                raise RateLimited(f"over this caller's limit of {self.per_minute} events per minute; "
                                  f"retry in {wait_s:.0f} s", retry_after_s=wait_s)
            self._buckets[key] = (tokens - n, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
