"""The service commands: `completion`, `config show`, `personas` and `mock`.

(No `from __future__ import annotations`: Typer would eval every annotation string at each start.)
"""

import sys
from enum import StrEnum
from typing import Annotated

import typer

from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.typer_options import (
    JsonLinesFlag,
    UsageLineCommand,
    account_options,
    command_group,
    diagnostic_options,
    reporter_of,
)


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    ctx: typer.Context,
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> None:
    """Print the TAB-completion script for bash, zsh or fish.

    Install it once, as below. The script is static: pressing TAB never starts Python.

    Examples:

    \b
      mavera completion bash > ~/.local/share/bash-completion/completions/mavera
      mavera completion zsh > "${fpath[1]}/_mavera"
      mavera completion fish > ~/.config/fish/completions/mavera.fish
    """
    from mavera_cli import cli
    from mavera_cli.completion import script
    from mavera_cli.invocation import standard_streams
    from mavera_cli.render import OutputSink

    stdout, _, _ = standard_streams()
    OutputSink(stdout).write(script(shell.value, cli.command_spec()).encode())


@diagnostic_options
def config_show(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object: {name: {value, source}}.")
    ] = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """Print the resolved settings and where each came from.

    The API key is masked. Sources are the environment, the config file ($MAVERA_CONFIG, else
    $XDG_CONFIG_HOME/mavera/config.toml) and the defaults; flags, given per command, win
    over all of them.

    Examples:

    \b
      mavera config show
      MAVERA_MODEL=mavera-1 mavera config show
      mavera config show --json | jq -r .base_url.source
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.render.settings import settings_rows, write_settings

    opts = RequestOptions.diagnostics_only(diag)
    with invocation(reporter_of(ctx), opts) as inv:
        rows = settings_rows(inv.settings, inv.environ)
        write_settings(rows, inv.sink, as_json=json_output)


@account_options
def personas(
    ctx: typer.Context,
    json_lines: JsonLinesFlag = False,
    *,
    opts: RequestOptions,
) -> None:
    """List the personas your key can use (id, name, category).

    Examples:

    \b
      mavera personas
      mavera personas --json | jq -r 'select(.category=="Generational") | .id'
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.render.table import render_personas

    with invocation(reporter_of(ctx), opts) as inv:
        with inv.connect() as api:
            items = api.call(api.client.list_personas)
        as_table = not json_lines and inv.stdout.isatty()
        render_personas(items, inv.sink, as_table=as_table)


def _fault_kinds() -> list[str]:
    """What TAB offers for `--fault`: each kind, a counted one up to its colon."""
    from mavera_cli.mock.faults import KIND_LIST

    return [kind.removesuffix("N") for kind in KIND_LIST.split(", ")]


def mock(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Loopback address to bind.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="Port; 0 picks a free one.")
    ] = 0,
    fault: Annotated[
        str | None,
        typer.Option(
            "--fault",
            metavar="KIND",
            help="Inject a failure: rate-limit, server-error, drop-after:N, stall-after:N, "
            "failed, incomplete, bad-json.",
            autocompletion=_fault_kinds,
        ),
    ] = None,
    fail_first: Annotated[
        int | None,
        typer.Option(
            "--fail-first", metavar="N", help="Apply the fault to the first N requests only."
        ),
    ] = None,
    pace_ms: Annotated[
        int, typer.Option("--pace-ms", metavar="MS", help="Milliseconds between events.")
    ] = 0,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit",
            metavar="N/SECONDS",
            help="Allow at most N requests in any SECONDS (a sliding window); more get 429 "
            "with Retry-After.",
        ),
    ] = None,
    think_ms: Annotated[
        int,
        typer.Option("--think-ms", metavar="MS", help="Milliseconds before each answer starts."),
    ] = 0,
) -> None:
    """Run a local, loopback-only fake Mavera server; prints its base URL first.

    A prompt containing `mock-fault:KIND` gets that fault whatever --fault says, so one
    batch can see every outcome.

    Examples:

    \b
      mavera mock --port 8080 &
      mavera mock --fault drop-after:5 --pace-ms 50
      mavera mock --rate-limit 100/1 --think-ms 50
    """
    from mavera_cli.mock import MockServer

    server = MockServer(
        host=host,
        port=port,
        fault=fault,
        fail_first=fail_first,
        pace_ms=pace_ms,
        rate_limit=rate_limit,
        think_ms=think_ms,
    )
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    server.serve_forever()


config_app = command_group(
    "config", "Show the settings mavera uses and where each comes from.", no_args_is_help=True
)
config_app.command("show", cls=UsageLineCommand)(config_show)
