"""Diagnostics on stderr, gated by -q/-v, with the API key masked in everything written.

stdout is never touched here. rich is imported only for decorative output on a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

KEY_MASK = "***"


class Terminal:
    """The one object that writes to stderr."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        verbose: bool = False,
        no_color: bool = False,
        secret: str | None = None,
        stream: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.secret = secret
        environ = os.environ if environ is None else environ
        self.is_tty = _isatty(self.stream)
        force = bool(environ.get("FORCE_COLOR"))
        self.color = not no_color and "NO_COLOR" not in environ and (self.is_tty or force)
        self._console: Any = None

    @property
    def decorative(self) -> bool:
        """Spinners and previews: only for a person at a terminal."""
        return self.is_tty and not self.quiet

    def redact(self, text: str) -> str:
        if self.secret and self.secret in text:
            text = text.replace(self.secret, KEY_MASK)
        return text

    def error(self, message: str) -> None:
        """One line; -q silences it, the exit code still speaks."""
        if not self.quiet:
            self._line(f"mavera: error: {message}", "31")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._line(f"mavera: warning: {message}", "33")

    def info(self, message: str) -> None:
        if not self.quiet:
            self._line(f"mavera: {message}", "2")

    def debug(self, message: str) -> None:
        if self.verbose:
            self._line(message, "2")

    def _line(self, text: str, color: str) -> None:
        text = " ".join(self.redact(text).splitlines()) or text
        if self.color:
            text = f"\x1b[{color}m{text}\x1b[0m"
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone: nothing left to tell

    def console(self) -> Any:
        """A rich Console on stderr, for decorative output (spinner, preview, tables)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self.stream,
                stderr=True,
                no_color=not self.color,
                force_terminal=self.is_tty or None,
                highlight=False,
            )
        return self._console


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
