"""`batch` results: one JSONL line per finished item, and reading them back to resume.

Each line goes out in one `os.write` of the whole line (stdout through the masking sink, one
write as well), under one lock, so lines never interleave and a `kill -9` can leave at most
one torn last line. There is no fsync per line: a killed process loses nothing the kernel
already has (the page cache survives it), and resume is about crashes of the process, not of
the machine; one fsync at the end makes a finished run durable.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import orjson

from mavera_cli.batch.items import LONGEST_LINE_BYTES, ItemKey
from mavera_cli.errors import OutputClosed, OutputFailedError
from mavera_cli.jsonout import json_line
from mavera_cli.redact import Redactor
from mavera_cli.render import OutputSink


def finished_keys(path: Path) -> set[ItemKey]:
    """The keys whose latest line in a results file has exit code 0.

    A line that is not a whole JSON object (a crash cut it short) is ignored; so are lines
    without an id.
    """
    finished: set[ItemKey] = set()
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            # A device or a pipe (`-o /dev/stdout`, `-o >(jq …)`) holds no earlier results,
            # and reading one could block or never end (`-o /dev/full` reads zeros forever).
            return finished
        file = path.open("rb")
    except FileNotFoundError:
        return finished
    except OSError as exc:
        raise OutputFailedError(f"cannot read -o {path}: {exc.strerror or exc}") from exc
    with file:
        for raw in iter(lambda: file.readline(LONGEST_LINE_BYTES + 1), b""):
            if not raw.endswith(b"\n"):
                continue  # torn (the run that wrote it was killed mid-line), or no result
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(line, dict) or not isinstance(line.get("id"), str):
                continue
            persona = line.get("persona_id")
            key = (line["id"], persona if isinstance(persona, str) else None)
            if line.get("exit_code") == 0:
                finished.add(key)
            else:
                finished.discard(key)
    return finished


class ResultsWriter:
    """Writes result lines from any thread: to a file (appended) or to the stdout sink."""

    def __init__(
        self, path: Path | None, sink: OutputSink, secret: str | None, *, overwrite: bool
    ) -> None:
        self._lock = threading.Lock()
        self._redactor = Redactor(secret)
        self._sink = sink
        self._fd: int | None = None
        self.path = path
        if path is None:
            return
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_APPEND)
        try:
            self._fd = os.open(path, flags, 0o644)
            if not overwrite and stat.S_ISREG(os.fstat(self._fd).st_mode):
                _cut_torn_tail(self._fd)  # (a pipe or a device has no tail to cut)
        except OSError as exc:
            raise OutputFailedError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def write(self, result: dict[str, Any]) -> None:
        """One whole line, at once."""
        line = self._redactor.data(json_line(result))
        with self._lock:
            if self._fd is None:
                self._sink.write(line)
                self._sink.end()
                return
            try:
                _write_all(self._fd, line)
            except OSError as exc:
                raise OutputFailedError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass  # a pipe or a device: nothing to make durable
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BrokenPipeError:
            raise OutputClosed() from None


def _cut_torn_tail(fd: int) -> None:
    """Drop a last line without its newline (a killed run's), so the next line starts clean."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return
    end = size
    block = 4096
    while end > 0:
        start = max(0, end - block)
        data = os.pread(fd, end - start, start)
        if end == size and data.endswith(b"\n"):
            return
        newline = data.rfind(b"\n")
        if newline != -1:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)
