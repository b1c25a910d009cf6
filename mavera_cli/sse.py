"""Incremental Server-Sent Events decoder: raw bytes in, events out (WHATWG HTML §9.2.6).

Pure and push-style: `feed()` takes whatever one network read delivered and returns the
events it completed; it never does I/O, never parses JSON and gives `[DONE]` no meaning.
"""

from __future__ import annotations

_LF = b"\n"
_CR = b"\r"
_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A


class SSEEvent:
    """One dispatched event. `data` stays bytes: it is usually JSON and orjson reads bytes."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, event: str, data: bytes, id: str | None, retry: int | None) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data!r}, id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEEvent):
            return NotImplemented
        return (self.event, self.data, self.id, self.retry) == (
            other.event,
            other.data,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]


class SSEDecoder:
    """Turns a byte stream into `SSEEvent`s, whatever way the stream was cut into chunks."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []  # pieces of the line still waiting for its end
        self._skip_lf = False  # the last chunk ended in CR: a LF starting the next is its pair
        self._at_start = True  # a BOM may still come (possibly split across reads)
        self._data: list[bytes] = []
        self._event = b""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (dropped at EOF)."""
        return bool(self._partial or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; return the events it completed, in order."""
        if self._at_start:
            chunk = self._strip_bom(chunk)
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == _LF:
                chunk = chunk[1:]
        if _CR in chunk:
            # A CR at the very end is a line end already; remember to swallow its LF pair.
            self._skip_lf = chunk[-1:] == _CR
            chunk = chunk.replace(b"\r\n", _LF).replace(_CR, _LF)
        if _LF not in chunk:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        lines = chunk.split(_LF)
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        return self._process(lines)

    def flush(self) -> list[SSEEvent]:
        """End of stream: an event without its closing blank line is dropped, per spec."""
        self._partial = []
        self._data = []
        self._event = b""
        return []

    def _strip_bom(self, chunk: bytes) -> bytes:
        if self._partial:  # bytes held back while deciding whether they start a BOM
            chunk = b"".join(self._partial) + chunk
            self._partial = []
        if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
            self._partial.append(chunk)
            return b""
        self._at_start = False
        return chunk[len(_BOM) :] if chunk.startswith(_BOM) else chunk

    def _process(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(
                        SSEEvent(
                            self._event.decode("utf-8", "replace") if self._event else "message",
                            data[0] if len(data) == 1 else _LF.join(data),
                            self._last_id,
                            self._retry,
                        )
                    )
                    data = self._data = []
                self._event = b""
                continue
            if line.startswith(b"data: "):  # the hot path: most lines are data lines
                data.append(line[6:])
                continue
            if line.startswith(b"event: "):
                self._event = line[7:]
                continue
            if line[0] == _COLON:
                continue  # a comment, e.g. a keep-alive
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"event":
                self._event = value
            elif field == b"data":  # "data" without a colon: an empty data line
                data.append(value)
            elif field == b"id" and b"\x00" not in value:
                self._last_id = value.decode("utf-8", "replace")
            elif field == b"retry" and value.isdigit():  # bytes.isdigit() is ASCII-only
                self._retry = int(value)
        return events
