"""`batch` pacing: one limiter shared by every worker, fed by every response's headers.

It never starts a request the server's window cannot take: it counts the starts the last
`X-RateLimit-Remaining` did not see yet, and once they use it up it waits for
`X-RateLimit-Reset`, then lets one request through to learn the window anew (and the very
first request goes alone, for the same reason). A 429 pauses
every worker for its Retry-After. `--rpm N` spaces starts 60/N s apart. Every wait ends early
when the batch stops (Ctrl-C, a 401), so no thread outlives the run by more than a poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from mavera_cli.client import RateLimitHeaders
from mavera_cli.errors import InterruptedRun

# How often a waiting worker looks at the stop flag (Ctrl-C must not wait a whole pause).
_POLL_SECONDS = 0.1


class Stopped(Exception):
    """The batch is stopping: start nothing more."""


class Limiter:
    """Decides when each request may start; thread-safe."""

    def __init__(
        self,
        rpm: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._interval = 60.0 / rpm if rpm else 0.0
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = False
        self._next_start = 0.0  # --rpm: the earliest the next request may start
        self._paused_until = 0.0  # a 429's Retry-After, for everyone
        # The window as the last response told it, less the starts it has not seen.
        self._remaining: int | None = None
        self._reset = 0.0
        self._unseen = 0  # requests started whose response headers have not arrived
        # Until the first response tells the window, one request at a time: a burst of -j
        # into a window that may be nearly full would come back 429.
        self._learned = False
        self.pauses = 0

    def acquire(self) -> None:
        """Wait until a request may start, and count it; raise Stopped if the batch ends."""
        with self._cond:
            while True:
                if self._stop:
                    raise Stopped()
                now = self._clock()
                wait = max(self._paused_until - now, self._next_start - now, self._window_wait(now))
                if wait <= 0:
                    break
                self._cond.wait(min(wait, _POLL_SECONDS))
            self._next_start = max(now, self._next_start) + self._interval
            self._unseen += 1
            if self._remaining is not None:
                self._remaining -= 1

    def _window_wait(self, now: float) -> float:
        if not self._learned and self._unseen > 0:
            return _POLL_SECONDS  # woken by observe()/forget()
        if self._remaining is None or self._remaining > 0:
            return 0.0
        if now < self._reset:
            return self._reset - now
        # The window moved on: let one request through to learn where it stands now.
        self._remaining = 1 if self._unseen == 0 else 0
        return 0.0 if self._remaining else _POLL_SECONDS

    def observe(self, window: RateLimitHeaders) -> None:
        """One response's headers (every response: 2xx, 429 and errors alike)."""
        with self._cond:
            self._learned = True
            self._unseen = max(0, self._unseen - 1)
            if window.remaining is not None:
                # Requests started since are not in the server's count yet.
                estimate = max(0, window.remaining - self._unseen)
                # Headers arrive out of order: a larger count is believed only from a window
                # that moved on (a later reset, or a reset passed), never from a stale answer.
                moved = window.reset is not None and window.reset > self._reset
                moved = moved or self._clock() >= self._reset
                if self._remaining is None or estimate < self._remaining or moved:
                    self._remaining = estimate
            if window.reset is not None and window.reset > self._reset:
                self._reset = window.reset
            if window.retry_after is not None:
                self._pause(window.retry_after)
            self._cond.notify_all()

    def forget(self) -> None:
        """A request ended without a response (connection refused, reset): not in flight."""
        with self._cond:
            self._unseen = max(0, self._unseen - 1)
            self._cond.notify_all()

    def _pause(self, seconds: float) -> None:
        """A 429: nobody starts anything for `seconds` (whether or not it is retried)."""
        self.pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        # The 429's own Retry-After says when to come back: it outranks a Reset that the
        # same answer may put further away.
        if self._remaining == 0:
            self._reset = min(self._reset, self._paused_until)

    def sleep(self, seconds: float) -> None:
        """A retry's wait (from the core), cut short when the batch stops."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, _POLL_SECONDS))
        raise InterruptedRun()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stop
