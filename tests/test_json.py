"""`mavera json`: the final object on stdout only when complete and valid, the schema in the
request, a live preview on a terminal's stderr, `--partial` NDJSON, replay and real streams."""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mavera_cli.render.preview import NOT_YET, parse_partial
from tests.chunking import bytewise, random_splits, whole
from tests.conftest import FIXTURES, one_line_error, real_recordings, run_mavera
from tests.pty_helpers import ERASE_LINE, HIDE_CURSOR, SHOW_CURSOR, PtyRun, strip_ansi
from tests.scripted_server import DONE, Exchange, ScriptedServer, Wire, sse_event, text_stream

# Escapes, a split surrogate-pair escape, raw multi-byte characters, an integer beyond 64 bits,
# an exponent, nesting: everything a split delta can cut in the wrong place.
TEXT = (
    '{"name": "Ada \\"the Countess\\" Lovelace", "path": "C:\\\\notes\\n", '
    '"accent": "caf\\u00e9 café", "emoji": "\\ud83d\\ude00 😀 中文", '
    '"tags": ["math", "engineering"], "n": -1.5e3, "big": 123456789012345678901234567890, '
    '"ok": true, "none": null, "nested": {"deep": [1, {"x": []}]}}'
)
OBJECT = json.loads(TEXT)
COMPACT = json.dumps(OBJECT, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "big": {"type": "integer"},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "tags", "big"],
}


def raw_utf8(events: list[bytes]) -> list[bytes]:
    """The same events with non-ASCII characters sent as raw UTF-8, as real servers do."""
    framed = []
    for event in events:
        if event == DONE:
            framed.append(event)
            continue
        data = json.loads(event.decode().split("data: ", 1)[1])
        framed.append(
            f"event: {data['type']}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        )
    return framed


def json_stream(deltas: list[str], *, terminal: str = "response.completed") -> bytes:
    return b"".join(raw_utf8(text_stream(deltas, terminal=terminal)))


def char_deltas(text: str) -> list[str]:
    return list(text)


def random_deltas(text: str, seed: int) -> list[str]:
    rng, deltas, i = random.Random(seed), [], 0
    while i < len(text):
        size = rng.randint(1, 7)
        deltas.append(text[i : i + size])
        i += size
    return deltas


def serve(server: ScriptedServer, chunks: list[bytes], pause: float = 0.0) -> None:
    def handler(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(chunks, pause)

    server.script(handler)


def schema_file(tmp_path: Path, schema: dict | None = None, name: str = "person.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(schema or SCHEMA))
    return path


def json_args(server: ScriptedServer, *extra: str) -> list[str]:
    return ["json", "--base-url", server.base_url, "--retries", "0", *extra, "invent a person"]


# --- the final object ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deltas", "chunking"),
    [
        (char_deltas(TEXT), whole),
        (random_deltas(TEXT, 1), bytewise),
        (random_deltas(TEXT, 2), lambda data: random_splits(data, seed=5, max_size=11)),
        ([TEXT], bytewise),
    ],
    ids=["char-deltas", "random-deltas-bytewise", "random-deltas-random-reads", "one-delta"],
)
def test_stdout_is_the_object_and_the_request_carries_the_schema(
    server, tmp_path, deltas, chunking
) -> None:
    serve(server, chunking(json_stream(deltas)))
    path = schema_file(tmp_path)
    result = run_mavera(json_args(server, "--schema", str(path)))
    assert result.stdout == COMPACT
    assert json.loads(result.stdout)["big"] == 123456789012345678901234567890  # not a float
    assert result.stderr == ""  # stderr is not a TTY: no preview, nothing decorative
    body = server.requests[0].json()
    assert body["stream"] is True
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}
    }


def test_pretty_and_compact_choose_the_layout(server, tmp_path) -> None:
    serve(server, [json_stream(random_deltas(TEXT, 3))])
    pretty = run_mavera(json_args(server, "--pretty"))
    assert pretty.stdout == json.dumps(OBJECT, ensure_ascii=False, indent=2).encode() + b"\n"
    compact = run_mavera(json_args(server, "--compact", "-n"))
    assert compact.stdout == COMPACT.rstrip(b"\n")


def test_inline_schema_and_schema_name_and_no_strict(server) -> None:
    serve(server, [json_stream(char_deltas(TEXT))])
    inline = json.dumps(SCHEMA)
    args = ["--schema", inline, "--schema-name", "person_v2", "--no-strict"]
    result = run_mavera(json_args(server, *args))
    assert result.stdout == COMPACT
    assert server.requests[0].json()["text"]["format"] == {
        "type": "json_schema",
        "name": "person_v2",
        "schema": SCHEMA,
        "strict": False,
    }


def test_schema_name_comes_from_the_file_stem_made_safe(server, tmp_path) -> None:
    serve(server, [json_stream([TEXT])])
    run_mavera(json_args(server, "--schema", str(schema_file(tmp_path, name="my schema.v2.json"))))
    assert server.requests[0].json()["text"]["format"]["name"] == "my_schema_v2"


def test_without_a_schema_asks_for_a_json_object(server) -> None:
    serve(server, [json_stream(random_deltas(TEXT, 4))])
    result = run_mavera(json_args(server))
    assert result.stdout == COMPACT
    assert server.requests[0].json()["text"] == {"format": {"type": "json_object"}}


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda p: ["--schema", str(p / "missing.json")], "missing.json"),
        (lambda p: ["--schema", str(_write(p / "bad.json", "{not json"))], "not valid JSON"),
        (lambda p: ["--schema", str(_write(p / "list.json", "[1]"))], "must be a JSON object"),
        (lambda p: ["--schema", str(p)], "cannot read"),
        (lambda p: ["--schema", '{"type": "objekt"}'], "not a valid JSON Schema"),
        (lambda p: ["--schema", '{"type": "object",'], "not valid JSON"),
        (lambda p: ["--schema", '{"type": "object"}', "--schema-name", "a b"], "--schema-name"),
        (lambda p: ["--schema-name", "x"], "--schema-name needs --schema"),
        (lambda p: ["--partial", "--pretty"], "--partial"),
        (lambda p: ["--events", "--partial"], "--events"),
    ],
    ids=[
        "missing-file",
        "file-not-json",
        "file-not-object",
        "directory",
        "not-a-json-schema",
        "inline-not-json",
        "bad-name",
        "name-without-schema",
        "partial-pretty",
        "events-partial",
    ],
)
def test_bad_schema_or_flags_exit_2_before_any_request(server, tmp_path, setup, needle) -> None:
    serve(server, [json_stream([TEXT])])
    args = setup(tmp_path)
    result = run_mavera(json_args(server, *args), expect=2)
    one_line_error(result.stderr, needle)
    if "--partial" in args or "--events" in args:  # NDJSON readers learn how it ended
        assert json.loads(result.stdout)["exit_code"] == 2
    else:
        assert result.stdout == b""
    assert server.requests == []


def test_quiet_silences_the_schema_error_but_not_the_exit_code(server, tmp_path) -> None:
    result = run_mavera(json_args(server, "-q", "--schema", str(tmp_path / "nope.json")), expect=2)
    assert result.stderr == ""
    assert result.stdout == b""
    assert server.requests == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- failures leave stdout empty ---------------------------------------------------------------


def test_partial_stream_exits_7_and_writes_nothing(server) -> None:
    events = raw_utf8(text_stream(random_deltas(TEXT, 5)))
    serve(server, events[: len(events) // 2])  # cut mid-object, no terminal event
    result = run_mavera(json_args(server), expect=7)
    assert result.stdout == b""
    one_line_error(result.stderr, "before response.completed")


def test_stream_cut_after_a_complete_object_still_exits_7(server) -> None:
    events = raw_utf8(text_stream([TEXT]))
    serve(server, [*events[:-2], DONE])  # the whole text, but no response.completed
    result = run_mavera(json_args(server), expect=7)
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (TEXT[:-1], "not valid JSON"),
        ("```json\n" + TEXT + "\n```", "not valid JSON"),
        ('{"a": NaN}', "NaN"),
        ('{"a": 1e400}', "out of range"),
        ("", "no output text"),
    ],
    ids=["truncated", "markdown-fence", "nan", "huge-number", "empty"],
)
def test_text_that_does_not_parse_exits_11_and_writes_nothing(server, text, needle) -> None:
    serve(server, [json_stream(char_deltas(text))])
    result = run_mavera(json_args(server), expect=11)
    assert result.stdout == b""
    one_line_error(result.stderr, needle)


def test_schema_violation_exits_11_naming_the_path(server, tmp_path) -> None:
    bad = json.dumps({**OBJECT, "tags": ["math", 7]})
    serve(server, [json_stream(random_deltas(bad, 6))])
    result = run_mavera(json_args(server, "--schema", str(schema_file(tmp_path))), expect=11)
    assert result.stdout == b""
    one_line_error(result.stderr, "$.tags[1]", "7 is not of type 'string'")


def test_missing_required_property_exits_11(server, tmp_path) -> None:
    serve(server, [json_stream(['{"name": "Ada"}'])])
    result = run_mavera(json_args(server, "--schema", str(schema_file(tmp_path))), expect=11)
    assert result.stdout == b""
    one_line_error(result.stderr, "'tags' is a required property")


def test_output_too_deep_for_a_recursive_schema_exits_11(server, tmp_path) -> None:
    """`"$ref": "#"` follows the output down a few Python frames per level: past the
    interpreter's limit that was an internal error (exit 1)."""
    schema = tmp_path / "tree.json"
    schema.write_text('{"type": "array", "items": {"$ref": "#"}}')
    serve(server, [json_stream(["[" * 600 + "]" * 600])])
    result = run_mavera(json_args(server, "--schema", str(schema)), expect=11)
    assert result.stdout == b""
    one_line_error(result.stderr, "nested too deeply to check against the schema")


def test_response_failed_exits_10_and_writes_nothing(server) -> None:
    serve(server, [json_stream([TEXT], terminal="response.failed")])
    result = run_mavera(json_args(server), expect=10)
    assert result.stdout == b""
    one_line_error(result.stderr, "the model fell over")


def test_refusal_exits_10_with_the_refusal_as_the_message(server) -> None:
    refusal = {
        "type": "response.refusal.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "I can't help with that.",
    }
    events = text_stream([])
    serve(server, [*events[:3], sse_event(refusal), *events[3:]])
    result = run_mavera(json_args(server), expect=10)  # issue 11 item 14: it was 11
    assert result.stdout == b""
    assert one_line_error(result.stderr) == "mavera: error: I can't help with that."


# --- --partial and --events ------------------------------------------------------------------


def test_partial_lines_are_each_valid_json_and_end_with_the_final_object(server) -> None:
    deltas = random_deltas(TEXT, 7)
    events = raw_utf8(text_stream(deltas))
    serve(server, events, pause=0.01)  # ~0.6 s in all: several bounded-rate snapshots
    result = run_mavera(json_args(server, "--partial", "--schema", json.dumps(SCHEMA)))
    lines = result.stdout.decode().splitlines()
    objects = [json.loads(line) for line in lines]  # every line is valid JSON on its own
    assert objects[-1] == OBJECT
    assert lines[-1].encode() + b"\n" == COMPACT
    snapshots = lines[:-1]
    assert len(snapshots) >= 3, lines  # it followed along
    assert len(snapshots) <= len(deltas) // 2, "not rate-bounded"
    assert all(a != b for a, b in itertools.pairwise(snapshots)), "repeated line"
    # Snapshots grow: each earlier name is a prefix of the final one.
    names = [obj.get("name", "") for obj in objects]
    assert all(OBJECT["name"].startswith(name) for name in names)


def test_partial_failure_ends_with_a_mavera_error_line_not_an_object(server) -> None:
    events = raw_utf8(text_stream(random_deltas(TEXT, 8)))
    serve(server, events[: len(events) // 2], pause=0.01)  # cut mid-object
    result = run_mavera(json_args(server, "--partial"), expect=7)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines[-1]["type"] == "mavera.error"
    assert lines[-1]["exit_code"] == 7
    assert len(lines) >= 2  # snapshots came before the end
    assert OBJECT not in lines


def test_partial_with_schema_violation_ends_with_error_line(server, tmp_path) -> None:
    serve(server, [json_stream(['{"name": "Ada"}'])])
    args = json_args(server, "--partial", "--schema", str(schema_file(tmp_path)))
    result = run_mavera(args, expect=11)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines[-1] == {
        "type": "mavera.error",
        "exit_code": 11,
        "error": "invalid_output",
        "message": lines[-1]["message"],
    }
    assert "'tags' is a required property" in lines[-1]["message"]


def test_events_gives_the_raw_events_as_stream_does(server) -> None:
    data = json_stream(random_deltas(TEXT, 9))
    serve(server, random_splits(data, seed=9))
    result = run_mavera(json_args(server, "--events"))
    lines = result.stdout.decode().splitlines()
    blocks = [block for block in data.decode().split("\n\n") if block]
    expected = [block.split("data: ", 1)[1] for block in blocks]
    assert lines == [line for line in expected if line != "[DONE]"]
    deltas = [json.loads(line).get("delta", "") for line in lines]
    assert "".join(deltas) == TEXT


# --- replay and real recorded streams ----------------------------------------------------------

REAL = FIXTURES / "structured_output_01.sse"
MANIFEST = real_recordings()
STRUCTURED = [entry for entry in MANIFEST if entry["category"] == "structured_output"]


def test_real_structured_streams_are_present() -> None:
    assert STRUCTURED, f"no structured_output fixtures in {FIXTURES}"


@pytest.mark.parametrize("chunking", ["whole", "bytewise", "random"])
@pytest.mark.parametrize("entry", STRUCTURED, ids=lambda entry: entry["file"])
def test_real_structured_stream_gives_its_object(server, entry, chunking) -> None:
    data = entry["path"].read_bytes()
    split = {"whole": whole, "bytewise": bytewise, "random": lambda d: random_splits(d, seed=11)}
    serve(server, split[chunking](data))
    expected = json.loads(entry["final_text"])
    schema = json.loads(data.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["text"]
    result = run_mavera(json_args(server, "--schema", json.dumps(schema["format"]["schema"])))
    assert json.loads(result.stdout) == expected
    assert result.stdout == json.dumps(expected, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("entry", STRUCTURED, ids=lambda entry: entry["file"])
def test_replay_as_json_gives_the_object(entry) -> None:
    result = run_mavera(["replay", "--as", "json", str(entry["path"])])
    assert json.loads(result.stdout) == json.loads(entry["final_text"])
    assert result.stdout.endswith(b"}\n") and b"\n" not in result.stdout[:-1]


def test_replay_of_a_saved_json_stream_equals_the_live_output(server, tmp_path) -> None:
    serve(server, random_splits(json_stream(random_deltas(TEXT, 10)), seed=10))
    capture = tmp_path / "run.sse"
    live = run_mavera(json_args(server, "--save-raw", str(capture)))
    replayed = run_mavera(["replay", "--as", "json", str(capture)])
    assert replayed.stdout == live.stdout == COMPACT


def test_replay_as_json_of_a_cut_stream_exits_7_and_writes_nothing(tmp_path) -> None:
    events = raw_utf8(text_stream(random_deltas(TEXT, 12)))
    capture = tmp_path / "cut.sse"
    capture.write_bytes(b"".join(events[: len(events) // 2]))
    result = run_mavera(["replay", "--as", "json", str(capture)], expect=7)
    assert result.stdout == b""


# --- the built-in fake server ----------------------------------------------------------------


def test_mock_answers_with_an_instance_of_the_schema(tmp_path) -> None:
    from jsonschema import validate

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
        },
        "required": ["name", "age", "tags", "kind"],
        "additionalProperties": False,
    }
    path = schema_file(tmp_path, schema)
    result = run_mavera(["json", "--mock", "--schema", str(path), "invent a person"], key=None)
    value = json.loads(result.stdout)
    validate(value, schema)
    assert set(value) == {"name", "age", "tags", "kind"}


# --- the live preview on a terminal ----------------------------------------------------------

HALF = '{"name": "Ada Lovelace", "tags": ["math", "eng'
REST = 'ineering"]}'


def held_stream(server: ScriptedServer, release: threading.Event) -> None:
    """Send the first half of the object, wait for `release`, then the rest."""
    events = raw_utf8(text_stream([HALF[:20], HALF[20:], REST]))

    def handler(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events[:5])  # created, in_progress, item added, the two halves
        release.wait(20)
        wire.send_chunks(events[5:])

    server.script(handler)


def test_preview_draws_the_partial_object_on_a_tty_while_stdout_stays_empty(server) -> None:
    release = threading.Event()
    held_stream(server, release)
    run = PtyRun(json_args(server))
    try:
        # The partial string "eng" is drawn closed: partial-JSON parsing, not raw text.
        drawn = run.read_stderr_until(lambda data: '"eng"' in strip_ansi(data))
        assert drawn, strip_ansi(run.stderr)
        text = strip_ansi(run.stderr)
        assert '"name": "Ada Lovelace"' in text
        assert "receiving JSON" in text
        assert run.stdout_is_empty_now(), "stdout written before the object was complete"
        assert run.proc.poll() is None
        release.set()
        code = run.finish()
    finally:
        release.set()
        run.close()
    assert code == 0
    final = {"name": "Ada Lovelace", "tags": ["math", "engineering"]}
    assert run.stdout == json.dumps(final, separators=(",", ":")).encode() + b"\n"
    # The preview hid the cursor, then erased itself and showed the cursor again.
    assert HIDE_CURSOR in run.stderr
    tail = run.stderr[run.stderr.rindex(b"receiving JSON") :]
    assert ERASE_LINE in tail and SHOW_CURSOR in tail
    assert "Traceback" not in strip_ansi(run.stderr)


def test_ctrl_c_during_the_preview_exits_130_removes_it_and_writes_nothing(server) -> None:
    release = threading.Event()
    held_stream(server, release)
    run = PtyRun(json_args(server))
    try:
        assert run.read_stderr_until(lambda data: '"eng"' in strip_ansi(data))
        run.proc.send_signal(signal.SIGINT)
        code = run.finish()
    finally:
        release.set()
        run.close()
    assert code == 130
    assert run.stdout == b""
    tail = run.stderr[run.stderr.rindex(b"receiving JSON") :]
    assert ERASE_LINE in tail and SHOW_CURSOR in tail
    assert "Traceback" not in strip_ansi(run.stderr)


def test_preview_redraws_at_a_bounded_rate(server) -> None:
    deltas = random_deltas(TEXT, 13)  # ~60 deltas, 25 ms apart: ~1.5 s of stream
    events = raw_utf8(text_stream(deltas))
    serve(server, events, pause=0.025)
    run = PtyRun(json_args(server))
    started = time.monotonic()
    try:
        code = run.finish(timeout=30)
    finally:
        run.close()
    elapsed = time.monotonic() - started
    assert code == 0
    assert run.stdout == COMPACT
    redraws = strip_ansi(run.stderr).count("receiving JSON")
    assert redraws >= 3, "the preview never followed the stream"
    assert redraws <= elapsed * 10 + 5 < len(deltas), f"{redraws} redraws in {elapsed:.1f}s"


def test_no_preview_with_quiet_even_on_a_tty(server) -> None:
    serve(server, raw_utf8(text_stream(random_deltas(TEXT, 14))), pause=0.01)
    run = PtyRun(json_args(server, "-q"))
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 0
    assert run.stdout == COMPACT
    assert run.stderr == b""


def test_failure_on_a_tty_removes_the_preview_before_the_error_line(server) -> None:
    events = raw_utf8(text_stream(random_deltas(TEXT, 15)))
    serve(server, events[: len(events) // 2], pause=0.02)
    run = PtyRun(json_args(server))
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 7
    assert run.stdout == b""
    text = strip_ansi(run.stderr)
    assert "receiving JSON" in text
    last_line = [line for line in text.splitlines() if line.strip()][-1]
    assert re.match(r"mavera: error: .*before response\.completed", last_line), text
    assert SHOW_CURSOR in run.stderr


# --- the partial parser itself -----------------------------------------------------------------


def test_partial_parse_never_raises_on_any_prefix_or_garbage() -> None:
    samples = [TEXT, "```json\n" + TEXT, '{"a": [1, 2, {"b": "\\ud83d\\ude', "[" * 3000, "{]}"]
    for sample in samples:
        for end in range(len(sample) + 1):
            value = parse_partial(sample[:end])
            assert value is NOT_YET or isinstance(value, (dict, list, str, int, float, bool))
    assert parse_partial(TEXT[:53]) == {"name": 'Ada "the Countess" Lovelace', "path": "C:"}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("mavera_cli.render.preview", {"httpx", "typer", "rich", "partial_json_parser"}),
        ("mavera_cli.schema", {"httpx", "typer", "rich", "jsonschema", "orjson"}),
    ],
)
def test_json_modules_import_their_heavy_dependencies_only_when_used(module, forbidden) -> None:
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not {name.split(".")[0] for name in out.stdout.split()} & forbidden
