"""`mavera mock --rate-limit N/SECONDS`: a real sliding window over every request, as Mavera
counts them per key (at most N requests in any SECONDS), with what its headers report."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mavera_cli.errors import UsageError


@dataclass(frozen=True)
class WindowState:
    """One request's place in the window: admitted or not, and the three headers' values."""

    admitted: bool
    limit: int
    remaining: int
    reset: float  # Unix time when the oldest request in the window leaves it
    retry_after: int  # whole seconds until then (at least 1), on the window's own clock


class SlidingWindow:
    """At most `limit` requests in any `seconds`; thread-safe."""

    def __init__(
        self,
        limit: int,
        seconds: float,
        clock: Callable[[], float] = time.time,
        *,
        fractional_reset: bool = False,
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        # Mavera sends X-RateLimit-Reset in whole seconds; the bench also tries exact ones.
        self.fractional_reset = fractional_reset
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time on this window's clock (the server's, which may not be the client's)."""
        return self._clock()

    @property
    def per_minute(self) -> int:
        return round(self.limit * 60 / self.seconds)

    def take(self) -> WindowState:
        """Count a request now if the window has room; say where the window stands."""
        with self._lock:
            now = self._clock()
            starts = self._starts
            while starts and starts[0] <= now - self.seconds:
                starts.popleft()
            admitted = len(starts) < self.limit
            if admitted:
                starts.append(now)
            reset = starts[0] + self.seconds if starts else now + self.seconds
            retry_after = max(1, math.ceil(reset - now))
            return WindowState(admitted, self.limit, self.limit - len(starts), reset, retry_after)


def parse_rate_limit(spec: str) -> SlidingWindow:
    """`100/1` (100 requests per second), `60/60`; anything else is a usage error."""
    count, slash, seconds = spec.strip().partition("/")
    try:
        limit = int(count)
        window = float(seconds) if slash else 60.0
    except ValueError:
        limit, window = 0, 0.0
    if limit < 1 or not window > 0:
        raise UsageError(f"invalid --rate-limit {spec!r}: use N/SECONDS, as in 100/1 or 60/60")
    return SlidingWindow(limit, window)
