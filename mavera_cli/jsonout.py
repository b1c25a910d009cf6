"""JSON out, for any value the server sent: orjson where it can, the standard library past it.

orjson reads JSON nested 1,024 deep but writes only 254 levels, and refuses a lone surrogate
(`"\ud800"`, which the standard library's parser lets through): re-encoding server data with
orjson alone turned such data into an internal error. Whatever neither can write is invalid
output (exit 11), said in one line. On a terminal, `terminal_json` escapes the characters a
terminal would act on (JSON leaves C1 controls and bidi overrides raw).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import orjson

from mavera_cli.errors import InvalidOutputError


def dump_json(value: Any, *, indent: int | None = None) -> bytes:
    """Strictly valid UTF-8 JSON (the standard library's form): compact, or indented."""
    separators = (",", ": ") if indent is not None else (",", ":")
    try:
        text = json.dumps(
            value, ensure_ascii=False, allow_nan=False, indent=indent, separators=separators
        )
    except ValueError as exc:  # a number too large for a double came back as infinity
        raise InvalidOutputError(f"not usable JSON: a number out of range ({exc})") from exc
    except RecursionError as exc:
        raise InvalidOutputError("not usable JSON: nested too deeply") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate escape (`"\ud800"`) has no UTF-8 form; keep it escaped.
        return json.dumps(value, allow_nan=False, indent=indent, separators=separators).encode()


def json_line(value: Any) -> bytes:
    """One compact JSON line (orjson's form), whatever the value holds."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # nested past 254 levels, a lone surrogate
        return dump_json(value) + b"\n"


# What JSON may hold raw but a terminal acts on (JSON escapes C0 itself): DEL, C1 controls
# (0x9B is a CSI), bidirectional overrides and isolates, line and paragraph separators.
# (Compiled when first needed: ~0.6 ms at every start otherwise, and only a terminal needs it.)
_TERMINAL_UNSAFE = "[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"


@functools.cache
def _terminal_unsafe() -> re.Pattern[str]:
    return re.compile(_TERMINAL_UNSAFE)


def terminal_json(data: bytes) -> bytes:
    """JSON text for a terminal: the characters a terminal would act on escaped as \\uXXXX,
    which inside a JSON string is the same value (outside strings JSON is ASCII)."""
    text = data.decode("utf-8", "surrogatepass")
    if text.isascii():
        return data
    escaped = _terminal_unsafe().sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return escaped.encode("utf-8", "surrogatepass")
