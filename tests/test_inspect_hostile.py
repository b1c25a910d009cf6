"""`inspect` and `replay` on hostile or unusual recordings: the key echoed in them, fields of
the wrong type, times out of range or out of order, traces that are not streams (ask, HTTP
errors, no answer), files that are no recording at all, and a table on a real terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, mavera_env, one_line_error, run_mavera
from tests.pty_helpers import run_on_a_pty
from tests.scripted_server import sse_event

KEY_EVENTS = sse_event({"type": "response.output_text.delta", "delta": f"k={TEST_KEY}"}) + (
    sse_event({"type": "error", "message": f"bad key {TEST_KEY}"})
)


def traced(tmp_path: Path, *args: str, expect: int | None = None) -> Path:
    """A trace of a real run of `mavera ARGS --trace FILE` (against the built-in fake)."""
    trace = tmp_path / "run.trace"
    run_mavera([args[0], "--trace", str(trace), *args[1:]], expect=expect)
    return trace


def trace_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_bytes(b"".join(json.dumps(record).encode() + b"\n" for record in records))
    return path


def on_a_terminal(args: list[str]) -> tuple[bytes, str, int]:
    return run_on_a_pty(args, {"COLUMNS": "100"})


# --- B1: the key is masked in everything replay and inspect write ----------------------------


def test_replay_and_inspect_mask_the_key_a_capture_holds(tmp_path: Path) -> None:
    capture = tmp_path / "key.sse"
    capture.write_bytes(KEY_EVENTS)
    runs = [
        run_mavera(["replay", str(capture)], expect=10),
        run_mavera(["replay", "--events", str(capture)], expect=10),
        run_mavera(["inspect", str(capture)], expect=10),
    ]
    for result in runs:
        assert TEST_KEY.encode() not in result.stdout and TEST_KEY not in result.stderr
        assert b"***" in result.stdout
    drawn, stderr, code = on_a_terminal(["inspect", str(capture)])
    assert code == 10 and b"SENTINEL" not in drawn and "SENTINEL" not in stderr
    assert b"bad key ***" in drawn


def test_inspect_masks_the_key_a_trace_holds(tmp_path: Path) -> None:
    records = trace_records(traced(tmp_path, "stream", "--mock", "hi", expect=0))
    # The key's events come first (after the response line): the stream fails on them.
    records.insert(2, {"type": "mavera.read", "t": records[1]["t"], "data": KEY_EVENTS.decode()})
    trace = write_records(tmp_path / "key.trace", records)
    for args in (["inspect", str(trace)], ["replay", str(trace)]):
        result = run_mavera(args, expect=10)
        assert TEST_KEY.encode() not in result.stdout and TEST_KEY not in result.stderr
        assert b"***" in result.stdout


# --- B3: bad input is a one-line usage error, never an internal error ------------------------


@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_stdin_closed_is_a_usage_error(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", command, "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=mavera_env(),
        preexec_fn=lambda: os.close(0),
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr.decode(), "standard input is closed")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("mavera.response", "t", "abc"),
        ("mavera.response", "t", [1]),
        ("mavera.response", "status", "abc"),
        ("mavera.response", "status", {}),
        ("mavera.response", "status", 10**30),
        ("mavera.response", "headers", [1, 2]),
        ("mavera.end", "t", "xyz"),
        ("mavera.end", "t", [1]),
        ("mavera.read", "t", "1"),
        ("mavera.read", "t", -100.0),
        ("mavera.read", "t", 1e300),
        ("mavera.request", "t", "0"),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_a_trace_field_of_the_wrong_type_names_its_line(
    tmp_path: Path, command: str, kind: str, field: str, value: object
) -> None:
    records = trace_records(traced(tmp_path, "stream", "--mock", "hi", expect=0))
    line = next(number for number, record in enumerate(records, 1) if record["type"] == kind)
    records[line - 1][field] = value
    trace = write_records(tmp_path / "bad.trace", records)
    result = run_mavera([command, str(trace)], expect=2)
    one_line_error(result.stderr, f"line {line}:", field)
    assert result.stdout == b""


def test_pace_out_of_range_and_huge_times_are_usage_errors(tmp_path: Path) -> None:
    trace = traced(tmp_path, "stream", "--mock", "hi", expect=0)
    result = run_mavera(["replay", "--pace", "1e-300", str(trace)], expect=2)
    one_line_error(result.stderr, "--pace takes")
    records = trace_records(trace)
    records[2]["t"] = 1e300
    far = write_records(tmp_path / "far.trace", records)
    result = run_mavera(["replay", "--pace", "original", str(far)], expect=2)
    one_line_error(result.stderr, "line 3:")


# --- B4: the table on a terminal ------------------------------------------------------------


def test_the_table_shows_server_text_as_text_without_escapes(tmp_path: Path) -> None:
    capture = tmp_path / "hostile.sse"
    message = "[/y] x [bold]b\x1b[2J\x1b]0;pwned\x07 end"
    capture.write_bytes(sse_event({"type": "error", "message": message}))
    drawn, stderr, code = on_a_terminal(["inspect", str(capture)])
    assert code == 10, stderr
    assert "Traceback" not in stderr
    assert b"[/y] x [bold]b" in drawn and b" end" in drawn
    assert b"\x1b[2J" not in drawn and b"\x1b]0;" not in drawn and b"\x07" not in drawn


def test_the_table_of_a_trace_whose_times_go_back(tmp_path: Path) -> None:
    records = trace_records(traced(tmp_path, "stream", "--mock", "hi", expect=0))
    reads = [record for record in records if record["type"] == "mavera.read"]
    reads[-1]["t"], reads[0]["t"] = 0.0, 50.0  # the first read late, the last one early
    trace = write_records(tmp_path / "back.trace", records)
    drawn, stderr, code = on_a_terminal(["inspect", str(trace)])
    assert code == 0, stderr
    assert b"arrivals" in drawn and b"times go back" in drawn


# --- B5: traces that are no event stream exit as the live command did ------------------------


def test_a_trace_of_ask_inspects_and_replays_as_ask(tmp_path: Path) -> None:
    asked = run_mavera(["ask", "--mock", "--trace", str(tmp_path / "ask.trace"), "hi"])
    trace = tmp_path / "ask.trace"
    data = json.loads(run_mavera(["inspect", str(trace)], expect=0).stdout)
    assert data["outcome"]["exit_code"] == 0 and data["usage"]["credits_used"] is not None
    assert run_mavera(["replay", str(trace)], expect=0).stdout == asked.stdout


@pytest.mark.parametrize(
    ("body", "code"),
    [({"error": {"message": "quota gone"}}, 10), ({"output": []}, 11)],
    ids=["error-envelope", "no-status"],
)
def test_a_trace_of_ask_judges_its_answer_as_ask_did(
    server, tmp_path: Path, body: dict, code: int
) -> None:
    """The same judgement as the live command (errors.not_a_response), not one of its own:
    an error envelope with status 200 is 10, a reply without a status 11."""
    server.script(lambda exchange, wire: wire.respond(200, body))
    trace = traced(
        tmp_path, "ask", "--retries", "0", "--base-url", server.base_url, "hi", expect=code
    )
    data = json.loads(run_mavera(["inspect", str(trace)], expect=code).stdout)
    assert data["recorded"]["exit_code"] == code == data["outcome"]["exit_code"]


@pytest.mark.parametrize(
    ("status", "headers", "code"),
    [(500, {}, 8), (429, {"Retry-After": "1"}, 5), (404, {}, 4)],
    ids=["http-500", "http-429", "http-404"],
)
def test_a_trace_of_an_http_error_gives_its_exit_code(
    server, tmp_path: Path, status: int, headers: dict[str, str], code: int
) -> None:
    message = f"nope ({TEST_KEY})"
    server.script(
        lambda exchange, wire: wire.respond(status, {"error": {"message": message}}, headers)
    )
    trace = traced(
        tmp_path, "stream", "--retries", "0", "--base-url", server.base_url, "hi", expect=code
    )
    data = json.loads(run_mavera(["inspect", str(trace)], expect=code).stdout)
    assert data["recorded"]["exit_code"] == code
    assert "nope (***)" in data["outcome"]["message"]
    replayed = run_mavera(["replay", "--events", str(trace)], expect=code)
    assert json.loads(replayed.stdout.splitlines()[-1])["exit_code"] == code
    assert TEST_KEY not in replayed.stderr and "nope (***)" in replayed.stderr


def test_a_trace_of_a_refused_connection_exits_9(tmp_path: Path) -> None:
    args = ["stream", "--retries", "0", "--base-url", "http://127.0.0.1:1/api/v1", "hi"]
    trace = traced(tmp_path, *args, expect=9)
    assert json.loads(run_mavera(["inspect", str(trace)], expect=9).stdout)["outcome"]["error"] == (
        "connection"
    )
    one_line_error(run_mavera(["replay", str(trace)], expect=9).stderr, "cannot reach")


# --- B7: no recording at all is unreadable input for replay too ------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01\x02\xff\xfe" * 100, b"hello world\n", b": ping\n\n: ping\n\n"],
    ids=["empty", "binary", "other-text", "only-comments"],
)
def test_replay_of_a_file_that_is_no_recording_is_unreadable_input(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    for command in ("replay", "inspect"):
        result = run_mavera([command, str(path)], expect=2)
        one_line_error(result.stderr, "no SSE event and no trace line")


# --- B8: line ends, a byte order mark, times out of order ------------------------------------


@pytest.mark.parametrize(
    "convert",
    [lambda data: b"\xef\xbb\xbf" + data, lambda data: data.replace(b"\n", b"\r")],
    ids=["bom", "cr-only"],
)
def test_a_trace_with_a_bom_or_cr_line_ends_reads_as_the_trace(tmp_path: Path, convert) -> None:
    trace = traced(tmp_path, "stream", "--mock", "hi", expect=0)
    expected = run_mavera(["replay", str(trace)], expect=0).stdout
    other = tmp_path / "other.trace"
    other.write_bytes(convert(trace.read_bytes()))
    assert run_mavera(["replay", str(other)], expect=0).stdout == expected
    data = json.loads(run_mavera(["inspect", str(other)], expect=0).stdout)
    assert data["source"] == "trace"


def test_times_that_go_back_count_as_no_time_and_are_noted(tmp_path: Path) -> None:
    records = trace_records(traced(tmp_path, "stream", "--mock", "hi", expect=0))
    records[0]["t"] = 15.0  # the request after everything else
    trace = write_records(tmp_path / "back.trace", records)
    data = json.loads(run_mavera(["inspect", str(trace)], expect=0).stdout)
    timing = data["timing"]
    figures = [timing[name] for name in ("to_headers", "to_first_event", "total")]
    assert all(value is not None and value >= 0 for value in figures), timing
    assert all(stall["seconds"] >= 0 for stall in timing["longest_stalls"])
    assert any("times go back on line 2" in note for note in data["notes"])
    assert (
        run_mavera(["replay", "--pace", "1000", str(trace)], expect=0).stdout == b"You said: hi\n"
    )


@pytest.mark.parametrize("flag", ["--trace", "--save-raw"])
def test_an_empty_file_name_is_a_usage_error(tmp_path: Path, flag: str) -> None:
    """It was taken as "not given": the run ended 0 and wrote no file."""
    result = run_mavera(["stream", "--mock", flag, "", "hi"], expect=2)
    one_line_error(result.stderr, f"{flag}: the file name is empty")
    assert result.stdout == b""
