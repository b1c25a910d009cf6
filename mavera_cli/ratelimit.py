"""What a response says of the key's rate-limit window (protocol.md §4.3), read from its
headers: the numbers `batch` paces by. No httpx here: the limiter imports it without the
HTTP stack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from mavera_cli.retry import parse_retry_after

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class RateLimitHeaders:
    """What one response said of the key's window (protocol.md §4.3); None where not sent.

    `reset` is a Unix time in seconds, as Mavera documents it; a fractional value is kept.
    A server that sends milliseconds, or seconds from now (as the IETF RateLimit-Reset draft
    does), has its value read as such, not as a time centuries away or decades past.
    """

    limit: int | None
    remaining: int | None
    reset: float | None
    retry_after: float | None = None  # a 429's Retry-After
    date: float | None = None  # the response's Date: the server's clock, in whole seconds

    @classmethod
    def from_response(cls, response: httpx.Response) -> RateLimitHeaders:
        """The three headers of a response (each None when not sent, or not a number)."""
        headers = response.headers
        limit, remaining, reset = (_number(headers.get(name)) for name in _RATE_LIMIT_HEADERS)
        return cls(
            None if limit is None else int(limit),
            None if remaining is None else int(remaining),
            None if reset is None else _unix_time(reset),
            parse_retry_after(headers) if response.status_code == 429 else None,
            _http_date(headers.get("date")),
        )


_RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


# Unix times in seconds run from 1e9 (2001) to 1e11 (year 5138): below, seconds from now;
# above, milliseconds.
_UNIX_SECONDS = (1e9, 1e11)


def _unix_time(reset: float) -> float:
    if reset < _UNIX_SECONDS[0]:
        return time.time() + reset
    if reset >= _UNIX_SECONDS[1]:
        return reset / 1000
    return reset


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 and number != float("inf") else None
