"""`mavera inspect`: what a trace or a raw capture holds, and how the stream ended.

The bytes go through the decoder, event parser and accumulator the live commands use, folded
exactly as `replay` folds them (the same long closing events cut short; up to the terminal
event, `[DONE]` or the first malformed event), so the exit code reported (and exited with) is
the one `replay` gives. The rest of the report looks at every event in the file, also after
the end. One difference, as with `stream --usage`: a terminal event is read whole, for its
usage, so a malformed one longer than 64 KiB fails here where `replay` may only read its head.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from orjson import JSONDecodeError, loads

from mavera_cli.capture import (
    REPLAY_CHUNK,
    CheckedTrace,
    SSEFieldWatch,
    open_input,
    recorded_outcome,
)
from mavera_cli.errors import ExitCode, InvalidOutputError, MaveraError, UsageError
from mavera_cli.events import DONE_MARKER, TERMINAL_EVENTS, ResponseAccumulator, parse_event
from mavera_cli.render.text import TextRenderer
from mavera_cli.sse import SSEDecoder
from mavera_cli.timing import TimingFigures, TimingRecorder

# The Responses API's event types (protocol.md §5.3); anything else is reported as unknown.
KNOWN_EVENT_TYPES = frozenset(
    {
        "error",
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.failed",
        "response.incomplete",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_text.annotation.added",
        "response.output_text_annotation.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.reasoning.delta",
        "response.reasoning.done",
        "response.reasoning_summary.delta",
        "response.reasoning_summary.done",
    }
)
# Tool progress events come in families (`response.web_search_call.searching`, …).
KNOWN_EVENT_FAMILIES = (
    "response.web_search_call.",
    "response.file_search_call.",
    "response.code_interpreter_call.",
    "response.code_interpreter_call_code.",
    "response.image_generation_call.",
    "response.mcp_call.",
    "response.mcp_call_arguments.",
    "response.mcp_list_tools.",
    "response.custom_tool_call_input.",
    "response.audio.",
    "response.computer_call.",
)
# `replay` (as `stream`) lets the decoder cut these events short when a line of theirs is long,
# and never parses what was cut; inspect cuts the same ones, so that it folds exactly the events
# replay folds. Terminal events are read whole for their usage, as `stream --usage` reads them.
REPLAY_TRUNCATED = TextRenderer.truncatable_events - TERMINAL_EVENTS
# The sequence number of an event cut short, from the head that was kept.
_SEQUENCE_NUMBER = re.compile(rb'"sequence_number"\s*:\s*(\d+)')
_CLIP = 80
_LISTED_LINES = 5  # line numbers a note names


def is_known_type(kind: str) -> bool:
    return kind in KNOWN_EVENT_TYPES or kind.startswith(KNOWN_EVENT_FAMILIES)


@dataclass
class SequenceCheck:
    """`sequence_number`s as they came: gaps, repeats and numbers that went backwards."""

    present: int = 0
    first: int | None = None
    last: int | None = None
    gaps: list[dict[str, int]] = field(default_factory=list)
    repeats: list[dict[str, int]] = field(default_factory=list)
    out_of_order: list[dict[str, int]] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set)
    _highest: int | None = None

    def add(self, number: int, position: int) -> None:
        self.present += 1
        if self.first is None:
            self.first = number
        self.last = number
        highest = self._highest
        if number in self._seen:
            self.repeats.append({"event": position, "number": number})
        elif highest is not None and number < highest:
            self.out_of_order.append({"event": position, "number": number, "after": highest})
        elif highest is not None and number > highest + 1:
            self.gaps.append({"event": position, "after": highest, "next": number})
        self._seen.add(number)
        if highest is None or number > highest:
            self._highest = number

    def as_json(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "first": self.first,
            "last": self.last,
            "gaps": self.gaps,
            "repeats": self.repeats,
            "out_of_order": self.out_of_order,
        }


@dataclass
class InspectReport:
    """Everything `inspect` says about one file; `as_json` has the contract's keys."""

    path: str
    source: str  # "trace" or "capture"
    outcome_error: MaveraError | None = None
    terminal_event: str | None = None
    bytes: int = 0
    done_marker: bool = False
    events: int = 0
    events_after_end: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    sequence: SequenceCheck = field(default_factory=SequenceCheck)
    unknown_types: Counter[str] = field(default_factory=Counter)
    malformed_lines: list[dict[str, Any]] = field(default_factory=list)
    name_mismatches: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    attempts: int = 1
    recorded_end: dict[str, Any] | None = None
    cut: bool = False
    notes: list[str] = field(default_factory=list)
    timing: TimingFigures | None = None

    @property
    def exit_code(self) -> int:
        error = self.outcome_error
        return int(ExitCode.ok) if error is None else int(error.exit_code)

    def as_json(self) -> dict[str, Any]:
        error = self.outcome_error
        report: dict[str, Any] = {
            "file": self.path,
            "source": self.source,
            "outcome": {
                "terminal_event": self.terminal_event,
                "exit_code": self.exit_code,
                "error": None if error is None else error.kind,
                "message": None if error is None else error.message,
            },
            "bytes": self.bytes,
            "done_marker": self.done_marker,
            "events": self.events,
            "events_after_end": self.events_after_end,
            "events_by_type": dict(self.events_by_type),
            "sequence": self.sequence.as_json(),
            "unknown_types": dict(self.unknown_types),
            "malformed_lines": self.malformed_lines,
            "name_mismatches": self.name_mismatches,
            "usage": self.usage,
            "cut": self.cut,
            "notes": self.notes,
        }
        if self.source == "trace":
            report["attempts"] = self.attempts
            end = self.recorded_end
            report["recorded"] = (
                None
                if end is None
                else {"exit_code": end.get("exit_code"), "error": end.get("error")}
            )
            report["timing"] = timing_json(self.timing) if self.timing is not None else None
        return report


def timing_json(figures: TimingFigures) -> dict[str, Any]:
    """The `timing` object of `inspect --json`."""
    return {
        "to_headers": _round(figures.to_headers),
        "to_first_event": _round(figures.to_first_event),
        "to_first_delta": _round(figures.to_first_delta),
        "total": _round(figures.total),
        "deltas": figures.deltas,
        "chars": figures.chars,
        "deltas_per_s": _round(figures.deltas_per_s),
        "chars_per_s": _round(figures.chars_per_s),
        "gaps": {name: _round(value) for name, value in figures.gap_percentiles().items()},
        "longest_stalls": [
            {
                "after_event": stall.after_event,
                "event_type": stall.event_type,
                "at": _round(stall.at),
                "seconds": _round(stall.seconds),
            }
            for stall in figures.longest_stalls
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class _TraceClock:
    """The time of the trace line at hand, as a clock for `TimingRecorder`."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def inspect_file(path: str) -> InspectReport:
    """Read `path` (`-`: stdin), a trace or a raw capture, and report on it."""
    with open_input(path) as (stream, checked):
        if checked is not None:
            return _inspect_trace(checked, path)
        return _inspect_capture(stream, path)


def _inspect_capture(stream: BinaryIO, path: str) -> InspectReport:
    report = InspectReport(path, "capture")
    chunks = iter(lambda: stream.read1(REPLAY_CHUNK), b"")  # type: ignore[attr-defined]
    looked = _Analysis(report)
    watch = SSEFieldWatch()
    for chunk in chunks:
        watch.feed(chunk)
        looked.feed(chunk)
    looked.finish()
    if not report.events and not report.done_marker and not watch.seen:
        raise UsageError(f"{path} holds no SSE event and no trace line")
    return report


def _inspect_trace(checked: CheckedTrace, path: str) -> InspectReport:
    report = InspectReport(path, "trace")
    trace = checked.trace
    attempt = trace.last_attempt
    assert attempt is not None  # read_checked_trace refuses a trace without a request
    report.attempts = len(trace.attempts)
    report.recorded_end = trace.end
    clock = _TraceClock()
    timing = TimingRecorder(clock, keep_gaps=True)
    for each in trace.attempts:
        clock.t = each.start
        timing.on_request(str(each.request.get("method")), "", 0)
        if each.response is not None and each is attempt:
            clock.t = each.response.get("t", clock.t)  # checked: seconds, in order
            timing.on_response(each.response["status"], ())
    # No event stream (no answer, an HTTP error, `ask`'s JSON): judged as the live command did.
    outcome = recorded_outcome(trace)
    if outcome is None:
        looked = _Analysis(report, timing, clock)
        for t, data in attempt.reads:
            clock.t = t
            looked.feed(data)
        looked.finish()
    else:
        report.bytes = sum(len(data) for _, data in attempt.reads)
        report.outcome_error = outcome.error
        usage = (outcome.response or {}).get("usage")
        if isinstance(usage, dict):
            report.usage = {"credits_used": None, **usage}
    timing.end_at(checked.last_t)
    report.timing = timing.figures
    if attempt.response is not None and attempt.response.get("status") != 200:
        report.notes.append(f"the last attempt was answered with HTTP {attempt.response['status']}")
    elif attempt.response is None and not attempt.reads:
        report.notes.append("the last attempt got no answer")
    if checked.went_back:
        lines = ", ".join(map(str, checked.went_back[:_LISTED_LINES]))
        report.notes.append(
            f"times go back on line {lines}: counted as the time before them, no wait"
        )
    if trace.end is None:
        report.cut = True
        torn = " (its last line was torn mid-way)" if trace.torn_line else ""
        report.notes.append(
            f"the trace was cut short{torn}: it has no mavera.end line; this is what it holds"
        )
    if report.attempts > 1:
        report.notes.append(
            f"{report.attempts} requests (retries or tool rounds): the last one is reported"
        )
    if outcome is not None and outcome.response is not None:
        report.notes.append("the body is JSON, not an event stream (a trace of `ask`)")
    return report


class _Analysis:
    """Decodes one attempt's bytes; folds events as `replay` would, and looks at all of them."""

    def __init__(
        self,
        report: InspectReport,
        timing: TimingRecorder | None = None,
        clock: _TraceClock | None = None,
    ) -> None:
        self.report = report
        self.decoder = SSEDecoder(truncate=REPLAY_TRUNCATED)
        self.accumulator = ResponseAccumulator()
        self.stopped = False  # replay stops here: the terminal event, [DONE], a malformed event
        self.timing = timing

    def feed(self, chunk: bytes) -> None:
        self.report.bytes += len(chunk)
        # A live run reads no further than the read that ended the stream: nor does the clock.
        timing = self.timing if not self.stopped else None
        if timing is not None:
            timing.on_read(chunk)
        self._events(self.decoder.feed(chunk))
        if timing is not None:
            timing.on_read_done(self.accumulator.events_seen, self.accumulator.text_chars)

    def _events(self, events: Iterable[Any]) -> None:
        report = self.report
        accumulator = self.accumulator
        by_type = report.events_by_type
        timing = self.timing
        sequence = report.sequence
        for sse in events:
            raw = sse.data
            try:
                data = loads(raw) if not sse.truncated else None
            except JSONDecodeError:
                data = None
                if raw.strip() == DONE_MARKER:
                    report.done_marker = True
                    if not self.stopped:
                        accumulator.done_marker = True
                        self._stop()
                    continue
            report.events += 1
            position = report.events
            try:
                event = parse_event(sse, data)
            except InvalidOutputError as error:
                report.malformed_lines.append({"event": position, "data": _clip(raw)})
                if not self.stopped:
                    report.outcome_error = error
                    self._stop()
                continue
            if event is None:  # `[DONE]` spelled with spaces around it
                report.events -= 1
                report.done_marker = True
                if not self.stopped:
                    accumulator.done_marker = True
                    self._stop()
                continue
            kind = event.type
            by_type[kind] += 1
            if not self.stopped:
                accumulator.add(event)
                if timing is not None:
                    timing.on_event(kind, accumulator.events_seen)
                if accumulator.terminal is not None:
                    self._stop()
            else:
                report.events_after_end += 1
            fields = event.data
            number = fields.get("sequence_number")
            if sse.truncated and (match := _SEQUENCE_NUMBER.search(raw)) is not None:
                number = int(match.group(1))
            if number.__class__ is int:
                sequence.add(number, position)
            name = sse.event
            if name != "message" and name != kind and isinstance(fields.get("type"), str):
                report.name_mismatches.append({"event": position, "event_name": name, "type": kind})
            if not is_known_type(kind):
                report.unknown_types[kind] += 1

    def _stop(self) -> None:
        self.stopped = True

    def finish(self) -> None:
        report = self.report
        if self.decoder.pending:
            report.notes.append("the bytes end inside an event (dropped, as the live commands do)")
        self.decoder.flush()
        accumulator = self.accumulator
        if accumulator.terminal is not None:
            report.terminal_event = accumulator.terminal.type
        elif accumulator.error_event is not None:
            report.terminal_event = accumulator.error_event.type
        if report.outcome_error is None:
            report.outcome_error = accumulator.outcome_error()
        usage = accumulator.response.get("usage")
        if isinstance(usage, dict):
            report.usage = {"credits_used": None, **usage} if "credits_used" not in usage else usage


def _clip(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= _CLIP else text[:_CLIP] + "…"
