"""Deterministic answers of the fake server, decided from the request body alone.

- text: `You said: <text>`, where <text> is a string `input` as is, or the text of the last
  user message of an `input` list (its text parts joined by newlines); when `input` holds
  earlier user messages (a conversation), the text ends with
  ` [turn N; M input items; earlier: "first" / "second"]`;
- after tool results (`function_call_output` items after the last user message): one line
  `Tool <name> returned: <output>` per result (<name> from the matching `function_call`
  item, else the call_id; a non-string output is shown as JSON);
- `text.format` json_schema: an instance of the schema; json_object: `{"echo": <text>}`;
- `tools` (and no tool results yet): a `function_call` of the first function tool (or the one
  `tool_choice` names), arguments fitting its parameters, call_id `call_<n>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mavera_cli.mock.instances import instance_of

ECHO_PREFIX = "You said: "
# JSON and arguments stream in pieces of this many characters, so partial previews show.
JSON_DELTA_CHARS = 8
_WORD = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True)
class TextAnswer:
    """An assistant message; `deltas` joined is `text`."""

    text: str
    deltas: tuple[str, ...]


@dataclass(frozen=True)
class CallAnswer:
    """A function call; `deltas` joined is `arguments` (a JSON object as text)."""

    name: str
    call_id: str
    arguments: str
    deltas: tuple[str, ...]


Answer = TextAnswer | CallAnswer


def answer(request: Mapping[str, Any]) -> Answer:
    """The answer to one validated `/responses` request body."""
    items = request.get("input")
    items = items if isinstance(items, list) else []
    turn = _current_turn(items)
    results = [item for item in turn if _item_type(item) == "function_call_output"]
    tool = _chosen_tool(request)
    if tool is not None and not results:
        name, parameters = tool
        value = _as_object(instance_of(parameters, user_text(request)))
        arguments = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        call_id = f"call_{1 + sum(_item_type(item) == 'function_call' for item in items)}"
        return CallAnswer(name, call_id, arguments, split_chunks(arguments))
    said = _tool_report(items, results) if results else user_text(request)
    format_ = _text_format(request)
    kind = format_.get("type")
    if kind == "json_schema" and isinstance(format_.get("schema"), Mapping):
        text = json.dumps(instance_of(format_["schema"], said), ensure_ascii=False)
    elif kind in ("json_schema", "json_object"):
        text = json.dumps({"echo": said}, ensure_ascii=False)
    else:
        text = (said if results else ECHO_PREFIX + said) + _turn_note(items)
        return TextAnswer(text, split_words(text))
    return TextAnswer(text, split_chunks(text))


def user_text(request: Mapping[str, Any]) -> str:
    """The text being answered: a string input, or the last user message's text."""
    given = request.get("input")
    if isinstance(given, str):
        return given
    if not isinstance(given, list):
        return ""
    for item in reversed(given):
        if isinstance(item, Mapping) and item.get("role") == "user":
            return _content_text(item.get("content"))
    return ""


def input_word_count(request: Mapping[str, Any]) -> int:
    """A stand-in for input tokens: whitespace-separated words over all input text."""
    given = request.get("input")
    if isinstance(given, str):
        return len(given.split())
    total = 0
    for item in given if isinstance(given, list) else []:
        if isinstance(item, Mapping):
            total += len(_content_text(item.get("content")).split())
            total += len(str(item.get("output", "") or "").split())
    return total


def split_words(text: str) -> tuple[str, ...]:
    """Word-sized deltas, each with its leading whitespace, like a model's tokens."""
    return tuple(_WORD.findall(text))


def split_chunks(text: str, size: int = JSON_DELTA_CHARS) -> tuple[str, ...]:
    """Fixed-size deltas (for JSON text and call arguments)."""
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def _item_type(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    kind = item.get("type")
    # Role messages may leave out `"type": "message"`.
    return kind if isinstance(kind, str) else "message" if "role" in item else None


def _current_turn(items: list[Any]) -> list[Any]:
    """The items after the last user message: tool results there answer the pending call."""
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if isinstance(item, Mapping) and item.get("role") == "user":
            return items[index + 1 :]
    return items


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        part["text"]
        for part in content
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts)


def _turn_note(items: list[Any]) -> str:
    """For a conversation (an earlier user message in `input`): which turn this is and what
    came before, so a test sees the history arrive; nothing for a first turn."""
    users = [
        _content_text(item.get("content"))
        for item in items
        if isinstance(item, Mapping) and item.get("role") == "user"
    ]
    if len(users) < 2:
        return ""
    earlier = " / ".join(json.dumps(text, ensure_ascii=False) for text in users[:-1])
    return f" [turn {len(users)}; {len(items)} input items; earlier: {earlier}]"


def _tool_report(items: list[Any], results: list[Any]) -> str:
    names = {
        item.get("call_id"): item.get("name")
        for item in items
        if _item_type(item) == "function_call" and isinstance(item.get("name"), str)
    }
    lines = []
    for result in results:
        call_id = result.get("call_id")
        output = result.get("output", "")
        shown = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        lines.append(f"Tool {names.get(call_id) or call_id} returned: {shown}")
    return "\n".join(lines)


def _function_tools(request: Mapping[str, Any]) -> list[tuple[str, Any]]:
    tools = request.get("tools")
    found: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            continue
        # Flat Responses format; the nested Chat Completions format is tolerated too.
        nested = tool.get("function")
        spec: Mapping[str, Any] = nested if isinstance(nested, Mapping) else tool
        if isinstance(spec.get("name"), str):
            found.append((spec["name"], spec.get("parameters") or {"type": "object"}))
    return found


def _chosen_tool(request: Mapping[str, Any]) -> tuple[str, Any] | None:
    tools = _function_tools(request)
    choice = request.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, Mapping):
        nested = choice.get("function")
        wanted = nested.get("name") if isinstance(nested, Mapping) else choice.get("name")
        for tool in tools:
            if tool[0] == wanted:
                return tool
    return tools[0]


def _text_format(request: Mapping[str, Any]) -> Mapping[str, Any]:
    text = request.get("text")
    format_ = text.get("format") if isinstance(text, Mapping) else None
    return format_ if isinstance(format_, Mapping) else {}


def _as_object(value: Any) -> dict[str, Any]:
    # Function arguments are always a JSON object, whatever the parameters schema says.
    return value if isinstance(value, dict) else {}
