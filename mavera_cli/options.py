"""What the shared flags mean, as plain frozen objects (no Typer here: the core may read them).

`typer_options.py` declares the flags themselves; a command receives them as one of these.
"""

from dataclasses import dataclass, field
from typing import Any

from mavera_cli.errors import UsageError


@dataclass(frozen=True)
class DiagnosticOptions:
    """What goes to stderr: nothing (-q), more (-v), and whether in colour."""

    quiet: bool = False
    verbose: bool = False
    no_color: bool = False


@dataclass(frozen=True)
class RequestOptions(DiagnosticOptions):
    """The flags `ask`, `stream`, `json` and `tools` share."""

    # Defaults are "flag not given", so a command with fewer flags (personas) names only its own.
    files: list[str] = field(default_factory=list)
    base_url: str | None = None
    persona: str | None = None
    model: str | None = None
    instructions: str | None = None
    timeout: float | None = None
    max_time: float | None = None
    retries: int | None = None
    save_raw: str | None = None
    mock: bool = False
    no_newline: bool = False
    allow_insecure_http: bool = False
    usage: bool = False
    trace: str | None = None
    timing: bool = False
    # Conversations and markdown (issue 14).
    session: str | None = None
    continue_last: bool = False
    previous_response_id: str | None = None
    raw: bool = False

    def __post_init__(self) -> None:
        # An empty file name read as "not given" before: the run wrote no file, silently.
        for flag, path in (("--save-raw", self.save_raw), ("--trace", self.trace)):
            if path is not None and not path.strip():
                raise UsageError(f"{flag}: the file name is empty")

    @classmethod
    def diagnostics_only(cls, diag: DiagnosticOptions) -> "RequestOptions":
        """No request flags, only -q/-v/--no-color: for commands that read settings or files."""
        return cls(quiet=diag.quiet, verbose=diag.verbose, no_color=diag.no_color)

    def setting_flags(self) -> dict[str, Any]:
        """The flags that take part in settings resolution (flag > env > config > default)."""
        return {
            "base_url": self.base_url,
            "persona": self.persona,
            "model": self.model,
            "instructions": self.instructions,
            "timeout": self.timeout,
            "max_time": self.max_time,
            "retries": self.retries,
            "allow_insecure_http": self.allow_insecure_http,
        }
