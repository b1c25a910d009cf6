"""`mavera mock --rate-limit N/SECONDS`: a real sliding window over every request, as Mavera
counts them per key (at most N requests in any SECONDS), with what its headers report."""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass

from mavera_cli.errors import UsageError

# A request is counted at most this long after it arrived (a stall, a clock that jumped).
_LATEST_COUNT_SECONDS = 1.0


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
        self._starts: list[float] = []  # arrival times, oldest first
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time on this window's clock (the server's, which may not be the client's)."""
        return self._clock()

    @property
    def per_minute(self) -> int:
        return round(self.limit * 60 / self.seconds)

    def take(self, age: float = 0.0) -> WindowState:
        """Count a request that arrived `age` seconds ago if the window had room for it then;
        say where the window stands. (The mock's threads get to requests late, and not always
        in the order they came: a request is counted when it arrived, among those before it.)
        """
        with self._lock:
            now = self._clock()
            arrived = now - min(max(age, 0.0), _LATEST_COUNT_SECONDS)
            starts = self._starts
            # Kept a little past the window: a request that came earlier may be counted later.
            del starts[: bisect_right(starts, now - self.seconds - _LATEST_COUNT_SECONDS)]
            first = bisect_right(starts, arrived - self.seconds)
            inside = bisect_right(starts, arrived) - first
            admitted = inside < self.limit and self._room_after(arrived)
            if admitted:
                insort(starts, arrived)
                inside += 1
            reset = starts[first] + self.seconds if inside else arrived + self.seconds
            retry_after = max(1, math.ceil(reset - now))
            return WindowState(admitted, self.limit, self.limit - inside, reset, retry_after)

    def _room_after(self, arrived: float) -> bool:
        """Whether a request that arrived then keeps every window after it (up to requests
        counted already that came later) within the limit."""
        starts = self._starts
        for later in starts[bisect_right(starts, arrived) :]:
            if later >= arrived + self.seconds:
                break
            if (
                bisect_right(starts, later) - bisect_right(starts, later - self.seconds)
                >= self.limit
            ):
                return False
        return True


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
