"""`config show`: the settings in effect and where each came from, as a table or one JSON object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mavera_cli.config import Settings, config_path, config_path_origin, masked, setting_sources
from mavera_cli.jsonout import json_line
from mavera_cli.redact import mask_url_credentials
from mavera_cli.render import OutputSink


def settings_rows(settings: Settings, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{name: {value, source}} for the config file and every setting; the key (and a
    password in the base URL) masked."""
    path = config_path(environ)
    rows: dict[str, dict[str, Any]] = {
        "config_file": {
            "value": str(path),
            "source": config_path_origin(environ),
            "exists": path.is_file(),
        }
    }
    for source in setting_sources():
        value = getattr(settings, source.name)
        if source.name == "api_key":
            value = masked(value) if value else None
        elif source.name == "base_url":
            value = mask_url_credentials(value)
        rows[source.name] = {"value": value, "source": settings.origins[source.name]}
    return rows


def write_settings(rows: dict[str, dict[str, Any]], sink: OutputSink, *, as_json: bool) -> None:
    """One JSON object, or aligned `name  value  source` lines."""
    if as_json:
        sink.write(json_line(rows))  # (a path may not be UTF-8)
        return
    table = []
    for name, row in rows.items():
        value = row["value"]
        shown = "(not set)" if value is None else value
        if isinstance(value, float):
            shown = f"{value:g}"
        if name == "config_file" and not row["exists"]:
            shown = f"{shown} (not found)"
        table.append((name, str(shown), row["source"]))
    widths = [max(len(cells[column]) for cells in table) for column in (0, 1)]
    lines = [f"{n:<{widths[0]}}  {v:<{widths[1]}}  {source}" for n, v, source in table]
    sink.write(("\n".join(lines) + "\n").encode())
