"""Responses API events: SSE events become `ResponseEvent`s, and an accumulator folds them.

Parsing is lenient on purpose: real streams add fields, reorder keys and invent new event
types, so nothing is validated beyond "the data is a JSON object".
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from mavera_cli.errors import (
    InvalidOutputError,
    MaveraError,
    NotCompletedError,
    PartialStreamError,
    RefusalError,
)
from mavera_cli.jsonout import json_line
from mavera_cli.sse import SSEEvent

TEXT_DELTA = "response.output_text.delta"
ARGUMENTS_DELTA = "response.function_call_arguments.delta"
COMPLETED = "response.completed"
FAILED = "response.failed"
INCOMPLETE = "response.incomplete"
TERMINAL_EVENTS = frozenset({COMPLETED, FAILED, INCOMPLETE})
ERROR = "error"
REFUSAL_DELTA = "response.refusal.delta"
REFUSAL_DONE = "response.refusal.done"
DONE_MARKER = b"[DONE]"


class _NotParsed:
    """json mode's final object has not been parsed (yet, or this is not json mode)."""


NOT_PARSED = _NotParsed()


class ResponseEvent:
    """One event: its `type`, the parsed JSON object, and the data bytes as received."""

    __slots__ = ("data", "raw", "type")

    def __init__(self, type: str, data: dict[str, Any], raw: bytes) -> None:
        self.type = type
        self.data = data
        self.raw = raw

    def __repr__(self) -> str:
        return f"ResponseEvent({self.type!r})"


_STATUS = re.compile(rb'"status"\s*:\s*"([a-z_]+)"')


def parse_event(sse: SSEEvent, parsed: Any = None) -> ResponseEvent | None:
    """The Responses event an SSE event carries; None for the `[DONE]` end marker.

    `parsed` is the data already decoded by a caller that looked first (the core's fast path).
    """
    raw = sse.data
    if sse.truncated:
        return _summary_event(sse)
    if parsed is not None:
        data = parsed
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if raw.strip() == DONE_MARKER:
                return None
            data = _parse_lenient(raw, exc)
            raw = json_line(data)[:-1]  # passed through as valid UTF-8 from here on
    if not isinstance(data, dict):
        raise InvalidOutputError(f"malformed event data: expected a JSON object, got {_clip(raw)}")
    kind = data.get("type")
    if not isinstance(kind, str):
        # No type: a Chat Completions-style error chunk (`data: {"error": {...}}`) says what an
        # `error` event says; otherwise the server names the event on the `event:` line only.
        kind = ERROR if "error" in data else sse.event
    return ResponseEvent(kind, data, raw)


def _summary_event(sse: SSEEvent) -> ResponseEvent:
    """An event the renderer said it can do without, cut short by the decoder: its type, and
    for a terminal event the response status (it comes before the long output)."""
    data: dict[str, Any] = {"type": sse.event, "truncated": True}
    if sse.event in (COMPLETED, FAILED, INCOMPLETE):
        match = _STATUS.search(sse.data)
        data["response"] = {"status": match.group(1).decode()} if match else {}
    return ResponseEvent(sse.event, data, b"")


def _parse_lenient(raw: bytes, exc: Exception) -> Any:
    # The SSE spec decodes invalid UTF-8 as U+FFFD; orjson refuses it, so retry that way.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return orjson.loads(raw.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            pass
    raise InvalidOutputError(f"malformed event data (not JSON): {_clip(raw)}") from exc


def _clip(raw: bytes | str, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text if len(text) <= limit else text[:limit] + "…")


class FunctionCall:
    """A function call as it streams in: arguments accumulate until the item is done.

    `item_id` is "" when the server sent no `id`; `call_id` falls back to the item id.
    """

    __slots__ = ("arguments", "call_id", "done", "given_call_id", "item_id", "name", "output_index")

    def __init__(self, item_id: str, call_id: str, name: str, output_index: int | None) -> None:
        self.item_id = item_id
        self.call_id = call_id
        self.given_call_id = call_id  # as the server sent it ("" if it sent none)
        self.name = name
        self.output_index = output_index
        self.arguments: list[str] = []
        self.done = False

    @property
    def arguments_text(self) -> str:
        return "".join(self.arguments)

    @property
    def short_name(self) -> str:
        """The name for messages, clipped: it is the server's and may be huge."""
        return _clip_label(self.name or "?")

    @property
    def label(self) -> str:
        """`name (call_id)` for messages, both clipped."""
        return f"{self.short_name} ({_clip_label(self.call_id)})"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a JSON object; anything else is invalid model output (exit 11)."""
        text = self.arguments_text
        if not text.strip():
            return {}  # a function without parameters; some servers send "" rather than "{}"
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidOutputError(
                f"function call {self.label}: arguments are not valid JSON: {_clip(text)}"
            ) from exc
        if not isinstance(value, dict):
            raise InvalidOutputError(
                f"function call {self.label}: arguments are not a JSON object: {_clip(text)}"
            )
        return value

    def as_item(self) -> dict[str, Any]:
        """The `function_call` input item that replays this call to the model."""
        return {
            "type": "function_call",
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments_text,
        }

    def same_as(self, item_id: str, call_id: str, output_index: int | None) -> bool | None:
        """Whether an item names this call: by call_id when both have one, else by item id,
        else by output index; None when nothing can tell."""
        if call_id and self.given_call_id:
            return call_id == self.given_call_id  # one item id may carry two calls
        if item_id and self.item_id:
            return item_id == self.item_id
        if output_index is not None and self.output_index is not None:
            return output_index == self.output_index
        return None


def _clip_label(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _text_field(value: Any) -> str:
    return value if isinstance(value, str) else ""


class ResponseAccumulator:
    """Folds one stream's events into how it ended: the one record of a stream that the core,
    the renderers and the commands read.

    The output text is kept only when asked (`keep_text`: `json`, `tools`); otherwise only
    counts are kept, for the partial-stream message, so memory stays flat however long the
    answer. Function calls and a refusal are always kept: they are small.
    """

    def __init__(self, *, keep_text: bool = False) -> None:
        self.events_seen = 0
        self.text_chars = 0
        self.terminal: ResponseEvent | None = None
        self.error_event: ResponseEvent | None = None
        self.done_marker = False
        self.calls: dict[str, FunctionCall] = {}  # in order of arrival
        self.refusal: list[str] = []
        # Append-only, so another thread (the JSON preview) may read it without a lock.
        self.text_parts: list[str] | None = [] if keep_text else None
        self.parsed_output: Any = NOT_PARSED  # json mode: the final text, parsed and checked

    def add_text_delta(self, text: str) -> None:
        """Fold in the text of one `response.output_text.delta` (the core's fast path)."""
        self.events_seen += 1
        self.text_chars += len(text)
        if self.text_parts is not None:
            self.text_parts.append(text)

    def add(self, event: ResponseEvent) -> None:
        """Fold one event in."""
        kind = event.type
        if kind == TEXT_DELTA:
            delta = event.data.get("delta")
            if isinstance(delta, str):
                self.add_text_delta(delta)
                return
            self.events_seen += 1
            return
        self.events_seen += 1
        if kind == ARGUMENTS_DELTA:
            call = self.call_for(event.data)
            delta = event.data.get("delta")
            if call is not None and isinstance(delta, str):
                call.arguments.append(delta)
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self._on_item(event.data, done=kind.endswith("done"))
        elif kind == "response.function_call_arguments.done":
            call = self.call_for(event.data)
            arguments = event.data.get("arguments")
            if call is not None and isinstance(arguments, str):
                call.arguments = [arguments]
        elif kind in TERMINAL_EVENTS:
            if self.terminal is None:
                self.terminal = event
                if kind == COMPLETED:
                    self._calls_from_response()
        elif kind == ERROR:
            if self.error_event is None:
                self.error_event = event
        elif kind == REFUSAL_DELTA:
            delta = event.data.get("delta")
            if isinstance(delta, str):
                self.refusal.append(delta)
        elif kind == REFUSAL_DONE:
            refusal = event.data.get("refusal")
            if isinstance(refusal, str):
                self.refusal = [refusal]

    def output_text(self) -> str:
        """The output text (kept text, else the final response's): needs `keep_text`."""
        text = "".join(self.text_parts or ())
        return text or response_text(self.response)

    def _on_item(self, data: dict[str, Any], done: bool, *, final: bool = False) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        call = self.call_of_item(data, done=done)
        if final and call is not None and call.done:
            return  # the final response repeats what the stream already said
        item_id = _text_field(item.get("id"))
        call_id = _text_field(item.get("call_id"))
        output_index = data.get("output_index")
        if call is None:
            # Keyed by arrival: `same_as` decides which events are about one call.
            call = self.calls[str(len(self.calls))] = FunctionCall(
                item_id,
                call_id or item_id,
                str(item.get("name") or ""),
                output_index if isinstance(output_index, int) else None,
            )
        if isinstance(item.get("name"), str) and item["name"]:
            call.name = item["name"]
        if call_id:
            call.call_id = call.given_call_id = call_id
        if item_id and not call.item_id:
            call.item_id = item_id
            call.call_id = call.call_id or item_id
        if call.output_index is None and isinstance(output_index, int):
            call.output_index = output_index
        if done:
            arguments = item.get("arguments")
            # (An empty string in the item does not undo arguments that streamed in.)
            if isinstance(arguments, str) and (arguments or not call.arguments):
                call.arguments = [arguments]
            call.done = True

    def call_of_item(self, data: dict[str, Any], *, done: bool = False) -> FunctionCall | None:
        """The call an `output_item.added` (or `.done`) event is about, if already known."""
        item = data.get("item")
        if not isinstance(item, dict):
            return None
        output_index = data.get("output_index")
        index = output_index if isinstance(output_index, int) else None
        item_id = _text_field(item.get("id"))
        call_id = _text_field(item.get("call_id"))
        unknown = None
        for call in reversed(self.calls.values()):
            same = call.same_as(item_id, call_id, index)
            if same:
                return call
            if same is None and unknown is None and not call.done:
                unknown = call
        # An item with nothing to tell it by finishes the newest unfinished call.
        return unknown if done else None

    def call_for(self, data: dict[str, Any]) -> FunctionCall | None:
        """The call an arguments event is about (by item id, else by output index)."""
        item_id = data.get("item_id")
        output_index = data.get("output_index")
        by_index = None
        by_id: list[FunctionCall] = []
        for call in self.calls.values():
            if isinstance(item_id, str) and item_id and call.item_id == item_id:
                by_id.append(call)
            elif call.output_index is not None and call.output_index == output_index:
                by_index = call
        if len(by_id) > 1:  # two calls under one item id: the output index tells them apart
            return next((c for c in by_id if c.output_index == output_index), by_id[-1])
        return by_id[0] if by_id else by_index

    def _calls_from_response(self) -> None:
        # Per-item events may be absent (protocol §5): the final response still lists the calls.
        output = self.response.get("output")
        for index, item in enumerate(output if isinstance(output, list) else ()):
            self._on_item({"output_index": index, "item": item}, done=True, final=True)

    @property
    def completed(self) -> bool:
        return self.terminal is not None and self.terminal.type == COMPLETED

    @property
    def response(self) -> dict[str, Any]:
        """The final response object from the terminal event ({} if none came)."""
        if self.terminal is None:
            return {}
        response = self.terminal.data.get("response")
        return response if isinstance(response, dict) else {}

    def progress(self) -> str:
        """How much arrived, for messages about a stream cut short."""
        return f"received {self.events_seen} events, {self.text_chars} characters of text"

    def outcome_error(self) -> MaveraError | None:
        """Why the stream did not complete, or None if it did."""
        if self.error_event is not None:
            return NotCompletedError(f"the server sent an error event: {_event_error(self)}")
        if self.terminal is None:
            ended = "data: [DONE]" if self.done_marker else "end of stream"
            return PartialStreamError(
                f"stream ended ({ended}) before response.completed ({self.progress()})"
            )
        if self.terminal.type == FAILED:
            return NotCompletedError(f"response failed: {_response_error(self.response)}")
        if self.terminal.type == INCOMPLETE:
            return NotCompletedError(f"response incomplete: {_incomplete_reason(self.response)}")
        status = self.response.get("status", "completed")
        if status != "completed":
            return NotCompletedError(f"response.completed carried status {status!r}")
        refusal = "".join(self.refusal) or response_refusal(self.response)
        if refusal.strip():
            return RefusalError(refusal)
        return None


def _event_error(acc: ResponseAccumulator) -> str:
    assert acc.error_event is not None
    data = acc.error_event.data
    nested = data.get("error")
    if _is_text(nested) and not _is_text(data.get("message")):
        return str(nested)  # {"type": "error", "error": "boom"}
    source = nested if isinstance(nested, dict) else data
    return _describe(source)


def _response_error(response: dict[str, Any]) -> str:
    error = response.get("error")
    if _is_text(error):
        return str(error)  # a server that sends the reason as a plain string
    return _describe(error) if isinstance(error, dict) else "no reason given"


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _incomplete_reason(response: dict[str, Any]) -> str:
    details = response.get("incomplete_details")
    if isinstance(details, dict) and details.get("reason"):
        return str(details["reason"])
    return "no reason given"


def _describe(error: dict[str, Any]) -> str:
    message = str(error.get("message") or "no message")
    code = error.get("code")
    return f"{message} ({code})" if code else message


def response_text(response: dict[str, Any]) -> str:
    """The `output_text` parts of a response's message items, in order, concatenated."""
    return _message_parts(response, "output_text", "text")


def response_refusal(response: dict[str, Any]) -> str:
    """The `refusal` parts of a response's message items, concatenated ("" if none)."""
    return _message_parts(response, "refusal", "refusal")


def _message_parts(response: dict[str, Any], part_type: str, field: str) -> str:
    parts: list[str] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == part_type:
                text = part.get(field)
                if isinstance(text, str):
                    parts.append(text)
    return "".join(parts)


def response_outcome_error(response: dict[str, Any]) -> MaveraError | None:
    """For a non-streamed response: why it did not complete, or None if it did."""
    status = response.get("status", "completed")
    if status == "completed":
        refusal = response_refusal(response)
        return RefusalError(refusal) if refusal.strip() else None
    if status == "failed":
        return NotCompletedError(f"response failed: {_response_error(response)}")
    if status == "incomplete":
        return NotCompletedError(f"response incomplete: {_incomplete_reason(response)}")
    return NotCompletedError(f"response ended with status {status!r}")
