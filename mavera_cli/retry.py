"""Retry policy as pure functions: what to retry, and how long to wait before the next try.

The caller sleeps (through an injected function), so the policy is tested without waiting.
"""

from __future__ import annotations

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
MAX_RETRY_AFTER = 60.0  # a server asking for longer than this gets capped, not obeyed blindly

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
    """Seconds the server asks us to wait: `retry-after-ms`, then `Retry-After` (secs or date)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
            if value >= 0:
                return value
        except ValueError:
            pass
    header = lowered.get("retry-after")
    if header is None:
        return None
    try:
        value = float(header)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())


def backoff(
    retries_taken: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """How long to wait before the next try."""
    if retry_after is not None:
        return min(float(retry_after), MAX_RETRY_AFTER)
    base = min(INITIAL_BACKOFF * 2.0**retries_taken, MAX_BACKOFF)
    return base * (1 - JITTER * rand())
