"""`batch` input: JSONL items (or `--lines` prompts), checked whole before any request.

The input is read twice, line by line, never held whole: a first pass checks every line and
collects the item keys (a usage error names the first bad line), a second pass yields the
items to run. Piped stdin, and a pipe given by name (`<(…)`, a FIFO), is spooled to a
temporary file first so it can be read twice. A line is read up to a bound, so an input
without line ends (a device, a binary file) cannot take all the memory.
"""

from __future__ import annotations

import codecs
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from mavera_cli.errors import InvalidOutputError, UsageError
from mavera_cli.files import is_pipe
from mavera_cli.jsonout import dump_json, json_line
from mavera_cli.schema import Schema, load_schema

# What an item line may carry; anything else is kept out of the request.
ITEM_FIELDS = ("id", "input", "persona_id", "instructions", "model", "schema")
ItemKey = tuple[str, str | None]
# The longest input line read: far more than any prompt or Responses input (images as data
# URLs included), far less than the memory of a machine.
LONGEST_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class BatchItem:
    """One request to make: an input line, once per persona."""

    id: str
    index: int  # 0-based among the items (blank lines not counted)
    line: int  # 1-based line number in the input
    input: str | list[Any]
    persona_id: str | None
    instructions: str | None = None
    model: str | None = None
    schema: Schema | None = None

    @property
    def key(self) -> ItemKey:
        return (self.id, self.persona_id)


@dataclass(frozen=True)
class InputFormat:
    """How to read the input: JSONL items or plain prompt lines, and the fan-out personas."""

    lines: bool = False
    personas: Sequence[str] = ()


@contextmanager
def open_input(path: str | None) -> Iterator[Path]:
    """The input as a file that can be read twice: the file itself, or stdin (or a pipe
    given by name) spooled."""
    if path is None or path == "-":
        stdin = sys.stdin
        if stdin is None or (path is None and stdin.isatty()):
            raise UsageError("no input: give a JSONL file, or pipe the items to stdin")
        with _spooled(stdin.buffer, "stdin") as spool:
            yield spool
        return
    file = Path(path)
    try:
        opened = file.open("rb")
        mode = os.fstat(opened.fileno()).st_mode
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with opened:
        if is_pipe(mode, path):
            # `batch <(generate)`: a pipe can be read only once.
            with _spooled(opened, path) as spool:
                yield spool
            return
    yield file


@contextmanager
def _spooled(source: BinaryIO, name: str) -> Iterator[Path]:
    with tempfile.NamedTemporaryFile(prefix="mavera-batch-", suffix=".jsonl") as spool:
        try:
            shutil.copyfileobj(source, spool)
            spool.flush()
        except OSError as exc:  # a read error, or no room for the copy
            raise UsageError(
                f"cannot read {name} into a temporary file: {exc.strerror or exc}"
            ) from exc
        yield Path(spool.name)


def check_input(path: Path, form: InputFormat) -> set[ItemKey]:
    """Check every line before anything is sent; the keys of every run (item × persona)."""
    keys: dict[ItemKey, int] = {}
    for item in read_items(path, form):
        earlier = keys.setdefault(item.key, item.line)
        if earlier != item.line:
            shown = item.id if item.persona_id is None else f"{item.id} (persona {item.persona_id})"
            raise UsageError(
                f"input line {item.line}: duplicate item {shown}, first on line {earlier}"
            )
    return set(keys)


def read_items(path: Path, form: InputFormat) -> Iterator[BatchItem]:
    """Every item of the input in order, fanned out over the personas; UsageError naming the
    line for one that is not an item."""
    index = 0
    with path.open("rb") as file:
        for number, raw in enumerate(iter(lambda: file.readline(LONGEST_LINE_BYTES + 1), b""), 1):
            if len(raw) > LONGEST_LINE_BYTES:
                raise UsageError(
                    f"input line {number}: longer than {LONGEST_LINE_BYTES >> 20} MiB "
                    "(not a batch input?)"
                )
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # a file saved by Windows Notepad, say
            if not raw.strip():
                continue
            fields = _prompt_line(raw, number) if form.lines else _item_line(raw, number)
            yield from _fan_out(fields, index, number, form.personas)
            index += 1


def _prompt_line(raw: bytes, number: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise UsageError(f"input line {number}: not UTF-8 text") from exc
    return {"input": text}


def _item_line(raw: bytes, number: int) -> dict[str, Any]:
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"input line {number}: not valid JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise UsageError(f"input line {number}: an item must be a JSON object")
    value = fields.get("input")
    if value is None:
        raise UsageError(f"input line {number}: the item has no `input`")
    if not isinstance(value, str | list) or (isinstance(value, str) and not value.strip()):
        raise UsageError(f"input line {number}: `input` must be text or an array of items")
    if isinstance(value, list):
        try:
            json_line(value)  # what the request will carry (orjson reads deeper than it writes)
        except InvalidOutputError as exc:
            raise UsageError(f"input line {number}: `input` is {exc.message}") from exc
    for name in ("persona_id", "instructions", "model"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise UsageError(f"input line {number}: `{name}` must be a string")
    item_id = fields.get("id")
    if isinstance(item_id, bool) or not isinstance(item_id, str | int | None):
        raise UsageError(f"input line {number}: `id` must be a string or a number")
    schema = fields.get("schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise UsageError(f"input line {number}: `schema` must be a JSON object")
        try:
            fields["schema"] = load_schema(dump_json(schema).decode(), "response")
        except (UsageError, InvalidOutputError) as exc:  # (nested past what JSON writes)
            raise UsageError(f"input line {number}: {exc.message}") from exc
    return fields


def _fan_out(
    fields: dict[str, Any], index: int, number: int, personas: Sequence[str]
) -> Iterator[BatchItem]:
    item_id = fields.get("id")
    shown_id = str(number) if item_id is None else str(item_id)
    own = fields.get("persona_id")
    # The item's own persona wins; otherwise it runs once per fan-out persona.
    for persona in [own] if own is not None or not personas else personas:
        yield BatchItem(
            id=shown_id,
            index=index,
            line=number,
            input=fields["input"],
            persona_id=persona,
            instructions=fields.get("instructions"),
            model=fields.get("model"),
            schema=fields.get("schema"),
        )
