"""Retry policy as pure functions: what to retry, and how long to wait before the next try.

The caller sleeps (through an injected function), so the policy is tested without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

from mavera_cli.errors import (
    ConnectionFailedError,
    MaveraError,
    MaxTimeExceededError,
    PartialStreamError,
    RateLimitedError,
    ServerError,
    TimedOutError,
)

INITIAL_BACKOFF = 0.5  # seconds before the first retry, doubled each time
MAX_BACKOFF = 8.0
JITTER = 0.25  # up to a quarter of each wait is taken off at random, to spread clients out
# The longest Retry-After mavera waits out. A server asking for longer is not retried early
# (that is sure to be refused again): the run ends at once, saying when to come back.
MAX_RETRY_AFTER = 60.0

RETRYABLE = (
    RateLimitedError,
    ServerError,
    ConnectionFailedError,
    TimedOutError,
    PartialStreamError,
)


def should_retry(error: MaveraError) -> bool:
    """429, 5xx, connection failures and timeouts are worth another try (before any event)."""
    return isinstance(error, RETRYABLE) and not isinstance(error, MaxTimeExceededError)


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, then `Retry-After` (secs or date).

    A value that is not a finite number of seconds (`inf`, `1e400`) is no wait at all.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
            if 0 <= value < math.inf:
                return value
        except ValueError:
            pass
    header = lowered.get("retry-after")
    if header is None:
        return None
    try:
        value = float(header)
        return value if 0 <= value < math.inf else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    # An HTTP date has whole seconds: so does the wait (rounded up, never early).
    return float(max(0, math.ceil(when.timestamp() - now())))


def too_long_to_wait(retry_after: float) -> bool:
    """Whether the server asks for a longer wait than mavera retries after."""
    return retry_after > MAX_RETRY_AFTER


def come_back_after(retry_after: float, now: Callable[[], float] = time.time) -> str:
    """When to try again, for the message of a run that gave up on a long Retry-After."""
    return (
        f"the server asks to wait {wait_until(retry_after, now)}, longer than mavera waits "
        f"({MAX_RETRY_AFTER:g}s): not retried, try again then"
    )


def wait_until(retry_after: float, now: Callable[[], float] = time.time) -> str:
    """`90s (until 00:01:30 UTC)`: a long wait, and when it ends."""
    seconds = math.ceil(retry_after)
    try:
        # Past a day, the clock time alone would be ambiguous: the date too.
        shown = "%Y-%m-%d %H:%M:%S" if seconds >= 86_400 else "%H:%M:%S"
        return f"{seconds}s (until {time.strftime(shown, time.gmtime(now() + seconds))} UTC)"
    except (OverflowError, OSError, ValueError):  # past any calendar this platform has
        return f"{retry_after:.3g}s"


def backoff(
    retries_taken: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """How long to wait before the next try."""
    if retry_after is not None:
        return min(float(retry_after), MAX_RETRY_AFTER)  # longer ones are not retried at all
    base = min(INITIAL_BACKOFF * 2.0**retries_taken, MAX_BACKOFF)
    return base * (1 - JITTER * rand())
