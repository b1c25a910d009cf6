"""Text mode: every output-text delta goes to stdout as soon as its network read is decoded."""

from __future__ import annotations

from mavera_cli.errors import MaveraError
from mavera_cli.events import TEXT_DELTA, ResponseAccumulator, ResponseEvent
from mavera_cli.printable import ScreenText
from mavera_cli.render import OutputSink, Renderer


class TextRenderer(Renderer):
    """Writes deltas, one write+flush per network read; ends with one newline unless told not to."""

    # Events whose content text mode never shows: the decoder may cut them short, so the
    # closing events that repeat a long answer cost no memory.
    truncatable_events: frozenset[str] = frozenset(
        {
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        }
    )

    def __init__(self, sink: OutputSink, final_newline: bool = True) -> None:
        self._sink = sink
        self._pending: list[str] = []
        self.delta_sink = self._pending  # the core appends delta text straight here
        self._final_newline = final_newline
        self._wrote_text = False
        self._ends_with_newline = False
        self._screen = ScreenText()

    def on_event(self, event: ResponseEvent) -> None:
        if event.type == TEXT_DELTA:
            delta = event.data.get("delta")
            if isinstance(delta, str):
                self._pending.append(delta)

    def write_text(self, text: str) -> None:
        """Write text that did not come as a delta (e.g. `ask`)."""
        self._pending.append(text)
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        if text and self._sink.is_terminal:
            # The plain text on a terminal (--raw, TERM=dumb, replay): what a server sent
            # must not recolour, retitle or clear it (in a pipe it stays byte for byte).
            text = self._screen.feed(text)
        if text:
            # Noted before the write: a signal that lands inside it (the bytes already out)
            # must still find the text written, so the ending newline is not forgotten.
            self._wrote_text = True
            self._ends_with_newline = text.endswith("\n")
            self._sink.write(text.encode("utf-8", "surrogatepass"))

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        # The partial text stays; the newline keeps the shell prompt and the error off its line.
        self._end()

    def _end(self) -> None:
        self.flush()
        # One newline at the end: added unless the text already ends with one.
        if self._final_newline and self._wrote_text and not self._ends_with_newline:
            self._sink.write(b"\n")
        self._sink.end()
        self._wrote_text = False
