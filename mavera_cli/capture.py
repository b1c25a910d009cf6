"""Raw captures: `--save-raw` writes the bytes received (atomically); `replay` reads them back,
and reads `--trace` files too (the last attempt's reads, paced like the original with `--pace`)."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from mavera_cli.errors import OutputFailedError, UsageError
from mavera_cli.redact import StreamRedactor

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
        target = os.path.realpath(self._path)  # through a symlink, replace what it points at
        try:
            mode = os.stat(target).st_mode
        except OSError:
            mode = None
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


def parse_pace(value: str) -> float:
    """`--pace original|FACTOR`: how many times faster than recorded (original is 1)."""
    if value == "original":
        return 1.0
    try:
        factor = float(value)
    except ValueError:
        factor = 0.0
    if not factor > 0 or factor == float("inf"):
        raise UsageError(f"--pace takes `original` or a speed factor above 0, not {value!r}")
    return factor


@contextmanager
def replay_chunks(
    path: str,
    pace: float | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Iterator[bytes]]:
    """A saved capture or trace as a chunk source for the core (`-` reads stdin).

    A trace gives its last attempt's reads (what `--save-raw` would have kept); with `pace`
    (a speed factor) each read comes when it came in the recording, counted from the
    attempt's request, so the wait before the first read is re-created too.
    """
    from mavera_cli.trace import open_recording, read_trace

    with open_recording(path) as (stream, is_trace):
        if not is_trace:
            if pace is not None:
                raise UsageError(
                    f"--pace needs a trace (--trace FILE): {path} is a raw capture, without times"
                )
            yield iter(lambda: stream.read1(REPLAY_CHUNK), b"")  # type: ignore[attr-defined]
            return
        attempt = read_trace(stream, path).last_attempt
        reads = attempt.reads if attempt is not None else []
        if pace is None:
            yield (data for _, data in reads)
        else:
            yield _paced(reads, attempt.start if attempt else 0.0, pace, sleep, clock)


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
        wait = began + max(0.0, at - start) / pace - clock()
        if wait > 0:
            sleep(wait)
        yield data
