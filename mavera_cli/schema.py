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
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mavera_cli.errors import InvalidOutputError, UsageError
from mavera_cli.files import is_pipe
from mavera_cli.jsonin import strict_loads

# OpenAI's rule for `text.format.name` (Mavera says it matches): letters, digits, _ and -.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_NAME = "response"
JSON_OBJECT_FORMAT: dict[str, Any] = {"type": "json_object"}
# Messages quote parts of the object; one line of an error stays readable at this length.
_MAX_DETAIL = 160
# A schema or a tools file larger than this is not one (`/dev/zero` would fill the memory).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
# JSON nested deeper is no schema a person writes (models accept a few levels), and every
# layer that walks it (checking, the request body, traces) would need care past this.
MAX_DOCUMENT_DEPTH = 128
# Keywords whose values are data, not schemas: a `$ref` inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})
# Keywords that apply subschemas to the same value, not to a part of it: a loop through only
# these (`{"$ref": "#"}`) never ends, whatever the output.
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_SCHEMAS = ("not", "if", "then", "else")


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
        # (A byte order mark, as Windows Notepad writes, is not part of the JSON.)
        text = read_document(value, source).removeprefix(codecs.BOM_UTF8)
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise UsageError(f"{source} is nested too deeply to be a JSON Schema") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except ValueError as exc:  # bytes that are not UTF-8/16/32
        raise UsageError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UsageError(f"{source} must be a JSON object (a JSON Schema), not {_kind(document)}")
    check_depth(document, f"{source} is nested too deeply to be a JSON Schema")
    _check_schema(document, source)
    _check_references(document, source)
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
    except RecursionError as exc:  # checking takes several Python frames per level
        raise UsageError(f"{source} is nested too deeply to check as a JSON Schema") from exc


def read_document(path: str, source: str) -> bytes:
    """The bytes of a file or pipe holding a JSON document (a schema, tools), read with a
    bound; a device or anything larger than MAX_DOCUMENT_BYTES is a usage error."""
    try:
        with open(path, "rb") as file:
            is_pipe(os.fstat(file.fileno()).st_mode, source)  # (a device: a usage error)
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UsageError(
            f"{source} is larger than {MAX_DOCUMENT_BYTES >> 20} MiB: not a JSON document"
        )
    return data


def check_depth(document: Any, message: str, limit: int = MAX_DOCUMENT_DEPTH) -> None:
    """Raise UsageError(message) if `document` nests objects and arrays past `limit`."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:  # (a loop, not recursion: the depth is what is in question)
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            raise UsageError(f"{message} (more than {limit} levels)")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_references(document: dict[str, Any], source: str) -> None:
    """Every `$ref` resolves within the schema (or to a JSON Schema meta-schema), and no loop
    of references comes back to where it started without descending into the value: found
    before the request is sent, never by fetching anything."""
    from jsonschema_specifications import REGISTRY  # type: ignore[import-untyped, unused-ignore]
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    dialect = document.get("$schema")
    specification = DRAFT202012  # jsonschema's default dialect too
    if isinstance(dialect, str):
        specification = specification_with(dialect, default=DRAFT202012)
    root = specification.create_resource(document)
    # Only the meta-schemas besides this one: no retrieval, so nothing is fetched.
    resolvers = {id(document): REGISTRY.resolver_with_root(root)}
    in_place: dict[int, list[int]] = {}
    where: dict[int, str] = {}
    for node, path in _schema_nodes(document):
        resolver = resolvers.pop(id(node))
        if isinstance(node, dict):
            resolver = resolver.in_subresource(specification.create_resource(node))
            where[id(node)] = path or "/"
            in_place[id(node)] = [id(child) for child in _in_place_children(node)]
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    target = resolver.lookup(ref).contents
                except Unresolvable as exc:
                    raise UsageError(
                        f"{source}: the $ref {_clip(ref)!r} at {path or '/'} cannot be resolved "
                        "(it must point inside the schema; nothing is fetched)"
                    ) from exc
                in_place[id(node)].append(id(target))
        for _, child in _children(node):
            if isinstance(child, dict | list):
                resolvers[id(child)] = resolver
    loop = _first_loop(in_place)
    if loop is not None:
        raise UsageError(
            f"{source}: the schema at {where.get(loop, '/')} refers back to itself through "
            "$ref without descending into the value (checking the output would never end)"
        )


def _schema_nodes(document: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    """Every object and array of the schema outside data keywords, parents first, each with
    its JSON pointer."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, path = stack.pop()
        yield node, path
        children = [
            (child, f"{path}/{key}")
            for key, child in _children(node)
            if isinstance(child, dict | list)
        ]
        stack.extend(reversed(children))


def _children(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        pointer = (str(key).replace("~", "~0").replace("/", "~1") for key in node)
        return [
            (key, child)
            for key, (name, child) in zip(pointer, node.items(), strict=True)
            if name not in _DATA_KEYWORDS
        ]
    return [(str(index), child) for index, child in enumerate(node)]


def _in_place_children(node: dict[str, Any]) -> Iterator[Any]:
    for keyword in _IN_PLACE_LISTS:
        subschemas = node.get(keyword)
        if isinstance(subschemas, list):
            yield from (schema for schema in subschemas if isinstance(schema, dict))
    for keyword in _IN_PLACE_SCHEMAS:
        if isinstance(node.get(keyword), dict):
            yield node[keyword]
    dependent = node.get("dependentSchemas")
    if isinstance(dependent, dict):
        yield from (schema for schema in dependent.values() if isinstance(schema, dict))


def _first_loop(edges: dict[int, list[int]]) -> int | None:
    """A node on a loop of `edges`, if there is one (depth-first, without recursion)."""
    done: set[int] = set()
    for start in edges:
        if start in done:
            continue
        on_path = {start}
        stack = [(start, iter(edges.get(start, ())))]
        while stack:
            node, pending = stack[-1]
            successor = next(pending, None)
            if successor is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
            elif successor in on_path:
                return node
            elif successor not in done:
                on_path.add(successor)
                stack.append((successor, iter(edges.get(successor, ()))))
    return None


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
