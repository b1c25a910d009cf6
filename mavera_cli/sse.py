"""Incremental Server-Sent Events decoder: raw bytes in, events out (WHATWG HTML §9.2.6).

Pure and push-style: `feed()` takes whatever one network read delivered and returns the
events it completed; it never does I/O, never parses JSON and gives `[DONE]` no meaning.
"""

from __future__ import annotations

from collections.abc import Collection

_LF = b"\n"
_CR = b"\r"
_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A
TRUNCATED_KEEP = 64 * 1024  # what is kept of a data line cut short (enough for its status)


class SSEEvent:
    """One dispatched event. `data` stays bytes: it is usually JSON and orjson reads bytes."""

    __slots__ = ("data", "event", "id", "retry", "truncated")

    def __init__(
        self,
        event: str,
        data: bytes,
        id: str | None,
        retry: int | None,
        truncated: bool = False,
    ) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry
        self.truncated = truncated  # data was cut to its first bytes (see SSEDecoder)

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
    """Turns a byte stream into `SSEEvent`s, whatever way the stream was cut into chunks.

    `truncate` names events whose content the caller does not need: a data line of theirs
    longer than `keep` bytes is cut short as it arrives (the event is marked `truncated`),
    so a long answer repeated in closing events never has to fit in memory.
    """

    def __init__(self, *, truncate: Collection[str] = (), keep: int = TRUNCATED_KEEP) -> None:
        self._truncatable = frozenset(name.encode() for name in truncate)
        self._keep = keep
        self._partial_size = 0
        self._dropping = False  # inside a data line being cut short: skip to its end
        self._truncated = False  # the current event lost data
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
        if self._dropping:
            end = chunk.find(_LF)
            if end == -1:
                return []
            self._dropping = False
            chunk = chunk[end:]
        if _LF not in chunk:
            if chunk:
                self._partial.append(chunk)
                if self._truncatable:
                    self._partial_size += len(chunk)
                    self._cut_long_line()
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        lines = chunk.split(_LF)
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        self._partial_size = len(rest)
        return self._process(lines)

    def _cut_long_line(self) -> None:
        # Any long line of such an event can go: its data is not needed, and other fields
        # (a comment, an unknown field) never are.
        if self._partial_size > self._keep and self._event in self._truncatable:
            kept = b"".join(self._partial)[: self._keep]
            self._partial = [kept]
            self._partial_size = len(kept)
            self._dropping = self._truncated = True

    def flush(self) -> list[SSEEvent]:
        """End of stream: an event without its closing blank line is dropped, per spec."""
        self._partial = []
        self._partial_size = 0
        self._dropping = self._truncated = False
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
                            self._truncated,
                        )
                    )
                    data = self._data = []
                self._event = b""
                self._truncated = False
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
