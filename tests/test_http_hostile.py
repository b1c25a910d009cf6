"""A hostile or broken server, byte by byte: bodies nested past any parser's depth, malformed
redirects, compressed error bodies and gzip bombs, error envelopes with status 200, JSON
that only survives as received, megabyte messages, and answers that are not HTTP at all.
Each ends with its exit code from the contract's table and one readable line on stderr."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, Result, one_line_error, run_mavera
from tests.scripted_server import (
    Exchange,
    ScriptedServer,
    Wire,
    completed_response,
    sse_event,
    text_stream,
)

DEEP = b"[" * 1000 + b"]" * 1000  # deeper than the stdlib's json goes
TOO_DEEP = b"[" * 1100 + b"]" * 1100  # deeper than orjson goes (1024)
ERROR = b'{"error":{"message":"Invalid model","code":"invalid_model"}}'
Handler = Callable[[Exchange, Wire], None]
FUNCTIONS = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]


def commands(tmp_path: Path) -> dict[str, list[str]]:
    functions = tmp_path / "functions.json"
    functions.write_text(json.dumps(FUNCTIONS))
    return {
        "ask": ["ask", "hi"],
        "stream": ["stream", "hi"],
        "json": ["json", "hi"],
        "tools": ["tools", "--functions", str(functions), "hi"],
        "usage": ["usage"],
        "personas": ["personas"],
    }


def mavera(server: ScriptedServer, args: list[str], expect: int, *extra: str) -> Result:
    return run_mavera([*args, "--base-url", server.base_url, *extra], expect=expect)


def body(status: int, data: bytes, **headers: str) -> Handler:
    """A handler answering `status` with `data` as JSON, with these extra headers."""
    named = {name.replace("_", "-").title(): value for name, value in headers.items()}
    return lambda ex, wire: wire.respond(
        status, data, {"Content-Type": "application/json", **named}
    )


def assert_no_product(result: Result, command: str, code: int) -> None:
    """Nothing on stdout, but `tools`' NDJSON line saying how the run ended."""
    if command == "tools":
        assert json.loads(result.stdout)["exit_code"] == code
    else:
        assert result.stdout == b""


# --- 1. nested past the parser's depth -----------------------------------------------------


@pytest.mark.parametrize("command", ["ask", "stream", "json", "tools", "usage", "personas"])
def test_a_deeply_nested_error_body_keeps_the_status_exit_code(
    server: ScriptedServer, tmp_path: Path, command: str
) -> None:
    server.script(body(400, DEEP))
    result = mavera(server, commands(tmp_path)[command], 4)
    one_line_error(result.stderr, "HTTP 400: [[[")
    assert_no_product(result, command, 4)


@pytest.mark.parametrize("command", ["ask", "stream", "json", "tools", "usage"])
def test_a_deeply_nested_200_is_invalid_output(
    server: ScriptedServer, tmp_path: Path, command: str
) -> None:
    server.script(body(200, TOO_DEEP))
    result = mavera(server, commands(tmp_path)[command], 11)
    one_line_error(result.stderr)
    assert_no_product(result, command, 11)


def test_ask_json_prints_a_response_nested_deeper_than_orjson_writes(
    server: ScriptedServer,
) -> None:
    response = completed_response("fine")
    response["metadata"] = json.loads("[" * 300 + "]" * 300)
    server.script(lambda ex, wire: wire.respond(200, response))
    result = mavera(server, ["ask", "--json", "hi"], 0)
    assert json.loads(result.stdout) == response


# --- 2. a redirect whose Location is not a URL ----------------------------------------------


@pytest.mark.parametrize(
    ("location", "shown"),
    [("http://[::1", "http://[::1"), ("https://x.test/\x1b[31mred", "https://x.test/red")],
    ids=["unclosed-ipv6", "escape-sequence"],
)
@pytest.mark.parametrize("command", ["ask", "stream", "personas"])
def test_a_malformed_redirect_is_exit_4_naming_it_and_not_retried(
    server: ScriptedServer, tmp_path: Path, command: str, location: str, shown: str
) -> None:
    def redirect(ex: Exchange, wire: Wire) -> None:
        wire.send(
            f"HTTP/1.1 307 Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )

    server.script(redirect)
    result = mavera(server, commands(tmp_path)[command], 4)
    line = one_line_error(
        result.stderr, f"HTTP 307: the server redirected to {shown}; not followed"
    )
    assert "\x1b" not in line and "cannot reach" not in line
    assert len(server.requests) == 1


# --- 3. compressed bodies ------------------------------------------------------------------


def deflated(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


def gzip_bomb(opening: bytes) -> bytes:
    """`opening` and 200 MB of "x", about 200 KB gzipped: the raw deflate stream in a gzip
    header (no trailer: it is cut short anyway)."""
    return gzip.compress(b"")[:10] + zlib.compress(opening + b"x" * 200_000_000, 9)[2:-4]


def ask_measured(server: ScriptedServer, expect: int) -> tuple[Result, int]:
    """`mavera ask hi`, and the most memory it held at once (bytes, by tracemalloc)."""
    tracemalloc.start()
    try:
        result = mavera(server, ["ask", "hi"], expect)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("status", "opening", "code", "error", "most"),
    [
        # `ask`'s 200 body was decoded whole: 200 MB here, twice over (the pieces and their
        # join), before it could be found not to be JSON. Now 64 MiB at most, and the read
        # that would pass it (one network read of a bomb decodes to up to about 66 MB).
        (200, b'{"id":"resp_1","output_text":"', 11, "over 64 MiB", 200_000_000),
        (400, b'{"error":{"message":"', 4, 'HTTP 400: {"error":{"message":"xxxx', 32_000_000),
    ],
    ids=["answer", "error-body"],
)
def test_a_gzip_bomb_is_decoded_only_as_far_as_the_cap(
    server: ScriptedServer, status: int, opening: bytes, code: int, error: str, most: int
) -> None:
    server.script(body(status, gzip_bomb(opening), content_encoding="gzip"))
    result, peak = ask_measured(server, code)
    one_line_error(result.stderr, error)
    assert peak < most, f"{peak} bytes at the peak"


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip.compress(ERROR)),
        ("deflate", deflated(ERROR, zlib.MAX_WBITS)),
        ("deflate", deflated(ERROR, -zlib.MAX_WBITS)),  # raw deflate, as some servers send it
        ("gzip, gzip", gzip.compress(gzip.compress(ERROR))),
    ],
    ids=["gzip", "deflate", "raw-deflate", "gzip-twice"],
)
@pytest.mark.parametrize("command", ["ask", "stream", "usage"])
def test_a_compressed_error_body_is_decoded(
    server: ScriptedServer, tmp_path: Path, command: str, encoding: str, data: bytes
) -> None:
    server.script(body(400, data, content_encoding=encoding))
    result = mavera(server, commands(tmp_path)[command], 4)
    assert one_line_error(result.stderr) == "mavera: error: HTTP 400: Invalid model (invalid_model)"


@pytest.mark.parametrize(
    ("encoding", "data"),
    [("gzip", b"\x1f\x8b not gzip at all"), ("br", b"\x8b\x02\x80" + ERROR)],
    ids=["corrupt-gzip", "brotli"],
)
def test_an_error_body_that_cannot_be_decoded_says_so(
    server: ScriptedServer, encoding: str, data: bytes
) -> None:
    server.script(body(400, data, content_encoding=encoding))
    result = mavera(server, ["ask", "hi"], 4)
    assert one_line_error(result.stderr) == (
        f"mavera: error: HTTP 400: a body with Content-Encoding: {encoding}, which mavera "
        "could not decode"
    )


@pytest.mark.parametrize("encoding", ["br", "zstd"])
@pytest.mark.parametrize("command", ["stream", "ask"])
def test_a_body_in_a_coding_mavera_cannot_decode_is_invalid_output(
    server: ScriptedServer, tmp_path: Path, command: str, encoding: str
) -> None:
    def answer(ex: Exchange, wire: Wire) -> None:
        content_type = "text/event-stream" if command == "stream" else "application/json"
        wire.head(200, content_type, {"Content-Encoding": encoding})
        wire.send(b"\x8b\x02\x80 compressed bytes")

    server.script(answer)
    result = mavera(server, commands(tmp_path)[command], 11, "--retries", "2")
    one_line_error(result.stderr, f"Content-Encoding: {encoding}, which mavera cannot decode")
    assert len(server.requests) == 1  # the same answer would come again


@pytest.mark.parametrize("command", ["stream", "ask"])
def test_a_200_body_that_is_not_in_its_coding_is_invalid_output_and_not_retried(
    server: ScriptedServer, tmp_path: Path, command: str
) -> None:
    def answer(ex: Exchange, wire: Wire) -> None:
        content_type = "text/event-stream" if command == "stream" else "application/json"
        wire.head(200, content_type, {"Content-Encoding": "gzip"})
        wire.send(b"data: not gzip at all\n\n")

    server.script(answer)
    result = mavera(server, commands(tmp_path)[command], 11, "--retries", "2")
    one_line_error(result.stderr, "the server's response could not be decoded")
    assert len(server.requests) == 1


# --- 4. a 200 that is not a completed response ----------------------------------------------

ENVELOPE = b'{"error":{"message":"quota exhausted","code":"credits_exhausted"}}'


@pytest.mark.parametrize("command", ["ask", "usage", "personas"])  # as `stream` already did
def test_an_error_envelope_with_status_200_is_exit_10(
    server: ScriptedServer, tmp_path: Path, command: str
) -> None:
    server.script(body(200, ENVELOPE))
    result = mavera(server, commands(tmp_path)[command], 10)
    one_line_error(result.stderr, "the server answered with an error: quota exhausted")
    assert_no_product(result, command, 10)


def test_ask_exits_10_on_an_error_string_envelope_too(server: ScriptedServer) -> None:
    server.script(body(200, b'{"error": "out of credits"}'))
    result = mavera(server, ["ask", "hi"], 10)
    one_line_error(result.stderr, "the server answered with an error: out of credits")


def test_ask_on_a_response_without_status_is_invalid_output(server: ScriptedServer) -> None:
    response = completed_response("looks fine")
    del response["status"]
    server.script(lambda ex, wire: wire.respond(200, response))
    result = mavera(server, ["ask", "hi"], 11)
    one_line_error(result.stderr, "not a Response object (no status)")
    assert result.stdout == b""


# --- 5. `usage` in a pipe: the server's object as received ---------------------------------


def test_usage_in_a_pipe_writes_the_bytes_as_received_on_one_line(server: ScriptedServer) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in TEST_KEY)  # still the key, for jq
    received = (
        b'{\r\n  "credits": {"used": 1, "used": 2,\n    "remaining": 12345678901234567890123,'
        b'\n    "ratio": 1e400, "note": "two  spaces\\nand an escaped newline"},\n'
        b'  "owner": "%s", "escaped": "%s"\n}\n' % (TEST_KEY.encode(), escaped.encode())
    )
    server.script(body(200, received))
    result = mavera(server, ["usage"], 0)
    assert result.stdout == (
        b'{"credits": {"used": 1, "used": 2,"remaining": 12345678901234567890123,'
        b'"ratio": 1e400, "note": "two  spaces\\nand an escaped newline"},'
        b'"owner": "***", "escaped": "***"}\n'
    )


@pytest.mark.parametrize(
    "received",
    [b'{"a": NaN}', b'{"a": 1} {"b": 2}', b'{"a": "\xff"}'],
    ids=["nan", "two-objects", "not-utf8"],
)
def test_usage_that_is_not_one_json_object_is_invalid_output(
    server: ScriptedServer, received: bytes
) -> None:
    server.script(body(200, received))
    result = mavera(server, ["usage"], 11)
    one_line_error(result.stderr, "usage report is not a JSON object")
    assert result.stdout == b""


# --- 6. a megabyte of server text in a message ---------------------------------------------


def failed_with(message: str) -> Handler:
    events = text_stream(["par", "tial"], terminal="response.failed")
    final = json.loads(events[-2].split(b"data: ", 1)[1])
    final["response"]["error"]["message"] = message
    events[-2] = f"event: response.failed\ndata: {json.dumps(final)}\n\n".encode()

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events)

    return handler


def test_a_failure_reason_sent_as_a_plain_string_is_shown(server: ScriptedServer) -> None:
    """`"error": "boom"` in place of {message, code}: it said "no reason given"."""
    events = text_stream(["par", "tial"], terminal="response.failed")
    final = json.loads(events[-2].split(b"data: ", 1)[1])
    final["response"]["error"] = "quota gone"
    events[-2] = f"event: response.failed\ndata: {json.dumps(final)}\n\n".encode()
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    one_line_error(mavera(server, ["stream", "hi"], 10).stderr, "response failed: quota gone")
    error_event = sse_event({"type": "error", "error": "overloaded, try later"})
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks([error_event])))
    result = mavera(server, ["stream", "hi"], 10)
    one_line_error(result.stderr, "the server sent an error event: overloaded, try later")


def test_a_megabyte_failure_message_is_cut_with_a_note(server: ScriptedServer) -> None:
    server.script(failed_with("boom " * 200_000))
    result = mavera(server, ["stream", "hi"], 10)
    line = one_line_error(result.stderr, "response failed: boom boom", "more characters]")
    assert len(line) < 5000
    result = mavera(server, ["stream", "--events", "hi"], 10)
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["type"] == "mavera.error" and len(last["message"]) < 5000
    assert last["message"].endswith("more characters]")


def test_a_key_where_the_message_is_cut_is_not_left_half_shown(server: ScriptedServer) -> None:
    prefix = "response failed: "
    message = "a " * ((4096 - len(prefix) - 10) // 2) + TEST_KEY + " b" * 10_000
    server.script(failed_with(message))
    result = mavera(server, ["stream", "hi"], 10)
    assert TEST_KEY[:8] not in result.stderr
    one_line_error(result.stderr, "more characters]")


# --- 7. answers that are not HTTP ----------------------------------------------------------

NOT_HTTP = {
    "http2-status-line": b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
    "icy": b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
    "1000-digit-status": b"HTTP/1.1 " + b"1" * 1000 + b" OK\r\nContent-Length: 0\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
    "2mb-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n",
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
}


@pytest.mark.parametrize("name", list(NOT_HTTP))
@pytest.mark.parametrize("command", ["ask", "stream"])
def test_an_answer_that_is_not_http_is_invalid_output_and_not_retried(
    server: ScriptedServer, tmp_path: Path, command: str, name: str
) -> None:
    server.script(lambda ex, wire: wire.send(NOT_HTTP[name]))
    result = mavera(server, commands(tmp_path)[command], 11, "--retries", "2")
    line = one_line_error(result.stderr, f"{server.base_url} answered, but not in valid HTTP/1.1")
    assert "bytearray" not in line and "cannot reach" not in line
    assert len(line) < 300
    assert len(server.requests) == 1


# --- 9. every body read is in the trace ----------------------------------------------------


def trace_reads(path: Path) -> list[list[bytes]]:
    """The reads of each attempt of a trace, in order."""
    attempts: list[list[bytes]] = []
    for raw in path.read_bytes().splitlines():
        line = json.loads(raw)
        if line["type"] == "mavera.request":
            attempts.append([])
        elif line["type"] == "mavera.read":
            attempts[-1].append(line["data"].encode())
    return attempts


@pytest.mark.parametrize(("status", "code"), [(400, 4), (429, 5), (500, 8)])
def test_an_error_body_is_a_read_in_the_trace(
    server: ScriptedServer, tmp_path: Path, status: int, code: int
) -> None:
    server.script(body(status, gzip.compress(ERROR), content_encoding="gzip"))
    trace = tmp_path / "run.trace"
    mavera(server, ["stream", "--retries", "0", "--trace", str(trace), "hi"], code)
    assert trace_reads(trace) == [[ERROR]]


def test_ask_traces_the_bytes_of_an_attempt_that_broke_off(
    server: ScriptedServer, tmp_path: Path
) -> None:
    whole = json.dumps(completed_response("fine")).encode()

    def broken(ex: Exchange, wire: Wire) -> None:
        wire.head(200, "application/json", length=len(whole))
        wire.send(whole[:40])

    server.script(
        broken, lambda ex, wire: wire.respond(200, whole, {"Content-Type": "application/json"})
    )
    trace = tmp_path / "ask.trace"
    result = mavera(server, ["ask", "--retries", "1", "--trace", str(trace), "hi"], 0)
    assert result.stdout == b"fine\n"
    assert trace_reads(trace) == [[whole[:40]], [whole]]


def test_the_usage_table_shows_big_numbers_whole() -> None:
    from mavera_cli.render import OutputSink
    from mavera_cli.render.account import render_usage

    buffer = io.BytesIO()
    report = {"credits": {"remaining": 12345678901234567890123, "history": [2**70, 1.5]}}
    render_usage(report, b"", OutputSink(buffer), as_table=True)
    table = buffer.getvalue().decode()
    assert "12345678901234567890123" in table and "[1180591620717411303424,1.5]" in table


# --- JSON nested deeper than orjson writes, passed on -------------------------------------

NESTED = json.loads("[" * 300 + "]" * 300)  # orjson reads 1,024 levels but writes only 254


def test_data_nested_past_what_orjson_writes_is_passed_on(server: ScriptedServer) -> None:
    """Re-encoding such data (a persona, an event for NDJSON, a batch result) was an
    internal error: the standard library writes it."""
    persona = {"id": "p1", "name": "x", "deep": NESTED}
    server.script(body(200, json.dumps({"data": [persona]}).encode()))
    assert json.loads(mavera(server, ["personas"], 0).stdout) == persona

    event = {"type": "response.output_text.delta", "delta": "a", "deep": NESTED}
    text = json.dumps(event, separators=(",", ":"))
    cut = text.index('"deep"')  # a data field on two lines: NDJSON re-encodes it
    framed = f"data: {text[:cut]}\ndata: {text[cut:]}\n\n".encode()
    done = completed_stream()
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks([framed, *done])))
    lines = mavera(server, ["stream", "--events", "hi"], 0).stdout.splitlines()
    assert json.loads(lines[0]) == event

    server.script(
        lambda ex, wire: (wire.head(), wire.send_chunks(text_stream([json.dumps(NESTED)])))
    )
    result = run_mavera(
        ["batch", "--as", "json", "--lines", "--base-url", server.base_url, "-"], stdin=b"hi\n"
    )
    assert json.loads(result.stdout)["parsed"] == NESTED


def completed_stream() -> list[bytes]:
    return text_stream([])[-2:]
