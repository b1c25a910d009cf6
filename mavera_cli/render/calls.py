"""`tools`: one NDJSON line per completed function call, and each call shown live on stderr.

`CallsRenderer` is the product of `mavera tools` without `--exec` (and `replay --as tools`).
`ToolRoundRenderer` wraps the product of a `--exec` round (text or NDJSON events): it keeps the
round's text for the conversation and shows the calls on a terminal while they stream in.
"""

from __future__ import annotations

from typing import Any

import orjson

from mavera_cli.errors import MaveraError
from mavera_cli.events import (
    ARGUMENTS_DELTA,
    TEXT_DELTA,
    FunctionCall,
    ResponseAccumulator,
    ResponseEvent,
)
from mavera_cli.render import OutputSink, Renderer
from mavera_cli.render.ndjson import error_line
from mavera_cli.terminal import Terminal
from mavera_cli.tools import parse_arguments

ITEM_ADDED = "response.output_item.added"
ITEM_DONE = "response.output_item.done"


class CallProgress:
    """On a terminal, each function call's arguments as they stream in: `→ name {"a": …`."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self._open: FunctionCall | None = None  # the call whose stderr line is unfinished

    def started(self, call: FunctionCall) -> None:
        self._switch_to(call)

    def delta(self, call: FunctionCall, text: str) -> None:
        self._switch_to(call)
        self._write(text)

    def done(self, call: FunctionCall) -> None:
        if self._open is None:
            self._switch_to(call)
            self._write(call.arguments_text)
        self.end_line()

    def end_line(self) -> None:
        if self._open is not None:
            self._open = None
            self._write("\n")

    def _switch_to(self, call: FunctionCall) -> None:
        if self._open is call:
            return
        self.end_line()
        self._open = call
        self._write(f"→ {call.name or '?'} ", style="1")

    def _write(self, text: str, style: str = "2") -> None:
        # Arguments arrive in pieces that may split the key: masked as a stream, before the
        # colour codes go between the pieces.
        text = self._terminal.redact_piece(text)
        body = text.removesuffix("\n")
        if self._terminal.color and body:
            text = f"\x1b[{style}m{body}\x1b[0m{text[len(body) :]}"
        if not text:
            return
        try:
            self._terminal.stream.write(text)
            self._terminal.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone: the product on stdout still matters


class _CallWatcher:
    """Folds events into calls of its own, so a call is known complete the moment it is."""

    def __init__(self, terminal: Terminal | None = None) -> None:
        self._calls = ResponseAccumulator()
        self._reported: set[str] = set()  # item ids of calls already complete
        self._progress: CallProgress | None = None
        self._text: list[str] = []  # what the model wrote besides calls
        if terminal is not None:
            self.show_progress_on(terminal)

    def _collect_text(self, event: ResponseEvent) -> bool:
        """Keep a text delta's text; True if the event was one."""
        if event.type != TEXT_DELTA:
            return False
        delta = event.data.get("delta")
        if isinstance(delta, str):
            self._text.append(delta)
        return True

    def show_progress_on(self, terminal: Terminal) -> None:
        """Show calls live on stderr, if it is a terminal a person is watching."""
        self._progress = CallProgress(terminal) if terminal.decorative else None

    def _watch(self, event: ResponseEvent) -> list[FunctionCall]:
        """Fold one event in; the calls it completed, if any."""
        calls = self._calls.calls
        known = len(calls)
        self._calls.add(event)
        kind = event.type
        progress = self._progress
        if kind == ARGUMENTS_DELTA and progress is not None:
            call = self._call_for(event.data)
            delta = event.data.get("delta")
            if call is not None and isinstance(delta, str):
                progress.delta(call, delta)
        elif kind == ITEM_ADDED and progress is not None and len(calls) > known:
            progress.started(list(calls.values())[-1])
        elif kind == ITEM_DONE:
            return self._newly_done()
        return []

    def _newly_done(self) -> list[FunctionCall]:
        done = [
            call
            for call in self._calls.calls.values()
            if call.done and call.item_id not in self._reported
        ]
        for call in done:
            self._reported.add(call.item_id)
            if self._progress is not None:
                self._progress.done(call)
        return done

    def _leftovers(self) -> list[FunctionCall]:
        """Calls whose arguments arrived but whose `output_item.done` never did."""
        left = [call for call in self._calls.calls.values() if call.item_id not in self._reported]
        self._reported.update(call.item_id for call in left)
        return left

    def _call_for(self, data: dict[str, Any]) -> FunctionCall | None:
        calls = self._calls.calls
        item_id = data.get("item_id")
        if isinstance(item_id, str) and item_id in calls:
            return calls[item_id]
        index = data.get("output_index")
        return next((c for c in calls.values() if c.output_index == index), None)

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.end_line()

    def _start_over(self) -> None:
        self._calls = ResponseAccumulator()
        self._reported.clear()


class CallsRenderer(_CallWatcher):
    """One NDJSON line per completed call, then `{"type":"text"}` if the model wrote text.

    Arguments are parsed (orjson) as each call completes; invalid ones raise
    InvalidOutputError (exit 11). A failure ends with the same `mavera.error` line as `--events`.
    """

    def __init__(self, sink: OutputSink, terminal: Terminal | None = None) -> None:
        super().__init__(terminal)
        self._sink = sink
        self._pending: list[bytes] = []
        self._failed = False

    def on_event(self, event: ResponseEvent) -> None:
        if self._collect_text(event):
            return
        for call in self._watch(event):
            self._pending.append(call_line(call))

    def flush(self) -> None:
        if self._pending:
            self._sink.write(b"".join(self._pending))
            self._pending.clear()

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._pending.extend(call_line(call) for call in self._leftovers())
        self._end_progress()
        self._write_text()
        self._sink.end()

    def fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        if self._failed:
            return  # told twice (the core, then the command's boundary): one line is enough
        self._failed = True
        self._end_progress()
        self._write_text()
        self._sink.write(error_line(error))
        self._sink.end()

    def _write_text(self) -> None:
        text = "".join(self._text)
        self._text.clear()
        if text:
            self._pending.append(_line({"type": "text", "text": text}))
        self.flush()


def call_line(call: FunctionCall) -> bytes:
    """The NDJSON line of one completed call, its arguments parsed."""
    return _line(
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": parse_arguments(call),
        }
    )


def _line(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)


class ToolRoundRenderer(_CallWatcher):
    """`--exec` (or `--events`): the product renderer of each round, plus what the loop needs.

    Everything goes to `product` (text like `stream`, or NDJSON events); the round's text is
    kept for the conversation and the calls are shown on a terminal as they stream in.
    """

    def __init__(self, product: Renderer, terminal: Terminal | None = None) -> None:
        super().__init__(terminal)
        self._product = product

    def on_event(self, event: ResponseEvent) -> None:
        if not self._collect_text(event) and self._progress is not None:
            self._watch(event)
        self._product.on_event(event)

    def flush(self) -> None:
        self._product.flush()

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._end_progress()
        self._product.finish(accumulator)
        self._start_over()

    def fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._end_progress()
        self._product.fail(error, accumulator)

    def take_text(self) -> str:
        """The text the model wrote since the last call (this round's, for the conversation)."""
        text = "".join(self._text)
        self._text.clear()
        return text
