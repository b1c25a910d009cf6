"""NDJSON mode: one line per event, its data JSON as received; a last line on failure.

Each line passes the sink's masking, but a key a server echoes split across two deltas (of
the answer's text, or of a call's arguments) is in neither line whole: `jq -j .delta` would
join it again. So each text's deltas are watched as one stream: a delta line whose end could
begin the key waits for the next event, and the deltas that do spell the key between them
are written with it masked (`***` in the first).
"""

from __future__ import annotations

from mavera_cli.errors import InterruptedRun, MaveraError
from mavera_cli.events import ARGUMENTS_DELTA, TEXT_DELTA, ResponseAccumulator, ResponseEvent
from mavera_cli.jsonout import json_line, terminal_json
from mavera_cli.redact import KEY_MASK
from mavera_cli.render import OutputSink, Renderer


class NdjsonRenderer(Renderer):
    """Passes every event through untouched, one compact line each, flushed per network read."""

    def __init__(self, sink: OutputSink) -> None:
        self._sink = sink
        self._pending: list[bytes] = []
        # Text deltas not written yet: their text so far might go on into the key.
        self._held: list[_HeldDelta] = []

    def on_event(self, event: ResponseEvent) -> None:
        secret = self._sink.secret
        if secret is not None and event.type in _DELTA_TYPES:
            delta = event.data.get("delta")
            if self._held and _stream_of(self._held[0].event) != _stream_of(event):
                self._release(len(self._held))  # another text: the held one went no further
            if isinstance(delta, str) and (
                self._held or secret[0] in delta[1 - len(secret) :] or secret in delta
            ):
                self._held.append(_HeldDelta(event, delta))
                self._settle(secret)
                return
        if self._held:
            self._release(len(self._held))
        self._pending.append(_line(event))

    def _settle(self, secret: str) -> None:
        """Mask the key in the held deltas' text, then release every delta before the tail
        that could still begin it."""
        held = self._held
        text = held[0].text if len(held) == 1 else "".join(piece.text for piece in held)
        if secret in text:
            text = _mask_across(self._held, secret)
        tail = _key_start(text, secret)
        if tail is None:
            self._release(len(self._held))
            return
        end, released = 0, 0
        for piece in held:
            end += len(piece.text)
            if end > tail:
                break
            released += 1
        self._release(released)

    def _release(self, count: int) -> None:
        released, self._held = self._held[:count], self._held[count:]
        self._pending.extend(held.line() for held in released)

    def flush(self) -> None:
        if self._pending:
            # Taken before writing: a Ctrl-C landing in the write must not write them twice.
            lines, self._pending = self._pending, []
            lines.append(b"")
            data = b"\n".join(lines)
            # As received in a pipe; on a terminal, no raw C1 or bidi control in a string.
            self._sink.write(terminal_json(data) if self._sink.is_terminal else data)

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._release(len(self._held))  # the stream went no further: not the key
        self.flush()
        self._sink.end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._release(len(self._held))
        self.flush()
        self._sink.write(error_line(error))
        self._sink.end()


# The events whose deltas make one text between them: the answer's, a call's arguments.
_DELTA_TYPES = frozenset({TEXT_DELTA, ARGUMENTS_DELTA})


def _stream_of(event: ResponseEvent) -> tuple[object, ...]:
    """Which text a delta adds to (deltas of different texts never join)."""
    data = event.data
    return (event.type, data.get("item_id"), data.get("output_index"), data.get("content_index"))


class _HeldDelta:
    """A text delta event waiting to be written, and its text as it will be (masked)."""

    __slots__ = ("event", "masked", "text")

    def __init__(self, event: ResponseEvent, text: str) -> None:
        self.event = event
        self.text = text
        self.masked = False

    def line(self) -> bytes:
        if not self.masked:
            return _line(self.event)
        return json_line({**self.event.data, "delta": self.text})[:-1]


def _line(event: ResponseEvent) -> bytes:
    raw = event.raw
    if b"\n" in raw or b"\r" in raw:
        # Multi-line `data:` fields join with LF; a line of NDJSON must not contain one.
        raw = json_line(event.data)[:-1]
    return raw


def _mask_across(held: list[_HeldDelta], secret: str) -> str:
    """Replace each whole key in the deltas' joined text by the mask, in the delta where it
    starts (the others lose their part of it); the joined text, masked."""
    text = "".join(piece.text for piece in held)
    cut: set[int] = set()  # places in `text` that belong to a key
    starts: set[int] = set()
    position = text.find(secret)
    while position != -1:
        cut.update(range(position, position + len(secret)))
        starts.add(position)
        position = text.find(secret, position + len(secret))
    offset = 0
    for piece in held:
        span = range(offset, offset + len(piece.text))
        if any(place in cut for place in span):
            piece.text = "".join(
                (KEY_MASK if place in starts else "") + ("" if place in cut else text[place])
                for place in span
            )
            piece.masked = True
        offset = span.stop
    return "".join(piece.text for piece in held)


def _key_start(text: str, secret: str) -> int | None:
    """Where the longest tail of `text` that is a start of the key begins, if any."""
    position = text.find(secret[0], max(0, len(text) - len(secret) + 1))
    while position != -1:
        if secret.startswith(text[position:]):
            return position
        position = text.find(secret[0], position + 1)
    return None


def error_line(error: MaveraError) -> bytes:
    """The `mavera.error` line that tells a `jq` pipeline how the command ended."""
    # A run ended by SIGTERM reports 143, the status the process ends with.
    status = error.status if isinstance(error, InterruptedRun) else int(error.exit_code)
    # (json_line: a message may quote a file name that is not UTF-8, a lone surrogate.)
    return json_line(
        {"type": "mavera.error", "exit_code": status, "error": error.kind, "message": error.message}
    )
