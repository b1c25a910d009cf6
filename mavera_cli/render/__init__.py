"""The renderer contract the core calls through, and the one place product bytes leave the
process (OutputSink)."""

from __future__ import annotations

from typing import BinaryIO

from mavera_cli.errors import MaveraError, OutputClosed
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.redact import Redactor


class Renderer:
    """Everything the core uses of a renderer, and nothing else: renderers inherit from this.

    For each attempt of a stream the core calls `start(accumulator)` with the stream's one
    `ResponseAccumulator` (it has already folded each event when the renderer sees it), then
    `on_event` per event and `flush` at the end of each network read, then exactly one of
    `finish` (the response completed) or `fail`. `fail` is also called by the command layer
    for failures before the stream (bad schema, no prompt): the second call does nothing.
    """

    # Event types whose content this renderer never needs: the decoder may cut them short.
    truncatable_events: frozenset[str] = frozenset()
    # The text fast path: when a list, the core appends each output-text delta's text to it
    # (no event object, no `on_event` call); the renderer writes them out at `flush`.
    delta_sink: list[str] | None = None
    # The accumulator must keep the output text: the renderer reads it from there.
    needs_text: bool = False
    # Nothing reaches stdout before `finish`: a stream that breaks mid-way may be retried.
    holds_output: bool = False
    # How the run failed, once `fail` has been called (the first error only).
    failure: MaveraError | None = None

    def start(self, accumulator: ResponseAccumulator) -> None:
        """A new attempt begins (a retry starts again from scratch)."""

    def on_event(self, event: ResponseEvent) -> None:
        """One event, already folded into the accumulator."""

    def flush(self) -> None:
        """One network read is done: write out what it brought."""

    def finish(self, accumulator: ResponseAccumulator) -> None:
        """The response completed."""

    def fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        """The run ended with `error`; whatever was received is already out. Only the first
        call reports it (the core and the command boundary may both call this)."""
        if self.failure is not None:
            return
        self.failure = error
        self._fail(error, accumulator)

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        """Report `error` (called once)."""


class OutputSink:
    """Binary stdout (or any stream) that masks the API key wherever it would be written."""

    def __init__(self, stream: BinaryIO, secret: str | None = None) -> None:
        self._stream = stream
        self._redactor = Redactor(secret)

    def mask(self, secret: str | None) -> None:
        """Mask this secret from now on (known once settings are resolved)."""
        self._redactor = Redactor(secret)

    def write(self, data: bytes) -> None:
        data = self._redactor.data(data)
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None
