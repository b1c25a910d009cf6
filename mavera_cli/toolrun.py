"""`tools`: function calling. Checks the tool flags, then streams rounds through the core.

The loop itself (`tools.run_tool_loop`) knows nothing of HTTP; this module hands it a `send`
that streams one round through the invocation's connection, so --max-time bounds every round,
every tool run and every wait together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mavera_cli import tools as tooling
from mavera_cli.invocation import invocation
from mavera_cli.options import RequestOptions
from mavera_cli.payload import build_payload
from mavera_cli.render.choose import OutputMode, renderer_for
from mavera_cli.reporting import Reporter


@dataclass(frozen=True)
class ToolRequest:
    """The flags only `tools` has."""

    functions: str
    tool_choice: str | None = None
    exec_specs: Sequence[str] = ()
    tool_timeout: float = tooling.DEFAULT_TOOL_TIMEOUT
    max_rounds: int = tooling.DEFAULT_MAX_ROUNDS
    send_errors: bool = False
    events: bool = False


def run_tools(
    reporter: Reporter, opts: RequestOptions, words: Sequence[str], request: ToolRequest
) -> None:
    """Print each completed call as NDJSON, or run local commands until the model answers."""
    looping = bool(request.exec_specs)
    with invocation(reporter, opts, ndjson=request.events or not looping) as inv:
        if request.events:
            mode = OutputMode.events
        else:
            mode = OutputMode.text if looping else OutputMode.calls
        renderer = inv.show(
            renderer_for(
                mode,
                inv.sink,
                inv.terminal,
                final_newline=not opts.no_newline,
                tool_rounds=looping or request.events,
            )
        )
        # Everything about the tools is checked before a request is made.
        definitions = tooling.load_functions(request.functions)
        names = tooling.function_names(definitions)
        choice = tooling.parse_tool_choice(request.tool_choice, names)
        commands = tooling.parse_exec(request.exec_specs, names, inv.environ.get("PATH"))
        executor = tooling.ToolExecutor(
            commands,
            inv.environ,
            timeout=request.tool_timeout,
            send_errors=request.send_errors,
            warn=inv.terminal.warn,
            debug=inv.terminal.debug,
            secret=inv.settings.api_key,
        )
        prompt = inv.read_prompt(words)
        with inv.connect() as api:

            def send_round(
                input: str | list[dict[str, Any]], round_choice: tooling.ToolChoice | None
            ) -> tooling.RoundResult:
                payload = build_payload(
                    api.settings, input, stream=True, tools=definitions, tool_choice=round_choice
                )
                accumulator = api.stream(payload, renderer)
                # The round's text, for the conversation (tool renderers keep it: needs_text).
                text = accumulator.output_text()
                return tooling.RoundResult(list(accumulator.calls.values()), text)

            if commands:
                tooling.run_tool_loop(
                    prompt,
                    send_round,
                    executor,
                    max_rounds=request.max_rounds,
                    tool_choice=choice,
                )
            else:
                tooling.check_arguments(send_round(prompt, choice).calls)
