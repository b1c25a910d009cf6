"""The one place that picks a renderer for an output mode (live commands and `replay` alike)."""

from __future__ import annotations

from enum import StrEnum

from mavera_cli.render import OutputSink, Renderer
from mavera_cli.terminal import Terminal


class OutputMode(StrEnum):
    """What stdout carries."""

    text = "text"  # the answer's text deltas, as `stream` prints them
    events = "events"  # every event, one NDJSON line each
    json = "json"  # the final JSON object once complete and valid (`json`)
    json_partial = "json_partial"  # NDJSON snapshots of the object as it grows (`json --partial`)
    calls = "calls"  # one NDJSON line per completed function call (`tools` without --exec)


def renderer_for(
    mode: OutputMode,
    sink: OutputSink,
    terminal: Terminal,
    *,
    final_newline: bool = True,
    pretty: bool = False,
    tool_rounds: bool = False,
) -> Renderer:
    """The renderer for `mode`; `tool_rounds` wraps it for a `tools --exec` conversation."""
    renderer: Renderer
    if mode is OutputMode.events:
        from mavera_cli.render.ndjson import NdjsonRenderer

        renderer = NdjsonRenderer(sink)
    elif mode in (OutputMode.json, OutputMode.json_partial):
        from mavera_cli.render.preview import JsonRenderer

        renderer = JsonRenderer(
            sink,
            terminal,
            pretty=pretty,
            partial=mode is OutputMode.json_partial,
            final_newline=final_newline,
        )
    elif mode is OutputMode.calls:
        from mavera_cli.render.calls import CallsRenderer

        renderer = CallsRenderer(sink, terminal)
    else:
        from mavera_cli.render.text import TextRenderer

        renderer = TextRenderer(sink, final_newline=final_newline)
    if tool_rounds:
        from mavera_cli.render.calls import ToolRoundRenderer

        renderer = ToolRoundRenderer(renderer, terminal)
    return renderer
