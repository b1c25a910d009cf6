"""The retry policy as pure functions, and the event parser's failure surface."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mavera_cli import retry
from mavera_cli.core import Retrier
from mavera_cli.errors import (
    AuthError,
    ConnectionFailedError,
    InvalidOutputError,
    MaxTimeExceededError,
    NotCompletedError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TimedOutError,
    error_for_status,
)
from mavera_cli.events import parse_event
from mavera_cli.sse import SSEEvent


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimitedError("x"), True),
        (ServerError("x"), True),
        (ConnectionFailedError("x"), True),
        (TimedOutError("x"), True),
        (MaxTimeExceededError("x"), False),
        (AuthError("x"), False),
        (RejectedError("x"), False),
        (NotCompletedError("x"), False),
        (InvalidOutputError("x"), False),
    ],
)
def test_what_is_retried(error, expected: bool) -> None:
    assert retry.should_retry(error) is expected


def test_retry_after_forms() -> None:
    assert retry.parse_retry_after({"Retry-After": "30"}) == 30
    assert retry.parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert retry.parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    now = 1_700_000_000.0
    date = formatdate(now + 12, usegmt=True)
    assert retry.parse_retry_after({"Retry-After": date}, now=lambda: now) == pytest.approx(12)
    assert retry.parse_retry_after({"Retry-After": "soon"}) is None
    assert retry.parse_retry_after({"Retry-After": "-3"}) is None
    for endless in ("inf", "1e400", "nan"):  # no wait at all: the usual backoff
        assert retry.parse_retry_after({"Retry-After": endless}) is None
    assert retry.parse_retry_after({"retry-after-ms": "inf", "Retry-After": "2"}) == 2
    assert retry.parse_retry_after({}) is None


def test_backoff_grows_with_jitter_and_honours_retry_after_up_to_a_cap() -> None:
    assert retry.backoff(0, rand=lambda: 0.0) == retry.INITIAL_BACKOFF
    assert retry.backoff(1, rand=lambda: 0.0) == 2 * retry.INITIAL_BACKOFF
    assert retry.backoff(1, rand=lambda: 1.0) == 2 * retry.INITIAL_BACKOFF * (1 - retry.JITTER)
    assert retry.backoff(30, rand=lambda: 0.0) == retry.MAX_BACKOFF
    assert retry.backoff(0, retry_after=7) == 7
    assert retry.backoff(0, retry_after=10_000) == retry.MAX_RETRY_AFTER


def test_retrier_sleeps_through_the_injected_sleeper_and_stops_at_the_budget() -> None:
    slept: list[float] = []
    announced: list[int] = []
    retrier = Retrier(2, lambda err, wait, n: announced.append(n), slept.append)
    error = RateLimitedError("429", retry_after=3)
    assert retrier.wait_before_retry(error)
    assert retrier.wait_before_retry(error)
    assert not retrier.wait_before_retry(error)
    assert slept == [3, 3] and announced == [1, 2]
    assert not Retrier(5, sleep=slept.append).wait_before_retry(AuthError("401"))


def test_status_mapping_quotes_the_server() -> None:
    error = error_for_status(429, b'{"error":{"message":"Too many","code":"rate_limit"}}', 30)
    assert isinstance(error, RateLimitedError) and error.retry_after == 30
    assert "Too many (rate_limit)" in error.message and "Retry-After: 30s" in error.message
    assert isinstance(error_for_status(402, b"", None), RejectedError)
    assert isinstance(error_for_status(503, b"<html><title>Down</title>", 5), ServerError)
    assert "Down" in error_for_status(503, b"<html><title>Down</title>", None).message


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), name=st.text(max_size=10))
def test_event_parser_raises_only_our_own_error(data: bytes, name: str) -> None:
    try:
        event = parse_event(SSEEvent(name or "message", data, None, None))
    except InvalidOutputError:
        return
    assert event is None or isinstance(event.data, dict)


def test_a_long_wait_is_told_with_its_date_and_one_past_any_calendar_without() -> None:
    assert retry.wait_until(90, now=lambda: 0) == "90s (until 00:01:30 UTC)"
    assert retry.wait_until(2 * 86_400, now=lambda: 0) == "172800s (until 1970-01-03 00:00:00 UTC)"
    assert retry.wait_until(1e300, now=lambda: 0) == "1e+300s"
    assert "asks to wait 1e+300s, longer than" in retry.come_back_after(1e300)
