"""The request commands: `stream`, `ask`, `json`, `tools`, and `replay` of a saved stream.

Each command reads its flags and names a job; the wiring is `invocation.py`, the jobs of
`json` and `tools` are `structured.py` and `toolrun.py`. (No `from __future__ import
annotations`: Typer would eval every annotation string at each start.)
"""

from enum import StrEnum
from typing import Annotated

import typer

from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.typer_options import (
    PromptWords,
    diagnostic_options,
    reporter_of,
    request_options,
)


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
    from mavera_cli.render.choose import OutputMode, renderer_for, text_renderer

    with invocation(reporter_of(ctx), opts, ndjson=events) as inv:
        if events:
            renderer = renderer_for(OutputMode.events, inv.sink, inv.terminal)
        else:  # markdown on a terminal, the plain text anywhere else
            renderer = text_renderer(
                inv.sink,
                inv.stdout,
                raw=opts.raw,
                environ=inv.environ,
                no_color=opts.no_color,
                secret=inv.settings.api_key,
                final_newline=not opts.no_newline,
            )
        inv.show(renderer)
        prompt = inv.read_prompt(words or [])
        with inv.connect() as api:
            api.stream(build_payload(api.settings, prompt, stream=True), renderer)


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
    from mavera_cli.events import ResponseAccumulator, response_outcome_error, response_text
    from mavera_cli.invocation import invocation
    from mavera_cli.payload import build_payload
    from mavera_cli.render.choose import markdown_wanted, text_renderer
    from mavera_cli.render.response import write_response

    with invocation(reporter_of(ctx), opts) as inv:
        prompt = inv.read_prompt(words or [])
        with inv.connect() as api:
            payload = build_payload(api.settings, prompt, stream=False)
            response = api.create(payload)
        if not json_output and markdown_wanted(inv.stdout, raw=opts.raw, environ=inv.environ):
            renderer = text_renderer(
                inv.sink,
                inv.stdout,
                raw=opts.raw,
                environ=inv.environ,
                no_color=opts.no_color,
                secret=inv.settings.api_key,
            )
            renderer.write_text(response_text(response))
            renderer.finish(ResponseAccumulator())
        else:
            write_response(
                response, inv.sink, as_json=json_output, final_newline=not opts.no_newline
            )
        error = response_outcome_error(response)
        if error is not None:
            raise error


class ReplayMode(StrEnum):
    stream = "stream"
    json = "json"
    tools = "tools"


@diagnostic_options
def replay(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(metavar="FILE", help="A raw SSE capture or a --trace file; `-` is stdin."),
    ],
    events: Annotated[bool, typer.Option("--events", help="Write every event as NDJSON.")] = False,
    mode: Annotated[
        ReplayMode,
        typer.Option("--as", help="Render as this command would: stream, json or tools."),
    ] = ReplayMode.stream,
    no_newline: Annotated[
        bool, typer.Option("-n", "--no-newline", help="Do not end the text with a newline.")
    ] = False,
    pace: Annotated[
        str | None,
        typer.Option(
            "--pace",
            metavar="original|FACTOR",
            help="A trace only: deliver each read when it came (FACTOR: that many times faster).",
        ),
    ] = None,
    *,
    diag: DiagnosticOptions,
) -> None:
    """Render a saved raw SSE capture or trace offline, through the live commands' renderers.

    Examples:

    \b
      mavera stream --save-raw run.sse "hi" && mavera replay run.sse
      mavera replay --events run.sse | jq -r .type
      mavera replay --pace original run.trace
    """
    from contextlib import nullcontext

    from mavera_cli.capture import parse_pace, replay_chunks
    from mavera_cli.core import run_stream
    from mavera_cli.events import response_outcome_error
    from mavera_cli.invocation import invocation
    from mavera_cli.options import RequestOptions
    from mavera_cli.render.choose import OutputMode, renderer_for
    from mavera_cli.render.response import write_response
    from mavera_cli.schema import json_output_parser

    modes = {ReplayMode.json: OutputMode.json, ReplayMode.tools: OutputMode.calls}
    output = OutputMode.events if events else modes.get(mode, OutputMode.text)
    # The settings, for the key: a recording may hold it (echoed by a server), and replay
    # masks it wherever it writes, as the live commands do.
    opts = RequestOptions.diagnostics_only(diag)
    with invocation(reporter_of(ctx), opts, ndjson=events) as inv:
        factor = parse_pace(pace) if pace is not None else None
        renderer = renderer_for(
            output,
            inv.sink,
            inv.terminal,
            final_newline=not no_newline,
            pretty=inv.stdout.isatty(),
        )
        inv.show(renderer)
        parse_output = json_output_parser() if output is OutputMode.json else None
        try:
            with replay_chunks(path, factor) as recorded:
                if recorded.response is None:
                    source = nullcontext(recorded.chunks)
                    run_stream(lambda: source, renderer, parse_output=parse_output)
                    return
                # A trace of `ask`: one whole response, no events; shown as `ask` shows it.
                if output is OutputMode.text:
                    write_response(
                        recorded.response, inv.sink, as_json=False, final_newline=not no_newline
                    )
                else:
                    inv.terminal.warn(f"{path} holds no events (a trace of `ask`): none shown")
                error = response_outcome_error(recorded.response)
                if error is not None:
                    raise error
        finally:
            renderer.close()


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
    run_json(reporter_of(ctx), opts, words or [], request)


# --- tools command ---


class ToolErrors(StrEnum):
    fail = "fail"
    send = "send"


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
    run_tools(reporter_of(ctx), opts, words or [], request)
