"""Raw captures: `--save-raw` writes the bytes received (atomically); `replay` and `inspect`
read them back, and read `--trace` files too: the last attempt's reads (paced like the original
with `--pace`), each line's fields checked, and how the attempt ended when it got no stream."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urljoin

import orjson

from mavera_cli.errors import (
    EVENT_STREAM_TYPES,
    ConnectionFailedError,
    ExitCode,
    InvalidOutputError,
    MaveraError,
    OutputFailedError,
    TimedOutError,
    UsageError,
    error_for_status,
    not_a_response,
    not_a_stream,
    redirect_error,
    server_message,
)
from mavera_cli.events import response_outcome_error
from mavera_cli.redact import StreamRedactor
from mavera_cli.retry import parse_retry_after

if TYPE_CHECKING:
    from mavera_cli.trace import Trace

REPLAY_CHUNK = 64 * 1024


class CaptureWriter:
    """The exact body bytes of one attempt (never headers, and the key masked if echoed).

    The bytes go to a temporary file beside FILE (`.FILE.mavera-XXXXXXXX.tmp`), renamed over
    FILE when an attempt ends with at least one body byte received. A request that fails
    before its body (refused, 401, …) leaves an existing FILE untouched, and so does a
    process killed mid-stream: the rename is atomic, FILE is either the old or the new one.
    A FILE that is not a regular file (`/dev/stdout`, a FIFO) is written directly.
    """

    def __init__(self, path: str, secret: str | None) -> None:
        self._path = path
        self._secret = secret
        self._redactor = StreamRedactor(secret)
        self._file: BinaryIO | None = None
        self._temp: str | None = None  # the temporary file of the attempt, if renamed at the end
        self._target = path
        self._received = False
        self._broken = False

    def start_attempt(self) -> None:
        """Begin again: a retried request's capture replaces the failed attempt's."""
        self.close()
        # The key may be split between two reads: masked as a stream, not read by read.
        self._redactor = StreamRedactor(self._secret)
        self._received = self._broken = False
        try:
            # Through a symlink, replace what it points at. (OSError: the current directory
            # was removed, and the path is relative to it.)
            target = os.path.realpath(self._path)
            mode: int | None = os.stat(target).st_mode
        except OSError:
            target, mode = self._path, None
        try:
            if mode is not None and not stat.S_ISREG(mode):
                self._file = open(self._path, "wb")  # noqa: SIM115 (closed in close())
                return
            self._target = target
            self._temp, self._file = _create_temporary(target, mode)
        except OSError as exc:
            raise UsageError(f"cannot write {self._path}: {exc.strerror or exc}") from exc

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            return
        self._received = True
        data = self._redactor.feed(chunk)
        if data:
            try:
                self._file.write(data)
            except OSError as exc:
                self._broken = True  # a cut-short capture must not replace a whole one
                raise OutputFailedError(
                    f"cannot write {self._path}: {exc.strerror or exc}"
                ) from exc

    def close(self) -> None:
        """End the attempt: write the held tail, then put the capture in place (or drop it)."""
        file, self._file = self._file, None
        temp, self._temp = self._temp, None
        if file is None:
            return
        keep = False
        try:
            try:
                try:
                    file.write(self._redactor.end())
                finally:
                    file.close()  # flushes: a full disk may only show here
            except OSError as exc:
                self._broken = True
                raise OutputFailedError(
                    f"cannot write {self._path}: {exc.strerror or exc}"
                ) from exc
            keep = self._received and not self._broken
            if temp is not None and keep:
                os.replace(temp, self._target)
        finally:
            if temp is not None and not keep:
                with contextlib.suppress(OSError):
                    os.unlink(temp)


def _create_temporary(target: str, mode: int | None) -> tuple[str, BinaryIO]:
    """A new file of ours beside `target`, with `target`'s permissions if it exists."""
    folder, name = os.path.split(target)
    while True:
        temp = os.path.join(folder, f".{name}.mavera-{os.urandom(4).hex()}.tmp")
        try:
            # 0o666 less the umask, like a file `open(..., "wb")` would create.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        if mode is not None:
            os.fchmod(fd, stat.S_IMODE(mode))
        return temp, os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise


# --pace factors from a thousand times slower to a million times faster: beyond them a wait
# is either no wait at all or longer than any clock can count.
MIN_PACE = 1e-3
MAX_PACE = 1e6
# No single sleep is longer than this (an OS timer overflows near 1e10 s): a longer wait is
# slept in pieces.
_LONGEST_SLEEP = 3600.0
# A file is SSE if some line (the first after a byte order mark) starts a field an event needs.
_SSE_FIELD = re.compile(rb"(?:^(?:\xef\xbb\xbf)?|[\r\n])(?:data|event)[ \t]*:")
_SSE_FIELD_LONGEST = len(b"\nevent:")


def parse_pace(value: str) -> float:
    """`--pace original|FACTOR`: how many times faster than recorded (original is 1)."""
    if value == "original":
        return 1.0
    try:
        factor = float(value)
    except ValueError:
        factor = 0.0
    if not MIN_PACE <= factor <= MAX_PACE:
        raise UsageError(
            f"--pace takes `original` or a speed factor from {MIN_PACE:g} to {MAX_PACE:g}, "
            f"not {value!r}"
        )
    return factor


class SSEFieldWatch:
    """Whether the bytes fed so far (in any pieces) hold a line that starts an SSE field:
    without one, a file is no event stream at all, only unreadable input."""

    def __init__(self) -> None:
        self.seen = False
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if self.seen:
            return
        # A field split between two chunks is found in the tail kept from the first.
        looked = self._tail + chunk
        self.seen = _SSE_FIELD.search(looked) is not None
        self._tail = looked[-_SSE_FIELD_LONGEST:]


@dataclass
class CheckedTrace:
    """A trace read back whole, its fields checked and its times put in order."""

    trace: Trace
    last_t: float  # the latest time it records
    went_back: list[int]  # the lines whose time went back more than clock noise


@dataclass
class NoEventStream:
    """How an attempt ended that carried no event stream: `error` (None: it completed) and,
    for a whole JSON response (a trace of `ask`), that response."""

    error: MaveraError | None
    response: dict[str, Any] | None = None


@contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, CheckedTrace | None]]:
    """A trace or a raw capture (`-`: stdin) opened for reading: a raw capture's stream, or
    the trace read whole (then None and the trace). Unreadable input is a usage error."""
    if path == "-" and sys.stdin is None:  # started with `<&-`
        raise UsageError("cannot read -: standard input is closed")
    from mavera_cli.trace import looks_like_trace, open_recording

    with open_recording(path) as (stream, is_trace):
        if not is_trace:
            # A byte order mark before a trace (an editor saved it): read the trace after it.
            head = stream.peek(len(codecs.BOM_UTF8) + 64)  # type: ignore[attr-defined]
            is_trace = head.startswith(codecs.BOM_UTF8) and looks_like_trace(
                head[len(codecs.BOM_UTF8) :]
            )
        if not is_trace:
            yield stream, None
            return
        try:
            data = stream.read()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        yield stream, read_checked_trace(data, path)


def read_checked_trace(data: bytes, path: str) -> CheckedTrace:
    """Parse a whole trace (`trace.read_trace`, which checks every line's fields), saved with
    any line ends and a byte order mark; one without a request is a usage error. Times that
    go back (a hand-edited trace) are counted as the time before them: no figure is
    negative."""
    from mavera_cli.trace import read_trace

    data = data.removeprefix(codecs.BOM_UTF8)
    if b"\r" in data:
        # Saved with CR or CRLF line ends: JSON text holds no raw CR, so each is a line end.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    trace = read_trace(io.BytesIO(data), path)
    if not trace.attempts:
        raise UsageError(f"{path} holds no mavera.request line: not a trace of a request")
    return CheckedTrace(trace, _times_in_order(trace), trace.went_back)


def _times_in_order(trace: Trace) -> float:
    """Make every time at least the one before it (request, response, reads, … end); the
    latest time."""
    latest = 0.0
    for attempt in trace.attempts:
        latest = attempt.request["t"] = max(latest, attempt.start)
        if attempt.response is not None:
            latest = attempt.response["t"] = max(latest, _seconds(attempt.response, latest))
        reads = attempt.reads
        for index, (t, data) in enumerate(reads):
            if t < latest:
                reads[index] = (latest, data)
            latest = max(latest, t)
    if trace.end is not None:
        latest = trace.end["t"] = max(latest, _seconds(trace.end, latest))
    return latest


def _seconds(record: dict[str, Any], default: float) -> float:
    t = record.get("t")
    return float(t) if t is not None else default


def recorded_outcome(trace: Trace) -> NoEventStream | None:
    """How the trace's last attempt ended when its answer was no event stream: no answer,
    an HTTP error or redirect, a JSON response (`ask`), some other body. None when it was a
    stream: its events say how it ended. The errors are those the live commands raise, from
    the same functions (`errors.error_for_status`, `events.response_outcome_error`, …)."""
    attempt = trace.last_attempt
    if attempt is None:
        return None
    end = trace.end or {}
    response = attempt.response
    if response is None:
        if attempt.reads:
            return None  # a hand-made trace without its head: the reads are the stream
        unanswered = _unanswered(end.get("error"), _recorded_message(end))
        return None if unanswered is None else NoEventStream(unanswered)
    status: int = response["status"]
    headers = {
        name: value
        for name, value in (response.get("headers") or {}).items()
        if isinstance(value, str)
    }
    url = attempt.request.get("url")
    url = url if isinstance(url, str) else ""
    body = b"".join(data for _, data in attempt.reads)
    error: MaveraError
    if 300 <= status < 400:
        location = headers.get("location")
        error = redirect_error(status, urljoin(url, location) if location else None, url)
    elif status >= 400:
        error = error_for_status(status, body, parse_retry_after(headers))
    else:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in EVENT_STREAM_TYPES:
            return None
        if content_type == "application/json":
            return _whole_response(body)  # `ask`'s answer, judged as `ask` judges it
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        error = not_a_stream(content_type, data, server_message(body))
    # The trace holds no error body (the client reads it aside): the end line quotes it.
    recorded = _recorded_message(end)
    if recorded is not None and end.get("exit_code") == int(error.exit_code):
        error.message = recorded
    return NoEventStream(error)


def _unanswered(kind: Any, message: str | None) -> MaveraError | None:
    """A request the trace shows no answer to, by how the run recorded its end."""
    if kind == ExitCode.timeout.name:
        return TimedOutError(message or "no answer was recorded before the timeout")
    if kind == ExitCode.connection.name:
        return ConnectionFailedError(message or "no answer was recorded: the connection failed")
    return None  # cut short or stopped while waiting: nothing to say beyond the stream's end


def _whole_response(body: bytes) -> NoEventStream:
    """A non-streamed response, judged as `ask` judges it."""
    try:
        response = orjson.loads(body)
    except orjson.JSONDecodeError:
        return NoEventStream(
            InvalidOutputError(f"the server's response is not JSON: {server_message(body)}")
        )
    problem = not_a_response(response, server_message(body))
    if problem is not None:
        return NoEventStream(problem)
    return NoEventStream(response_outcome_error(response), response)


def _recorded_message(end: dict[str, Any]) -> str | None:
    message = end.get("message")
    return message if isinstance(message, str) and message else None


@dataclass
class Replay:
    """What `replay` renders: the chunks of a stream, or the whole JSON response a trace of
    `ask` holds (then no chunks)."""

    chunks: Iterator[bytes]
    response: dict[str, Any] | None = None


@contextmanager
def replay_chunks(
    path: str,
    pace: float | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Replay]:
    """A saved capture or trace as a chunk source for the core (`-` reads stdin).

    A trace gives its last attempt's reads (what `--save-raw` would have kept); with `pace`
    (a speed factor) each read comes when it came in the recording, counted from the
    attempt's request, so the wait before the first read is re-created too. A trace whose
    last attempt got no event stream raises the error the live command raised (or gives the
    whole response of `ask`); a file with no SSE field at all is unreadable input.
    """
    with open_input(path) as (stream, checked):
        if checked is None:
            if pace is not None:
                raise UsageError(
                    f"--pace needs a trace (--trace FILE): {path} is a raw capture, without times"
                )
            yield Replay(_raw_chunks(stream, path))
            return
        trace = checked.trace
        outcome = recorded_outcome(trace)
        if outcome is not None:
            if outcome.response is None and outcome.error is not None:
                raise outcome.error
            yield Replay(iter(()), outcome.response)
            return
        attempt = trace.last_attempt
        reads = attempt.reads if attempt is not None else []
        if pace is None:
            yield Replay(data for _, data in reads)
        else:
            yield Replay(_paced(reads, attempt.start if attempt else 0.0, pace, sleep, clock))


def _raw_chunks(stream: BinaryIO, path: str) -> Iterator[bytes]:
    watch = SSEFieldWatch()
    for chunk in iter(lambda: stream.read1(REPLAY_CHUNK), b""):  # type: ignore[attr-defined]
        watch.feed(chunk)
        yield chunk
    if not watch.seen:
        raise UsageError(f"{path} holds no SSE event and no trace line")


def _paced(
    reads: list[tuple[float, bytes]],
    start: float,
    pace: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Iterator[bytes]:
    """Each read at its recorded time (÷ pace) after the replay began: on a schedule, so the
    time spent rendering one read does not delay all the later ones."""
    began = clock()
    for at, data in reads:
        due = began + max(0.0, at - start) / pace
        while (wait := due - clock()) > 0:
            sleep(min(wait, _LONGEST_SLEEP))
        yield data
