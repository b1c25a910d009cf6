"""`--trace FILE`: the NDJSON log of what went over the wire, and the reader of such logs.

Lines: `mavera.request` {t, method, url, body_bytes}, `mavera.response` {t, status, headers}
(no Authorization, no Set-Cookie), one `mavera.read` {t, data | b64} per network read, and a
last `mavera.end` {t, exit_code, error, message}. `t` is seconds since the first request
(monotonic). Each line is one `os.write`: a run killed mid-way leaves whole lines, except at
most a torn last one. The key is masked everywhere; the reads are masked as a stream
(`redact.StreamRedactor`, as `--save-raw` does), so their concatenation equals the capture.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from mavera_cli.errors import (
    ExitCode,
    InterruptedRun,
    MaveraError,
    OutputClosed,
    OutputFailedError,
    Terminated,
    UsageError,
)
from mavera_cli.jsonout import json_line
from mavera_cli.observe import StreamObserver
from mavera_cli.redact import Redactor, header_name_redactor
from mavera_cli.tracelog import LineWriter, TraceLog, open_log

TRACE_TYPES = frozenset({"mavera.request", "mavera.response", "mavera.read", "mavera.end"})
# The latest `t` a trace may hold: far beyond any run (about 116 days), and so small that
# every figure and every paced wait computed from it stays finite.
MAX_TRACE_SECONDS = 1e7
# Times may go back this much (the writer reads its clock once per line and rounds to 1 µs)
# without a note; any step back is counted as no time at all.
_CLOCK_NOISE = 0.001
# Headers a trace never holds: credentials going either way.
_UNRECORDED_HEADERS = frozenset({"authorization", "proxy-authorization", "set-cookie", "cookie"})
SIGPIPE_STATUS = 128 + 13


def exit_status(error: BaseException | None) -> tuple[int, str | None, str | None]:
    """How a run that raised `error` ends: exit status, the exit-code name, the message."""
    if error is None:
        return int(ExitCode.ok), None, None
    if isinstance(error, InterruptedRun):
        return error.status, error.kind, error.message
    if isinstance(error, MaveraError):
        return int(error.exit_code), error.kind, error.message
    if isinstance(error, KeyboardInterrupt):
        return int(ExitCode.interrupted), ExitCode.interrupted.name, "interrupted"
    if isinstance(error, Terminated):
        return error.status, ExitCode.interrupted.name, "terminated"
    if isinstance(error, (OutputClosed, BrokenPipeError)):
        return SIGPIPE_STATUS, None, "standard output closed"
    return int(ExitCode.internal), ExitCode.internal.name, type(error).__name__


class TraceWriter(StreamObserver):
    """Writes the trace of one command to `path`, line by line, as things happen.

    The file is created at the first request (a command that fails before sending anything
    leaves no trace); an existing file is replaced then. The first line is written here, so
    a file that cannot be written fails the command before anything is sent; the rest goes
    through a `tracelog` log (a forked writer where the OS can fork).
    """

    def __init__(
        self, path: str, secret: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._secret = secret
        self._redactor = Redactor(secret)
        self._name_redactor = header_name_redactor(secret)
        self._clock = clock
        self._start: float | None = None
        self._log: TraceLog | None = None
        self._broken = False

    def _t(self) -> float:
        now = self._clock()
        if self._start is None:
            self._start = now
        return round(now - self._start, 6)

    def _failed(self, error: OSError) -> OutputFailedError:
        self._broken = True  # one message: the rest of the run goes on without a trace
        return OutputFailedError(f"cannot write {self._path}: {error.strerror or error}")

    def _check(self, log: TraceLog) -> None:
        error = log.failure()
        if error is not None and not self._broken:
            raise self._failed(error) from error

    def on_request(self, method: str, url: str, body_bytes: int) -> None:
        record = {
            "type": "mavera.request",
            "t": self._t(),
            "method": method,
            "url": self._redactor.text(url),
            "body_bytes": body_bytes,
        }
        line = json_line(record)
        log = self._log
        if log is None:
            try:
                fd = _create(self._path)
            except OSError as exc:
                raise UsageError(f"cannot write {self._path}: {exc.strerror or exc}") from exc
            first = LineWriter(fd)
            first.put(line)
            if first.error is not None:
                first.close()
                raise self._failed(first.error) from first.error
            self._log = open_log(fd, self._secret, self._t)
        elif not self._broken:
            log.attempt(self._t(), line)
            self._check(log)

    def on_response(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        log = self._log
        if log is None or self._broken:
            return
        recorded: dict[str, str] = {}
        for name, value in headers:
            lower = self._name_redactor.text(self._redactor.text(name).lower())
            if lower in _UNRECORDED_HEADERS:
                continue
            value = self._redactor.text(value)
            recorded[lower] = f"{recorded[lower]}, {value}" if lower in recorded else value
        t = self._t()
        record = {"type": "mavera.response", "t": t, "status": status, "headers": recorded}
        log.line(t, json_line(record))
        self._check(log)

    def on_read(self, chunk: bytes) -> None:
        log = self._log
        if log is not None and not self._broken:
            log.read(self._t(), chunk)
            self._check(log)

    def on_end(self, error: BaseException | None) -> None:
        log, self._log = self._log, None
        if log is None:
            return
        code, name, message = exit_status(error)
        t = self._t()
        record = {
            "type": "mavera.end",
            "t": t,
            "exit_code": code,
            "error": name,
            "message": None if message is None else self._redactor.text(message),
        }
        end = None if self._broken else json_line(record)  # (a message may not be UTF-8)
        failure = log.close(t, end)
        if failure is not None and not self._broken and error is None:
            # (When the run is failing already, its own error says why; the trace ends here.)
            raise self._failed(failure) from failure


def _create(path: str) -> int:
    """A new, empty FILE (through a symlink, what it points at), with an existing file's
    permissions. An existing regular file is replaced, not truncated: ext4 flushes a file
    truncated and rewritten when it is closed, which would cost tens of ms per big trace."""
    target = os.path.realpath(path)
    try:
        status = os.stat(target)
    except OSError:
        status = None
    if status is None or not stat.S_ISREG(status.st_mode):
        # New, or not a regular file (a FIFO, /dev/stderr): opened as it is.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    # Another owner's mode cannot be given: the umask's default then stays.
    with contextlib.suppress(OSError):
        os.fchmod(fd, stat.S_IMODE(status.st_mode))
    return fd


# --- reading traces back (inspect, replay) --------------------------------------------------


@dataclass
class TraceAttempt:
    """One request of a trace: its head lines and its reads (time, bytes), in order."""

    request: dict[str, Any]
    response: dict[str, Any] | None = None
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def start(self) -> float:
        return _number(self.request.get("t"))


@dataclass
class Trace:
    """A trace read back: its attempts, its end line (None when the run was cut short)."""

    attempts: list[TraceAttempt]
    end: dict[str, Any] | None
    torn_line: bool  # the last line was cut mid-way (the process was killed while writing)
    last_t: float
    went_back: list[int] = field(default_factory=list)  # lines whose time went back

    @property
    def last_attempt(self) -> TraceAttempt | None:
        return self.attempts[-1] if self.attempts else None


TRACE_PREFIX = b'{"type":"mavera.'
# What we write starts with TRACE_PREFIX; a trace re-encoded by another tool may space it out.
_TRACE_START = re.compile(rb'\s*\{\s*"type"\s*:\s*"mavera\.')


@contextlib.contextmanager
def open_recording(path: str) -> Iterator[tuple[BinaryIO, bool]]:
    """A trace or a raw capture (`-`: stdin), opened for reading: the stream, and whether it
    is a trace. Unreadable is a usage error naming the file."""
    try:
        stream: BinaryIO = open(path, "rb") if path != "-" else sys.stdin.buffer  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        try:
            stream, head = open_peekable(stream)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        yield stream, looks_like_trace(head)
    finally:
        if path != "-":
            stream.close()


def open_peekable(stream: BinaryIO) -> tuple[BinaryIO, bytes]:
    """`stream` (wrapped if it cannot peek) and its first bytes, still unread: enough to tell
    a trace from a raw capture."""
    peekable: Any = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
    return peekable, peekable.peek(64)


def looks_like_trace(head: bytes) -> bool:
    """Whether a file starting with `head` is a trace (its first line is a trace line)."""
    return _TRACE_START.match(head) is not None


def read_trace(stream: BinaryIO, name: str) -> Trace:
    """Parse a whole trace; a line that is not a trace line is a usage error, except a torn
    last line (the run was killed while writing it), which is noted and dropped."""
    attempts: list[TraceAttempt] = []
    end: dict[str, Any] | None = None
    torn = False
    last_t = latest = 0.0
    went_back: list[int] = []
    lines = _lines(stream)
    for number, (line, last) in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            kind = record.get("type") if isinstance(record, dict) else None
        except orjson.JSONDecodeError:
            record, kind = None, None
        if kind not in TRACE_TYPES or not isinstance(record, dict):
            if last and not line.endswith(b"\n"):
                torn = True
                break
            raise UsageError(f"{name}: line {number} is not a trace line")
        _check_fields(record, kind, name, number)
        last_t = _number(record.get("t"), last_t)
        if last_t < latest - _CLOCK_NOISE:
            went_back.append(number)
        latest = max(latest, last_t)
        if kind == "mavera.request":
            attempts.append(TraceAttempt(record))
        elif kind == "mavera.end":
            end = record
        elif not attempts:
            raise UsageError(f"{name}: line {number} comes before any mavera.request")
        elif kind == "mavera.response":
            attempts[-1].response = record
        else:
            attempts[-1].reads.append((last_t, _read_data(record, name, number)))
    return Trace(attempts, end, torn, last_t, went_back)


def _check_fields(record: dict[str, Any], kind: str, name: str, number: int) -> None:
    """What a line's readers count on: `t` seconds from 0 to MAX_TRACE_SECONDS (a line
    without one has the time of the line before it), a response's `status` an HTTP status
    and its `headers` an object; a usage error naming the line otherwise."""
    t = record.get("t")
    if t is not None and not _is_seconds(t):
        raise UsageError(
            f"{name}: line {number}: t must be seconds since the first request (a number "
            f"from 0 to {MAX_TRACE_SECONDS:g}), not {_described(t)}"
        )
    if kind == "mavera.response":
        status = record.get("status")
        if status.__class__ is not int or not 100 <= status <= 599:
            raise UsageError(
                f"{name}: line {number}: status must be an HTTP status (100 to 599), "
                f"not {_described(status)}"
            )
        if not isinstance(record.get("headers", {}), dict):
            raise UsageError(f"{name}: line {number}: headers must be an object")


def _is_seconds(value: Any) -> bool:
    return value.__class__ in (int, float) and 0 <= value <= MAX_TRACE_SECONDS


def _described(value: Any) -> str:
    if value.__class__ in (int, float):
        return f"{value:g}" if isinstance(value, float) else str(value)[:40]
    names = {str: "a string", list: "an array", dict: "an object", bool: "a boolean"}
    return names.get(value.__class__, "null")


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """Each line (with its newline) and whether it is the last one."""
    previous: bytes | None = None
    for line in stream:
        if previous is not None:
            yield previous, False
        previous = line
    if previous is not None:
        yield previous, True


def _read_data(record: dict[str, Any], name: str, number: int) -> bytes:
    data = record.get("data")
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    encoded = record.get("b64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            pass
    raise UsageError(f"{name}: line {number} is a mavera.read without data")


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default
