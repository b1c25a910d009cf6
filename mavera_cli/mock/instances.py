"""A small JSON Schema instance generator: one deterministic value that fits a schema.

Covers what structured outputs and tool parameters use in practice (object, array, string,
integer, number, boolean, null, enum, const, anyOf/oneOf/allOf, local $ref); `pattern`,
`uniqueItems` and `not` are not honoured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Past this depth only required properties and minimum item counts are generated, so
# recursive schemas ($ref to itself) end.
_MAX_DEPTH = 6
_MAX_STRING = 60
_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def instance_of(schema: Any, seed: str = "") -> Any:
    """A value valid against `schema`; strings are taken from `seed` (e.g. the prompt)."""
    return _Generator(schema, _seed_phrase(seed)).make(schema, 0)


def _seed_phrase(seed: str) -> str:
    phrase = " ".join(seed.split())
    if len(phrase) > _MAX_STRING:
        phrase = phrase[:_MAX_STRING].rsplit(" ", 1)[0] or phrase[:_MAX_STRING]
    return phrase or "example"


class _Generator:
    def __init__(self, root: Any, phrase: str) -> None:
        self._root = root
        self._phrase = phrase

    def make(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return self._phrase  # `true` or junk: anything fits, a string reads best
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            return self.make(target, depth + 1) if target is not None else self._phrase
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.make(self._pick(options, depth), depth + 1)
        if isinstance(schema.get("allOf"), list):
            return self.make(_merge(schema), depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = self._pick_type(kind, depth)
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else ""
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return _integer(schema)
        if kind == "number":
            return _number(schema)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _resolve(self, ref: Any) -> Any:
        # Only local JSON pointers (#/$defs/X, #/definitions/X), which is what pydantic emits.
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = self._root
        for raw in filter(None, ref[1:].split("/")):
            key = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def _pick(self, options: list[Any], depth: int) -> Any:
        nulls = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
        others = [o for o in options if o not in nulls]
        if depth >= _MAX_DEPTH and nulls:
            return nulls[0]
        return others[0] if others else options[0]

    @staticmethod
    def _pick_type(kinds: list[Any], depth: int) -> Any:
        if depth >= _MAX_DEPTH and "null" in kinds:
            return "null"
        others = [k for k in kinds if k != "null"]
        return others[0] if others else "null"

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        wanted = set(required) if isinstance(required, list) else set()
        return {
            name: self.make(sub, depth + 1)
            for name, sub in properties.items()
            if depth < _MAX_DEPTH or name in wanted
        }

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        values = [self.make(s, depth + 1) for s in prefix] if isinstance(prefix, list) else []
        minimum = _int_or(schema.get("minItems"), 0)
        maximum = _int_or(schema.get("maxItems"), math.inf)
        count = max(minimum, len(values) if depth >= _MAX_DEPTH else max(len(values), 1))
        count = int(min(count, max(maximum, minimum)))
        items = schema.get("items", {})
        while len(values) < count:
            values.append(self.make(items if items is not False else {}, depth + 1))
        return values[:count]

    def _string(self, schema: Mapping[str, Any]) -> str:
        value = _STRING_FORMATS.get(str(schema.get("format")), self._phrase)
        maximum = _int_or(schema.get("maxLength"), None)
        minimum = _int_or(schema.get("minLength"), 0)
        if maximum is not None:
            value = value[:maximum]
        return value.ljust(minimum, "x")


def _merge(schema: Mapping[str, Any]) -> dict[str, Any]:
    """allOf as one schema: later parts add properties and required names."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _int_or(value: Any, default: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, ...]:
    """minimum, exclusiveMinimum, maximum, exclusiveMaximum (None when absent)."""
    keys = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    # Draft-4 boolean exclusiveMinimum/Maximum are flags, not bounds: ignored.
    return tuple(
        v if isinstance(v, int | float) and not isinstance(v, bool) else None
        for v in (schema.get(key) for key in keys)
    )


def _integer(schema: Mapping[str, Any]) -> int:
    minimum, above, maximum, below = _bounds(schema)
    lows = [math.ceil(minimum)] if minimum is not None else []
    lows += [math.floor(above) + 1] if above is not None else []
    highs = [math.floor(maximum)] if maximum is not None else []
    highs += [math.ceil(below) - 1] if below is not None else []
    value = max([1, *lows])
    if highs:
        value = min(value, *highs)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple > 0:
        rounded = math.ceil(value / multiple) * multiple
        # Rounding up may cross the maximum; then round down instead.
        value = rounded if not highs or rounded <= min(highs) else value // multiple * multiple
    return value


def _number(schema: Mapping[str, Any]) -> float:
    minimum, above, maximum, below = _bounds(schema)
    value = 1.5
    if minimum is not None and value < minimum:
        value = float(minimum)
    if above is not None and value <= above:
        value = above + 0.5 if below is None else (above + below) / 2
    if maximum is not None and value > maximum:
        value = float(maximum)
    if below is not None and value >= below:
        value = below - 0.5 if above is None else (above + below) / 2
    return value
