"""The JSON body of `POST /responses`; no I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mavera_cli.config import Settings


def build_payload(
    settings: Settings,
    input: str | Sequence[dict[str, Any]],
    *,
    stream: bool,
    text_format: dict[str, Any] | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Responses API request body; optional fields are sent only when set."""
    body: dict[str, Any] = {"model": settings.model, "input": input, "stream": stream}
    if settings.persona:
        body["persona_id"] = settings.persona
    if settings.instructions:
        body["instructions"] = settings.instructions
    if text_format is not None:
        body["text"] = {"format": text_format}
    if tools:
        body["tools"] = list(tools)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    return body
