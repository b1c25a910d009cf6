"""`batch` pacing: one limiter shared by every worker, fed by every response's headers.

It never starts a request the server's window cannot take. Once it knows the window's limit
(`X-RateLimit-Limit`) and length (bounded from above by `X-RateLimit-Reset` and by what
`X-RateLimit-Remaining` counted), it slides the window itself over its own start times, a
small margin later than the server's, so each request starts as soon as the one a window
before it has left the server's window; what the server counts beyond our own starts
(another process on the key) shrinks our share. A Reset in whole seconds (as Mavera sends
it) bounds the length only to within a second, and an exact one only to within the trip of
the request that taught it, so a window is taken to last whole seconds (Mavera's is 60)
until 429s say otherwise.

Each start is taken twice: when its slot is granted (before the server can have counted
it: what bounds the window's length from above) and again once the request has been written
(no sooner than the server counted it, on this machine; what the window slides on). Between
the two a thread may wait its turn for the interpreter for tens of milliseconds, time the
margin would otherwise have to cover on every window.

Reset is a time on the server's clock, set against our starts on ours: a server clock behind
ours makes that bound too short (429s every window), one ahead makes it too long (slower by
as much). The Date header, on the server's clock too, tells one that is ahead by more than
a second or so, and the Reset is read less that. What Remaining counted bounds the length
on our clock alone, more loosely; when 429s go on despite a wider margin, the bound in use
gives way to the other (so a clock behind costs a few 429s).

Before it knows the window (or when others fill it), it counts the starts the last
`X-RateLimit-Remaining` did not see yet, waits for Reset and lets one request through to
learn the window anew (at the very start, a first wave of a few requests learns it). A 429
pauses every worker for its Retry-After and, once for the requests started before it, widens
the margin; a Retry-After longer than mavera waits, or a window reopening more than 5
minutes away, stops the batch instead. `--rpm N` spaces starts 60/N s apart. Every wait ends
early when the batch stops (Ctrl-C, a 401), so no thread outlives the run by more than a
poll.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable

from mavera_cli.errors import InterruptedRun
from mavera_cli.ratelimit import RateLimitHeaders
from mavera_cli.retry import too_long_to_wait

# How often a waiting worker looks at the stop flag (Ctrl-C must not wait a whole pause).
_POLL_SECONDS = 0.1
# The longest single sleep of a waiting worker: it looks again after that (a wait the
# headers put years away must not overflow the platform's timeout).
_LONGEST_SLEEP_SECONDS = 60.0
# A server clock further ahead of ours than this, by its Date, is a Date that does not keep
# time (a fixed one, say).
_MOST_CLOCK_AHEAD = 86_400.0
# Mavera's window lasts a minute. A window that reopens later than this (a daily quota, a
# server clock hours off) stops the batch, saying when, rather than sitting silent for it;
# a re-run with -o goes on from there.
_LONGEST_WINDOW_WAIT_SECONDS = 300.0
# A request reaches the server a little after we have written it, some a little later than
# others (the network's jitter, the server's queue): slide our window a margin later than the
# learned length. The margin is time the window stands idle, so it costs margin/length of the
# rate: 0.03 s costs Mavera's 60 s window 0.05 %, but a 1 s window 3 %. It is a share of the
# window, within bounds; a 429 doubles it. (Measured with 32 workers on 2 busy cores against
# a 1 s window on loopback, stamps taken when the request was written: 5 ms drew no 429 in
# 600-request runs; stamped when the slot was granted, the grant-to-write wait reached 30 ms.)
_MARGIN_SHARE = 0.005
_MIN_MARGIN_SECONDS = 0.005
_MARGIN_SECONDS = 0.03  # the most, before 429s widen it
# A 429 while sliding on our own starts says the margin was too thin for this machine's
# jitter: it doubles, up to this.
_MAX_MARGIN_SECONDS = 0.24
_MOST_WIDENINGS = 6  # enough to reach the most from the least margin
# Requests reach the server up to this much out of the order we started them: learning the
# window's length from a start that may not be the server's oldest only loosens the bound,
# while missing the server's oldest would make it too tight. (Likewise a start this much
# before another has reached the server before it.)
_REORDER_SECONDS = 0.25
# Before the first response tells the window, this many requests may start: a burst of -j
# into a window that may be nearly full would come back 429, while one at a time costs a
# whole answer's wait before the rest start (like TCP's initial window, RFC 6928, a few
# rather than one). Mavera's smallest limit (60 a minute) takes them whole; an unknown window
# that cannot costs at most this many 429s, each retried. (Measured, with -j 32 against
# 100/1 s and 50 ms answers: waves of 4, 8 and 16 gave the same wall, that first window's
# ramp being bound by the CPU; a wave of 32 saved 0.04 s of 5.5 s, but into a window already
# full, a re-run's or another process's, it would come back as 32 429s. A wave pays off in
# small batches: 4 items at -j 4 take one answer's time instead of two.)
_FIRST_WAVE = 4


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
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # retry waits (sleep) wait on this
        self._stop = False
        self._next_start = 0.0  # --rpm: the earliest the next request may start
        self._paused_until = 0.0  # a 429's Retry-After, for everyone
        # The window as the last response told it, less the starts it has not seen: what
        # paces before the window's limit and length are known (or when others fill it).
        self._remaining: int | None = None
        self._reset = 0.0
        self._unseen = 0  # requests started whose response headers have not arrived
        # Until the first response tells the window, at most _FIRST_WAVE requests at once.
        self._learned = False
        # Our own starts, oldest first, as granted: set against Reset and Remaining, they
        # bound the window's length from above (see _learn_from_reset and _learn_from_count).
        # Kept a while past the window, so a late response can still be set against the
        # starts it saw.
        self._starts: list[float] = []
        # The same starts as the window slides on them: each taken again once its request
        # has been written (see written()), oldest first.
        self._slide: list[float] = []
        self._limit: int | None = None
        self._reset_bound: float | None = None  # the least upper bound Reset gave
        self._count_bound: float | None = None  # the least upper bound Remaining gave
        # A bound that drew 429s is not believed again (for Reset: a server clock behind
        # ours; for Remaining: a server that counts late).
        self._believed = {"reset": True, "count": True}
        # Reset bounds the length only from above: to within a second when it comes in whole
        # seconds (as Mavera sends it), to within the trip of the request that taught it
        # when exact (a fresh connection's first request: ~5 ms on loopback, added to every
        # window after). The window is taken to last whole seconds, until 429s say otherwise.
        self._assume_whole = True
        self._widened = 0  # how many times 429s doubled the margin
        # How far the server's clock is ahead of ours (behind, if negative), by its Date
        # headers: at least, and less than. Date comes in whole seconds, so this tells a
        # clock that is ahead by more than a second or so; a Reset is then set against our
        # starts less the least it is ahead (never earlier than it is on our clock).
        self._ahead_at_least = -math.inf
        self._ahead_less_than = math.inf
        # When the last 429 changed how we slide: the 429s of requests started before then
        # are the same mistake, answered already.
        self._corrected_at = 0.0
        # Requests in the server's window that are not ours (another process on the key),
        # as the latest response (by its start) counted them.
        self._foreign = 0
        self._foreign_at = 0.0
        # Each worker's latest start: its response's headers are set against the starts
        # before it (the runner observes a response on the thread that started it).
        self._mine = threading.local()
        self._tickets = 0
        self._queue: list[int] = []  # the tickets of the workers waiting to start, in order
        # Each waiting worker sleeps on a condition of its own (on the same lock), so that
        # one can be woken alone: the first in line, when it may start sooner.
        self._turns: dict[int, threading.Condition] = {}
        self.pauses = 0
        self.gave_up_wait: float | None = None  # a Retry-After too long to wait: it stopped

    def acquire(self) -> None:
        """Wait until a request may start, and count it; raise Stopped if the batch ends."""
        with self._lock:
            # Workers start in the order they asked, each sleeping until its own slot in
            # the window is due: not all of them woken for every slot, to race for it (in a
            # window with room for many, that herd cost a worker about 3 wakings per start).
            ticket = self._tickets
            self._tickets += 1
            self._queue.append(ticket)
            turn = self._turns[ticket] = threading.Condition(self._lock)
            try:
                while True:
                    if self._stop:
                        raise Stopped()
                    now = self._clock()
                    ahead = self._queue.index(ticket)
                    wait = max(
                        self._paused_until - now,
                        self._next_start - now,
                        self._window_wait(now, ahead),
                    )
                    if wait <= 0 and ahead == 0:
                        break
                    if ahead == 0 and wait > _LONGEST_WINDOW_WAIT_SECONDS:
                        # (Not a worker further back: its wait is the line before it.)
                        self._give_up(wait)
                        raise Stopped()
                    # The whole wait: stop() wakes it, and so does an answer that may let
                    # the first in line start sooner, or the worker before it as it starts.
                    # (Due but not first: the one before wakes it; the poll is a safety net.)
                    turn.wait(min(wait, _LONGEST_SLEEP_SECONDS) if wait > 0 else _POLL_SECONDS)
            finally:
                self._queue.remove(ticket)
                del self._turns[ticket]
            self._next_start = max(now, self._next_start) + self._interval
            self._starts.append(now)
            self._slide.append(now)
            self._wake_first()  # the next in line: it goes, or sleeps until its own slot
            self._mine.start = now
            self._mine.stamp = now
            self._mine.slid = self._span() is not None
            self._unseen += 1
            if self._remaining is not None:
                self._remaining -= 1

    def written(self) -> None:
        """This thread's request has been written (its head, at least): the window slides
        on this moment rather than on the grant. Called at most once or twice a request,
        from the thread that started it."""
        with self._lock:
            stamp: float | None = getattr(self._mine, "stamp", None)
            if stamp is None:
                return
            now = self._clock()
            slide = self._slide
            at = bisect_left(slide, stamp)
            if at == len(slide) or slide[at] != stamp or now <= stamp:
                return  # forgotten already (long gone), or a clock that went back
            del slide[at]
            insort(slide, now)
            self._mine.stamp = now

    def _wake_first(self) -> None:
        """Wake the first worker in line (it wakes the next as it starts)."""
        if self._queue:
            self._turns[self._queue[0]].notify()

    def _wake_everyone(self) -> None:
        for turn in self._turns.values():
            turn.notify()
        self._cond.notify_all()

    def _window_wait(self, now: float, ahead: int = 0) -> float:
        if not self._learned and self._unseen >= _FIRST_WAVE:
            return _POLL_SECONDS  # woken by observe()/forget()
        span = self._span()
        if span is not None and self._limit is not None and self._limit > self._foreign:
            # Our own starts, slid over the learned window, say when there is room.
            return self._local_wait(now, span, self._limit - self._foreign, ahead)
        if self._remaining is None or self._remaining > 0:
            return 0.0
        if now < self._reset:
            return self._reset - now
        # The window moved on: let one request through to learn where it stands now.
        self._remaining = 1 if self._unseen == 0 else 0
        return 0.0 if self._remaining else _POLL_SECONDS

    def _bounds(self) -> dict[str, float]:
        """The upper bounds on the window's length that are known and still believed."""
        bounds = {"reset": self._reset_bound, "count": self._count_bound}
        return {k: v for k, v in bounds.items() if v is not None and self._believed[k]}

    def _span(self) -> float | None:
        """How long one of our starts counts in the server's window; None while unknown."""
        bounds = self._bounds()
        if not bounds:
            return None
        length = min(bounds.values())
        if self._assume_whole and length >= 1:
            # The bound exceeds the length by up to a second: a window of whole seconds is
            # the largest whole number in it.
            length = float(int(length))
        margin = min(_MARGIN_SECONDS, max(_MIN_MARGIN_SECONDS, _MARGIN_SHARE * length))
        margin = min(_MAX_MARGIN_SECONDS, margin * 2.0**self._widened)
        return length + margin

    def _local_wait(self, now: float, span: float, allowed: int, ahead: int = 0) -> float:
        """How long until our own starts in the last `span` leave room for one more after
        the `ahead` workers waiting before it."""
        # Forget starts long gone (amortised: not on every call).
        for starts in (self._starts, self._slide):
            if len(starts) > 4 * allowed and starts[len(starts) // 2] <= now - 2 * span:
                del starts[: bisect_right(starts, now - 2 * span)]
        starts = self._slide
        inside = len(starts) - bisect_right(starts, now - span)
        if inside + ahead < allowed:
            return 0.0
        slot = len(starts) - allowed + ahead
        # A slot after starts not made yet: each of those comes a span after the one
        # `allowed` before it, at the earliest.
        later = 0 if slot < len(starts) else (slot - len(starts)) // allowed + 1
        if slot - later * allowed < 0:
            return later * span  # the first of those may start now
        return starts[slot - later * allowed] + (later + 1) * span - now

    def _learn_clock(self, date: float, now: float) -> None:
        """The server wrote Date (its clock, rounded down to the second) after this thread's
        request started, and before we read it now."""
        self._ahead_at_least = max(self._ahead_at_least, date - now)
        start: float | None = getattr(self._mine, "start", None)
        if start is not None:
            self._ahead_less_than = min(self._ahead_less_than, date + 1 - start)

    def _server_offset(self) -> float:
        """What to take off the server's times to have ours: the least its clock is ahead,
        by Date, so a Reset is never read as earlier than it is. Not for a clock behind:
        a Date that is wrong (fixed, or cached) would then put every Reset years away and
        stop the batch; 429s and what Remaining counted correct a clock behind ours. Nor
        for Dates that contradict one another (a fixed one does within a second), or that
        put the server more than a day ahead."""
        if not 0 < self._ahead_at_least <= min(self._ahead_less_than, _MOST_CLOCK_AHEAD):
            return 0.0
        return self._ahead_at_least

    def _learn_from_reset(self, reset: float, now: float) -> None:
        """The window's length, from above: Reset is when the oldest request the server still
        counts leaves it, and that request started no earlier than our oldest start that may
        still be in the window; so Reset minus that start bounds the length, and the least
        bound is kept. (Only while the server's clock is not behind ours.)"""
        oldest = 0
        if self._reset_bound is not None:
            # The server counted this response's request when it reached it, after we
            # started it: nothing started a window (the bound known so far, never the
            # assumed whole seconds) before that can be in its count. (Not a window before
            # now: the response comes a think time after the server counted it.)
            mine: float | None = getattr(self._mine, "start", None)
            seen = now if mine is None else mine
            oldest = bisect_right(self._starts, seen - self._reset_bound - _REORDER_SECONDS)
        if oldest >= len(self._starts):
            return
        bound = reset - self._starts[oldest]
        if bound > 0 and (self._reset_bound is None or bound < self._reset_bound):
            self._reset_bound = bound

    def _learn_from_count(self, limit: int, remaining: int) -> None:
        """The window's length, from above, on our clock alone. Besides this thread's request
        the server counted at most `limit - remaining` (one fewer if, like most, it counts
        this one in Remaining too). Our starts a reorder time before this one had reached
        it, so of those, going back from the latest, the one past that many had left its
        window: this request started less than a window (and a reorder time) after it."""
        start: float | None = getattr(self._mine, "start", None)
        if start is None:
            return
        others = max(0, limit - remaining)
        arrived = bisect_right(self._starts, start - _REORDER_SECONDS)
        gone = arrived - others - 1  # the most recent of our starts the server no longer counts
        if gone < 0:
            return
        bound = start - self._starts[gone] + _REORDER_SECONDS
        if self._count_bound is None or bound < self._count_bound:
            self._count_bound = bound

    def _count_foreign(self, remaining: int) -> None:
        """Set the server's count, when it answered this thread's request, against our own
        starts then: what it counts beyond them is someone else's."""
        start: float | None = getattr(self._mine, "start", None)
        span = self._span()
        if start is None or span is None or self._limit is None or start < self._foreign_at:
            return
        ours = bisect_right(self._starts, start) - bisect_right(self._starts, start - span)
        self._foreign = max(0, self._limit - remaining - ours)
        self._foreign_at = start

    def observe(self, window: RateLimitHeaders) -> None:
        """One response's headers (every response: 2xx, 429 and errors alike)."""
        with self._lock:
            # Waits on our own starts end by the clock: wake the first in line only when this
            # answer may let it start sooner (32 workers woken 100 times a second cost
            # the very threads about to send their requests the time to send them).
            before = (self._learned, self._span(), self._limit, self._foreign)
            self._learned = True
            now = self._clock()
            if window.limit is not None:
                self._limit = window.limit
            if window.date is not None:
                self._learn_clock(window.date, now)
            reset = None if window.reset is None else window.reset - self._server_offset()
            if reset is not None:
                self._learn_from_reset(reset, now)
            self._unseen = max(0, self._unseen - 1)
            if window.remaining is not None:
                if window.retry_after is None and self._limit is not None:
                    self._learn_from_count(self._limit, window.remaining)
                    self._count_foreign(window.remaining)
                # Requests started since are not in the server's count yet.
                estimate = max(0, window.remaining - self._unseen)
                # Headers arrive out of order: a larger count is believed only from a window
                # that moved on (a later reset, or a reset passed), never from a stale answer.
                moved = reset is not None and reset > self._reset
                moved = moved or now >= self._reset
                if self._remaining is None or estimate < self._remaining or moved:
                    self._remaining = estimate
            if reset is not None and reset > self._reset:
                self._reset = reset
            if window.retry_after is not None:
                self._pause(window.retry_after)
            span = self._span()
            if (
                not before[0]
                or before[1] is None
                or before[2] is None
                or span is None
                or self._limit is None
                or span < before[1]
                or self._limit > before[2]
                or self._foreign < before[3]
                or self._limit <= self._foreign  # pacing by Remaining and Reset
            ):
                self._wake_first()

    def forget(self) -> None:
        """A request ended without a response (connection refused, reset): not in flight."""
        with self._lock:
            self._unseen = max(0, self._unseen - 1)
            self._wake_first()

    def _pause(self, seconds: float) -> None:
        """A 429: nobody starts anything for `seconds` (whether or not it is retried); for
        longer than mavera waits out a Retry-After, nothing more (its item says when to come
        back, and a re-run runs the rest)."""
        self.pauses += 1
        if too_long_to_wait(seconds):
            self._give_up(seconds)
            return
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        # The 429's own Retry-After says when to come back: it outranks a Reset that the
        # same answer may put further away.
        if self._remaining == 0:
            self._reset = min(self._reset, self._paused_until)
        start: float | None = getattr(self._mine, "start", None)
        if not getattr(self._mine, "slid", False) or start is None or start <= self._corrected_at:
            return  # not slid on our starts (the window was unknown), or answered already
        self._corrected_at = self._clock()
        bounds = self._bounds()
        if self._widened and len(bounds) == 2:
            # Again, with the wider margin: the bound in use is wrong (Reset's, from a server
            # clock behind ours; Remaining's, from a server that counts late): the other one.
            self._believed[min(bounds, key=bounds.__getitem__)] = False
            return
        if self._widened:
            # The window does not last the whole seconds it was taken for: go by the bound.
            self._assume_whole = False
        # (The first time: most likely our starts reached the server less evenly than the
        # margin allows.)
        self._widened = min(self._widened + 1, _MOST_WIDENINGS)

    def _give_up(self, wait: float) -> None:
        """Start nothing more: the server asks for a longer wait than a batch sits out."""
        if self.gave_up_wait is None:
            self.gave_up_wait = wait
        self._stop = True
        self._wake_everyone()

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
        with self._lock:
            self._stop = True
            self._wake_everyone()

    @property
    def stopped(self) -> bool:
        return self._stop
