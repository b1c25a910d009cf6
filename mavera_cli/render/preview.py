"""`mavera json`: a live partial-JSON preview on stderr, the final JSON on stdout.

Nothing reaches stdout until the response completed and its text parsed (and matched the
schema: `schema.check_final_json`, run by the core), so a pipe never sees invalid JSON. With
`--partial`, stdout instead gets NDJSON: the best current object each time it changes, then
the final object. The renderer only shows: the text is the accumulator's, the checked value
is `accumulator.parsed_output`.

Partial parsing is slow (pure Python, linear in the text so far), so it never runs on the
thread that reads the stream: a `_Follower` thread re-parses the text at a bounded rate and
CPU share, and the preview and `--partial` only ever use its newest result; a `--partial`
line is written by the follower as soon as its object changes. rich and partial_json_parser
are imported only when used: start-up stays cheap.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

from mavera_cli.errors import InternalError, InvalidOutputError, MaveraError, OutputClosed
from mavera_cli.events import NOT_PARSED, TEXT_DELTA, ResponseAccumulator, ResponseEvent
from mavera_cli.jsonin import strict_loads
from mavera_cli.jsonout import dump_json, terminal_json
from mavera_cli.render import OutputSink, Renderer
from mavera_cli.render.ndjson import error_line
from mavera_cli.terminal import Terminal

# The preview is redrawn at most this many times a second.
PREVIEW_REFRESH_PER_SECOND = 10
# The text is re-parsed at most once per interval: for the preview, and for --partial lines.
PREVIEW_PARSE_INTERVAL = 1 / PREVIEW_REFRESH_PER_SECOND
PARTIAL_PARSE_INTERVAL = 0.05
# After a parse that took t seconds the follower rests PARSE_REST_FACTOR * t, so parsing takes
# at most about a tenth of the CPU however large the object grows.
PARSE_REST_FACTOR = 9
# partial_json_parser raises these (not only ValueError) on text that is not JSON-like; found
# by fuzzing prefixes and garbage. A preview of half-received text must never end the run.
_PARTIAL_FAILURES = (ValueError, IndexError, AssertionError, RecursionError)


class _NotYet:
    """There is no best current object yet (nothing but whitespace, or not JSON-like)."""


NOT_YET = _NotYet()


def parse_partial(text: str) -> Any:
    """The best current object for incomplete JSON text, or NOT_YET if there is none yet."""
    if not text.strip():
        return NOT_YET
    from partial_json_parser import loads  # type: ignore[import-untyped, unused-ignore]

    try:
        return loads(text, parser=strict_loads)
    except _PARTIAL_FAILURES:
        return NOT_YET


class JsonRenderer(Renderer):
    """Previews the output text on stderr; writes the checked JSON value once it completed."""

    needs_text = True  # the preview and --partial read the text from the accumulator

    def __init__(
        self,
        sink: OutputSink,
        terminal: Terminal | None = None,
        *,
        pretty: bool = False,
        partial: bool = False,
        final_newline: bool = True,
    ) -> None:
        self._sink = sink
        self._terminal = terminal
        self._pretty = pretty
        self._partial = partial
        # Without --partial nothing is written before the end: a broken stream may be retried.
        self.holds_output = not partial
        self._final_newline = final_newline
        self._accumulator: ResponseAccumulator | None = None
        self._follower: _Follower | None = None
        self._preview: _Preview | None = None
        # The follower thread writes --partial lines: `_lock` makes it and the stream's
        # thread take turns on stdout, and no line follows the final one (`_ended`).
        self._lock = threading.Lock()
        self._ended = False
        self._last_line: bytes | None = None
        self._output_closed = False

    def use_terminal(self, terminal: Terminal) -> None:
        """The stderr terminal for the preview, known once settings are resolved."""
        self._terminal = terminal

    def start(self, accumulator: ResponseAccumulator) -> None:
        self.close()  # a retry starts the preview again
        self._accumulator = accumulator

    def on_event(self, event: ResponseEvent) -> None:
        if event.type == TEXT_DELTA and self._follower is None and not self._ended:
            self._start_following()

    def flush(self) -> None:
        if self._output_closed:
            raise OutputClosed()  # found by the follower: end here, on the stream's thread

    def finish(self, accumulator: ResponseAccumulator) -> None:
        with self._lock:
            self._ended = True
        self.close()
        value = accumulator.parsed_output
        if value is NOT_PARSED:
            raise InternalError("json output was not parsed: run_stream needs parse_output")
        if self._partial:
            data = self._for_stdout(dump_json(value)) + b"\n"
        else:
            data = self._for_stdout(dump_json(value, indent=2 if self._pretty else None))
            data += b"\n" if self._final_newline else b""
        self._sink.write(data)
        self._sink.end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        with self._lock:
            self._ended = True
        self.close()
        if self._partial:
            self._sink.write(error_line(error))
        self._sink.end()

    def _for_stdout(self, data: bytes) -> bytes:
        # In a pipe the bytes stay exactly as the value's JSON; a terminal would act on some.
        return terminal_json(data) if self._sink.is_terminal else data

    def close(self) -> None:
        """Stop following and take the preview off the screen (safe to call more than once)."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        preview, self._preview = self._preview, None
        if preview is not None:
            preview.stop()

    def _start_following(self) -> None:
        accumulator = self._accumulator
        if accumulator is None or accumulator.text_parts is None:
            return  # not started by the core with the text kept: nothing to follow
        terminal = self._terminal
        text = _TextSoFar(accumulator.text_parts)
        if self._partial:
            self._follower = _Follower(text, PARTIAL_PARSE_INTERVAL)
            self._follower.on_value(self._write_snapshot)
        elif terminal is not None and terminal.decorative:
            self._follower = _Follower(text, PREVIEW_PARSE_INTERVAL)
            self._preview = _Preview(terminal, self._follower, lambda: accumulator.text_chars)
            self._preview.start()
        if self._follower is not None:
            self._follower.start()

    def _write_snapshot(self, value: Any) -> None:
        # On the follower thread, as soon as a parse gives a new object: a line must not
        # wait for the next network read, which may be long in coming.
        try:
            line = self._for_stdout(dump_json(value)) + b"\n"
        except InvalidOutputError:
            return  # a half-received number out of range: wait for more text
        with self._lock:
            if self._ended or line == self._last_line:
                return
            self._last_line = line
            try:
                self._sink.write(line)
            except OutputClosed:
                self._output_closed = True


class _TextSoFar:
    """The accumulator's kept text as one string, joined as it grows (the follower's thread).

    The parts list is only ever appended to, so it is read here without a lock."""

    def __init__(self, parts: list[str]) -> None:
        self._parts = parts
        self._count = 0
        self._text = ""

    def __call__(self) -> str:
        count = len(self._parts)
        if count > self._count:
            self._text += "".join(self._parts[self._count : count])
            self._count = count
        return self._text


class _Follower:
    """Re-parses the text so far on its own thread and keeps the newest best-current object."""

    def __init__(self, read_text: Callable[[], str], interval: float) -> None:
        self._read_text = read_text
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._version = 0
        self._value: Any = NOT_YET
        self._on_value: Callable[[Any], None] | None = None
        self._thread = threading.Thread(target=self._run, name="mavera-json-follower", daemon=True)

    def on_value(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(value)` on the follower thread after each new parse."""
        self._on_value = callback

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # a parse under way finishes in the background; its result is unused

    def latest(self) -> tuple[int, Any]:
        """(version, best current object): the version goes up with each new parse."""
        with self._lock:
            return self._version, self._value

    def _run(self) -> None:
        parsed_length = 0
        rest = 0.0
        while not self._stop.wait(rest):
            text = self._read_text()
            if len(text) == parsed_length:
                rest = self._interval
                continue
            started = time.monotonic()
            value = parse_partial(text)
            rest = max(self._interval, (time.monotonic() - started) * PARSE_REST_FACTOR)
            parsed_length = len(text)
            if value is NOT_YET or self._stop.is_set():
                continue
            with self._lock:
                self._version += 1
                self._value = value
            if self._on_value is not None:
                self._on_value(value)


class _Preview:
    """The rich Live view of the object as it grows, on stderr: the last lines that fit,
    redrawn at most PREVIEW_REFRESH_PER_SECOND times a second, removed when stopped."""

    def __init__(
        self, terminal: Terminal, follower: _Follower, received: Callable[[], int]
    ) -> None:
        self._terminal = terminal
        self._received = received
        self._console = terminal.console()
        self._live: Any = None
        self._stopping = False
        self._lines: list[str] = []
        follower.on_value(self._format)

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(
            console=self._console,
            auto_refresh=True,
            refresh_per_second=PREVIEW_REFRESH_PER_SECOND,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
            get_renderable=self._renderable,
        )
        self._live.start()
        atexit.register(self.stop)  # Ctrl-C in `replay`: the cursor is shown again on exit

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is None:
            return
        atexit.unregister(self.stop)
        self._stopping = True  # rich draws once more while stopping: draw nothing
        live.stop()

    def _format(self, value: Any) -> None:
        # On the follower thread: the refresh thread only draws the lines made here.
        import orjson

        try:
            data = orjson.dumps(value, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:  # integers beyond 64 bits, lone surrogates
            try:
                data = dump_json(value, indent=2)
            except InvalidOutputError:
                return
        self._lines = self._terminal.redact(terminal_json(data).decode()).splitlines()

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.highlighter import JSONHighlighter
        from rich.text import Text

        if self._stopping:
            return Text("")
        lines = self._lines
        height = max(self._console.size.height - 2, 1)
        if len(lines) > height:
            lines = ["…", *lines[len(lines) - height + 1 :]]
        header = Text(f"receiving JSON… {self._received()} characters", style="dim")
        if not lines:
            return header
        body = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
        if self._terminal.color:
            JSONHighlighter().highlight(body)
        return Group(header, body)
