"""Raw captures: `--save-raw` writes the bytes received; `replay` reads them back as chunks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from mavera_cli.errors import UsageError
from mavera_cli.redact import Redactor

REPLAY_CHUNK = 64 * 1024


class CaptureWriter:
    """The exact body bytes of one attempt (never headers, and the key masked if echoed)."""

    def __init__(self, path: str, secret: str | None) -> None:
        self._path = path
        self._redactor = Redactor(secret)
        self._file: BinaryIO | None = None

    def start_attempt(self) -> None:
        """Begin again: a retried request's capture replaces the failed attempt's."""
        self.close()
        try:
            self._file = open(self._path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise UsageError(f"cannot write {self._path}: {exc.strerror or exc}") from exc

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            return
        self._file.write(self._redactor.data(chunk))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextmanager
def replay_chunks(path: str) -> Iterator[Iterator[bytes]]:
    """A saved capture as a chunk source for the core (`-` reads stdin)."""
    try:
        stream: BinaryIO = open(path, "rb") if path != "-" else _stdin()  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        yield iter(lambda: stream.read1(REPLAY_CHUNK), b"")  # type: ignore[attr-defined]
    finally:
        if path != "-":
            stream.close()


def _stdin() -> BinaryIO:
    return sys.stdin.buffer
