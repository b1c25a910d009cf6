"""The option blocks commands share: declared once here, collected into one frozen object.

A command decorated with `@request_options` gets every flag `ask`, `stream`, `json` and
`tools` have in common as one `options.RequestOptions` argument named `opts`;
`@diagnostic_options` gives `-q/-v/--no-color` as `diag`. Adding a shared flag means adding
one row below and one field to the dataclass.
(No `from __future__ import annotations`: Typer reads these annotations at every start.)
"""

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.reporting import Reporter

REQUEST_PANEL = "Request options"
OUTPUT_PANEL = "Output options"


def _option(
    name: str,
    kind: Any,
    default: Any,
    *flags: str,
    help: str,
    panel: str,
    metavar: str | None = None,
) -> inspect.Parameter:
    option = typer.Option(*flags, metavar=metavar, help=help, rich_help_panel=panel)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option], default=default
    )


_DIAGNOSTIC_PARAMETERS = [
    _option(
        "quiet", bool, False, "-q", "--quiet", help="No messages on stderr.", panel=OUTPUT_PANEL
    ),
    _option(
        "verbose",
        bool,
        False,
        "-v",
        "--verbose",
        help="Show request and response metadata on stderr (key redacted).",
        panel=OUTPUT_PANEL,
    ),
    _option(
        "no_color", bool, False, "--no-color", help="No colour (also NO_COLOR).", panel=OUTPUT_PANEL
    ),
]

_REQUEST_PARAMETERS = [
    _option(
        "files",
        list[str],
        [],
        "-f",
        "--file",
        metavar="FILE",
        help="Add a file's text to the prompt (repeatable).",
        panel=REQUEST_PANEL,
    ),
    _option(
        "base_url",
        str | None,
        None,
        "--base-url",
        metavar="URL",
        help="API base URL [env MAVERA_BASE_URL; default https://app.mavera.io/api/v1].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "persona",
        str | None,
        None,
        "-p",
        "--persona",
        metavar="ID",
        help="persona_id to answer as [env MAVERA_PERSONA_ID].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "model",
        str | None,
        None,
        "-m",
        "--model",
        metavar="MODEL",
        help="Model [env MAVERA_MODEL; default mavera-1].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "instructions",
        str | None,
        None,
        "-s",
        "--instructions",
        metavar="TEXT",
        help="System instructions, appended after the persona's prompt.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "timeout",
        float | None,
        None,
        "--timeout",
        metavar="SECONDS",
        help="Give up after this long without a byte: connect, first byte, between "
        "events [env MAVERA_TIMEOUT; default 60].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "max_time",
        float | None,
        None,
        "--max-time",
        metavar="SECONDS",
        help="Limit the whole request, retries included, like curl -m.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "retries",
        int | None,
        None,
        "--retries",
        metavar="N",
        help="Retry 429, 5xx, connection failures and timeouts before any event "
        "arrived [env MAVERA_RETRIES; default 2].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "save_raw",
        str | None,
        None,
        "--save-raw",
        metavar="FILE",
        help="Save the raw bytes received (replay them with `mavera replay`).",
        panel=OUTPUT_PANEL,
    ),
    _option(
        "mock",
        bool,
        False,
        "--mock",
        help="Use the built-in fake server (offline, no key needed).",
        panel=REQUEST_PANEL,
    ),
    _option(
        "no_newline",
        bool,
        False,
        "-n",
        "--no-newline",
        help="Do not end the text with a newline.",
        panel=OUTPUT_PANEL,
    ),
    _option(
        "allow_insecure_http",
        bool,
        False,
        "--allow-insecure-http",
        help="Allow sending the API key over plain http to a non-loopback host.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "usage",
        bool,
        False,
        "--usage",
        help="At the end, print the tokens and credits used to stderr (not with -q).",
        panel=OUTPUT_PANEL,
    ),
    # Seeing inside a stream (issue 15).
    _option(
        "trace",
        str | None,
        None,
        "--trace",
        metavar="FILE",
        help="Log the request, the response head and every network read with its time, as "
        "NDJSON (read it with `mavera inspect`, replay it with `mavera replay --pace`).",
        panel=OUTPUT_PANEL,
    ),
    _option(
        "timing",
        bool,
        False,
        "--timing",
        help="At the end, print where the time went to stderr: headers, first event, first "
        "delta, total, rates, the longest gap (not with -q).",
        panel=OUTPUT_PANEL,
    ),
    # Conversations and markdown (issue 14).
    _option(
        "session",
        str | None,
        None,
        "--session",
        metavar="NAME",
        help="Continue conversation NAME (created on its first completed turn): earlier "
        "turns go into the input; only a completed response is kept. A NAME with / is a path.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "continue_last",
        bool,
        False,
        "-c",
        "--continue",
        help="Continue the most recently used session.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "previous_response_id",
        str | None,
        None,
        "--previous-response-id",
        metavar="ID",
        help="Send previous_response_id (server-side conversation state, where supported); "
        "with --session only this turn's input is sent.",
        panel=REQUEST_PANEL,
    ),
    _option(
        "raw",
        bool,
        False,
        "--raw",
        help="On a terminal, print the plain text instead of rendered markdown "
        "[env MAVERA_RAW=1; TERM=dumb].",
        panel=OUTPUT_PANEL,
    ),
]


def _with_options(
    parameters: list[inspect.Parameter], build: Callable[..., Any], target: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command a shared block of options, collected into one object named `target`."""
    names = [parameter.name for parameter in parameters]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != target]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{target: build(**shared)})

        wrapper.__signature__ = signature.replace(parameters=own + parameters)  # type: ignore[attr-defined]
        wrapper.__doc__ = keep_examples_unwrapped(command.__doc__)
        return wrapper

    return decorate


def keep_examples_unwrapped(doc: str | None) -> str | None:
    """Put the lines under "Examples:" in one Click `\\b` block: one unwrapped line each."""
    head, heading, tail = (doc or "").partition("Examples:")
    examples = [line for line in tail.splitlines() if line.strip()]
    if not heading or not examples or examples[0].strip() == "\b":
        return doc
    indent = head.rsplit("\n", 1)[-1]  # the heading's own indentation
    return f"{head}Examples:\n\n{indent}\b\n" + "\n".join(examples) + "\n"


request_options = _with_options(
    _REQUEST_PARAMETERS + _DIAGNOSTIC_PARAMETERS, RequestOptions, "opts"
)
diagnostic_options = _with_options(_DIAGNOSTIC_PARAMETERS, DiagnosticOptions, "diag")


# `personas` and `usage` ask the account, not a model: only where to ask, plus -q/-v/--no-color.
_ACCOUNT_PARAMETERS = [
    _option(
        "base_url",
        str | None,
        None,
        "--base-url",
        metavar="URL",
        help="API base URL [env MAVERA_BASE_URL].",
        panel=REQUEST_PANEL,
    ),
    _option(
        "mock", bool, False, "--mock", help="Ask the built-in fake server.", panel=REQUEST_PANEL
    ),
]
account_options = _with_options(
    _ACCOUNT_PARAMETERS + _DIAGNOSTIC_PARAMETERS, RequestOptions, "opts"
)


def request_options_without(
    *names: str,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@request_options` less the named ones (a command that declares them its own way)."""
    kept = [p for p in _REQUEST_PARAMETERS if p.name not in names]
    return _with_options(kept + _DIAGNOSTIC_PARAMETERS, RequestOptions, "opts")


PromptWords = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PROMPT",
        help="The prompt; `-` reads stdin. Piped stdin comes first.",
        show_default=False,
    ),
]


# Listing commands (`personas`, `sessions list`): a table on a terminal, NDJSON otherwise.
JsonLinesFlag = Annotated[
    bool, typer.Option("--json", help="One JSON object per line (the default when piped).")
]


def reporter_of(ctx: typer.Context) -> Reporter:
    """The boundary's reporter for this run (`entry.main` passes it as `obj`)."""
    return ctx.ensure_object(Reporter)


class UsageLineCommand(typer.core.TyperCommand):
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


def command_group(name: str, help_text: str, **settings: Any) -> typer.Typer:
    """A Typer app (the whole tree, or a group such as `sessions`) with the help every mavera
    command has: `-h` as well as `--help`, plain text (no rich markup)."""
    return typer.Typer(
        name=name,
        help=help_text,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
        **settings,
    )
