"""The Typer app: commands, options and help. Turns flags into Settings and a job for the core.

Nothing here catches errors or talks HTTP; `entry.main()` is the boundary that reports them.
(No `from __future__ import annotations` here: Typer would have to eval every annotation
string at each start, which costs more than the whole command tree.)
"""

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated, Any, BinaryIO

import typer

from mavera_cli import __version__
from mavera_cli.config import Settings, resolve_settings
from mavera_cli.errors import EXIT_CODE_MEANINGS, MaveraError, UsageError
from mavera_cli.render.usage import UsageMeter, UsageTap
from mavera_cli.terminal import Terminal


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


@dataclass
class Session:
    """Per-invocation state the boundary needs after a failure: how to report it."""

    terminal: Terminal = field(default_factory=Terminal)


SESSION = Session()


# --- options shared by every request command -------------------------------------------------


@dataclass(frozen=True)
class RequestOptions:
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
    quiet: bool = False
    verbose: bool = False
    no_color: bool = False
    usage: bool = False


_REQUEST_PANEL = "Request options"
_OUTPUT_PANEL = "Output options"

_REQUEST_PARAMETERS: list[inspect.Parameter] = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
    for name, annotation, default in [
        (
            "files",
            Annotated[
                list[str],
                typer.Option(
                    "-f",
                    "--file",
                    metavar="FILE",
                    help="Add a file's text to the prompt (repeatable).",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            [],
        ),
        (
            "base_url",
            Annotated[
                str | None,
                typer.Option(
                    "--base-url",
                    metavar="URL",
                    help="API base URL [env MAVERA_BASE_URL; default https://app.mavera.io/api/v1].",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "persona",
            Annotated[
                str | None,
                typer.Option(
                    "-p",
                    "--persona",
                    metavar="ID",
                    help="persona_id to answer as [env MAVERA_PERSONA_ID].",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "model",
            Annotated[
                str | None,
                typer.Option(
                    "-m",
                    "--model",
                    metavar="MODEL",
                    help="Model [env MAVERA_MODEL; default mavera-1].",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "instructions",
            Annotated[
                str | None,
                typer.Option(
                    "-s",
                    "--instructions",
                    metavar="TEXT",
                    help="System instructions, appended after the persona's prompt.",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "timeout",
            Annotated[
                float | None,
                typer.Option(
                    "--timeout",
                    metavar="SECONDS",
                    help="Give up after this long without a byte: connect, first byte, between "
                    "events [env MAVERA_TIMEOUT; default 60].",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "max_time",
            Annotated[
                float | None,
                typer.Option(
                    "--max-time",
                    metavar="SECONDS",
                    help="Limit the whole request, retries included, like curl -m.",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "retries",
            Annotated[
                int | None,
                typer.Option(
                    "--retries",
                    metavar="N",
                    help="Retry 429, 5xx, connection failures and timeouts before any event "
                    "arrived [env MAVERA_RETRIES; default 2].",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            None,
        ),
        (
            "save_raw",
            Annotated[
                str | None,
                typer.Option(
                    "--save-raw",
                    metavar="FILE",
                    help="Save the raw bytes received (replay them with `mavera replay`).",
                    rich_help_panel=_OUTPUT_PANEL,
                ),
            ],
            None,
        ),
        (
            "mock",
            Annotated[
                bool,
                typer.Option(
                    "--mock",
                    help="Use the built-in fake server (offline, no key needed).",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            False,
        ),
        (
            "no_newline",
            Annotated[
                bool,
                typer.Option(
                    "-n",
                    "--no-newline",
                    help="Do not end the text with a newline.",
                    rich_help_panel=_OUTPUT_PANEL,
                ),
            ],
            False,
        ),
        (
            "allow_insecure_http",
            Annotated[
                bool,
                typer.Option(
                    "--allow-insecure-http",
                    help="Allow sending the API key over plain http to a non-loopback host.",
                    rich_help_panel=_REQUEST_PANEL,
                ),
            ],
            False,
        ),
        (
            "usage",
            Annotated[
                bool,
                typer.Option(
                    "--usage",
                    help="At the end, print the tokens and credits used to stderr (not with -q).",
                    rich_help_panel=_OUTPUT_PANEL,
                ),
            ],
            False,
        ),
    ]
]

_DIAGNOSTIC_PARAMETERS: list[inspect.Parameter] = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=False)
    for name, annotation in [
        (
            "quiet",
            Annotated[
                bool,
                typer.Option(
                    "-q", "--quiet", help="No messages on stderr.", rich_help_panel=_OUTPUT_PANEL
                ),
            ],
        ),
        (
            "verbose",
            Annotated[
                bool,
                typer.Option(
                    "-v",
                    "--verbose",
                    help="Show request and response metadata on stderr (key redacted).",
                    rich_help_panel=_OUTPUT_PANEL,
                ),
            ],
        ),
        (
            "no_color",
            Annotated[
                bool,
                typer.Option(
                    "--no-color", help="No colour (also NO_COLOR).", rich_help_panel=_OUTPUT_PANEL
                ),
            ],
        ),
    ]
]


def _with_options(
    parameters: list[inspect.Parameter], build: Callable[[dict[str, Any]], Any], target: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command a shared block of options, collected into one object named `target`."""
    names = [parameter.name for parameter in parameters]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != target]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{target: build(shared)})

        wrapper.__signature__ = signature.replace(parameters=own + parameters)  # type: ignore[attr-defined]
        wrapper.__doc__ = _keep_examples_unwrapped(command.__doc__)
        return wrapper

    return decorate


def _keep_examples_unwrapped(doc: str | None) -> str | None:
    """Put the lines under "Examples:" in one Click `\\b` block: one unwrapped line each."""
    head, heading, tail = (doc or "").partition("Examples:")
    examples = [line for line in tail.splitlines() if line.strip()]
    if not heading or not examples or examples[0].strip() == "\b":
        return doc
    indent = head.rsplit("\n", 1)[-1]  # the heading's own indentation
    return f"{head}Examples:\n\n{indent}\b\n" + "\n".join(examples) + "\n"


request_options = _with_options(
    _REQUEST_PARAMETERS + _DIAGNOSTIC_PARAMETERS, lambda values: RequestOptions(**values), "opts"
)


@dataclass(frozen=True)
class DiagnosticOptions:
    quiet: bool
    verbose: bool
    no_color: bool


diagnostic_options = _with_options(
    _DIAGNOSTIC_PARAMETERS, lambda values: DiagnosticOptions(**values), "diag"
)


# --- wiring ---------------------------------------------------------------------------------


def _environ() -> dict[str, str]:
    return dict(os.environ)


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


def _open_terminal(diag: RequestOptions | DiagnosticOptions, secret: str | None) -> Terminal:
    terminal = Terminal(
        quiet=diag.quiet, verbose=diag.verbose, no_color=diag.no_color, secret=secret
    )
    SESSION.terminal = terminal
    return terminal


@dataclass
class RequestContext:
    """Everything a request command needs once flags, environment and prompt are resolved."""

    settings: Settings
    terminal: Terminal
    opts: RequestOptions
    usage: UsageMeter = field(default_factory=UsageMeter)


@contextmanager
def request_context(opts: RequestOptions) -> Iterator[RequestContext]:
    """Resolve settings (starting the built-in fake server for --mock) and open the terminal."""
    environ = _environ()
    flags = {
        "base_url": opts.base_url,
        "persona": opts.persona,
        "model": opts.model,
        "instructions": opts.instructions,
        "timeout": opts.timeout,
        "max_time": opts.max_time,
        "retries": opts.retries,
        "allow_insecure_http": opts.allow_insecure_http,
    }
    # The terminal exists before settings resolve, so even a bad config is reported properly.
    terminal = _open_terminal(opts, environ.get("MAVERA_API_KEY"))
    settings = resolve_settings(flags, environ)
    terminal.mask(settings.api_key)
    for warning in settings.warnings:
        terminal.warn(warning)
    with ExitStack() as stack:
        if opts.mock:
            from mavera_cli.mock import MockServer

            server = stack.enter_context(MockServer())
            settings = replace(settings, base_url=server.base_url, api_key=None)
        else:
            settings.require_key()
            settings.check_transport()
        ctx = RequestContext(settings, terminal, opts)
        try:
            yield ctx
        finally:
            # Also after a failure: a failed or incomplete response may still have cost credits.
            summary = ctx.usage.summary() if opts.usage else None
            if summary is not None:
                terminal.info(summary)


def _read_prompt(words: list[str], opts: RequestOptions) -> str:
    from mavera_cli.prompt import assemble_prompt

    stdin = sys.stdin
    stream = stdin.buffer if stdin is not None else None
    try:
        is_tty = stdin is not None and stdin.isatty()
    except ValueError:
        is_tty = False
    return assemble_prompt(words, opts.files, stream, is_tty)


def _announce_retry(terminal: Terminal) -> Callable[[MaveraError, float, int], None]:
    def announce(error: MaveraError, wait: float, attempt: int) -> None:
        terminal.info(f"{error.message}; retry {attempt} in {wait:.1f}s")

    return announce


@contextmanager
def _reporting(renderer: Any) -> Iterator[None]:
    """Make sure a failure before the stream started still reaches an NDJSON reader."""
    try:
        yield
    except MaveraError as error:
        if not error.reported:
            error.reported = True
            renderer.fail(error, None)
        raise


def _run_streaming(
    ctx: RequestContext,
    payload: dict[str, Any],
    renderer: Any,
) -> Any:
    from mavera_cli.capture import CaptureWriter
    from mavera_cli.client import MaveraClient
    from mavera_cli.core import run_stream, time_limit

    settings, terminal = ctx.settings, ctx.terminal
    capture = CaptureWriter(ctx.opts.save_raw, settings.api_key) if ctx.opts.save_raw else None
    debug = terminal.debug if terminal.verbose else None
    if ctx.opts.usage:
        renderer = UsageTap(renderer, ctx.usage)
    # The spinner runs until the first byte arrives, and never outlives this call.
    spinner = terminal.spinner(_waiting_message(settings))
    with time_limit(settings.max_time), MaveraClient(settings, debug) as client, spinner:
        return run_stream(
            lambda: client.open_stream(payload),
            renderer,
            retries=settings.retries,
            capture=capture,
            on_retry=_announce_retry(terminal),
            on_first_chunk=spinner.stop,
        )


def _waiting_message(settings: Settings) -> str:
    from urllib.parse import urlsplit

    return f"waiting for {urlsplit(settings.base_url).hostname or settings.base_url}…"


# --- commands -------------------------------------------------------------------------------

PromptWords = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PROMPT",
        help="The prompt; `-` reads stdin. Piped stdin comes first.",
        show_default=False,
    ),
]


@app.command()
@request_options
def stream(
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
    from mavera_cli.payload import build_payload
    from mavera_cli.render import OutputSink
    from mavera_cli.render.ndjson import NdjsonRenderer
    from mavera_cli.render.text import TextRenderer

    renderer: Any
    sink = OutputSink(_stdout())
    if events:
        renderer = NdjsonRenderer(sink)
    else:
        renderer = TextRenderer(sink, final_newline=not opts.no_newline)
    with _reporting(renderer), request_context(opts) as ctx:
        sink.mask(ctx.settings.api_key)
        prompt = _read_prompt(words or [], opts)
        payload = build_payload(ctx.settings, prompt, stream=True)
        _run_streaming(ctx, payload, renderer)


@app.command()
@request_options
def ask(
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
    import orjson

    from mavera_cli.client import MaveraClient
    from mavera_cli.core import call_with_retries, time_limit
    from mavera_cli.events import response_outcome_error, response_text
    from mavera_cli.payload import build_payload
    from mavera_cli.render import OutputSink

    with request_context(opts) as ctx:
        settings, terminal = ctx.settings, ctx.terminal
        prompt = _read_prompt(words or [], opts)
        payload = build_payload(settings, prompt, stream=False)
        debug = terminal.debug if terminal.verbose else None
        spinner = terminal.spinner(_waiting_message(settings))
        with time_limit(settings.max_time), MaveraClient(settings, debug) as client, spinner:
            response = call_with_retries(
                lambda: client.create_response(payload),
                retries=settings.retries,
                on_retry=_announce_retry(terminal),
            )
        if isinstance(response, dict):
            ctx.usage.add(response)
        sink = OutputSink(_stdout(), settings.api_key)
        if json_output:
            sink.write(orjson.dumps(response, option=orjson.OPT_APPEND_NEWLINE))
        else:
            text = response_text(response)
            if text:
                sink.write(text.encode() + (b"" if opts.no_newline else b"\n"))
        error = response_outcome_error(response)
        if error is not None:
            raise error


class ReplayMode(StrEnum):
    stream = "stream"
    json = "json"
    tools = "tools"


def _replay_renderer(
    mode: ReplayMode, sink: Any, events: bool, no_newline: bool, terminal: Terminal
) -> Any:
    """The renderer `replay --as MODE` uses: the same one the live command would."""
    from mavera_cli.render.ndjson import NdjsonRenderer
    from mavera_cli.render.text import TextRenderer

    if events:
        return NdjsonRenderer(sink)
    if mode is ReplayMode.json:
        from mavera_cli.render.preview import JsonRenderer

        return JsonRenderer(sink, terminal, pretty=_stdout().isatty(), final_newline=not no_newline)
    if mode is ReplayMode.tools:
        from mavera_cli.render.calls import CallsRenderer

        return CallsRenderer(sink, terminal)
    if mode is not ReplayMode.stream:
        raise UsageError(f"replay --as {mode.value} is not available yet")
    return TextRenderer(sink, final_newline=not no_newline)


@app.command()
@diagnostic_options
def replay(
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
    from mavera_cli.render import OutputSink

    terminal = _open_terminal(diag, None)
    sink = OutputSink(_stdout())
    renderer = _replay_renderer(mode, sink, events, no_newline, terminal)
    with _reporting(renderer):
        run_stream(lambda: replay_chunks(path), renderer)


@app.command("json")
@request_options
def json_command(
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
    from mavera_cli.payload import build_payload
    from mavera_cli.render import OutputSink
    from mavera_cli.render.ndjson import NdjsonRenderer
    from mavera_cli.render.preview import JsonRenderer
    from mavera_cli.schema import JSON_OBJECT_FORMAT, load_schema

    stdout = _stdout()
    sink = OutputSink(stdout)
    renderer: Any
    json_renderer: JsonRenderer | None = None
    if events:
        renderer = NdjsonRenderer(sink)
    else:
        renderer = json_renderer = JsonRenderer(
            sink,
            pretty=stdout.isatty() if pretty is None else pretty,
            partial=partial,
            final_newline=not opts.no_newline,
        )
    with _reporting(renderer):
        _open_terminal(opts, None)  # -q and --no-color hold for the flag checks below too
        if events and (partial or pretty is not None):
            raise UsageError("--events writes raw events: leave out --partial/--pretty/--compact")
        if partial and pretty:
            raise UsageError("--partial writes NDJSON, one compact line per object: drop --pretty")
        if schema is None and schema_name is not None:
            raise UsageError("--schema-name needs --schema")
        loaded = load_schema(schema, schema_name) if schema is not None else None
        if loaded is not None:
            text_format = loaded.text_format(strict)
            if json_renderer is not None:
                json_renderer.schema = loaded.document
        else:
            text_format = dict(JSON_OBJECT_FORMAT)
        with request_context(opts) as ctx:
            sink.mask(ctx.settings.api_key)
            if json_renderer is not None:
                json_renderer.use_terminal(ctx.terminal)
            prompt = _read_prompt(words or [], opts)
            payload = build_payload(ctx.settings, prompt, stream=True, text_format=text_format)
            try:
                _run_streaming(ctx, payload, renderer)
            finally:
                if json_renderer is not None:
                    json_renderer.close()  # Ctrl-C or a closed pipe: the preview goes too


# --- tools command ---


class ToolErrors(StrEnum):
    fail = "fail"
    send = "send"


@app.command("tools")
@request_options
def tools_command(
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
            "without one) with the arguments JSON on stdin; its stdout (at most 1 MiB, or "
            "it is killed) is the output. Repeatable. Loops until the model answers in text.",
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
    from mavera_cli import tools as tooling
    from mavera_cli.payload import build_payload
    from mavera_cli.render import OutputSink
    from mavera_cli.render.calls import CallsRenderer, ToolRoundRenderer
    from mavera_cli.render.ndjson import NdjsonRenderer
    from mavera_cli.render.text import TextRenderer

    sink = OutputSink(_stdout())
    renderer: Any
    if events:
        renderer = ToolRoundRenderer(NdjsonRenderer(sink))
    elif exec_specs:
        renderer = ToolRoundRenderer(TextRenderer(sink, final_newline=not opts.no_newline))
    else:
        renderer = CallsRenderer(sink)
    with _reporting(renderer):
        # Everything about the tools is checked before a request is made.
        definitions = tooling.load_functions(functions)
        names = tooling.function_names(definitions)
        choice = tooling.parse_tool_choice(tool_choice, names)
        environ = _environ()
        commands = tooling.parse_exec(exec_specs or [], names, environ.get("PATH"))
        with request_context(opts) as ctx:
            sink.mask(ctx.settings.api_key)
            renderer.show_progress_on(ctx.terminal)
            executor = tooling.ToolExecutor(
                commands,
                environ,
                timeout=tool_timeout,
                send_errors=tool_errors is ToolErrors.send,
                warn=ctx.terminal.warn,
                debug=ctx.terminal.debug,
            )
            prompt = _read_prompt(words or [], opts)

            def send_round(
                input: str | list[dict[str, Any]], round_choice: str | dict[str, Any] | None
            ) -> tooling.RoundResult:
                payload = build_payload(
                    ctx.settings, input, stream=True, tools=definitions, tool_choice=round_choice
                )
                accumulator = _run_streaming(ctx, payload, renderer)
                text = renderer.take_text() if isinstance(renderer, ToolRoundRenderer) else ""
                return tooling.RoundResult(list(accumulator.calls.values()), text)

            if commands:
                tooling.run_tool_loop(
                    prompt, send_round, executor, max_rounds=max_rounds, tool_choice=choice
                )
            else:
                tooling.check_arguments(send_round(prompt, choice).calls)


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
    from mavera_cli.render import OutputSink

    OutputSink(_stdout()).write(script(shell.value, command_spec()).encode())


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
    import orjson

    from mavera_cli.config import config_path, config_path_origin, masked, setting_sources
    from mavera_cli.render import OutputSink

    environ = _environ()
    terminal = _open_terminal(diag, environ.get("MAVERA_API_KEY"))
    settings = resolve_settings({}, environ)
    terminal.mask(settings.api_key)
    for warning in settings.warnings:
        terminal.warn(warning)
    path = config_path(environ)
    rows: dict[str, dict[str, Any]] = {
        "config_file": {
            "value": str(path),
            "source": config_path_origin(environ),
            "exists": path.is_file(),
        }
    }
    for source in setting_sources():
        value = getattr(settings, source.name)
        if source.name == "api_key":
            value = masked(value) if value else None
        rows[source.name] = {"value": value, "source": settings.origins[source.name]}
    sink = OutputSink(_stdout(), settings.api_key)
    if json_output:
        sink.write(orjson.dumps(rows, option=orjson.OPT_APPEND_NEWLINE))
        return
    table = []
    for name, row in rows.items():
        value = row["value"]
        shown = "(not set)" if value is None else value
        if isinstance(value, float):
            shown = f"{value:g}"
        if name == "config_file" and not row["exists"]:
            shown = f"{shown} (not found)"
        table.append((name, str(shown), row["source"]))
    widths = [max(len(cells[column]) for cells in table) for column in (0, 1)]
    lines = [f"{n:<{widths[0]}}  {v:<{widths[1]}}  {source}" for n, v, source in table]
    sink.write(("\n".join(lines) + "\n").encode())


@app.command()
@diagnostic_options
def personas(
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
    from mavera_cli.client import MaveraClient
    from mavera_cli.core import call_with_retries
    from mavera_cli.render import OutputSink
    from mavera_cli.render.table import render_personas

    opts = RequestOptions(
        base_url=base_url,
        mock=mock,
        quiet=diag.quiet,
        verbose=diag.verbose,
        no_color=diag.no_color,
    )
    with request_context(opts) as ctx:
        debug = ctx.terminal.debug if ctx.terminal.verbose else None
        spinner = ctx.terminal.spinner(_waiting_message(ctx.settings))
        with MaveraClient(ctx.settings, debug) as client, spinner:
            items = call_with_retries(
                client.list_personas,
                retries=ctx.settings.retries,
                on_retry=_announce_retry(ctx.terminal),
            )
    stdout = _stdout()
    render_personas(items, OutputSink(stdout), as_table=not json_lines and stdout.isatty())


def _fault_kinds() -> list[str]:
    """What TAB offers for `--fault`: each kind, a counted one up to its colon."""
    from mavera_cli.mock.faults import KIND_LIST

    return [kind.removesuffix("N") for kind in KIND_LIST.split(", ")]


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


class _UsageLineCommand(typer.core.TyperCommand):
    """Usage lines as man pages write them: `[PROMPT]...` and `FILE`, not `[PROMPT]`/`{FILE}`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        from mavera_cli.clispec import argument_usage

        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


for _command_info in app.registered_commands:
    if _command_info.cls in (None, typer.core.TyperCommand):  # Typer's default
        _command_info.cls = _UsageLineCommand


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
