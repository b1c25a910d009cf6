"""JSON in as RFC 8259 has it: Python's json accepts NaN and Infinity, JSON does not. Only the
standard library: the schema layer reads with it, and stays free of orjson."""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str, **hooks: Any) -> Any:
    """Parse JSON text, refusing NaN and Infinity. `hooks`: json.loads's parse_int /
    parse_float, to refuse numbers too."""
    return json.loads(text, parse_constant=_reject_constant, **hooks)
