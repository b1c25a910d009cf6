"""The one place that picks a renderer for an output mode (live commands and `replay` alike)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, BinaryIO

from mavera_cli.render import OutputSink, Renderer
from mavera_cli.terminal import Terminal

if TYPE_CHECKING:
    from mavera_cli.render.text import TextRenderer


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


def markdown_wanted(stdout: BinaryIO, *, raw: bool, environ: Mapping[str, str]) -> bool:
    """Rendered markdown only for stdout on a terminal, unless --raw, MAVERA_RAW=1 or TERM=dumb:
    a pipe or a file always gets the plain text, byte for byte."""
    if raw or environ.get("MAVERA_RAW") == "1" or environ.get("TERM") == "dumb":
        return False
    try:
        return stdout.isatty()
    except (ValueError, AttributeError):
        return False


def text_renderer(
    sink: OutputSink,
    stdout: BinaryIO,
    *,
    raw: bool,
    environ: Mapping[str, str],
    no_color: bool = False,
    secret: str | None = None,
    final_newline: bool = True,
) -> TextRenderer:
    """Text mode's renderer: markdown drawn on a terminal, else the plain text."""
    if not markdown_wanted(stdout, raw=raw, environ=environ):
        from mavera_cli.render.text import TextRenderer

        return TextRenderer(sink, final_newline=final_newline)
    import os

    from mavera_cli.render.markdown import MarkdownRenderer
    from mavera_cli.terminal import color_enabled

    try:
        size = os.get_terminal_size(stdout.fileno())
        width, height = size.columns, size.lines
    except (OSError, ValueError):
        width, height = 80, 24
    fileno = stdout.fileno()

    def current_size() -> tuple[int, int]:  # read before each drawing: a window resized
        now = os.get_terminal_size(fileno)
        return now.columns, now.lines

    return MarkdownRenderer(
        sink,
        width=width,
        height=height,
        color=color_enabled(no_color=no_color, is_tty=True, environ=environ),
        secret=secret,
        size=current_size,
    )
