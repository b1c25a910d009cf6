"""NDJSON mode: one line per event, its data JSON as received; a last line on failure."""

from __future__ import annotations

import orjson

from mavera_cli.errors import InterruptedRun, MaveraError
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.jsonout import json_line
from mavera_cli.render import OutputSink, Renderer


class NdjsonRenderer(Renderer):
    """Passes every event through untouched, one compact line each, flushed per network read."""

    def __init__(self, sink: OutputSink) -> None:
        self._sink = sink
        self._pending: list[bytes] = []

    def on_event(self, event: ResponseEvent) -> None:
        raw = event.raw
        if b"\n" in raw or b"\r" in raw:
            # Multi-line `data:` fields join with LF; a line of NDJSON must not contain one.
            raw = json_line(event.data)[:-1]
        self._pending.append(raw)

    def flush(self) -> None:
        if self._pending:
            # Taken before writing: a Ctrl-C landing in the write must not write them twice.
            lines, self._pending = self._pending, []
            lines.append(b"")
            self._sink.write(b"\n".join(lines))

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self.flush()
        self._sink.end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self.flush()
        self._sink.write(error_line(error))
        self._sink.end()


def error_line(error: MaveraError) -> bytes:
    """The `mavera.error` line that tells a `jq` pipeline how the command ended."""
    # A run ended by SIGTERM reports 143, the status the process ends with.
    status = error.status if isinstance(error, InterruptedRun) else int(error.exit_code)
    return orjson.dumps(
        {
            "type": "mavera.error",
            "exit_code": status,
            "error": error.kind,
            "message": error.message,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
