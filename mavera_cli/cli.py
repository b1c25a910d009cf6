"""The Typer app: commands, options and help. Turns flags into Settings and a job for the core.

Nothing here catches errors or talks HTTP; `entry.main()` is the boundary that reports them.
"""

from __future__ import annotations

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
from mavera_cli.terminal import Terminal


def _exit_code_table() -> str:
    # "\b" keeps Click from re-wrapping the table into one paragraph.
    rows = [f"{int(code):>3}  {code.name:<15} {text}" for code, text in EXIT_CODE_MEANINGS.items()]
    return "\b\nExit codes:\n" + "\n".join(rows)


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

    files: list[str]
    base_url: str | None
    persona: str | None
    model: str | None
    instructions: str | None
    timeout: float | None
    max_time: float | None
    retries: int | None
    save_raw: str | None
    mock: bool
    no_newline: bool
    allow_insecure_http: bool
    quiet: bool
    verbose: bool
    no_color: bool


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
        return wrapper

    return decorate


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
    terminal.secret = settings.api_key
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
        yield RequestContext(settings, terminal, opts)


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
        if not getattr(error, "reported", False):
            error.reported = True  # type: ignore[attr-defined]
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
    with time_limit(settings.max_time), MaveraClient(settings, debug) as client:
        try:
            return run_stream(
                lambda: client.open_stream(payload),
                renderer,
                retries=settings.retries,
                capture=capture,
                on_retry=_announce_retry(terminal),
            )
        except MaveraError as error:
            error.reported = True  # type: ignore[attr-defined]
            raise


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

      mavera stream --mock "hello"

      cat notes.md | mavera stream -p $PERSONA "summarise this"

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
        with time_limit(settings.max_time), MaveraClient(settings, debug) as client:
            response = call_with_retries(
                lambda: client.create_response(payload),
                retries=settings.retries,
                on_retry=_announce_retry(terminal),
            )
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
    # replay-json: issue 5 adds the json renderer here
    # replay-tools: issue 6 adds the tools renderer here
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

      mavera stream --save-raw run.sse "hi" && mavera replay run.sse

      mavera replay --events run.sse | jq -r .type
    """
    from mavera_cli.capture import replay_chunks
    from mavera_cli.core import run_stream
    from mavera_cli.render import OutputSink

    terminal = _open_terminal(diag, None)
    sink = OutputSink(_stdout())
    renderer = _replay_renderer(mode, sink, events, no_newline, terminal)
    with _reporting(renderer):
        run_stream(lambda: replay_chunks(path), renderer)


# --- json command: issue 5 adds it here ---


# --- tools command: issue 6 adds it here ---


# --- completion and config commands: issue 7 adds them here ---


@app.command()
@diagnostic_options
def personas(
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (the default when piped).")
    ] = False,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="API base URL [env MAVERA_BASE_URL].")
    ] = None,
    mock: Annotated[bool, typer.Option("--mock", help="Ask the built-in fake server.")] = False,
    *,
    diag: DiagnosticOptions,
) -> None:
    """List the personas your key can use (id, name, category).

    Examples:

      mavera personas

      mavera personas --json | jq -r 'select(.category=="Generational") | .id'
    """
    from mavera_cli.client import MaveraClient
    from mavera_cli.core import call_with_retries
    from mavera_cli.render import OutputSink
    from mavera_cli.render.table import render_personas

    opts = RequestOptions(
        files=[],
        base_url=base_url,
        persona=None,
        model=None,
        instructions=None,
        timeout=None,
        max_time=None,
        retries=None,
        save_raw=None,
        mock=mock,
        no_newline=False,
        allow_insecure_http=False,
        quiet=diag.quiet,
        verbose=diag.verbose,
        no_color=diag.no_color,
    )
    with request_context(opts) as ctx:
        debug = ctx.terminal.debug if ctx.terminal.verbose else None
        with MaveraClient(ctx.settings, debug) as client:
            items = call_with_retries(
                client.list_personas,
                retries=ctx.settings.retries,
                on_retry=_announce_retry(ctx.terminal),
            )
    stdout = _stdout()
    render_personas(items, OutputSink(stdout), as_table=not json_lines and stdout.isatty())


@app.command()
def mock(
    host: Annotated[str, typer.Option("--host", help="Loopback address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 0,
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

      mavera mock --port 8080 &

      mavera mock --fault rate-limit --fail-first 1
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
