"""What the process boundary needs to report a failure: the terminal, and the product renderer.

`entry.main()` creates one `Reporter`, hands it to the command (Typer's `ctx.obj`), and, when
the command raises, asks it to report. The command fills it in as it builds things, so a
failure at any stage is told the right way: with -q honoured, the key masked, and a last
`mavera.error` line for an NDJSON reader.
"""

from __future__ import annotations

from typing import BinaryIO

from mavera_cli.errors import MaveraError, OutputClosed, OutputFailedError
from mavera_cli.options import DiagnosticOptions
from mavera_cli.render import Renderer
from mavera_cli.terminal import Terminal


class Reporter:
    """Where and how the boundary reports the failure of one invocation."""

    def __init__(self) -> None:
        self.diagnostics = DiagnosticOptions()
        self.terminal: Terminal | None = None
        self.renderer: Renderer | None = None
        self.ndjson_stdout: BinaryIO | None = None  # an NDJSON mode before its renderer exists

    def use(self, diagnostics: DiagnosticOptions) -> None:
        """The command's -q/-v/--no-color, known before anything else is built."""
        self.diagnostics = diagnostics

    def report(self, error: MaveraError) -> None:
        """Tell the product's reader (NDJSON's last line), then the person (one stderr line)."""
        try:
            if self.renderer is not None:
                self.renderer.fail(error, None)  # a no-op if the core already told it
            elif self.ndjson_stdout is not None:
                from mavera_cli.render import OutputSink
                from mavera_cli.render.ndjson import error_line

                OutputSink(self.ndjson_stdout).write(error_line(error))
        except (OutputFailedError, OutputClosed):
            pass  # stdout itself is what failed, or its reader left: stderr still tells why
        self.error(error.message)

    def error(self, message: str) -> None:
        """One `mavera: error:` line on stderr (unless -q)."""
        terminal = self.terminal
        if terminal is None:
            diag = self.diagnostics
            terminal = Terminal(quiet=diag.quiet, verbose=diag.verbose, no_color=diag.no_color)
        terminal.error(message)
