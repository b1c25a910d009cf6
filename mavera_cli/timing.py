"""`--timing`: where the time of a run went, measured at the wire, and its one stderr line.

`TimingRecorder` is a `StreamObserver`: live it reads a monotonic clock; `inspect` drives the
same recorder from a trace's recorded times (`clock` returns the time of the line at hand),
so the figures of `--timing` and of `inspect` are computed by one piece of code.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mavera_cli.events import TEXT_DELTA
from mavera_cli.observe import StreamObserver

LONGEST_STALLS = 5  # how many of the longest gaps between events are kept (with where)


@dataclass(frozen=True)
class Stall:
    """A gap between two events: `seconds` long, after the `after_event`-th event (from 1)."""

    after_event: int
    event_type: str
    at: float  # when the gap began (seconds since the first request)
    seconds: float


@dataclass
class TimingFigures:
    """Every figure in seconds since the first request started; None when it never happened."""

    requests: int = 0
    to_headers: float | None = None
    to_first_event: float | None = None
    to_first_delta: float | None = None
    to_last_event: float | None = None
    total: float | None = None
    events: int = 0
    deltas: int = 0
    chars: int = 0
    longest_stalls: list[Stall] = field(default_factory=list)
    # Inter-event gaps (events that one read brought count a gap of 0), when kept.
    zero_gaps: int = 0
    gaps: list[float] = field(default_factory=list)
    # (time, how many events) per read that brought events, when gaps are kept (the chart).
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    @property
    def streaming_seconds(self) -> float | None:
        """From the first text delta to the last event: the span the rates are over."""
        if self.to_first_delta is None or self.to_last_event is None:
            return None
        span = self.to_last_event - self.to_first_delta
        return span if span > 0 else None

    @property
    def deltas_per_s(self) -> float | None:
        span = self.streaming_seconds
        return self.deltas / span if span else None

    @property
    def chars_per_s(self) -> float | None:
        span = self.streaming_seconds
        return self.chars / span if span else None

    @property
    def longest_gap(self) -> Stall | None:
        return self.longest_stalls[0] if self.longest_stalls else None

    def gap_percentiles(self) -> dict[str, float | None]:
        """p50, p90, p99 and max of the inter-event gaps (nearest rank)."""
        values = sorted(self.gaps)
        count = self.zero_gaps + len(values)

        def rank(q: float) -> float | None:
            if not count:
                return None
            position = max(1, math.ceil(q * count)) - 1
            return 0.0 if position < self.zero_gaps else values[position - self.zero_gaps]

        return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": rank(1.0)}


class TimingRecorder(StreamObserver):
    """Times one command's requests: headers, first event, first delta, gaps, total.

    Event figures are those of the last attempt (the one whose events were rendered); times
    count from the first request, so retries' waits are part of them.
    """

    watches_events = True

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, keep_gaps: bool = False
    ) -> None:
        self._clock = clock
        self._keep_gaps = keep_gaps
        self._start: float | None = None
        self.figures = TimingFigures()
        self._read_at = 0.0
        self._start_attempt()

    def _now(self) -> float:
        now = self._clock()
        if self._start is None:
            self._start = now
        return now - self._start

    def _start_attempt(self) -> None:
        figures = self.figures
        self.figures = TimingFigures(requests=figures.requests, total=figures.total)
        self._stalls: list[tuple[float, int, str, float]] = []  # a min-heap of the longest
        self._last_event_at: float | None = None
        self._last_type = ""
        self._read_slow_count = 0
        self._read_slow_deltas = 0
        self._read_last_slow: tuple[int, str] = (0, "")

    def on_request(self, method: str, url: str, body_bytes: int) -> None:
        now = self._now()
        requests = self.figures.requests + 1
        self._start_attempt()
        self.figures.requests = requests
        if requests == 1:
            self._read_at = now

    def on_response(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self.figures.to_headers = self._now()

    def on_read(self, chunk: bytes) -> None:
        self._read_at = self._now()

    def on_event(self, type: str, index: int) -> None:
        self._read_slow_count += 1
        if type == TEXT_DELTA:
            self._read_slow_deltas += 1
        self._read_last_slow = (index, type)

    def on_read_done(self, events_seen: int, text_chars: int) -> None:
        figures = self.figures
        new = events_seen - figures.events
        slow, slow_deltas, last_slow = (
            self._read_slow_count,
            self._read_slow_deltas,
            self._read_last_slow,
        )
        self._read_slow_count = self._read_slow_deltas = 0
        if new <= 0:
            return
        at = self._read_at
        deltas = new - slow + slow_deltas  # the fast path takes text deltas only
        if figures.to_first_event is None:
            figures.to_first_event = at
        if deltas and figures.to_first_delta is None:
            figures.to_first_delta = at
        if self._last_event_at is not None:
            self._gap(at - self._last_event_at, figures.events, self._last_type)
        if self._keep_gaps:
            figures.zero_gaps += new - 1  # events one read brought arrived together
            figures.arrivals.append((at, new))
        figures.events = events_seen
        figures.deltas += deltas
        figures.chars = text_chars
        figures.to_last_event = at
        self._last_event_at = at
        self._last_type = last_slow[1] if last_slow[0] == events_seen else TEXT_DELTA

    def _gap(self, seconds: float, after_event: int, event_type: str) -> None:
        if self._keep_gaps:
            if seconds > 0:
                self.figures.gaps.append(seconds)
            else:
                self.figures.zero_gaps += 1
        entry = (seconds, -after_event, event_type, self._last_event_at or 0.0)
        if len(self._stalls) < LONGEST_STALLS:
            heapq.heappush(self._stalls, entry)
        elif entry > self._stalls[0]:
            heapq.heapreplace(self._stalls, entry)
        self.figures.longest_stalls = [
            Stall(-after, kind, at, seconds)
            for seconds, after, kind, at in sorted(self._stalls, reverse=True)
        ]

    def on_end(self, error: BaseException | None) -> None:
        self.stop()

    def stop(self) -> None:
        """The talking is over (the first call counts: the connection's end, before a fake
        server's shutdown or the final output)."""
        if self.figures.total is None and self._start is not None:
            self.end_at(self._now())

    def end_at(self, total: float) -> None:
        """The run is over at `total` seconds (a cut trace: its last recorded time)."""
        self.figures.total = total


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}/s"


def timing_line(figures: TimingFigures) -> str:
    """The one `--timing` line, like curl's `-w`: what it saw, also of a failed run."""
    parts = [
        f"headers {_seconds(figures.to_headers)}",
        f"first event {_seconds(figures.to_first_event)}",
        f"first delta {_seconds(figures.to_first_delta)}",
        f"total {_seconds(figures.total)}",
        f"{figures.deltas} deltas ({_rate(figures.deltas_per_s)})",
        f"{figures.chars} chars ({_rate(figures.chars_per_s)})",
    ]
    gap = figures.longest_gap
    if gap is not None:
        parts.append(
            f"longest gap {gap.seconds:.3f}s after event {gap.after_event} ({gap.event_type})"
        )
    else:
        parts.append("longest gap -")
    if figures.requests > 1:
        parts.append(f"{figures.requests} requests")
    return "timing: " + ", ".join(parts)
