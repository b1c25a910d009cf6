"""The conversation commands: `chat`, and `sessions` (list), `sessions show`, `sessions rm`.

The store is `sessions.py`, the turn logic `conversation.py`, the chat loop `chat.py`.
(No `from __future__ import annotations`: Typer would eval every annotation string at each start.)
"""

from typing import Annotated

import typer

from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.typer_options import (
    JsonLinesFlag,
    UsageLineCommand,
    command_group,
    diagnostic_options,
    reporter_of,
    request_options,
)

SessionName = Annotated[
    str,
    typer.Argument(metavar="NAME", help="The session's name, or a path (a NAME with /)."),
]


@request_options
def chat(ctx: typer.Context, *, opts: RequestOptions) -> None:
    """Hold a conversation: each line you type is a turn; answers stream as they arrive.

    On a terminal: line editing and input history, /reset forgets the conversation, /exit or
    Ctrl-D leaves, Ctrl-C stops only the current answer (that turn is not kept). With stdin
    not a terminal, each line is one turn and the answers go to stdout in order, each ending
    with a newline; the first failed turn ends the chat with its exit code. With --session
    the conversation is kept and can be continued by any command.

    Examples:

    \b
      mavera chat --mock
      mavera chat --session work -p "$PERSONA"
      printf 'hello\\nand again\\n' | mavera chat --mock
    """
    from mavera_cli.chat import run_chat

    run_chat(reporter_of(ctx), opts)


sessions_app = command_group(
    "sessions",
    "List, show and remove saved conversations (`--session NAME`).",
    invoke_without_command=True,
)


@sessions_app.callback()
def sessions_callback(ctx: typer.Context) -> None:
    """List, show and remove saved conversations; without a command, list them."""
    if ctx.invoked_subcommand is None:
        _list(ctx, DiagnosticOptions(), json_lines=False)


@diagnostic_options
def sessions_list(
    ctx: typer.Context,
    json_lines: JsonLinesFlag = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """List the saved sessions, most recently used first (name, turns, last used, persona).

    Examples:

    \b
      mavera sessions list
      mavera sessions list --json | jq -r .name
    """
    _list(ctx, diag, json_lines=json_lines)


def _list(ctx: typer.Context, diag: DiagnosticOptions, *, json_lines: bool) -> None:
    from mavera_cli.invocation import invocation
    from mavera_cli.render.sessions import write_session_list
    from mavera_cli.sessions import list_sessions

    opts = RequestOptions.diagnostics_only(diag)
    with invocation(reporter_of(ctx), opts) as inv:
        rows = list_sessions(inv.environ)
        write_session_list(rows, inv.sink, as_table=not json_lines and inv.stdout.isatty())


@diagnostic_options
def sessions_show(
    ctx: typer.Context,
    name: SessionName,
    json_output: Annotated[
        bool, typer.Option("--json", help="The stored session: its settings and items.")
    ] = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """Print a saved conversation, one line per message, call and tool output.

    Examples:

    \b
      mavera sessions show work
      mavera sessions show work --json | jq '.turns | length'
    """
    from mavera_cli.errors import UsageError
    from mavera_cli.invocation import invocation
    from mavera_cli.render.sessions import write_session
    from mavera_cli.sessions import load_session

    opts = RequestOptions.diagnostics_only(diag)
    with invocation(reporter_of(ctx), opts) as inv:
        session = load_session(name, inv.environ)
        if not session.exists:
            raise UsageError(f"no session named {name} ({session.path})")
        on_terminal = inv.stdout.isatty()
        write_session(session, inv.sink, as_json=json_output, on_terminal=on_terminal)


@diagnostic_options
def sessions_rm(ctx: typer.Context, name: SessionName, *, diag: DiagnosticOptions) -> None:
    """Delete a saved session.

    Examples:

    \b
      mavera sessions rm work
      mavera sessions rm ./notes/talk.json
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.sessions import remove_session

    opts = RequestOptions.diagnostics_only(diag)
    with invocation(reporter_of(ctx), opts) as inv:
        remove_session(name, inv.environ)


sessions_app.command("list", cls=UsageLineCommand)(sessions_list)
sessions_app.command("show", cls=UsageLineCommand)(sessions_show)
sessions_app.command("rm", cls=UsageLineCommand)(sessions_rm)
