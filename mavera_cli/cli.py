"""The Typer app: the command tree, its help and exit-code table. The commands themselves, with
their options and help, are in `commands/`; shared options in `typer_options.py`.

Each command reads its flags and names a job; wiring lives in `invocation.py`, renderer choice
in `render/choose.py`. Nothing in this layer catches errors or talks HTTP: `entry.main()` is
the one boundary that reports failures (through the `Reporter` it hands every command as
`ctx.obj`). (No `from __future__ import annotations` here: Typer would have to eval every annotation
string at each start, which costs more than the whole command tree.)
"""

import sys
from typing import Annotated, Any

import typer

from mavera_cli import __version__
from mavera_cli.commands import batch, conversation, inspect, requests, service
from mavera_cli.errors import EXIT_CODE_MEANINGS
from mavera_cli.typer_options import UsageLineCommand


def _exit_code_table() -> str:
    # "\b" keeps Click from re-wrapping the table into one paragraph.
    width = max(len(code.name) for code in EXIT_CODE_MEANINGS)
    rows = [
        f"{int(code):>3}  {code.name:<{width}} {text}" for code, text in EXIT_CODE_MEANINGS.items()
    ]
    more = "Run 'mavera COMMAND --help' for examples, 'man mavera' for everything."
    return "\b\nExit codes:\n" + "\n".join(rows) + "\n\n" + more


app = typer.Typer(
    name="mavera",
    help=(
        "Command-line client for the Mavera Responses API: streams answers as they arrive, "
        "and ends with an exit code that says exactly how the request ended."
    ),
    epilog=_exit_code_table(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def command_spec() -> Any:
    """The live command tree as a `clispec.CommandSpec` (completions, man page, checks)."""
    from mavera_cli.clispec import describe

    return describe(typer.main.get_command(app))


# Registered here, in the order `--help` lists them.
app.command(cls=UsageLineCommand)(requests.stream)
app.command(cls=UsageLineCommand)(requests.ask)
app.command(cls=UsageLineCommand)(requests.replay)
app.command(cls=UsageLineCommand)(inspect.inspect)
app.command("json", cls=UsageLineCommand)(requests.json_command)
app.command("tools", cls=UsageLineCommand)(requests.tools_command)
app.command(cls=UsageLineCommand)(batch.batch)
app.command(cls=UsageLineCommand)(conversation.chat)
app.add_typer(conversation.sessions_app, name="sessions")
conversation.sessions_app.command("list", cls=UsageLineCommand)(conversation.sessions_list)
conversation.sessions_app.command("show", cls=UsageLineCommand)(conversation.sessions_show)
conversation.sessions_app.command("rm", cls=UsageLineCommand)(conversation.sessions_rm)
app.command(cls=UsageLineCommand)(service.completion)

config_app = typer.Typer(
    name="config",
    help="Show the settings mavera uses and where each comes from.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_app, name="config")
config_app.command("show", cls=UsageLineCommand)(service.config_show)

app.command(cls=UsageLineCommand)(service.personas)
app.command(cls=UsageLineCommand)(batch.usage)
app.command(cls=UsageLineCommand)(service.mock)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mavera {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Command-line client for the Mavera Responses API."""
