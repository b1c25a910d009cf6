"""`personas`: a table for a person at a terminal, one JSON object per line for a pipe."""

from __future__ import annotations

from typing import Any

from mavera_cli.jsonout import json_line
from mavera_cli.printable import terminal_safe
from mavera_cli.render import OutputSink

COLUMNS = ("id", "name", "category")


def render_personas(items: list[dict[str, Any]], sink: OutputSink, *, as_table: bool) -> None:
    """Write the persona list to stdout."""
    if not as_table:
        # A pipe gets the data as the server sent it (orjson escapes control characters).
        sink.write(b"".join(json_line(item) for item in items))
        return
    from io import StringIO

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*COLUMNS, box=None, header_style="bold")
    for item in items:
        # Cells are server text: as Text, `[red]` is shown as written rather than read as rich
        # markup (and a stray `[/]` cannot break the table); escape sequences are removed.
        table.add_row(*(Text(terminal_safe(_cell(item.get(column)))) for column in COLUMNS))
    buffer = StringIO()
    Console(file=buffer, force_terminal=True, width=200).print(table)
    sink.write(buffer.getvalue().encode())


def _cell(value: Any) -> str:
    return "" if value is None or value == "" else str(value)
