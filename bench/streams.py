"""Deterministic Responses-API SSE streams for the benchmark.

The server (``bench/server.py``) and the harness (``bench/run.py``) both call :func:`build`
with the same :class:`Spec`, so the harness knows the exact bytes every client must print
without a side channel.

A stream is what the Responses API sends for one text answer::

    response.created, response.in_progress, response.output_item.added,
    response.content_part.added, N x response.output_text.delta,
    response.output_text.done (full text), response.content_part.done (full text),
    response.output_item.done (full text), response.completed (full text, usage),
    data: [DONE]

Every event is ``event: TYPE`` + ``data: JSON`` + blank line; the JSON is compact, carries
``type`` first and a ``sequence_number``; every delta carries ``item_id``, ``output_index``,
``content_index``, ``logprobs: []`` and ``obfuscation`` padding like the real API.
Numbers are integers only, so ``jq -c`` (which rewrites ``1.0`` as ``1``) reproduces each
data line byte for byte.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Literal

import orjson

Kind = Literal["text", "utf8", "json", "markdown", "paragraph"]

MODEL = "mavera-1"
CREATED_AT = 1_760_000_000

# ASCII prose with the characters JSON has to escape: quotes, backslashes, newlines, tabs.
_ASCII_CORPUS = (
    'The quick brown fox said "hello" to the lazy dog.\n'
    "Streaming APIs send text in small pieces; each piece is a delta.\n"
    "Paths like C:\\temp\\out.txt and tabs\tinside lines must survive.\n"
    "- item one\n- item two\n- item three\n\n"
    "Numbers: 3.14159, 2.71828, 1.41421; symbols: <>&{}[]()#%@!?*+=~^|`$.\n"
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\n"
)

# Multi-byte text: 2-, 3- and 4-byte UTF-8 sequences, combining marks, RTL, CJK, emoji
# (astral plane, ZWJ sequences, flags) and plain ASCII in between.
_UTF8_CORPUS = (
    "Grüße aus Köln, naïve café, façade, smørrebrød, Ångström, ŽŠČ. "
    "Ελληνικά κείμενα και Кириллица тоже. "
    "日本語のテキストはマルチバイトです。中文字符也一样。한국어 텍스트도 있습니다. "
    "עברית וערבית: مرحبا بالعالم. "
    "Emoji 🙂🚀🔥👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 and math 𝔸𝔹ℂ ∑∫√∞ ≠ ≤ ≥. "
    "Combining: e\u0301 a\u0308 n\u0303; quotes “curly” ‘single’ «guillemets» — dash…\n"
)


@dataclass(frozen=True)
class Spec:
    """What one stream contains. ``n`` and ``size`` mean:

    - ``text``: ``n`` deltas of exactly ``size`` ASCII bytes (with escapes in the JSON);
    - ``utf8``: ``n`` deltas of ``size`` code points of multi-byte text; every 4th delta
      event is encoded with ``\\uXXXX`` escapes (surrogate pairs for emoji);
    - ``json``: the deltas spell a JSON object of about ``size`` bytes, ``n`` bytes per delta.
    """

    kind: Kind = "text"
    n: int = 1000
    size: int = 8
    pace_ms: float = 0.0
    seed: int = 8

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Spec:
        return cls(**d)  # type: ignore[arg-type]


@dataclass
class Stream:
    spec: Spec
    deltas: list[str]
    text: str
    # One entry per SSE event, in order: (is_delta, the event's SSE bytes, its data JSON).
    events: list[tuple[bool, bytes, bytes]] = field(repr=False)
    done: bytes = b"data: [DONE]\n\n"

    @property
    def body(self) -> bytes:
        """The whole SSE body (without HTTP chunk framing)."""
        return b"".join(e[1] for e in self.events) + self.done

    def ndjson(self) -> bytes:
        """What ``--events`` must print: every data JSON as received, one per line."""
        return b"".join(e[2] + b"\n" for e in self.events)


def json_document(target_bytes: int, seed: int) -> tuple[str, dict[str, object]]:
    """A compact JSON object of about ``target_bytes`` bytes and a JSON Schema for it."""
    rng = random.Random(seed)
    words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
        "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
    ]  # fmt: skip
    items: list[dict[str, object]] = []
    size = 20
    i = 0
    while size < target_bytes:
        item = {
            "id": i,
            "name": f'{rng.choice(words)} {rng.choice(words)} "{i}"',
            "tags": rng.sample(words, 3),
            "score": round(rng.random() * 100, 3),
            "active": rng.random() < 0.5,
            "note": None if i % 7 else "line one\nline two\ttabbed \\ backslash",
        }
        items.append(item)
        size += len(orjson.dumps(item)) + 1
        i += 1
    doc = {"title": "benchmark document", "count": len(items), "items": items}
    schema: dict[str, object] = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "score": {"type": "number"},
                        "active": {"type": "boolean"},
                        "note": {"type": ["string", "null"]},
                    },
                    "required": ["id", "name", "tags", "score", "active", "note"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["title", "count", "items"],
        "additionalProperties": False,
    }
    return orjson.dumps(doc).decode(), schema


def _slices(corpus: str, n: int, size: int) -> list[str]:
    reps = (n * size) // len(corpus) + 2
    big = corpus * reps
    return [big[i * size : (i + 1) * size] for i in range(n)]


def make_deltas(spec: Spec) -> list[str]:
    if spec.kind == "text":
        if spec.size == 8:
            return _slices(_ASCII_CORPUS, spec.n, 8)
        # Big deltas: vary the content a little so no two neighbours are the same string.
        return [
            (f"[{i}] " + _ASCII_CORPUS * (spec.size // len(_ASCII_CORPUS) + 1))[: spec.size]
            for i in range(spec.n)
        ]
    if spec.kind == "utf8":
        return _slices(_UTF8_CORPUS, spec.n, spec.size)
    if spec.kind == "json":
        doc, _ = json_document(spec.size, spec.seed)
        step = spec.n
        return [doc[i : i + step] for i in range(0, len(doc), step)]
    if spec.kind == "markdown":
        doc = markdown_document(spec.size)
        return _even_pieces(doc, spec.n)
    if spec.kind == "paragraph":
        # One paragraph: the prose without its line breaks, `size` bytes per delta.
        prose = _ASCII_CORPUS.replace("\n", " ")
        return _slices(prose, spec.n, spec.size)
    raise ValueError(f"unknown kind {spec.kind!r}")


def _even_pieces(text: str, n: int) -> list[str]:
    """`text` in `n` pieces of (nearly) equal length."""
    n = min(n, len(text))
    return [text[len(text) * i // n : len(text) * (i + 1) // n] for i in range(n)]


def markdown_document(target_bytes: int) -> str:
    """A realistic long answer: sections with a heading, a paragraph with emphasis and code,
    a list, a table and a fenced code block, repeated to about `target_bytes`."""
    parts: list[str] = []
    size = 0
    section = 0
    while size < target_bytes:
        section += 1
        part = (
            f"## Section {section}: what the numbers say\n\n"
            f"The **{section}th** finding is that `stream_{section}` keeps up with the model; "
            "the renderer commits *finished* blocks once and redraws only the growing one.\n\n"
            f"- first point of section {section}\n- second point, with `code`\n"
            "- third point, **bold** and *italic*\n\n"
            "| metric | value | note |\n|---|---|---|\n"
            f"| latency | {section * 3} ms | p99 |\n"
            f"| throughput | {section * 7} MB/s | loopback |\n\n"
            "```python\n"
            f"def section_{section}(rows):\n"
            "    total = 0\n"
            "    for row in rows:\n"
            "        total += row.value\n"
            "    return total\n"
            "```\n\n"
        )
        parts.append(part)
        size += len(part)
    return "".join(parts)


def _sse(type_: str, data: bytes) -> bytes:
    return b"event: " + type_.encode() + b"\ndata: " + data + b"\n\n"


def build(spec: Spec) -> Stream:
    rng = random.Random(spec.seed)
    resp_id = "resp_" + "".join(rng.choice("0123456789abcdef") for _ in range(48))
    item_id = "msg_" + "".join(rng.choice("0123456789abcdef") for _ in range(48))
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    obf_pool = ["".join(rng.choices(alnum, k=rng.randint(4, 30))) for _ in range(4096)]

    deltas = make_deltas(spec)
    text = "".join(deltas)
    escape_every = 4 if spec.kind == "utf8" else 0

    events: list[tuple[bool, bytes, bytes]] = []
    seq = 0

    def response(status: str, output: list[object], usage: object) -> dict[str, object]:
        return {
            "id": resp_id,
            "object": "response",
            "created_at": CREATED_AT,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": MODEL,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def add(obj: dict[str, object], is_delta: bool = False) -> None:
        nonlocal seq
        obj["sequence_number"] = seq
        seq += 1
        data = orjson.dumps(obj)
        events.append((is_delta, _sse(str(obj["type"]), data), data))

    def ordered(type_: str, **kw: object) -> dict[str, object]:
        # "type" first, then "sequence_number", like the real API.
        d: dict[str, object] = {"type": type_, "sequence_number": None}
        d.update(kw)
        return d

    add(ordered("response.created", response=response("in_progress", [], None)))
    add(ordered("response.in_progress", response=response("in_progress", [], None)))
    add(
        ordered(
            "response.output_item.added",
            output_index=0,
            item={
                "id": item_id,
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            },
        )
    )
    add(
        ordered(
            "response.content_part.added",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
        )
    )
    delta_prefix = b'{"type":"response.output_text.delta","sequence_number":'
    delta_mid = b',"item_id":"' + item_id.encode() + b'","output_index":0,"content_index":0,'
    sse_prefix = b"event: response.output_text.delta\ndata: "
    for i, d in enumerate(deltas):
        obf = obf_pool[i & 4095]
        if escape_every and i % escape_every == escape_every - 1:
            body = json.dumps(
                {"delta": d, "logprobs": [], "obfuscation": obf},
                ensure_ascii=True,
                separators=(",", ":"),
            ).encode()
        else:
            body = orjson.dumps({"delta": d, "logprobs": [], "obfuscation": obf})
        data = delta_prefix + str(seq).encode() + delta_mid + body[1:]
        seq += 1
        events.append((True, sse_prefix + data + b"\n\n", data))

    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "content": [part],
        "role": "assistant",
    }
    add(
        ordered(
            "response.output_text.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            text=text,
            logprobs=[],
        )
    )
    add(
        ordered(
            "response.content_part.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=part,
        )
    )
    add(ordered("response.output_item.done", output_index=0, item=item))
    usage = {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(deltas),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12 + len(deltas),
    }
    add(ordered("response.completed", response=response("completed", [item], usage)))
    return Stream(spec=spec, deltas=deltas, text=text, events=events)
