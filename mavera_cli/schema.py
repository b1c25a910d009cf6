"""`mavera json`: load the `--schema` (a file or inline JSON), and turn the final output text
into the checked JSON value.

A schema that cannot be read or is not a JSON Schema is a usage error (exit 2), found before
any request is sent; final text that is not JSON, or an object that fails the schema, is
invalid output (exit 11), whatever renders it. jsonschema is imported only when a schema is
actually used: it is slow to import.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
            # (A byte order mark, as Windows Notepad writes, is not part of the JSON.)
            text = Path(value).read_bytes().removeprefix(codecs.BOM_UTF8)
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
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped, unused-ignore]

    validator = validator_for(document)
    try:
        validator.check_schema(document)
    except SchemaError as exc:
        raise UsageError(
            f"{source} is not a valid JSON Schema: {_clip(exc.message)} at {exc.json_path}"
        ) from exc


def validate_output(instance: Any, schema: dict[str, Any]) -> None:
    """Check the final object against the schema; raise InvalidOutputError naming the path."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped, unused-ignore]
    from referencing.exceptions import Unresolvable

    validator = validator_for(schema)(schema)
    try:
        error = best_match(validator.iter_errors(instance))
    except Unresolvable as exc:
        # Only found while checking: the output may be fine, the schema is what is broken.
        raise UsageError(
            f"cannot check the output: the schema's $ref is unresolvable: {exc}"
        ) from exc
    except RecursionError as exc:
        # A recursive schema (`"$ref": "#"`) follows the output down, a Python frame or more
        # per level: JSON nested past that cannot be checked, so it is not usable output.
        raise InvalidOutputError(
            "the output is nested too deeply to check against the schema"
        ) from exc
    if error is not None:
        raise InvalidOutputError(
            f"the output does not match the schema at {error.json_path}: {_clip(error.message)}"
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str) -> Any:
    """Parse JSON as RFC 8259 has it: no NaN or Infinity (Python's json accepts them)."""
    return json.loads(text, parse_constant=_reject_constant)


def check_final_json(text: str, schema: dict[str, Any] | None = None) -> Any:
    """The completed output text as a JSON value, matched against `schema` if given.

    Raises InvalidOutputError (exit 11) for no text, text that is not strict JSON, or a value
    that fails the schema.
    """
    if not text.strip():
        raise InvalidOutputError("the response has no output text, so no JSON")
    try:
        value = strict_loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutputError(
            f"the output is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno} ({len(text)} characters received)"
        ) from exc
    except ValueError as exc:  # NaN / Infinity
        raise InvalidOutputError(f"the output is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidOutputError("the output is not usable JSON: nested too deeply") from exc
    if schema is not None:
        validate_output(value, schema)
    return value


def json_output_parser(schema: dict[str, Any] | None = None) -> Callable[[str], Any]:
    """`check_final_json` for this schema: what `core.run_stream(parse_output=…)` takes."""
    return partial(check_final_json, schema=schema)


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[:_MAX_DETAIL] + "…"
