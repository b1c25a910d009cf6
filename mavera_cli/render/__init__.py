"""The renderer contract the core calls through, and the one place product bytes leave the
process (OutputSink)."""

from __future__ import annotations

from typing import BinaryIO

from mavera_cli.errors import MaveraError, OutputClosed, OutputFailedError
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.redact import StreamRedactor, usable_secret


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

    def close(self) -> None:
        """Release what the renderer runs beside the stream (a preview thread); safe to call
        more than once, and called on every way out, a closed pipe included."""


class OutputSink:
    """Binary stdout (or any stream) that masks the API key wherever it would be written.

    The key is masked across writes too (one write per network read can split it), so a
    write may hold back a tail that could be the key's start: `end()` writes it, and every
    renderer calls it when it finishes or fails (also as a context manager's exit, for
    Ctrl-C). With no key, `write` is a plain write and flush.
    """

    def __init__(self, stream: BinaryIO, secret: str | None = None) -> None:
        self._stream = stream
        try:
            self.is_terminal = stream.isatty()
        except (ValueError, AttributeError):  # closed, or not a file
            self.is_terminal = False
        self._stream_redactor = StreamRedactor(None)
        self.mask(secret)

    def mask(self, secret: str | None) -> None:
        """Mask this secret from now on (known once settings are resolved)."""
        self.end()
        self._stream_redactor = StreamRedactor(secret)
        self._masking = self._stream_redactor.active
        self.secret = usable_secret(secret)  # what is masked (None: nothing)

    def write(self, data: bytes) -> None:
        if self._masking:
            data = self._stream_redactor.feed(data)
            if not data:
                return  # all of it may be the key's start: it waits for the next write
        self._write_plain(data)

    def end(self) -> None:
        """Write what was held back as a possible start of the key: it was not the key."""
        held = self._stream_redactor.end()
        if held:
            self._write_plain(held)

    def __enter__(self) -> OutputSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.end()
        except OutputClosed:
            if exc_info[0] is None:
                raise
            # Already failing: the reader went away too, and the first error says why.

    def _write_plain(self, data: bytes) -> None:
        try:
            written = self._stream.write(data)
            if written is not None and written < len(data):
                # A pipe whose reader left mid-write: the buffered writer reports a short
                # write instead of the error; writing the rest raises it.
                view = memoryview(data)[written:]
                while view:
                    view = view[self._stream.write(view) or 0 :]
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:  # a full disk, a closed descriptor: not a reader going away
            raise OutputFailedError(
                f"cannot write to standard output: {exc.strerror or exc}"
            ) from exc
