"""The batch limiter from memory: what it lets start, given the headers it heard."""

from __future__ import annotations

import threading
import time

import pytest

from mavera_cli.batch.pacing import Limiter, Stopped
from mavera_cli.client import RateLimitHeaders


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


def test_the_first_request_goes_alone_until_the_window_is_known() -> None:
    limiter = Limiter()
    limiter.acquire()
    assert blocks(limiter)


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
