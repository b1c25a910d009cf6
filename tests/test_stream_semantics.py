"""Stream semantics on the real wire (issue 11, items 10 and 12–18): the CLI as a subprocess
against the scripted loopback server, with the exact bytes in the exact TCP writes."""

from __future__ import annotations

import json
import signal
import threading
import time
from email.utils import formatdate

import pytest

from tests.conftest import one_line_error, read_pipe_until, run_mavera, start_mavera
from tests.scripted_server import DONE, Exchange, ScriptedServer, Wire, sse_event, text_stream

EVENTS = text_stream(["Hello", ", ", "world"])  # created, in_progress, added, 3 deltas, …
REFUSAL = [
    *EVENTS[:3],
    sse_event(
        {"type": "response.refusal.delta", "item_id": "msg_1", "output_index": 0, "delta": "No"}
    ),
    sse_event(
        {
            "type": "response.refusal.done",
            "item_id": "msg_1",
            "output_index": 0,
            "refusal": "I can't help with that.",
        }
    ),
    sse_event({"type": "response.completed", "response": {"status": "completed", "output": []}}),
    DONE,
]
OBJECT_EVENTS = text_stream(['{"name": "Ada', ' Lovelace", "tags": ["math"]}'])


def serve(server: ScriptedServer, *scripts: list[bytes], pause: float = 0.0) -> None:
    def handler_for(chunks: list[bytes]):
        def handler(ex: Exchange, wire: Wire) -> None:
            wire.head()
            wire.send_chunks(chunks, pause)

        return handler

    server.script(*(handler_for(chunks) for chunks in scripts))


def args(server: ScriptedServer, command: str, *extra: str) -> list[str]:
    return [command, "--base-url", server.base_url, "--retries", "2", *extra, "hi"]


# --- 13 -------------------------------------------------------------------------------------


def test_text_after_response_completed_in_the_same_read_is_not_printed(server) -> None:
    late = sse_event({"type": "response.output_text.delta", "delta": " (after the end)"})
    # One TCP write: the completed event, a delta after it, then [DONE].
    serve(server, [b"".join(EVENTS[:-2]), EVENTS[-2] + late + DONE])
    assert run_mavera(args(server, "stream")).stdout == b"Hello, world\n"
    lines = run_mavera(args(server, "stream", "--events")).stdout.splitlines()
    assert json.loads(lines[-1])["type"] == "response.completed"


# --- 14 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["stream"], ["stream", "--events"], ["json"], ["tools", "--functions", "FUNCTIONS"]],
    ids=["stream", "stream-events", "json", "tools"],
)
def test_a_refusal_exits_10_with_the_refusal_as_the_message(server, tmp_path, command) -> None:
    functions = tmp_path / "functions.json"
    functions.write_text(json.dumps([{"type": "function", "name": "f"}]))
    command = [str(functions) if part == "FUNCTIONS" else part for part in command]
    serve(server, REFUSAL)
    result = run_mavera(args(server, *command), expect=10)
    assert one_line_error(result.stderr) == "mavera: error: I can't help with that."
    if "--events" in command or "tools" in command:  # NDJSON: the last line says why
        last = json.loads(result.stdout.splitlines()[-1])
        assert (last["exit_code"], last["message"]) == (10, "I can't help with that.")
    else:
        assert result.stdout == b""


def test_ask_with_a_refusal_exits_10(server) -> None:
    response = {
        "id": "resp_1",
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}],
    }
    server.script(lambda ex, wire: wire.respond(200, response))
    result = run_mavera(args(server, "ask"), expect=10)
    assert result.stdout == b""
    assert one_line_error(result.stderr) == "mavera: error: No."


# --- 15 -------------------------------------------------------------------------------------


def test_a_chat_style_error_chunk_mid_stream_exits_10_with_the_servers_message(server) -> None:
    chunk = b'data: {"error":{"message":"upstream model crashed","code":"overloaded"}}\n\n'
    serve(server, [*EVENTS[:4], chunk])
    result = run_mavera(args(server, "stream"), expect=10)
    assert result.stdout == b"Hello\n"
    one_line_error(result.stderr, "upstream model crashed")
    assert len(server.requests) == 1


# --- 16 -------------------------------------------------------------------------------------


def test_retry_after_beyond_the_cap_gives_up_at_once_and_says_when(server) -> None:
    body = {"error": {"message": "Rate limit exceeded"}}
    server.script(lambda ex, wire: wire.respond(429, body, {"Retry-After": "120"}))
    started = time.monotonic()
    result = run_mavera(args(server, "stream"), expect=5)
    assert time.monotonic() - started < 20  # not after the 60 s cap, then another 429
    assert len(server.requests) == 1
    line = one_line_error(result.stderr, "Rate limit exceeded", "wait 120s (until ", " UTC)")
    assert "retry" not in result.stderr.replace(line, "")


def test_an_http_date_retry_after_prints_as_whole_seconds(server) -> None:
    body = {"error": {"message": "later"}}
    date = formatdate(time.time() + 600, usegmt=True)
    server.script(lambda ex, wire: wire.respond(429, body, {"Retry-After": date}))
    result = run_mavera(args(server, "stream"), expect=5)
    line = one_line_error(result.stderr, "Retry-After: ")
    seconds = line.split("Retry-After: ", 1)[1].split("s)", 1)[0]
    assert seconds.isdigit() and 590 <= int(seconds) <= 601, line


# --- 17 -------------------------------------------------------------------------------------


def broken_then_ok(server: ScriptedServer, then: str) -> None:
    def broken(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(OBJECT_EVENTS[:4])  # the first half of the object
        if then == "reset":
            wire.hold(0.1)
            wire.reset()
        else:
            wire.hold(10)

    def ok(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(OBJECT_EVENTS)

    server.script(broken, ok)


@pytest.mark.parametrize("then", ["reset", "stall"])
def test_json_retries_a_stream_that_breaks_or_stalls_mid_way(server, then: str) -> None:
    broken_then_ok(server, then)
    result = run_mavera(args(server, "json", "--timeout", "1"))
    assert result.stdout == b'{"name":"Ada Lovelace","tags":["math"]}\n'
    assert len(server.requests) == 2
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and "retry 1 in" in notes[0], result.stderr


@pytest.mark.parametrize(
    "extra", [["--partial"], ["--events"]], ids=["partial", "events"]
)  # fmt: skip
def test_json_that_already_printed_is_not_retried(server, extra: list[str]) -> None:
    broken_then_ok(server, "reset")
    result = run_mavera(args(server, "json", *extra), expect=7)
    assert len(server.requests) == 1
    assert json.loads(result.stdout.splitlines()[-1])["exit_code"] == 7


def test_ask_retries_a_body_that_breaks_mid_way(server) -> None:
    body = json.dumps({"status": "completed", "output": []}).encode()

    def cut(ex: Exchange, wire: Wire) -> None:
        wire.head(200, "application/json", length=len(body))
        wire.send(body[:10])  # then the connection closes: the body is cut short

    answer = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}],
    }
    server.script(cut, lambda ex, wire: wire.respond(200, answer))
    result = run_mavera(args(server, "ask"))
    assert result.stdout == b"ok\n"
    assert len(server.requests) == 2
    assert "retry 1" in result.stderr


# --- 18 -------------------------------------------------------------------------------------


def test_json_partial_writes_the_object_before_the_next_read(server) -> None:
    release = threading.Event()

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send(b"".join(OBJECT_EVENTS[:4]))  # `{"name": "Ada`, then a long pause
        release.wait(15)
        wire.send_chunks(OBJECT_EVENTS[4:])

    server.script(handler)
    proc = start_mavera([*args(server, "json", "--partial")])
    try:
        early = read_pipe_until(proc.stdout.fileno(), b"\n", timeout=10)
        release.set()
        rest, _ = proc.communicate(timeout=15)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert early == b'{"name":"Ada"}\n', "the line waited for the next network read"
    assert rest.splitlines()[-1] == b'{"name":"Ada Lovelace","tags":["math"]}'
    assert proc.returncode == 0


# --- 12 and 10 --------------------------------------------------------------------------------


def test_json_events_exits_11_on_invalid_json_with_the_error_line_last(server) -> None:
    serve(server, text_stream(['{"name": ', "oops"]))
    result = run_mavera(args(server, "json", "--events"), expect=11)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-2]["type"] == "response.completed"
    assert lines[-1]["type"] == "mavera.error" and lines[-1]["exit_code"] == 11
    one_line_error(result.stderr, "not valid JSON")


@pytest.mark.parametrize(
    ("sig", "status", "message"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_mid_stream_ends_events_with_the_interrupted_line(
    server, sig: signal.Signals, status: int, message: str
) -> None:
    release = threading.Event()

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(EVENTS[:4])
        release.wait(15)

    server.script(handler)
    proc = start_mavera([*args(server, "stream", "--events")])
    try:
        early = read_pipe_until(proc.stdout.fileno(), b'"delta":"Hello"', timeout=10)
        proc.send_signal(sig)
        rest, stderr = proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(line) for line in (early + rest).splitlines()]
    assert len(lines) == 5
    assert lines[-1] == {
        "type": "mavera.error",
        "exit_code": status,
        "error": "interrupted",
        "message": message,
    }
    assert proc.returncode == status
    assert b"Traceback" not in stderr
