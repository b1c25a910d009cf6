"""`usage`: the account's credits, billing period and rate limit; a table for a person at a
terminal, the server's JSON object on one line for a pipe: its bytes as received (not parsed
and dumped again, which would merge duplicate keys and round big numbers), only re-lined.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mavera_cli.printable import terminal_safe
from mavera_cli.render import OutputSink

# (section, field, label) in the order a person reads them; whatever else the server sends
# is listed after, so nothing it says is hidden.
_KNOWN = (
    ("credits", "used", "credits used"),
    ("credits", "included", "credits included"),
    ("credits", "remaining", "credits remaining"),
    ("credits", "percentage_used", "credits used (%)"),
    ("billing_period", "start", "billing period start"),
    ("billing_period", "end", "billing period end"),
    ("rate_limit", "requests_per_minute", "rate limit (requests/minute)"),
)


# In valid JSON a line break can only be whitespace between tokens (a string cannot hold
# one raw), and no two tokens that whitespace could join sit side by side in an object.
_LINE_BREAK = re.compile(rb"[\r\n][\t\n\r ]*")


def render_usage(report: dict[str, Any], body: bytes, sink: OutputSink, *, as_table: bool) -> None:
    """Write the `GET /usage` report to stdout: `report` as a table, or `body` (the same
    object as received) on one line."""
    if not as_table:
        sink.write(_LINE_BREAK.sub(b"", body.strip()) + b"\n")
        return
    rows: list[tuple[str, str]] = []
    shown: set[tuple[str, str]] = set()
    for section, name, label in _KNOWN:
        values = report.get(section)
        if isinstance(values, dict) and name in values:
            rows.append((label, _cell(values[name])))
            shown.add((section, name))
    for section, values in report.items():
        if isinstance(values, dict):
            rows += [
                (f"{section}.{name}", _cell(value))
                for name, value in values.items()
                if (section, name) not in shown
            ]
        else:
            rows.append((section, _cell(values)))
    width = max((len(label) for label, _ in rows), default=0)
    text = "".join(f"{label:<{width}}  {terminal_safe(value)}\n" for label, value in rows)
    sink.write(text.encode())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        try:  # json, as the report was parsed with: every number it holds can be written
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except RecursionError:
            return "(nested too deeply to show)"
    return str(value)
