"""Fault injection for the fake server: `--fault KIND`, `--fail-first N` and `--pace-ms MS`.

A `FaultPlan` hands each request its fault (or none); `plan_stream` and `plan_body` turn the
normal bytes of an answer into what a failing server would send.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import orjson

from mavera_cli.errors import UsageError
from mavera_cli.mock.answers import user_text
from mavera_cli.mock.responses import DONE_FRAME, Outcome, error_body, sse_frame

RETRY_AFTER_SECONDS = 1


class FaultKind(StrEnum):
    """The fault kinds, spelled as on the command line."""

    RATE_LIMIT = "rate-limit"
    SERVER_ERROR = "server-error"
    DROP_AFTER = "drop-after"
    STALL_AFTER = "stall-after"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    BAD_JSON = "bad-json"


_COUNTED = (FaultKind.DROP_AFTER, FaultKind.STALL_AFTER)
KIND_LIST = ", ".join(k.value + (":N" if k in _COUNTED else "") for k in FaultKind)


@dataclass(frozen=True)
class Fault:
    """One parsed `--fault`; `after` is the N of drop-after:N and stall-after:N."""

    kind: FaultKind
    after: int | None = None

    def __str__(self) -> str:
        return self.kind.value if self.after is None else f"{self.kind.value}:{self.after}"

    @property
    def is_http_error(self) -> bool:
        """Rate limits and server errors are answered before any body is built."""
        return self.kind in (FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR)


# A prompt containing this marker followed by a fault spec gets that fault, whatever --fault says.
FAULT_MARKER = "mock-fault:"


def requested_fault(request: Any) -> Fault | None:
    """The fault a request's own prompt asks for (`… mock-fault:drop-after:2 …`), if any.

    The prompt is a string `input`, or the last user message of an `input` list (a session
    turn, `-c`, chat: earlier turns' markers do not count). Lets one batch against one server
    see every outcome; a malformed spec is ignored.
    """
    if not isinstance(request, dict):
        return None
    text = user_text(request)
    start = text.find(FAULT_MARKER)
    if start == -1:
        return None
    spec = text[start + len(FAULT_MARKER) :].split(maxsplit=1)
    try:
        return parse_fault(spec[0]) if spec else None
    except UsageError:
        return None


def parse_fault(spec: str) -> Fault:
    """`rate-limit`, `drop-after:3`, …; anything else raises UsageError."""
    name, colon, count = spec.strip().partition(":")
    try:
        kind = FaultKind(name.strip().lower())
    except ValueError:
        raise UsageError(f"unknown fault {spec!r}; expected one of: {KIND_LIST}") from None
    if kind not in _COUNTED:
        if colon:
            raise UsageError(f"fault {kind.value!r} takes no count (got {spec!r})")
        return Fault(kind)
    count = count.strip()
    if not (count.isascii() and count.isdigit()):
        raise UsageError(f"fault {kind.value!r} needs an event count, as in {kind.value}:3")
    return Fault(kind, int(count))


class FaultPlan:
    """Decides, per request and thread-safely, whether the fault applies to it."""

    def __init__(
        self, fault: Fault | None, fail_first: int | None = None, pace_ms: int = 0
    ) -> None:
        if fail_first is not None and fail_first < 0:
            raise UsageError(f"--fail-first must be 0 or more (got {fail_first})")
        if pace_ms < 0:
            raise UsageError(f"--pace-ms must be 0 or more (got {pace_ms})")
        self.fault = fault
        self.fail_first = fail_first
        self.pace_seconds = pace_ms / 1000
        self._lock = threading.Lock()
        self._taken = 0

    def take(self) -> Fault | None:
        """The fault for the next request: always, or only for the first `fail_first`."""
        with self._lock:
            self._taken += 1
            number = self._taken
        if self.fault is None or (self.fail_first is not None and number > self.fail_first):
            return None
        return self.fault

    @property
    def taken(self) -> int:
        """How many requests have asked for their fault so far."""
        with self._lock:
            return self._taken


@dataclass(frozen=True)
class HttpError:
    """A whole error response: status, extra headers and a JSON body."""

    status: int
    headers: dict[str, str]
    body: bytes


def http_error(fault: Fault) -> HttpError:
    """The 429 or 500 an HTTP-level fault answers with, in Mavera's error envelope."""
    if fault.kind is FaultKind.RATE_LIMIT:
        message = f"Rate limit exceeded. Please retry after {RETRY_AFTER_SECONDS} seconds."
        body = error_body(message, "rate_limit_error", "rate_limit_exceeded")
        return HttpError(429, {"Retry-After": str(RETRY_AFTER_SECONDS)}, body)
    body = error_body(
        "Internal server error (injected by the mock).", "api_error", "internal_error"
    )
    return HttpError(500, {}, body)


def outcome_for(fault: Fault | None) -> Outcome:
    """How the response itself ends: `failed` and `incomplete` faults change its status."""
    if fault is not None and fault.kind is FaultKind.FAILED:
        return "failed"
    if fault is not None and fault.kind is FaultKind.INCOMPLETE:
        return "incomplete"
    return "completed"


End = Literal["done", "drop", "stall"]


@dataclass(frozen=True)
class Delivery:
    """The bytes to send, one write each, then how to end: finish, close, or fall silent."""

    chunks: list[bytes]
    end: End
    length: int | None = None  # the Content-Length to declare (non-streamed bodies only)


def plan_stream(events: list[dict[str, Any]], fault: Fault | None) -> Delivery:
    """The SSE frames for `events` with the fault applied; `[DONE]` ends a normal stream.

    drop-after:N and stall-after:N send the first N events and never `[DONE]`.
    """
    frames = [sse_frame(event) for event in events]
    if fault is None or fault.kind not in (*_COUNTED, FaultKind.BAD_JSON):
        return Delivery([*frames, DONE_FRAME], "done")
    if fault.kind is FaultKind.BAD_JSON:
        # An extra, cut-off event before the first delta; everything else stays valid.
        index = next((i for i, e in enumerate(events) if str(e["type"]).endswith(".delta")), 2)
        index = min(index, len(events) - 1)
        bad = malformed_frame(str(events[index]["type"]))
        return Delivery([*frames[:index], bad, *frames[index:], DONE_FRAME], "done")
    return Delivery(
        frames[: fault.after], "drop" if fault.kind is FaultKind.DROP_AFTER else "stall"
    )


def malformed_frame(type_: str) -> bytes:
    """A `data:` line cut off in the middle of its JSON, then the blank line."""
    return b'event: %s\ndata: {"type":%s,"delta": \n\n' % (type_.encode(), orjson.dumps(type_))


def plan_body(body: bytes, fault: Fault | None) -> Delivery:
    """A non-streamed JSON body with the fault applied.

    With no events to count, drop-after and stall-after send the headers (declaring the full
    length) and half the body, then close or fall silent; bad-json sends a truncated body.
    """
    if fault is None or fault.kind not in (*_COUNTED, FaultKind.BAD_JSON):
        return Delivery([body], "done", len(body))
    half = body[: len(body) // 2]
    if fault.kind is FaultKind.BAD_JSON:
        return Delivery([half], "done", len(half))
    return Delivery([half], "drop" if fault.kind is FaultKind.DROP_AFTER else "stall", len(body))
