"""Diagnostics on stderr, gated by -q/-v, with the API key masked in everything written.

stdout is never touched here. rich is imported only for decorative output on a terminal: the
waiting spinner, previews and tables, which appear only when stderr is a TTY.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

from mavera_cli.printable import terminal_safe
from mavera_cli.redact import Redactor, StreamRedactor, mask_url_credentials

# Matches rich's own Status: smooth enough for the "dots" spinner, cheap on the CPU.
SPINNER_REFRESH_PER_SECOND = 12.5
# Elapsed seconds are shown once a wait is long enough to make a person wonder.
SPINNER_SHOW_ELAPSED_AFTER = 2.0


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
        self._redactor = Redactor(secret)
        self._stream_redactor = StreamRedactor(secret)
        environ = os.environ if environ is None else environ
        self.is_tty = _isatty(self.stream)
        self.color = color_enabled(no_color=no_color, is_tty=self.is_tty, environ=environ)
        self._dumb = environ.get("TERM") == "dumb"
        self._console: Any = None
        self._live: Any = None

    @property
    def decorative(self) -> bool:
        """Spinners and previews: only for a person at a terminal (never when piped)."""
        return self.is_tty and not self.quiet and not self._dumb

    def spinner(self, message: str) -> Spinner:
        """A transient spinner for a wait; it does nothing unless the terminal is decorative."""
        return Spinner(self, message)

    def mask(self, secret: str | None) -> None:
        """Mask this secret from now on (known once settings are resolved)."""
        self._redactor = Redactor(secret)
        self._stream_redactor = StreamRedactor(secret)

    def redact(self, text: str) -> str:
        return self._redactor.text(text)

    def redact_piece(self, text: str) -> str:
        """Text written to stderr in pieces (call arguments as they stream), the key masked
        even when split between pieces: a possible start of it waits for the next piece, and
        a piece ending in a newline releases it (a key holds no whitespace)."""
        if not self._stream_redactor.active:
            return text
        # The key is ASCII (config.py), so what is released always ends on a character.
        piece = self._stream_redactor.feed(text.encode("utf-8", "surrogatepass"))
        return piece.decode("utf-8", "surrogatepass")

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
        # Messages quote server text (error bodies, headers): no escape sequence of theirs
        # may reach the terminal, and a line stays one line. They quote URLs too, whose
        # user-info may be a password. Masked last: removing a control character hidden
        # inside the key (`mvra_\x07live…`) must not join it again after the mask looked.
        text = mask_url_credentials(self.redact(terminal_safe(text)))
        if self._live is not None:
            # Printed through the live display, the line lands above the spinner, not inside it.
            self._live.console.print(
                text, style=_RICH_STYLES.get(color), markup=False, highlight=False, soft_wrap=True
            )
            return
        if self.color:
            text = f"\x1b[{color}m{text}\x1b[0m"
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # stderr gone (closed, or `2>&-` from the start: None): nothing left to tell

    def console(self) -> Any:
        """A rich Console on stderr, for decorative output (spinner, preview, tables)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self.stream,
                stderr=True,
                no_color=not self.color,
                force_terminal=self.is_tty,
                highlight=False,
            )
        return self._console


class Spinner:
    """A "waiting…" spinner on the stderr console; `start`/`stop` are safe to call any time."""

    def __init__(self, terminal: Terminal, message: str) -> None:
        self._terminal = terminal
        self._message = message
        self._live: Any = None

    def start(self) -> None:
        if self._live is not None or not self._terminal.decorative:
            return
        from rich.live import Live

        # redirect_* stay off: rich would otherwise swap sys.stdout, the product's channel.
        self._live = Live(
            _Waiting(self._message),
            console=self._terminal.console(),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=SPINNER_REFRESH_PER_SECOND,
        )
        self._live.start(refresh=True)
        self._terminal._live = self._live

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            self._terminal._live = None
            live.stop()

    def __enter__(self) -> Spinner:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _Waiting:
    """The spinner's renderable: the message, then the seconds waited once they add up."""

    def __init__(self, message: str) -> None:
        from rich.spinner import Spinner as RichSpinner

        self._message = message
        self._started = time.monotonic()
        self._spinner = RichSpinner("dots", text=message, style="cyan")

    def __rich__(self) -> Any:
        elapsed = time.monotonic() - self._started
        if elapsed >= SPINNER_SHOW_ELAPSED_AFTER:
            self._spinner.update(text=f"{self._message} {elapsed:.0f}s")
        return self._spinner


# The ANSI colours `_line` uses, as rich styles for lines printed while a spinner runs.
_RICH_STYLES = {"31": "red", "33": "yellow", "2": "dim"}


def color_enabled(*, no_color: bool, is_tty: bool, environ: Mapping[str, str]) -> bool:
    """Colour policy: --no-color, then NO_COLOR, then FORCE_COLOR, then "is stderr a TTY".

    NO_COLOR and FORCE_COLOR count when set to a non-empty value (no-color.org,
    force-color.org); FORCE_COLOR=0 is read as "off", as Node and chalk read it.
    """
    if no_color or environ.get("NO_COLOR"):
        return False
    force = environ.get("FORCE_COLOR", "")
    if force:
        return force.lower() not in ("0", "false")
    return is_tty


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
