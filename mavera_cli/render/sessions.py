"""`sessions` and `sessions show`: the stored conversations as a person or a script reads them.

A terminal gets a table (list) and the conversation with terminal control characters removed
(show); a pipe gets one JSON object per session (list) and the same plain text (show).
`show --json` is the stored session document.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from mavera_cli.printable import terminal_safe
from mavera_cli.render import OutputSink
from mavera_cli.sessions import Session, SessionSummary

LIST_COLUMNS = ("name", "turns", "last used", "persona")


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp)) if timestamp else ""


def write_session_list(rows: Sequence[SessionSummary], sink: OutputSink, *, as_table: bool) -> None:
    """The sessions, most recently used first."""
    if not as_table:
        sink.write(
            b"".join(
                orjson.dumps(
                    {
                        "name": row.name,
                        "turns": row.turns,
                        "last_used": _when(row.last_used),
                        "persona": row.persona,
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
                for row in rows
            )
        )
        return
    from io import StringIO

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*LIST_COLUMNS, box=None, header_style="bold")
    for row in rows:
        cells = (row.name, str(row.turns), _when(row.last_used), row.persona or "")
        table.add_row(*(Text(terminal_safe(cell)) for cell in cells))
    buffer = StringIO()
    Console(file=buffer, force_terminal=True, width=200).print(table)
    sink.write(buffer.getvalue().encode())


def write_session(session: Session, sink: OutputSink, *, as_json: bool, on_terminal: bool) -> None:
    """One conversation: the stored document (--json), or each item as a line of text."""
    if as_json:
        sink.write(orjson.dumps(session.as_json(), option=orjson.OPT_APPEND_NEWLINE))
        return
    blocks = []
    for turn in session.turns:
        blocks.append("\n".join(describe_item(item) for item in turn.items))
    text = "\n\n".join(blocks) + ("\n" if blocks else "")
    if on_terminal:  # line by line: terminal_safe would join the lines
        text = "\n".join(terminal_safe(line) for line in text.split("\n"))
    sink.write(text.encode("utf-8", "surrogatepass"))


def describe_item(item: dict[str, Any]) -> str:
    """One input or output item as a line (or lines) of text."""
    kind = item.get("type")
    if kind == "function_call":
        return f"function_call {item.get('name')} {item.get('arguments')} ({item.get('call_id')})"
    if kind == "function_call_output":
        return f"function_call_output ({item.get('call_id')}): {_text_of(item.get('output'))}"
    role = item.get("role")
    if isinstance(role, str):
        return f"{role}: {_text_of(item.get('content'))}"
    return f"{kind}: {orjson.dumps(item).decode()}"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part.get("text") or part.get("refusal") or ""
            for part in content
            if isinstance(part, dict)
        ]
        return "".join(str(part) for part in parts)
    return orjson.dumps(content).decode()
