"""`batch` pacing: one limiter shared by every worker, fed by every response's headers.

It never starts a request the server's window cannot take: it counts the starts the last
`X-RateLimit-Remaining` did not see yet, and once they use it up it slides the window itself
over its own start times (the limit from `X-RateLimit-Limit`, the window's length learned
from `X-RateLimit-Reset`), or, before it knows them, waits for Reset and lets one request
through to learn the window anew (the very first request goes alone, for the same reason).
A 429 pauses every worker for its Retry-After. `--rpm N` spaces starts 60/N s apart. Every
wait ends early when the batch stops (Ctrl-C, a 401), so no thread outlives the run by more
than a poll.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from mavera_cli.client import RateLimitHeaders
from mavera_cli.errors import InterruptedRun

# How often a waiting worker looks at the stop flag (Ctrl-C must not wait a whole pause).
_POLL_SECONDS = 0.1
# A request reaches the server a little after we start it, so it also leaves the server's
# window a little later than ours: slide ours this much later.
_MARGIN_SECONDS = 0.03


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
        # Our own starts, to slide the window locally once the server says it is full: the
        # window's length is learned from Reset (see observe), the limit from Limit.
        self._starts: deque[float] = deque()
        self._limit: int | None = None
        self._length: float | None = None
        # Whether our own starts alone filled the window when its count ran out: only then
        # does sliding it over them say when there is room (others may share the key).
        self._full_by_us = False
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
            self._starts.append(now)
            self._unseen += 1
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._note_full(now)

    def _window_wait(self, now: float) -> float:
        if not self._learned and self._unseen > 0:
            return _POLL_SECONDS  # woken by observe()/forget()
        local = self._local_wait(now)
        if local is not None and local > 0:
            return local  # our own starts fill the window: wait for the oldest to leave it
        if self._remaining is None or self._remaining > 0:
            return 0.0
        if local is not None and self._full_by_us:
            # The count ran out on our own starts, and the oldest of them left the window
            # since: there is room (no need to wait for Reset and probe).
            return 0.0
        if now < self._reset:
            return self._reset - now
        # The window moved on: let one request through to learn where it stands now.
        self._remaining = 1 if self._unseen == 0 else 0
        return 0.0 if self._remaining else _POLL_SECONDS

    def _local_wait(self, now: float) -> float | None:
        """How long until our own starts leave room in the window (0: room now); None while
        the window's limit or length is unknown."""
        if self._limit is None or self._length is None:
            return None
        span = self._length + _MARGIN_SECONDS
        starts = self._starts
        while starts and starts[0] <= now - span:
            starts.popleft()
        if len(starts) < self._limit:
            return 0.0
        return starts[len(starts) - self._limit] + span - now

    def _note_full(self, now: float) -> None:
        self._full_by_us = self._local_wait(now) not in (None, 0.0)

    def _learn_length(self, reset: float) -> None:
        """The window's length, from above: Reset is when the oldest request the server still
        counts leaves it, and that request started no earlier than our oldest start still
        held; so Reset minus that start bounds the length, and the least bound is kept."""
        if not self._starts:
            return
        bound = reset - self._starts[0]
        if bound > 0 and (self._length is None or bound < self._length):
            self._length = bound

    def observe(self, window: RateLimitHeaders) -> None:
        """One response's headers (every response: 2xx, 429 and errors alike)."""
        with self._cond:
            self._learned = True
            if window.limit is not None:
                self._limit = window.limit
            if window.reset is not None:
                self._learn_length(window.reset)
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
                    if estimate == 0:
                        self._note_full(self._clock())
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
