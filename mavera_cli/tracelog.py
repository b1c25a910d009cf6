"""Where a trace's lines are made and written: in a forked helper process, or in this one.

Each network read becomes a `mavera.read` line: the key masked as a stream (a read may end in
the middle of it), the bytes decoded and JSON-escaped, the line written with one `os.write`.
On a fast stream that is most of what `--trace` costs (escaping SSE's quotes dominates), and
all of it would sit between two reads of the stream. So, where the OS can fork, a child
process does it on the other core: the command only hands each read's bytes down a pipe
(`ForkedLog`). The child is a fork, so it needs no start-up and the key never travels
through argv, the environment or the pipe. `InlineLog` does the same work in this process
(no fork, or a fork that failed), and is what the child runs.

Both take the same calls, in order: `attempt` (a request line; the masking starts over),
`line` (a head line), `read`, and `close` with the last line; `failure` is the first write
error so far. A run killed with SIGKILL leaves whole lines: the child drains what it was
handed and exits when the pipe closes.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import mmap
import os
import select
import signal
import struct
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import NoReturn, Protocol

import orjson

from mavera_cli.redact import StreamRedactor

# A frame's header down the pipe: kind, t, where its payload is in the ring (-1: it follows
# in the pipe), its length.
_FRAME = struct.Struct("<BdqI")
_READ, _ATTEMPT, _LINE = 0, 1, 2
# Room for a few seconds of a fast stream: the child works through it on the other core.
_RING_BYTES = 4 << 20
_PIPED_ABOVE = _RING_BYTES // 4
# Frames handed over and not answered yet: their headers fit in a pipe's 64 KiB, so handing
# one over never waits on a full pipe, and neither do the child's answers.
_MAX_FRAMES = 2048
_CHILD_BUG = 255  # the child's answer when it failed for another reason than a write error
# How long the child lets frames gather before it looks again, on a fast stream: the lines
# reach the file at most this much later.
_GATHER_SECONDS = 0.002
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def read_line(t: float, data: bytes) -> bytes:
    """One `mavera.read` line: the chunk as text, or as base64 when it is not UTF-8.

    The whole line is one `orjson.dumps`, so each line is built in one copy (splicing an
    escaped string into a `%` template copied it once more). Escaping is nearly all of the
    cost: SSE's JSON has a quote every dozen bytes, and orjson escapes those faster than any
    `bytes.replace` chain or `re` pass does (which are 2 to 10 times slower on such text).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return orjson.dumps(
            {"type": "mavera.read", "t": t, "b64": base64.b64encode(data).decode("ascii")},
            option=orjson.OPT_APPEND_NEWLINE,
        )
    return orjson.dumps(
        {"type": "mavera.read", "t": t, "data": text}, option=orjson.OPT_APPEND_NEWLINE
    )


class TraceLog(Protocol):
    def attempt(self, t: float, line: bytes) -> None:
        """A new request's line: what was held of the last stream is written first."""

    def line(self, t: float, line: bytes) -> None:
        """A whole line, after what was held of the stream."""

    def read(self, t: float, chunk: bytes) -> None:
        """One network read, masked as part of the stream."""

    def failure(self) -> OSError | None:
        """The first write error so far (None while all is well)."""

    def close(self, t: float, last_line: bytes | None) -> OSError | None:
        """The held tail, the last line, then the file closed; the first write error."""


class LineWriter:
    """Writes whole lines to `fd`, one `os.write` each, as they come: a killed run leaves
    whole lines."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self.error: OSError | None = None

    def put(self, line: bytes) -> None:
        fd = self._fd
        if fd is None or self.error is not None:
            return
        try:
            _write_all(fd, line)
        except OSError as exc:
            self.error = exc  # the trace writer tells it

    def close(self) -> OSError | None:
        """Close the file; the first write error, if any."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self.error = self.error or exc
        return self.error


class InlineLog:
    """Masks, encodes and writes each line in this process."""

    def __init__(self, fd: int, secret: str | None) -> None:
        self._secret = secret
        self._lines = LineWriter(fd)
        self._stream = StreamRedactor(secret)

    def _release_held(self, t: float) -> None:
        # A tail held as a possible start of the key: the stream went no further, so it
        # was not the key.
        held = self._stream.end()
        if held:
            self._lines.put(read_line(t, held))

    def attempt(self, t: float, line: bytes) -> None:
        self._release_held(t)
        self._stream = StreamRedactor(self._secret)
        self._lines.put(line)

    def line(self, t: float, line: bytes) -> None:
        self._release_held(t)
        self._lines.put(line)

    def read(self, t: float, chunk: bytes) -> None:
        self._lines.put(read_line(t, self._stream.feed(chunk)))

    def failure(self) -> OSError | None:
        return self._lines.error

    def close(self, t: float, last_line: bytes | None) -> OSError | None:
        self._release_held(t)
        if last_line is not None:
            self._lines.put(last_line)
        return self._lines.close()


class ForkedLog:
    """Hands each line and read to the forked child that writes them (`open_log` starts it)
    and waits for it at the end.

    A read's bytes go into a ring of shared memory (one copy, no system call) and a small
    header down a pipe (a write under PIPE_BUF is atomic: a Ctrl-C never tears it); the
    child answers each frame with one byte on a second pipe once it has copied the bytes
    out: 0, or the errno of its first write error. Only a payload too big for the ring goes
    down the pipe itself."""

    def __init__(self, pid: int, frames: int, answers: int, fd: int, ring: mmap.mmap) -> None:
        self._pid = pid
        self._frames: int | None = frames
        self._answers = answers
        self._fd = fd  # shares its offset with the child's: a last line goes after its lines
        self._ring = ring
        self._head = 0  # where the next payload goes
        self._used = 0  # ring bytes the child has not answered for yet
        self._held: deque[int] = deque()  # the ring bytes of each unanswered frame, in order
        self._error: OSError | None = None
        self._gone = False  # the child can no longer be handed anything
        # A payload sent down the pipe was cut by Ctrl-C mid-write: the pipe's frames are
        # out of step, so nothing more goes down it.
        self._cut = False

    def _place(self, size: int) -> tuple[int, int] | None:
        """Where `size` bytes fit in the ring now, and what they take from it (with the
        unused end they skip); None while the child holds too much of it."""
        if self._used == 0:
            self._head = 0
        free = _RING_BYTES - self._used
        if self._head + size <= _RING_BYTES:
            return (self._head, size) if size <= free else None
        skipped = _RING_BYTES - self._head
        return (0, skipped + size) if skipped + size <= free else None

    def _take_answers(self, wait: bool) -> bool:
        """The child's answers so far (waiting for one if `wait`); False once it is gone."""
        if wait:
            select.select([self._answers], [], [])
        try:
            answers = os.read(self._answers, 1 << 16)
        except BlockingIOError:
            return True
        except OSError as exc:
            self._error = self._error or _lost(exc.errno)
            answers = b""
        if not answers:
            self._gone = True
            return False
        # One byte per frame done (its payload copied out of the ring); the last one may
        # tell of the file's closing instead.
        for _ in range(min(len(answers), len(self._held))):
            self._used -= self._held.popleft()
        code = max(answers)
        if code and self._error is None:
            self._error = _lost(None) if code == _CHILD_BUG else OSError(code, os.strerror(code))
        return True

    def _send(self, kind: int, t: float, payload: bytes) -> bool:
        """Hand one frame over; False if it could not be."""
        frames = self._frames
        if frames is None or self._gone or self._cut:
            return False
        size = len(payload)
        try:
            if size > _PIPED_ABOVE:
                self._cut = True  # until the whole payload is in the pipe
                _write_all(frames, _FRAME.pack(kind, t, -1, size) + payload)
                self._cut = False
                self._held.append(0)
                return True
            while (place := self._place(size)) is None or len(self._held) >= _MAX_FRAMES:
                if not self._take_answers(wait=True):
                    return False
            offset, taken = place
            self._ring[offset : offset + size] = payload
            os.write(frames, _FRAME.pack(kind, t, offset, size))
        except OSError as exc:  # the child is gone
            self._error = self._error or _lost(exc.errno)
            self._gone = True
            return False
        self._head = offset + size
        self._used += taken
        self._held.append(taken)
        return True

    def attempt(self, t: float, line: bytes) -> None:
        self._send(_ATTEMPT, t, line)

    def line(self, t: float, line: bytes) -> None:
        self._send(_LINE, t, line)

    def read(self, t: float, chunk: bytes) -> None:
        self._send(_READ, t, chunk)

    def failure(self) -> OSError | None:
        if self._error is None and not self._gone:
            self._take_answers(wait=False)
        return self._error

    def close(self, t: float, last_line: bytes | None) -> OSError | None:
        handed = last_line is None or self._send(_LINE, t, last_line)
        frames, self._frames = self._frames, None
        if frames is None:
            return self._error
        os.close(frames)  # the child writes what it was handed, then exits
        try:
            while not self._gone and self._take_answers(wait=True):
                pass
            _, status = os.waitpid(self._pid, 0)
        finally:
            os.close(self._answers)
            self._ring.close()
        if status != 0:
            self._error = self._error or _lost(None)
        lines = LineWriter(self._fd)
        if not handed and last_line is not None:
            lines.put(last_line)  # the child could not be handed it: it has exited now
        failure = lines.close()
        return self._error or failure


def open_log(fd: int, secret: str | None, now: Callable[[], float]) -> TraceLog:
    """A log writing to `fd` (which it owns from now on): a forked child where the OS can
    fork, else this process. `now` is the trace's clock (the `t` of its lines)."""
    if not hasattr(os, "fork") or not hasattr(signal, "pthread_sigmask"):
        return InlineLog(fd, secret)
    try:
        ring = mmap.mmap(-1, _RING_BYTES)  # anonymous and shared: the child sees our writes
    except OSError:
        return InlineLog(fd, secret)
    frames_out, frames_in = os.pipe()
    answers_out, answers_in = os.pipe()
    # Ctrl-C or SIGTERM between the fork and the child ignoring them would end the child in
    # Python's handler: they wait, blocked, until each side is ready for them.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        with warnings.catch_warnings():
            # (Python 3.12+ warns of a fork while threads run: the child takes none of their
            # locks, it only reads, formats and writes.)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pid = os.fork()
            except OSError:
                pid = -1
        if pid == 0:
            _child(frames_out, answers_in, fd, ring, secret, now)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if pid < 0:
        for end in (frames_out, frames_in, answers_out, answers_in):
            os.close(end)
        ring.close()
        return InlineLog(fd, secret)
    os.close(frames_out)
    os.close(answers_in)
    os.set_blocking(answers_out, False)
    return ForkedLog(pid, frames_in, answers_out, fd, ring)


def _child(
    frames: int,
    answers: int,
    fd: int,
    ring: mmap.mmap,
    secret: str | None,
    now: Callable[[], float],
) -> NoReturn:
    """The forked writer: every frame, in order, until the pipe closes; never returns."""
    code = 0
    try:
        for number in _SIGNALS:
            signal.signal(number, signal.SIG_IGN)  # the command decides when the trace ends
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        # Nothing else of the command's: its sockets, its stdout (a reader waiting for EOF
        # must not wait for us), the other ends of our pipes.
        _close_all_but({frames, answers, fd})
        log = InlineLog(fd, secret)
        inbox = _Inbox(frames)
        done = bytearray()  # the answers not sent yet: one byte per frame
        failed = False
        while (head := inbox.take(_FRAME.size)) is not None:
            kind, t, offset, size = _FRAME.unpack(head)
            if offset < 0:
                payload = inbox.take(size)
                if payload is None:
                    break  # cut mid-way: the command was killed or interrupted
            else:
                payload = ring[offset : offset + size]
            if kind == _READ:
                log.read(t, payload)
            elif kind == _ATTEMPT:
                log.attempt(t, payload)
            else:
                log.line(t, payload)
            error = log.failure()
            done += _error_byte(error) if error is not None and not failed else b"\0"
            failed = error is not None
            if inbox.empty:
                os.write(answers, done)
                done.clear()
                # Let the next frames gather: a write to the pipe wakes nobody while we
                # sleep, which is most of the cost of handing a frame over (the command
                # pays it). When nothing came meanwhile, `take` waits on the pipe.
                time.sleep(_GATHER_SECONDS)
        # The pipe closed: after the command's last line, or because it was killed.
        error = log.close(now(), None)
        if error is not None and not failed:
            os.write(answers, _error_byte(error))
    except BaseException:
        code = 1
        with contextlib.suppress(OSError):
            os.write(answers, bytes([_CHILD_BUG]))
    finally:
        os._exit(code)  # no atexit, no flushing the command's buffers a second time


class _Inbox:
    """The child's end of the frames pipe, read in large pieces."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._data = bytearray()

    @property
    def empty(self) -> bool:
        return not self._data

    def take(self, size: int) -> bytes | None:
        """The next `size` bytes, waiting for them; None at EOF (a frame cut by it is
        dropped)."""
        while len(self._data) < size:
            piece = os.read(self._fd, max(1 << 16, size - len(self._data)))
            if not piece:
                return None
            self._data += piece
        taken = bytes(self._data[:size])
        del self._data[:size]
        return taken


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # a short write (a pipe, a full disk): the rest in turn
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _close_all_but(keep: set[int]) -> None:
    lowest = 0
    for fd in sorted(keep):
        os.closerange(lowest, fd)
        lowest = fd + 1
    os.closerange(lowest, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


def _error_byte(error: OSError) -> bytes:
    """The child's answer for its first write error: the errno (1–254), in one byte."""
    code = error.errno if error.errno is not None and 0 < error.errno < _CHILD_BUG else errno.EIO
    return bytes([code])


def _lost(number: int | None) -> OSError:
    return OSError(number or errno.EIO, "the trace writer process ended")
