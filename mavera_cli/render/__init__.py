"""What every renderer offers the core, and the one place product bytes leave the process."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from mavera_cli.errors import MaveraError, OutputClosed
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.redact import Redactor


class Renderer(Protocol):
    """Receives events as they arrive; `flush` marks the end of one network read.

    A renderer may also have a `delta_sink` list attribute: the core then appends the text
    of each `response.output_text.delta` to it instead of calling `on_event` for those.
    And a `truncatable_events` set: event types whose content it never needs, which the
    decoder may then cut short (see sse.SSEDecoder).
    """

    def on_event(self, event: ResponseEvent) -> None: ...

    def flush(self) -> None: ...

    def finish(self, accumulator: ResponseAccumulator) -> None:
        """The response completed."""

    def fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        """The request ended with `error`; whatever was received is already out."""


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
