"""`mavera json --schema`: load the schema (a file or inline JSON) and check the final object.

A schema that cannot be read or is not a JSON Schema is a usage error (exit 2), found before
any request is sent; an object that fails it is invalid output (exit 11). jsonschema is
imported only when a schema is actually used: it is slow to import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mavera_cli.errors import InvalidOutputError, UsageError

# OpenAI's rule for `text.format.name` (Mavera says it matches): letters, digits, _ and -.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_NAME = "response"
JSON_OBJECT_FORMAT: dict[str, Any] = {"type": "json_object"}
# Messages quote parts of the object; one line of an error stays readable at this length.
_MAX_DETAIL = 160


@dataclass(frozen=True)
class Schema:
    """A loaded, checked JSON Schema and the name it is sent under."""

    document: dict[str, Any]
    name: str
    source: str

    def text_format(self, strict: bool = True) -> dict[str, Any]:
        """The `text.format` object of the request body."""
        return {"type": "json_schema", "name": self.name, "schema": self.document, "strict": strict}


def load_schema(value: str, name: str | None = None) -> Schema:
    """Load `--schema` VALUE: inline JSON when it starts with `{`, otherwise a file path."""
    inline = value.lstrip().startswith("{")
    if inline:
        source = "--schema"
        text: str | bytes = value
    else:
        source = f"schema file {value}"
        try:
            text = Path(value).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except ValueError as exc:  # bytes that are not UTF-8/16/32
        raise UsageError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UsageError(f"{source} must be a JSON object (a JSON Schema), not {_kind(document)}")
    _check_schema(document, source)
    return Schema(document, _schema_name(name, None if inline else Path(value).stem), source)


def _schema_name(explicit: str | None, stem: str | None) -> str:
    if explicit is not None:
        if not NAME_PATTERN.fullmatch(explicit):
            raise UsageError(f"--schema-name {explicit!r}: use 1-64 letters, digits, '_' or '-'")
        return explicit
    if stem:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64]
        if name.strip("_"):
            return name
    return DEFAULT_NAME


def _check_schema(document: dict[str, Any], source: str) -> None:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    validator = validator_for(document)
    try:
        validator.check_schema(document)
    except SchemaError as exc:
        raise UsageError(
            f"{source} is not a valid JSON Schema: {_clip(exc.message)} at {exc.json_path}"
        ) from exc


def validate_output(instance: Any, schema: dict[str, Any]) -> None:
    """Check the final object against the schema; raise InvalidOutputError naming the path."""
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for
    from referencing.exceptions import Unresolvable

    validator = validator_for(schema)(schema)
    try:
        error = best_match(validator.iter_errors(instance))
    except Unresolvable as exc:
        # Only found while checking: the output may be fine, the schema is what is broken.
        raise UsageError(
            f"cannot check the output: the schema's $ref is unresolvable: {exc}"
        ) from exc
    if error is not None:
        raise InvalidOutputError(
            f"the output does not match the schema at {error.json_path}: {_clip(error.message)}"
        )


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL] + "…"
