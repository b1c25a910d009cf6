"""What every renderer offers the core, and the one place product bytes leave the process."""

from __future__ import annotations

from typing import BinaryIO, Protocol

from mavera_cli.errors import MaveraError, OutputClosed, OutputFailedError
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.redact import Redactor, StreamRedactor, json_escapes


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
    """Binary stdout (or any stream) that masks the API key wherever it would be written.

    The key is masked across writes too (one write per network read can split it), so a
    write may hold back a tail that could be the key's start: `end()` writes it, and every
    renderer calls it when it finishes or fails (also as a context manager's exit, for
    Ctrl-C). With no key, `write` is a plain write and flush.
    """

    def __init__(self, stream: BinaryIO, secret: str | None = None) -> None:
        self._stream = stream
        self._stream_redactor = StreamRedactor(None)
        self.mask(secret)

    def mask(self, secret: str | None) -> None:
        """Mask this secret from now on (known once settings are resolved)."""
        self.end()
        self._redactor = Redactor(secret)
        self._stream_redactor = StreamRedactor(secret)
        self._masking = self._stream_redactor.active
        self.key_escapes = json_escapes(secret)

    def contains_key(self, data: bytes) -> bool:
        """True if the key is in `data` (e.g. JSON whose escapes hid it, once re-encoded)."""
        return self._redactor.contains(data)

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
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:  # a full disk, a closed descriptor: not a reader going away
            raise OutputFailedError(
                f"cannot write to standard output: {exc.strerror or exc}"
            ) from exc
