"""--trace FILE: the NDJSON log of the wire, against real loopback servers."""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_KEY, Result, mavera_env, run_mavera
from tests.scripted_server import DONE, ScriptedServer, sse_event, text_stream

PAUSE = 0.3


def trace_lines(path: Path) -> list[dict]:
    """Every line of the trace, each one JSON object (fails on a torn or bad line)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


def read_bytes(lines: list[dict]) -> bytes:
    return b"".join(
        line["data"].encode() if "data" in line else base64.b64decode(line["b64"])
        for line in lines
        if line["type"] == "mavera.read"
    )


def paused_handler(chunks: list[bytes], headers: dict[str, str] | None = None):
    def handler(exchange, wire) -> None:
        wire.head(headers=headers)
        for chunk in chunks:
            wire.send(chunk)
            time.sleep(PAUSE)

    return handler


def _stream_traced_and_captured(server: ScriptedServer, trace: Path, raw: Path) -> Result:
    """`mavera stream` with both a trace and a raw capture of the same run."""
    args = ["stream", "--trace", str(trace), "--save-raw", str(raw)]
    return run_mavera([*args, "--base-url", server.base_url, "hi"])


def test_trace_logs_request_response_reads_and_end(server, tmp_path: Path) -> None:
    events = b"".join(text_stream(["Hel", "lo ", "wor", "ld"]))
    # Split mid-event, and a pause after each piece: three reads at least PAUSE apart.
    cut = events.index(b"wor") + 1
    pieces = [events[:cut], events[cut : cut + 40], events[cut + 40 :]]
    server.script(paused_handler(pieces, {"X-Echo": f"key={TEST_KEY}", "Set-Cookie": "s=1"}))
    trace, raw = tmp_path / "run.trace", tmp_path / "run.sse"
    result = _stream_traced_and_captured(server, trace, raw)
    assert result.stdout == b"Hello world\n"
    lines = trace_lines(trace)
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "mavera.request" and kinds[1] == "mavera.response"
    assert kinds[-1] == "mavera.end" and set(kinds[2:-1]) == {"mavera.read"}
    request, response, end = lines[0], lines[1], lines[-1]
    assert request["t"] == 0 and request["method"] == "POST"
    assert request["url"] == server.base_url + "/responses"
    assert request["body_bytes"] == len(server.requests[0].body)
    assert response["status"] == 200
    assert "set-cookie" not in response["headers"]
    assert response["headers"]["x-echo"] == "key=***"
    assert end == {**end, "exit_code": 0, "error": None}
    # The reads are the bytes --save-raw kept, exactly, and their times show the pauses.
    assert read_bytes(lines) == raw.read_bytes() == events
    times = [line["t"] for line in lines if line["type"] == "mavera.read"]
    assert times == sorted(times) and len(times) >= 3
    assert max(b - a for a, b in itertools.pairwise(times)) >= PAUSE * 0.8
    assert times[-1] - times[0] >= 2 * PAUSE * 0.8
    assert TEST_KEY not in trace.read_text()


def test_non_utf8_reads_are_base64_and_the_key_in_the_body_is_masked(
    server, tmp_path: Path
) -> None:
    text = "é" * 3 + f" {TEST_KEY} "
    events = b"".join(
        sse_event(json.dumps(event, ensure_ascii=False), event["type"])
        for event in (
            {"type": "response.output_text.delta", "delta": text},
            {"type": "response.completed", "response": {"status": "completed"}},
        )
    )
    split = events.index("é".encode()) + 1  # inside the two bytes of é
    key_split = events.index(TEST_KEY.encode()) + 5  # and inside the key
    pieces = [events[:split], events[split:key_split], events[key_split:]]
    server.script(paused_handler(pieces))
    trace, raw = tmp_path / "run.trace", tmp_path / "run.sse"
    _stream_traced_and_captured(server, trace, raw)
    lines = trace_lines(trace)
    reads = [line for line in lines if line["type"] == "mavera.read"]
    assert "b64" in reads[0] and "data" not in reads[0]
    assert read_bytes(lines) == raw.read_bytes()
    assert TEST_KEY.encode() not in read_bytes(lines)
    assert b"***" in read_bytes(lines)
    assert TEST_KEY not in trace.read_text()


def test_a_retry_gives_one_request_and_response_per_attempt(server, tmp_path: Path) -> None:
    def refuse(exchange, wire) -> None:
        wire.respond(500, {"error": {"message": "try later"}})

    def answer(exchange, wire) -> None:
        wire.head()
        wire.send_chunks(text_stream(["ok"]))

    server.script(refuse, answer)
    trace = tmp_path / "run.trace"
    run_mavera(
        ["stream", "--trace", str(trace), "--retries", "1", "--base-url", server.base_url, "hi"]
    )
    lines = trace_lines(trace)
    heads = [(line["type"], line.get("status")) for line in lines if line["type"] != "mavera.read"]
    assert heads == [
        ("mavera.request", None),
        ("mavera.response", 500),
        ("mavera.request", None),
        ("mavera.response", 200),
        ("mavera.end", None),
    ]
    # The 500's body is recorded in its own attempt (what did the server really send);
    # replay and inspect take the last attempt, the stream.
    second = [line["type"] for line in lines].index("mavera.response", 2)
    assert read_bytes(lines[:second]) == b'{"error": {"message": "try later"}}'


def test_a_failed_run_ends_the_trace_with_its_exit_code(server, tmp_path: Path) -> None:
    events = text_stream(["par", "tial"])[:-3]  # no terminal event: the stream breaks off
    server.script(paused_handler([b"".join(events)]))
    trace = tmp_path / "run.trace"
    run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"], expect=7)
    end = trace_lines(trace)[-1]
    assert end["type"] == "mavera.end"
    assert (end["exit_code"], end["error"]) == (7, "partial_stream")
    assert "before response.completed" in end["message"]


def test_ask_traces_the_body_as_one_read(server, tmp_path: Path) -> None:
    from tests.scripted_server import completed_response

    body = completed_response("fine")

    def answer(exchange, wire) -> None:
        wire.respond(200, body)

    server.script(answer)
    trace = tmp_path / "ask.trace"
    run_mavera(["ask", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    lines = trace_lines(trace)
    assert [line["type"] for line in lines] == [
        "mavera.request",
        "mavera.response",
        "mavera.read",
        "mavera.end",
    ]
    assert json.loads(read_bytes(lines)) == body
    # Not a stream: inspect says so, and gives ask's exit code for it; replay prints as ask.
    report = run_mavera(["inspect", "--json", str(trace)], expect=0)
    assert any("not an event stream" in note for note in json.loads(report.stdout)["notes"])
    assert run_mavera(["replay", str(trace)]).stdout == b"fine\n"


def test_an_unwritable_trace_is_a_usage_error_before_anything_is_sent(
    server, tmp_path: Path
) -> None:
    server.script(paused_handler(text_stream(["x"])))
    result = run_mavera(
        [
            "stream",
            "--trace",
            str(tmp_path / "no" / "such" / "dir.trace"),
            "--base-url",
            server.base_url,
            "hi",
        ],
        expect=2,
    )
    assert "cannot write" in result.stderr
    assert server.requests == []


def test_sigkill_mid_stream_leaves_a_valid_partial_trace(server, tmp_path: Path) -> None:
    events = text_stream(["one ", "two ", "three"])

    def stall(exchange, wire) -> None:
        wire.head()
        wire.send(b"".join(events[:5]))
        wire.hold()

    server.script(stall)
    trace = tmp_path / "killed.trace"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mavera_cli",
            "stream",
            "--trace",
            str(trace),
            "--base-url",
            server.base_url,
            "hi",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=mavera_env(),
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if trace.exists() and b"two " in trace.read_bytes():
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = trace_lines(trace)  # whole lines only
    assert [line["type"] for line in lines][:2] == ["mavera.request", "mavera.response"]
    assert lines[-1]["type"] == "mavera.read"
    assert read_bytes(lines) == b"".join(events[:5])
    # inspect reports what it holds, and that it was cut; replay would say 7.
    report = run_mavera(["inspect", "--json", str(trace)], expect=7)
    data = json.loads(report.stdout)
    assert data["cut"] is True and data["recorded"] is None
    assert data["events_by_type"]["response.output_text.delta"] == 2
    assert any("cut short" in note for note in data["notes"])


def test_a_torn_last_line_is_reported_as_cut(tmp_path: Path) -> None:
    body = b"".join(text_stream(["a", "b"]))
    lines = [
        {"type": "mavera.request", "t": 0, "method": "POST", "url": "u", "body_bytes": 1},
        {"type": "mavera.response", "t": 0.1, "status": 200, "headers": {}},
        {"type": "mavera.read", "t": 0.2, "data": body.decode()},
    ]
    text = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    trace = tmp_path / "torn.trace"
    trace.write_bytes(text + b'{"type":"mavera.read","t":0.3,"da')
    data = json.loads(run_mavera(["inspect", str(trace)], expect=0).stdout)
    assert data["cut"] is True
    assert any("torn" in note for note in data["notes"])
    # A bad line that is not the last is not a torn end: unreadable input.
    trace.write_bytes(text + b"garbage\n" + text)
    result = run_mavera(["inspect", str(trace)], expect=2)
    assert "line 4 is not a trace line" in result.stderr


def test_replay_of_a_trace_prints_what_stream_printed(server, tmp_path: Path) -> None:
    server.script(paused_handler([b"".join(text_stream(["tra", "ced"])) + DONE]))
    trace = tmp_path / "run.trace"
    streamed = run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    replayed = run_mavera(["replay", str(trace)])
    assert replayed.stdout == streamed.stdout == b"traced\n"
    events = run_mavera(["replay", "--events", str(trace)])
    assert json.loads(events.stdout.splitlines()[-1])["type"] == "response.completed"


def test_error_event_chunks_split_across_reads_keep_their_exit_code(server, tmp_path: Path) -> None:
    data = sse_event({"type": "error", "code": "x", "message": "boom"})
    server.script(paused_handler([data[:10], data[10:]]))
    trace = tmp_path / "run.trace"
    run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"], expect=10)
    assert trace_lines(trace)[-1]["exit_code"] == 10
    assert run_mavera(["inspect", str(trace)], expect=10).code == 10


def test_a_trace_that_cannot_be_written_ends_the_run_with_74(server) -> None:
    server.script(paused_handler([b"".join(text_stream(["x"]))]))
    result = run_mavera(
        ["stream", "--trace", "/dev/full", "--base-url", server.base_url, "hi"], expect=74
    )
    assert "cannot write /dev/full" in result.stderr


def test_an_existing_trace_is_replaced_keeping_its_permissions(server, tmp_path: Path) -> None:
    server.script(paused_handler([b"".join(text_stream(["new"]))]))
    target = tmp_path / "old.trace"
    target.write_text("old content that is longer than nothing\n" * 100)
    target.chmod(0o600)
    link = tmp_path / "link.trace"
    link.symlink_to(target)
    run_mavera(["stream", "--trace", str(link), "--base-url", server.base_url, "hi"])
    assert link.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o600
    lines = trace_lines(target)
    assert lines[0]["type"] == "mavera.request" and lines[-1]["type"] == "mavera.end"


def test_the_trace_modules_stay_within_their_layer() -> None:
    from tests.test_architecture import loaded_after

    for module in (
        "mavera_cli.trace",
        "mavera_cli.tracelog",
        "mavera_cli.timing",
        "mavera_cli.observe",
    ):
        assert not loaded_after(f"import {module}") & {"httpx", "rich", "typer"}, module
    assert not loaded_after("import mavera_cli.inspect") & {"httpx", "rich", "typer"}
