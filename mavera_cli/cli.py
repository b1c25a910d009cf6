"""The Typer app: the command tree, its help and exit-code table. The commands themselves, with
their options and help, are in `commands/`; shared options in `typer_options.py`.

Each command reads its flags and names a job; wiring lives in `invocation.py`, renderer choice
in `render/choose.py`. Nothing in this layer catches errors or talks HTTP: `entry.main()` is
the one boundary that reports failures (through the `Reporter` it hands every command as
`ctx.obj`). (No `from __future__ import annotations` here: Typer would have to eval every annotation
string at each start, which costs more than the whole command tree.)
"""

import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Annotated, Any

import typer

from mavera_cli import __version__
from mavera_cli.errors import EXIT_CODE_MEANINGS
from mavera_cli.typer_options import UsageLineCommand, command_group


def _exit_code_table() -> str:
    # "\b" keeps Click from re-wrapping the table into one paragraph.
    width = max(len(code.name) for code in EXIT_CODE_MEANINGS)
    rows = [
        f"{int(code):>3}  {code.name:<{width}} {text}" for code, text in EXIT_CODE_MEANINGS.items()
    ]
    more = "Run 'mavera COMMAND --help' for examples, 'man mavera' for everything."
    return "\b\nExit codes:\n" + "\n".join(rows) + "\n\n" + more


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mavera {__version__}\n")
        raise typer.Exit()


def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Command-line client for the Mavera Responses API."""


# The command tree, in the order `--help` lists it: each name's module in `commands/` and
# the command (or group of its own) there. A module is imported only when its command is
# built, and a start builds only the command it runs (see app_for).
COMMANDS: dict[str, tuple[str, str]] = {
    "stream": ("requests", "stream"),
    "ask": ("requests", "ask"),
    "replay": ("requests", "replay"),
    "inspect": ("inspect", "inspect"),
    "json": ("requests", "json_command"),
    "tools": ("requests", "tools_command"),
    "batch": ("batch", "batch"),
    "chat": ("conversation", "chat"),
    "sessions": ("conversation", "sessions_app"),
    "completion": ("service", "completion"),
    "config": ("service", "config_app"),
    "personas": ("service", "personas"),
    "usage": ("batch", "usage"),
    "mock": ("service", "mock"),
}


def _build(only: str | None = None) -> typer.Typer:
    """The app: every command, or only the one named."""
    built = command_group(
        "mavera",
        "Command-line client for the Mavera Responses API: streams answers as they arrive, "
        "and ends with an exit code that says exactly how the request ended.",
        epilog=_exit_code_table(),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    built.callback()(main_callback)
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        entry = getattr(import_module(f"mavera_cli.commands.{module}"), attribute)
        if isinstance(entry, typer.Typer):
            built.add_typer(entry, name=name)
        else:
            built.command(name, cls=UsageLineCommand)(entry)
    return built


def app_for(args: Sequence[str]) -> typer.Typer:
    """The app to run `args` with: only the command they name, when they start with one's
    name (every command's module and Click objects cost ~10 ms at each start, a third of
    a `stream`'s own time to its first delta); else the whole tree, for its help and its
    errors ("No such command 'strem'. Did you mean 'stream'?")."""
    if args and args[0] in COMMANDS:
        return _build(args[0])
    return _build()


def command_spec() -> Any:
    """The live command tree as a `clispec.CommandSpec` (completions, man page, checks)."""
    from mavera_cli.clispec import describe

    return describe(typer.main.get_command(_build()))
