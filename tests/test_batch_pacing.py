"""The batch limiter from memory: what it lets start, given the headers it heard."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from mavera_cli.batch.pacing import Limiter, Stopped
from mavera_cli.mock.ratelimit import SlidingWindow
from mavera_cli.ratelimit import RateLimitHeaders


def blocks(limiter: Limiter, wait: float = 0.3) -> bool:
    """Whether one more acquire() waits longer than `wait` (then the limiter is stopped)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def take() -> None:
        try:
            limiter.acquire()
        except Stopped as exc:
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    finished = done.wait(wait)
    if not finished:
        limiter.stop()
        thread.join(2)
        assert errors, "a stopped limiter ends its waits with Stopped"
    return not finished


def window(remaining: int, reset: float, retry_after: float | None = None) -> RateLimitHeaders:
    return RateLimitHeaders(10, remaining, reset, retry_after)


def test_a_first_wave_of_four_goes_before_the_window_is_known() -> None:
    limiter = Limiter()
    for _ in range(4):
        assert not blocks(limiter, 1.0)
    assert blocks(limiter)  # the fifth waits for an answer to tell the window
    limiter = Limiter()
    for _ in range(4):
        limiter.acquire()
    limiter.observe(window(6, time.time() + 60))
    assert not blocks(limiter)


def test_an_exact_reset_is_taken_for_a_window_of_whole_seconds() -> None:
    """An exact Reset bounds the length only to within the first request's trip (here 8 ms):
    the window is taken to last 1 s, not 1.008 s, before every start a window later."""

    def one_start_then(now: float) -> Limiter:
        clock = Clock(1000.0)
        limiter = Limiter(clock=clock)
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, 0, 1001.008))  # 1 per second; it arrived at 1000.008
        clock.now = now
        return limiter

    assert blocks(one_start_then(1001.003))  # within the margin (5 ms, for a 1 s window)
    assert not blocks(one_start_then(1001.009))  # 1 s and the margin (1.008 s would block)


def test_a_stale_header_arriving_late_does_not_give_back_a_used_slot() -> None:
    now = time.time()
    limiter = Limiter()
    limiter.acquire()
    limiter.observe(window(9, now + 60))
    for _ in range(9):
        limiter.acquire()
    # The server counted them in order; their answers arrive out of order.
    limiter.observe(window(8, now + 60))
    limiter.observe(window(6, now + 60))
    limiter.observe(window(7, now + 60))  # older than the 6: believing it would allow a 429
    assert blocks(limiter)


def test_a_window_that_moved_on_is_believed() -> None:
    now = time.time()
    limiter = Limiter()
    limiter.acquire()
    limiter.observe(window(0, now + 0.2))
    assert blocks(limiter, 0.05)
    limiter = Limiter()
    limiter.acquire()
    limiter.observe(window(0, now + 0.2))
    started = time.monotonic()
    limiter.acquire()  # the probe after the reset
    assert time.monotonic() - started >= 0.1


def test_a_final_429_pauses_for_its_retry_after_not_the_whole_window() -> None:
    limiter = Limiter()
    limiter.acquire()
    limiter.observe(window(0, time.time() + 60, retry_after=0.3))
    started = time.monotonic()
    limiter.acquire()
    assert 0.25 <= time.monotonic() - started < 5
    assert limiter.pauses == 1


def test_rpm_spaces_starts_evenly() -> None:
    limiter = Limiter(rpm=600)  # one every 0.1 s
    limiter.acquire()
    limiter.observe(RateLimitHeaders(None, None, None))  # a server that sends no headers
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire()
    assert 0.25 <= time.monotonic() - started < 2


def test_a_retry_wait_ends_when_the_batch_stops() -> None:
    from mavera_cli.errors import InterruptedRun

    limiter = Limiter()
    threading.Timer(0.1, limiter.stop).start()
    started = time.monotonic()
    with pytest.raises(InterruptedRun):
        limiter.sleep(30)
    assert time.monotonic() - started < 2


class Clock:
    """A clock the test moves by hand (waits still time out in real time)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_answers_out_of_order_do_not_close_a_window_our_own_starts_leave_room_in() -> None:
    clock = Clock(1000.0)
    limiter = Limiter(clock=clock)
    limiter.acquire()
    limiter.observe(window(9, 1001.0))  # 10 per second, exactly
    clock.now = 1000.1
    for _ in range(5):
        limiter.acquire()
    # The last one's answer comes first: the server counted all six, 4 left. The four still
    # in flight are already in that count, so taking them off again would say 0.
    limiter.observe(window(4, 1001.0))
    clock.now = 1000.2
    assert not blocks(limiter)  # 7 of 10
    for _ in range(3):
        limiter.acquire()
    assert blocks(limiter)  # 10 of 10 until the first leaves, at 1001 and a margin


def test_whole_second_resets_are_taken_for_a_window_of_whole_seconds() -> None:
    def two_starts_then(now: float) -> Limiter:
        clock = Clock(1000.2)
        limiter = Limiter(clock=clock)
        limiter.acquire()
        # 2 per second; the first leaves at 1001.2, which Mavera rounds up to 1002.
        limiter.observe(RateLimitHeaders(2, 1, 1002.0))
        limiter.acquire()
        clock.now = now
        return limiter

    assert blocks(two_starts_then(1001.15))  # never before the first leaves a 1 s window
    # Before: the window was taken to last 1.8 s (the bound 1002 gives), so nothing until
    # 1002, where a 1 s window has had room since 1001.2.
    assert not blocks(two_starts_then(1001.3))


def test_a_429_while_sliding_on_our_starts_widens_the_margin() -> None:
    def refused_then(now: float) -> Limiter:
        clock = Clock(1000.0)
        limiter = Limiter(clock=clock)
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, 0, 1001.0))  # 1 per second, exactly
        clock.now = 1001.06
        limiter.acquire()
        # It reached the server before the first left it (threads ran late): 429.
        limiter.observe(RateLimitHeaders(1, 0, 1001.0, retry_after=0.01))
        clock.now = now
        return limiter

    # Before: slid the same 1.005 s after it (to 1002.065); now twice the margin (1002.07).
    assert blocks(refused_then(1002.067))
    assert not blocks(refused_then(1002.072))


def test_requests_of_others_on_the_key_shrink_our_share_of_the_window() -> None:
    clock = Clock(1000.0)
    limiter = Limiter(clock=clock)
    limiter.acquire()
    limiter.observe(window(5, 1001.0))  # the server counts 5: ours and 4 of someone else's
    for _ in range(5):
        limiter.acquire()
    assert blocks(limiter)  # 6 of ours and their 4 fill it


def test_429s_despite_a_wider_margin_give_up_the_whole_seconds() -> None:
    """A server that sends no Remaining: Reset's bound is all there is."""

    def refused_twice_then(now: float) -> Limiter:
        clock = Clock(1000.2)
        limiter = Limiter(clock=clock)
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, None, 1002.0))  # taken for 1 s, bounded by 1.8 s
        clock.now = 1001.3
        limiter.acquire()  # the window lasts longer than 1 s after all (say 1.5 s)
        limiter.observe(RateLimitHeaders(1, None, 1002.0, retry_after=0.01))
        clock.now = 1002.4
        limiter.acquire()  # 1 s and a margin of 0.06 s after it
        limiter.observe(RateLimitHeaders(1, None, 1004.0))
        clock.now = 1003.5
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, None, 1004.0, retry_after=0.01))
        clock.now = now
        return limiter

    # Before: still 1 s (and a margin of 0.12 s) after the last start, 1004.62; now the
    # bound Reset gave, 1.8 s and the margin.
    assert blocks(refused_twice_then(1004.7))
    assert not blocks(refused_twice_then(1005.45))


def test_the_429s_of_one_early_wave_widen_the_margin_once() -> None:
    def refused_together_then(now: float) -> Limiter:
        clock = Clock(1000.0)
        limiter = Limiter(clock=clock)
        for remaining in (2, 1, 0):
            limiter.acquire()
            limiter.observe(RateLimitHeaders(3, remaining, 1001.0))  # 3 per second, exactly
        clock.now = 1001.04
        for _ in range(3):
            limiter.acquire()
        for _ in range(3):  # all three came back 429: one mistake, not three
            limiter.observe(RateLimitHeaders(3, 0, 1001.05, retry_after=0.01))
        clock.now = now
        return limiter

    # Before: a margin doubled three times (0.04 s), nothing until 1002.08; now once (0.01 s).
    assert blocks(refused_together_then(1002.045))
    assert not blocks(refused_together_then(1002.06))


def test_a_server_clock_behind_ours_gives_way_to_what_its_counts_say() -> None:
    """Reset is on the server's clock: 0.4 s behind ours, a 1 s window looks 0.6 s long.
    Once 429s say so, the length comes from Remaining, which needs no clock."""

    def skewed_then(now: float) -> Limiter:
        clock = Clock(1000.0)
        limiter = Limiter(clock=clock)
        server = SlidingWindow(2, 1.0, lambda: clock.now - 0.4, fractional_reset=True)

        def start(at: float) -> bool:
            clock.now = at
            limiter.acquire()
            state = server.take()
            retry_after = None if state.admitted else 0.01
            limiter.observe(RateLimitHeaders(2, state.remaining, state.reset, retry_after))
            return state.admitted

        assert start(1000.0) and start(1000.0)
        assert not start(1000.65)  # slid 0.6 s and a margin after them: refused
        assert start(1001.7) and start(1001.7)
        assert not start(1002.4)  # the same 0.6 s, the wider margin: refused again
        clock.now = now
        return limiter

    # Now a window of 1 s and the margin after the first two of the last three starts.
    assert blocks(skewed_then(1002.705))
    assert not blocks(skewed_then(1002.72))


class CountingClock:
    """The real time, counting how often the limiter looks at it (each worker woken looks)."""

    def __init__(self) -> None:
        self.looks = 0

    def __call__(self) -> float:
        self.looks += 1
        return time.time()


def line_up(
    limiter: Limiter, count: int, spacing: float
) -> tuple[list[threading.Thread], list[int]]:
    """`count` workers asking to start, in this order; the list they append to as they do."""
    started: list[int] = []
    workers = [
        threading.Thread(target=lambda n=n: (limiter.acquire(), started.append(n)), daemon=True)
        for n in range(count)
    ]
    for worker in workers:
        worker.start()
        time.sleep(spacing)
    return workers, started


def test_workers_in_line_sleep_until_their_own_slot() -> None:
    """Five workers wait on a full window of 1 per 0.2 s: each is woken for its own slot,
    not all of them for every slot (a herd that delays the one about to send)."""
    clock = CountingClock()
    limiter = Limiter(clock=clock)
    limiter.acquire()
    limiter.observe(RateLimitHeaders(1, 0, time.time() + 0.2))
    clock.looks = 0
    workers, started = line_up(limiter, 5, 0.01)
    for worker in workers:
        worker.join(5)
    assert started == [0, 1, 2, 3, 4]
    # Each worker looks when it asks and when its slot is due (a few more for the clock's
    # grain, or a turn taken a moment early); a herd looks 5 + 4 + 3 + 2 + 1 more times.
    assert clock.looks <= 16, clock.looks


def test_a_window_with_room_for_the_whole_line_wakes_each_worker_about_once() -> None:
    """20 workers wait for the first answer to tell the window, which has room for all of
    them: each start woke every worker still in line (about 100 looks at the clock here),
    and those woken before their turn slept 5 ms and looked again."""
    clock = CountingClock()
    limiter = Limiter(clock=clock)
    for _ in range(4):  # the first wave
        limiter.acquire()
    workers, started = line_up(limiter, 20, 0.005)
    time.sleep(0.1)
    clock.looks = 0
    limiter.observe(RateLimitHeaders(100, 96, time.time() + 1))
    for worker in workers:
        worker.join(5)
    assert started == list(range(20))
    assert clock.looks <= 3 * 20, clock.looks


def test_a_long_line_for_a_short_window_is_no_reason_to_stop() -> None:
    """1 request a minute, 8 workers: the last in line waits 8 minutes for its turn, which is
    not a window reopening hours away (that stops the batch: tests/test_batch.py)."""
    clock = Clock(1000.0)
    limiter = Limiter(clock=clock)
    limiter.acquire()
    limiter.observe(RateLimitHeaders(1, 0, 1060.0))

    def wait_in_line() -> None:
        with contextlib.suppress(Stopped):  # the end of the test
            limiter.acquire()

    workers = [threading.Thread(target=wait_in_line, daemon=True) for _ in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(0.3)
    assert not limiter.stopped and limiter.gave_up_wait is None
    limiter.stop()
    for worker in workers:
        worker.join(2)


def granted_then_written(written: float, reset: float, now: float) -> Limiter:
    """One start granted at 1000.0 and written at `written`, in a window of 1 per second
    whose Reset the answer gave; the clock then at `now`."""
    clock = Clock(1000.0)
    limiter = Limiter(clock=clock)
    limiter.acquire()
    clock.now = written
    limiter.written()
    limiter.observe(RateLimitHeaders(1, 0, reset))
    clock.now = now
    return limiter


def test_the_window_slides_on_when_a_request_was_written() -> None:
    """A worker granted its slot at 1000.0 wrote its request only at 1000.02 (it waited for
    the interpreter): the next may start a window after that, not after the grant."""
    assert blocks(granted_then_written(1000.02, 1001.02, 1001.015))  # 1.005 s after the grant
    assert not blocks(granted_then_written(1000.02, 1001.02, 1001.03))  # and after the write


def test_the_window_length_is_learned_from_the_grant_not_the_write() -> None:
    """Reset bounds the window's length from above only against a time before the server
    counted the request: the grant. Against the write (0.3 s later; it arrived at 1000.008)
    the 1 s window would look 0.7 s long, and the next start would come 0.3 s too soon."""
    assert blocks(granted_then_written(1000.3, 1001.008, 1001.2))
    assert not blocks(granted_then_written(1000.3, 1001.008, 1001.31))


def test_the_margin_is_a_share_of_the_window_within_bounds() -> None:
    """5 ms after a 1 s window (3 % of it would be 0.03 s), 0.03 s after Mavera's 60 s."""

    def one_start_then(seconds: float, now: float) -> Limiter:
        clock = Clock(1000.0)
        limiter = Limiter(clock=clock)
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, 0, 1000.0 + seconds))
        clock.now = now
        return limiter

    assert blocks(one_start_then(1, 1001.004))
    assert not blocks(one_start_then(1, 1001.006))
    assert blocks(one_start_then(60, 1060.025))
    assert not blocks(one_start_then(60, 1060.035))


def test_endless_429s_widen_the_margin_only_so_far() -> None:
    clock = Clock(1000.0)
    limiter = Limiter(clock=clock)
    limiter.acquire()
    limiter.observe(RateLimitHeaders(1, 0, 1001.0))

    def start_refused() -> None:  # on one thread: the 429 is set against this start
        limiter.acquire()
        limiter.observe(RateLimitHeaders(1, 0, clock.now + 1, retry_after=0.001))

    for n in range(2000):  # each one slid on our starts, each after the last correction
        clock.now = 1002.0 + 2 * n
        worker = threading.Thread(target=start_refused, daemon=True)
        worker.start()
        worker.join(2)
        assert not worker.is_alive()
    assert limiter.pauses == 2000
    clock.now += 1.0 + 0.25  # the window, and the widest margin
    assert not blocks(limiter)
