"""client-go's token bucket: the client-side QPS/burst limit over every request of one client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """client-go's default limiter: `qps` tokens a second, at most `burst` saved up; qps <= 0: none.

    A caller takes one token per request; when none is left it waits its turn (reservations let
    tokens go negative, so waiters queue fairly instead of racing).
    """

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps > 0 and burst < 1:
            raise ValueError("burst must be at least 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # total seconds callers spent throttled

    def reserve(self) -> float:
        """Take a token; return how long the caller must wait before using it."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            wait = max(0.0, -self._tokens / self.qps)
            self.waited += wait
            return wait

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
