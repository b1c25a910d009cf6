"""Mavera wire shapes for the fake server: Response objects, their SSE event sequence, errors.

Pure functions: an answer plus the request become dicts and framed bytes; no I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from mavera_cli.jsonout import json_line
from mavera_cli.mock.answers import Answer, CallAnswer, TextAnswer, input_word_count

Outcome = Literal["completed", "failed", "incomplete"]

DEFAULT_MODEL = "mavera-1"
DONE_FRAME = b"data: [DONE]\n\n"
FAILED_MESSAGE = "The mock server failed this response on purpose (--fault failed)."
# Mavera says /responses typically costs 1-5 credits; the fake always charges the minimum.
CREDITS_PER_RESPONSE = 1

# Request fields a real server echoes back on the Response object.
_ECHOED_FIELDS = ("instructions", "persona_id", "temperature", "top_p", "max_output_tokens")


@dataclass(frozen=True)
class ResponseIds:
    """The identifiers and timestamp of one response, derived from the request number."""

    response_id: str
    item_id: str
    created_at: int

    @classmethod
    def for_request(cls, number: int, created_at: int, call: bool = False) -> ResponseIds:
        """Deterministic ids: the same request number always gets the same ids."""
        item_prefix = "fc" if call else "msg"
        return cls(_ident("resp", number), _ident(item_prefix, number), created_at)


def _ident(prefix: str, number: int) -> str:
    return f"{prefix}_{hashlib.sha256(f'{prefix}:{number}'.encode()).hexdigest()[:40]}"


def error_body(message: str, type_: str, code: str, param: str | None = None) -> bytes:
    """Mavera's error envelope: {"error": {"message", "type", "code", "param"}}."""
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": param}}
    )


def sse_frame(event: Mapping[str, Any]) -> bytes:
    """One named SSE event: `event: <type>` then the compact JSON on one `data:` line."""
    # (json_line: the request's schema, echoed, may be nested deeper than orjson writes.)
    return b"event: %s\ndata: %s\n\n" % (str(event["type"]).encode(), json_line(event)[:-1])


def final_response(
    request: Mapping[str, Any], answer: Answer, ids: ResponseIds, outcome: Outcome
) -> dict[str, Any]:
    """The Response object a non-streamed request gets (and `response.<outcome>` carries)."""
    response: dict[str, Any] = response_events(request, answer, ids, outcome)[-1]["response"]
    return response


def response_events(
    request: Mapping[str, Any], answer: Answer, ids: ResponseIds, outcome: Outcome
) -> list[dict[str, Any]]:
    """The full event sequence of a streamed response, numbered from 0 without gaps."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _response(request, ids, "in_progress", [])}),
        ("response.in_progress", {"response": _response(request, ids, "in_progress", [])}),
    ]
    output: list[dict[str, Any]] = []
    output_tokens = 0
    if outcome != "failed":
        deltas = list(answer.deltas)
        if outcome == "incomplete":
            # Cut the answer in half, as a max_output_tokens stop would.
            deltas = deltas[: max(1, len(deltas) // 2)] if deltas else []
        status = "completed" if outcome == "completed" else "incomplete"
        if isinstance(answer, TextAnswer):
            item_events, item = _message_events(ids.item_id, deltas, status)
        else:
            item_events, item = _call_events(ids.item_id, answer, deltas, status)
        events += item_events
        output.append(item)
        output_tokens = len(deltas)
    usage = {
        "input_tokens": input_word_count(request),
        "output_tokens": output_tokens,
        "total_tokens": input_word_count(request) + output_tokens,
        "credits_used": CREDITS_PER_RESPONSE if outcome != "failed" else 0,
    }
    final = _response(request, ids, outcome, output, usage)
    if outcome == "failed":
        final["error"] = {"code": "server_error", "message": FAILED_MESSAGE}
    elif outcome == "incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    events.append((f"response.{outcome}", {"response": final}))
    return [
        {"type": type_, "sequence_number": number, **fields}
        for number, (type_, fields) in enumerate(events)
    ]


def _response(
    request: Mapping[str, Any],
    ids: ResponseIds,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    model = request.get("model")
    text = request.get("text")
    response: dict[str, Any] = {
        "id": ids.response_id,
        "object": "response",
        "created_at": ids.created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model if isinstance(model, str) and model else DEFAULT_MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "usage": usage,
        "metadata": {},
    }
    for name in _ECHOED_FIELDS:
        response[name] = request.get(name)
    return response


def _message_events(
    item_id: str, deltas: list[str], status: str
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    text = "".join(deltas)
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    part = {**empty_part, "text": text}
    started = {"id": item_id, "type": "message", "status": "in_progress", "content": []}
    item = {**started, "status": status, "content": [part]}
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "response.output_item.added",
            {"output_index": 0, "item": {**started, "role": "assistant"}},
        ),
        ("response.content_part.added", {**where, "part": empty_part}),
    ]
    events += [
        ("response.output_text.delta", {**where, "delta": d, "logprobs": []}) for d in deltas
    ]
    events += [
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": {**item, "role": "assistant"}}),
    ]
    return events, {**item, "role": "assistant"}


def _call_events(
    item_id: str, call: CallAnswer, deltas: list[str], status: str
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    arguments = "".join(deltas)
    started = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": call.call_id,
        "name": call.name,
    }
    item = {**started, "status": status, "arguments": arguments}
    where = {"item_id": item_id, "output_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.output_item.added", {"output_index": 0, "item": started}),
    ]
    events += [("response.function_call_arguments.delta", {**where, "delta": d}) for d in deltas]
    # Like the real recordings, `.done` has no `name`: clients must take it from the item.
    events += [
        ("response.function_call_arguments.done", {**where, "arguments": arguments}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
    ]
    return events, item


# CUID-shaped ids (25 characters, starting with "c"), fixed so tests and scripts can use them.
PERSONAS: tuple[dict[str, Any], ...] = (
    {
        "id": "clmockgenz000000000000001",
        "object": "persona",
        "name": "Gen Z Consumer",
        "category": "Generational",
        "description": "Digital native aged 18-26; values authenticity, price and speed.",
        "is_custom": False,
        "is_expert": False,
        "created_at": 1706345678,
    },
    {
        "id": "clmockmill000000000000002",
        "object": "persona",
        "name": "Millennial Parent",
        "category": "Generational",
        "description": "Parent aged 30-42 balancing work and family; researches before buying.",
        "is_custom": False,
        "is_expert": False,
        "created_at": 1706345679,
    },
    {
        "id": "clmockcfo0000000000000003",
        "object": "persona",
        "name": "Healthcare CFO",
        "category": "IndustrySpecific",
        "description": "Finance lead of a hospital group; weighs cost, compliance and risk.",
        "is_custom": False,
        "is_expert": True,
        "created_at": 1706345680,
    },
    {
        "id": "clmockcust000000000000004",
        "object": "persona",
        "name": "Skeptical Engineer",
        "category": "Custom",
        "description": "A workspace persona: asks for evidence and reads the fine print.",
        "is_custom": True,
        "is_expert": False,
        "created_at": 1706345681,
    },
)


def personas_list() -> dict[str, Any]:
    """The `GET /personas` body."""
    return {"object": "list", "data": [dict(persona) for persona in PERSONAS]}


def invalid_request(message: str, code: str, param: str | None = None) -> bytes:
    return error_body(message, "invalid_request_error", code, param)


def request_problem(request: Any) -> bytes | None:
    """A 400 body for a request the real API would reject for its shape, else None."""
    if not isinstance(request, dict):
        return invalid_request("The request body must be a JSON object.", "invalid_json")
    if "input" not in request or request["input"] is None:
        return invalid_request("Missing required field: 'input'.", "missing_field", "input")
    if not isinstance(request["input"], str | list):
        return invalid_request(
            "'input' must be a string or an array of items.", "invalid_field", "input"
        )
    if request.get("stream") is not None and not isinstance(request["stream"], bool):
        return invalid_request("'stream' must be a boolean.", "invalid_field", "stream")
    if request.get("model") is not None and not isinstance(request["model"], str):
        return invalid_request("'model' must be a string.", "invalid_field", "model")
    return None
