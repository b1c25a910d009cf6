"""`tools`: one NDJSON line per completed function call, and each call shown live on stderr.

`CallsRenderer` is the product of `mavera tools` without `--exec` (and `replay --as tools`).
`ToolRoundRenderer` wraps the product of a `--exec` round (text or NDJSON events): it keeps the
round's text for the conversation and shows the calls on a terminal while they stream in.
"""

from __future__ import annotations

from typing import Any

from mavera_cli.errors import MaveraError
from mavera_cli.events import (
    ARGUMENTS_DELTA,
    FunctionCall,
    ResponseAccumulator,
    ResponseEvent,
)
from mavera_cli.jsonout import json_line, terminal_json
from mavera_cli.printable import ScreenText, screen_safe, terminal_safe
from mavera_cli.render import OutputSink, Renderer
from mavera_cli.render.ndjson import error_line
from mavera_cli.terminal import Terminal

ITEM_ADDED = "response.output_item.added"
ITEM_DONE = "response.output_item.done"


class CallProgress:
    """On a terminal, each function call's arguments as they stream in: `→ name {"a": …`."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self._open: FunctionCall | None = None  # the call whose stderr line is unfinished
        # Per call: its deltas may cut an escape sequence in two (parallel calls interleave).
        self._screens: dict[int, ScreenText] = {}

    def started(self, call: FunctionCall) -> None:
        self._switch_to(call)

    def delta(self, call: FunctionCall, text: str) -> None:
        self._switch_to(call)
        self._write(self._screens.setdefault(id(call), ScreenText()).feed(text))

    def done(self, call: FunctionCall) -> None:
        if self._open is None:
            self._switch_to(call)
            self._write(screen_safe(call.arguments_text))
        self._screens.pop(id(call), None)
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
        self._write(f"→ {terminal_safe(call.name) or '?'} ", style="1")

    def _write(self, text: str, style: str = "2") -> None:
        # `text` is terminal-safe already: an escape sequence removed first cannot hide the
        # key from the mask. Arguments arrive in pieces that may split the key: masked as a
        # stream, before the colour codes go between the pieces.
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


class _CallWatcher(Renderer):
    """Watches the stream's accumulator for calls, so a call is known complete the moment it is.

    The core folds each event into the accumulator before the renderer sees it: the calls are
    read from there, never folded a second time.
    """

    needs_text = True  # the model's text besides calls is read from the accumulator

    def __init__(self, terminal: Terminal | None = None) -> None:
        self._accumulator: ResponseAccumulator | None = None
        self._reported: set[FunctionCall] = set()  # calls already complete
        self._progress: CallProgress | None = None
        if terminal is not None:
            self.show_progress_on(terminal)

    def show_progress_on(self, terminal: Terminal) -> None:
        """Show calls live on stderr, if it is a terminal a person is watching."""
        self._progress = CallProgress(terminal) if terminal.decorative else None

    def start(self, accumulator: ResponseAccumulator) -> None:
        self._accumulator = accumulator
        self._reported.clear()

    def _calls(self) -> dict[str, FunctionCall]:
        return self._accumulator.calls if self._accumulator is not None else {}

    def _watch(self, event: ResponseEvent) -> list[FunctionCall]:
        """After `event` was folded in: the calls it completed, if any."""
        kind = event.type
        progress = self._progress
        if kind == ARGUMENTS_DELTA and progress is not None and self._accumulator is not None:
            call = self._accumulator.call_for(event.data)
            delta = event.data.get("delta")
            if call is not None and isinstance(delta, str):
                progress.delta(call, delta)
        elif kind == ITEM_ADDED and progress is not None:
            item = event.data.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                calls = self._calls()
                call = self._accumulator.call_of_item(event.data) if self._accumulator else None
                if call is None and calls:
                    call = list(calls.values())[-1]
                if call is not None:
                    progress.started(call)
        elif kind == ITEM_DONE:
            return self._newly_done()
        return []

    def _newly_done(self) -> list[FunctionCall]:
        done = [call for call in self._calls().values() if call.done and call not in self._reported]
        for call in done:
            self._reported.add(call)
            if self._progress is not None:
                self._progress.done(call)
        return done

    def _leftovers(self) -> list[FunctionCall]:
        """Calls whose arguments arrived but whose `output_item.done` never did."""
        left = [call for call in self._calls().values() if call not in self._reported]
        self._reported.update(left)
        return left

    def _text(self) -> str:
        """What the model wrote besides calls, in this response."""
        return self._accumulator.output_text() if self._accumulator is not None else ""

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.end_line()


class CallsRenderer(_CallWatcher):
    """One NDJSON line per completed call, then `{"type":"text"}` if the model wrote text.

    Arguments are parsed (orjson) as each call completes; invalid ones raise
    InvalidOutputError (exit 11). A failure ends with the same `mavera.error` line as `--events`.
    """

    def __init__(self, sink: OutputSink, terminal: Terminal | None = None) -> None:
        super().__init__(terminal)
        self._sink = sink
        self._pending: list[bytes] = []

    def on_event(self, event: ResponseEvent) -> None:
        for call in self._watch(event):
            self._pending.append(call_line(call))

    def flush(self) -> None:
        if self._pending:
            # Taken before writing: a Ctrl-C landing in the write must not write them twice.
            lines, self._pending = self._pending, []
            data = b"".join(lines)
            # In a pipe the bytes stay as they are; a terminal would act on C1 and bidi.
            self._sink.write(terminal_json(data) if self._sink.is_terminal else data)

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._pending.extend(call_line(call) for call in self._leftovers())
        self._end_progress()
        self._write_text()
        self._sink.end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._end_progress()
        self._write_text()
        self._sink.write(error_line(error))
        self._sink.end()

    def _write_text(self) -> None:
        text = self._text()
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
            "arguments": call.parsed_arguments(),
        }
    )


def _line(value: dict[str, Any]) -> bytes:
    return json_line(value)


class ToolRoundRenderer(_CallWatcher):
    """`--exec` (or `--events`): the product renderer of each round, plus what the loop needs.

    Everything goes to `product` (text like `stream`, or NDJSON events); the round's text is
    read from the round's accumulator for the conversation, and the calls are shown on a
    terminal as they stream in.
    """

    def __init__(self, product: Renderer, terminal: Terminal | None = None) -> None:
        super().__init__(terminal)
        self._product = product
        # Text deltas take the product's fast path; nothing is truncated (calls arrive whole
        # in `output_item.done`, and the accumulator needs them).
        self.delta_sink = product.delta_sink

    def start(self, accumulator: ResponseAccumulator) -> None:
        super().start(accumulator)
        self._product.start(accumulator)

    def on_event(self, event: ResponseEvent) -> None:
        if self._progress is not None:
            self._watch(event)
        self._product.on_event(event)

    def flush(self) -> None:
        self._product.flush()

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._end_progress()
        self._product.finish(accumulator)

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._end_progress()
        self._product.fail(error, accumulator)

    def take_text(self) -> str:
        """The text the model wrote in the last round (for the conversation)."""
        return self._text()
