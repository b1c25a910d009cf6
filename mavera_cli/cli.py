"""The Typer app: commands, their options and help. Each command reads its flags and names a job.

Wiring lives in `invocation.py`, shared options in `typer_options.py`, renderer choice in
`render/choose.py`; nothing here catches errors or talks HTTP, and `entry.main()` is the one
boundary that reports failures (through the `Reporter` it hands every command as `ctx.obj`).
(No `from __future__ import annotations` here: Typer would have to eval every annotation
string at each start, which costs more than the whole command tree.)
"""

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from mavera_cli import __version__
from mavera_cli.errors import EXIT_CODE_MEANINGS
from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.reporting import Reporter
from mavera_cli.typer_options import diagnostic_options, request_options


def _exit_code_table() -> str:
    # "\b" keeps Click from re-wrapping the table into one paragraph.
    rows = [f"{int(code):>3}  {code.name:<15} {text}" for code, text in EXIT_CODE_MEANINGS.items()]
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


def _reporter(ctx: typer.Context) -> Reporter:
    """The boundary's reporter for this run (entry.main passes it; tests may not)."""
    return ctx.ensure_object(Reporter)


PromptWords = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PROMPT",
        help="The prompt; `-` reads stdin. Piped stdin comes first.",
        show_default=False,
    ),
]


# --- request commands ------------------------------------------------------------------------


@app.command()
@request_options
def stream(
    ctx: typer.Context,
    words: PromptWords = None,
    events: Annotated[
        bool,
        typer.Option("--events", help="Write every event as NDJSON instead of the text."),
    ] = False,
    *,
    opts: RequestOptions,
) -> None:
    """Stream an answer: print each text delta the moment it arrives.

    Examples:

    \b
      mavera stream --mock "hello"
      cat notes.md | mavera stream -p "$PERSONA" "summarise this"
      mavera stream --events "hi" | jq -c 'select(.type=="response.completed") | .response.usage'
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.payload import build_payload
    from mavera_cli.render.choose import OutputMode, renderer_for

    with invocation(_reporter(ctx), opts, ndjson=events) as inv:
        mode = OutputMode.events if events else OutputMode.text
        renderer = inv.show(
            renderer_for(mode, inv.sink, inv.terminal, final_newline=not opts.no_newline)
        )
        prompt = inv.read_prompt(words or [])
        with inv.connect() as api:
            api.stream(build_payload(api.settings, prompt, stream=True), renderer)


@app.command()
@request_options
def ask(
    ctx: typer.Context,
    words: PromptWords = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole response object as JSON.")
    ] = False,
    *,
    opts: RequestOptions,
) -> None:
    """Send one standard request (no streaming); print the answer when it is complete.

    Examples:

    \b
      mavera ask --mock "hello"
      mavera ask -f report.md "list the three biggest risks"
      mavera ask --json "hi" | jq .usage
    """
    from mavera_cli.events import response_outcome_error
    from mavera_cli.invocation import invocation
    from mavera_cli.payload import build_payload
    from mavera_cli.render.response import write_response

    with invocation(_reporter(ctx), opts) as inv:
        prompt = inv.read_prompt(words or [])
        with inv.connect() as api:
            payload = build_payload(api.settings, prompt, stream=False)
            response = api.create(payload)
        write_response(response, inv.sink, as_json=json_output, final_newline=not opts.no_newline)
        error = response_outcome_error(response)
        if error is not None:
            raise error


class ReplayMode(StrEnum):
    stream = "stream"
    json = "json"
    tools = "tools"


@app.command()
@diagnostic_options
def replay(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A raw SSE capture; `-` is stdin.")],
    events: Annotated[bool, typer.Option("--events", help="Write every event as NDJSON.")] = False,
    mode: Annotated[
        ReplayMode,
        typer.Option("--as", help="Render as this command would: stream, json or tools."),
    ] = ReplayMode.stream,
    no_newline: Annotated[
        bool, typer.Option("-n", "--no-newline", help="Do not end the text with a newline.")
    ] = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """Render a saved raw SSE capture offline, through the same renderers as the live commands.

    Examples:

    \b
      mavera stream --save-raw run.sse "hi" && mavera replay run.sse
      mavera replay --events run.sse | jq -r .type
      mavera replay --as json structured.sse
    """
    from mavera_cli.capture import replay_chunks
    from mavera_cli.core import run_stream
    from mavera_cli.invocation import open_terminal, standard_streams
    from mavera_cli.render import OutputSink
    from mavera_cli.render.choose import OutputMode, renderer_for

    reporter = _reporter(ctx)
    stdout, _, _ = standard_streams()
    if events:
        reporter.ndjson_stdout = stdout
    terminal = open_terminal(reporter, diag, None)
    modes = {ReplayMode.json: OutputMode.json, ReplayMode.tools: OutputMode.calls}
    output = OutputMode.events if events else modes.get(mode, OutputMode.text)
    renderer = renderer_for(
        output, OutputSink(stdout), terminal, final_newline=not no_newline, pretty=stdout.isatty()
    )
    reporter.renderer = renderer
    run_stream(lambda: replay_chunks(path), renderer)


@app.command("json")
@request_options
def json_command(
    ctx: typer.Context,
    words: PromptWords = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            metavar="FILE|JSON",
            help="JSON Schema the answer must match: a file, or inline JSON starting with `{`. "
            "Without it the model is asked for any JSON object.",
        ),
    ] = None,
    schema_name: Annotated[
        str | None,
        typer.Option(
            "--schema-name",
            metavar="NAME",
            help="Name sent with the schema [default: the file's stem, or `response`].",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--no-strict",
            help="Ask the server to enforce the schema strictly (strict mode has schema rules "
            "of its own, e.g. additionalProperties: false).",
        ),
    ] = True,
    pretty: Annotated[
        bool | None,
        typer.Option(
            "--pretty/--compact",
            help="Indent the JSON, or put it on one line [default: indented on a terminal, "
            "compact when piped].",
            show_default=False,
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Write NDJSON instead: the best current object each time it changes, then the "
            "final object (a mavera.error line if it fails).",
        ),
    ] = False,
    events: Annotated[
        bool,
        typer.Option("--events", help="Write every event as NDJSON, as `stream --events` does."),
    ] = False,
    *,
    opts: RequestOptions,
) -> None:
    """Structured output: print the answer as JSON, only once it is complete and valid.

    While it streams, a live preview of the object as it grows is shown on stderr (on a
    terminal, unless -q). stdout gets nothing until the response completed, its text parsed
    and it matched the schema: exit 11 if it does not, 7 if the stream broke.

    Examples:

      mavera json --mock --schema person.json "invent a person"

      mavera json --schema '{"required":["score"]}' -f review.md "score it"

      mavera json --partial --schema plan.json "plan my week" | jq -c .days
    """
    from mavera_cli.structured import JsonRequest, run_json

    request = JsonRequest(schema, schema_name, strict, pretty, partial, events)
    run_json(_reporter(ctx), opts, words or [], request)


# --- tools command ---


class ToolErrors(StrEnum):
    fail = "fail"
    send = "send"


@app.command("tools")
@request_options
def tools_command(
    ctx: typer.Context,
    words: PromptWords = None,
    *,
    functions: Annotated[
        str,
        typer.Option(
            "--functions",
            metavar="FILE",
            help="JSON tool definitions: an array of tools, or an object with a `tools` array. "
            "Each is flat {type: function, name, description, parameters, strict} or nested "
            "{type: function, function: {...}} (converted).",
            show_default=False,
        ),
    ],
    tool_choice: Annotated[
        str | None,
        typer.Option(
            "--tool-choice",
            metavar="auto|required|none|NAME",
            help="Let the model choose, require a call, forbid calls, or force function NAME "
            "(with --exec: the first round only, later rounds use auto).",
        ),
    ] = None,
    exec_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--exec",
            metavar="NAME=COMMAND",
            help="Answer calls to NAME by running COMMAND (split like a shell would, run "
            "without one) with the arguments JSON on stdin; its stdout is the output. "
            "Repeatable. Loops until the model answers in text.",
        ),
    ] = None,
    tool_timeout: Annotated[
        float,
        typer.Option(
            "--tool-timeout", metavar="SECONDS", help="Kill a --exec command after this long."
        ),
    ] = 60.0,
    max_rounds: Annotated[
        int,
        typer.Option(
            "--max-rounds", metavar="N", min=1, help="Run tools at most N times (then exit 12)."
        ),
    ] = 10,
    tool_errors: Annotated[
        ToolErrors,
        typer.Option(
            "--tool-errors",
            help="A --exec command that fails or times out: exit 12 (fail), or tell the model "
            "(send).",
        ),
    ] = ToolErrors.fail,
    events: Annotated[
        bool,
        typer.Option("--events", help="Write every event (of every round) as NDJSON."),
    ] = False,
    opts: RequestOptions,
) -> None:
    """Function calling: print each completed call as NDJSON, or run local commands as tools.

    Without --exec, stdout has one line per call,
    {"type":"function_call","call_id":…,"name":…,"arguments":{…}}, and a line
    {"type":"text","text":…} if the model answered in text. With --exec, each call runs its
    command (environment: MAVERA_TOOL_NAME, MAVERA_TOOL_CALL_ID), the outputs go back to the
    model, and its final text answer streams to stdout like `stream`. --save-raw keeps the
    last round's bytes.

    Examples:

      mavera tools --functions tools.json "weather in Paris?" | jq -c .arguments

      mavera tools --mock --functions tools.json --exec get_weather=./weather.sh "Paris?"

      mavera tools --functions f.json --exec lookup='python3 lookup.py' --tool-errors send "Ada?"
    """
    from mavera_cli.toolrun import ToolRequest, run_tools

    request = ToolRequest(
        functions,
        tool_choice,
        exec_specs or [],
        tool_timeout,
        max_rounds,
        send_errors=tool_errors is ToolErrors.send,
        events=events,
    )
    run_tools(_reporter(ctx), opts, words or [], request)


# --- completion and config commands ---


def command_spec() -> Any:
    """The live command tree as a `clispec.CommandSpec` (completions, man page, checks)."""
    from mavera_cli.clispec import describe

    return describe(typer.main.get_command(app))


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
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
    from mavera_cli.completion import script
    from mavera_cli.invocation import standard_streams
    from mavera_cli.render import OutputSink

    stdout, _, _ = standard_streams()
    OutputSink(stdout).write(script(shell.value, command_spec()).encode())


config_app = typer.Typer(
    name="config",
    help="Show the settings mavera uses and where each comes from.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_app, name="config")


@config_app.command("show")
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

    opts = RequestOptions(quiet=diag.quiet, verbose=diag.verbose, no_color=diag.no_color)
    with invocation(_reporter(ctx), opts) as inv:
        rows = settings_rows(inv.settings, inv.environ)
        write_settings(rows, inv.sink, as_json=json_output)


@app.command()
@diagnostic_options
def personas(
    ctx: typer.Context,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (the default when piped).")
    ] = False,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", metavar="URL", help="API base URL [env MAVERA_BASE_URL]."),
    ] = None,
    mock: Annotated[bool, typer.Option("--mock", help="Ask the built-in fake server.")] = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """List the personas your key can use (id, name, category).

    Examples:

    \b
      mavera personas
      mavera personas --json | jq -r 'select(.category=="Generational") | .id'
    """
    from mavera_cli.invocation import invocation
    from mavera_cli.render.table import render_personas

    opts = RequestOptions(
        base_url=base_url,
        mock=mock,
        quiet=diag.quiet,
        verbose=diag.verbose,
        no_color=diag.no_color,
    )
    with invocation(_reporter(ctx), opts) as inv:
        with inv.connect() as api:
            items = api.call(api.client.list_personas)
        as_table = not json_lines and inv.stdout.isatty()
        render_personas(items, inv.sink, as_table=as_table)


@app.command()
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
) -> None:
    """Run a local, loopback-only fake Mavera server; prints its base URL first.

    Examples:

    \b
      mavera mock --port 8080 &
      mavera mock --fault rate-limit --fail-first 1
      mavera mock --fault drop-after:5 --pace-ms 50
    """
    from mavera_cli.mock import MockServer

    server = MockServer(host=host, port=port, fault=fault, fail_first=fail_first, pace_ms=pace_ms)
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    server.serve_forever()


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
