"""`ask`: a whole (non-streamed) response written as its text, or as the JSON object itself."""

from __future__ import annotations

from typing import Any

from mavera_cli.events import response_text
from mavera_cli.jsonout import json_line
from mavera_cli.render import OutputSink


def write_response(
    response: dict[str, Any], sink: OutputSink, *, as_json: bool, final_newline: bool
) -> None:
    """The answer's `output_text` (what `stream` would print), or the response object."""
    if as_json:
        sink.write(json_line(response))
        return
    text = response_text(response)
    if text:
        newline = final_newline and not text.endswith("\n")
        sink.write(text.encode("utf-8", "surrogatepass") + (b"\n" if newline else b""))
