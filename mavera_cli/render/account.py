"""`usage`: the account's credits, billing period and rate limit; a table for a person at a
terminal, the server's JSON object on one line for a pipe."""

from __future__ import annotations

from typing import Any

import orjson

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


def render_usage(report: dict[str, Any], sink: OutputSink, *, as_table: bool) -> None:
    """Write the `GET /usage` report to stdout."""
    if not as_table:
        sink.write(orjson.dumps(report, option=orjson.OPT_APPEND_NEWLINE))
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
        return orjson.dumps(value).decode()
    return str(value)
