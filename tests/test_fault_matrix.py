"""Every failure a server or network can produce, one row each: exit code, exact stdout,
a one-line error on stderr, and how many requests the server saw (retries happen only
before the first event)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest

from tests.conftest import run_mavera
from tests.scripted_server import DONE, Exchange, Wire, sse_event, text_stream

Handler = Callable[[Exchange, Wire], None]
EVENTS = text_stream(
    ["Hello", ", ", "world"]
)  # created, in_progress, added, 3 deltas, done, completed, DONE


def ok(ex: Exchange, wire: Wire) -> None:
    wire.head()
    wire.send_chunks(EVENTS)


def status(code: int, message: str, headers: dict[str, str] | None = None) -> Handler:
    body = {"error": {"message": message, "type": "x", "code": f"code_{code}"}}
    return lambda ex, wire: wire.respond(code, body, headers)


def events_then(count: int, then: str) -> Handler:
    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(EVENTS[:count])
        if then == "reset":
            wire.hold(0.1)
            wire.reset()
        elif then == "stall":
            wire.hold(10)
        elif then == "done":
            wire.send(DONE)

    return handler


def raw_body(content_type: str, body: bytes) -> Handler:
    return lambda ex, wire: wire.respond(200, body, {"Content-Type": content_type})


def reset_at_once(ex: Exchange, wire: Wire) -> None:
    wire.reset()


def hang_up(ex: Exchange, wire: Wire) -> None:
    pass  # the server closes the connection without a word


def stall(ex: Exchange, wire: Wire) -> None:
    wire.hold(10)


def inject(position: int, chunk: bytes) -> Handler:
    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks([*EVENTS[:position], chunk, *EVENTS[position:]])

    return handler


def big_delta(size: int) -> Handler:
    text = "é" * (size // 2)
    events = text_stream([text[: len(text) // 2], text[len(text) // 2 :]])

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events)

    return handler


ERROR_EVENT = sse_event(
    {"type": "error", "sequence_number": 4, "code": "server_error", "message": "model crashed"}
)
FAILED_EVENT = sse_event(
    {"type": "response.failed", "sequence_number": 5, "response": {"status": "failed"}}
)
BAD_UTF8 = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","delta":"\xff!"}\n\n'
)
NOT_JSON = b"event: response.output_text.delta\ndata: this is not json\n\n"


@dataclass
class Row:
    handlers: list[Handler]
    code: int
    stdout: bytes
    requests: int
    stderr_has: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    retries: int = 2


ROWS: dict[str, Row] = {
    "completed": Row([ok], 0, b"Hello, world\n", 1),
    "429 then ok is retried": Row(
        [status(429, "slow", {"Retry-After": "0"}), ok], 0, b"Hello, world\n", 2, ["retry 1"]
    ),
    "503 twice then ok": Row(
        [
            status(503, "busy", {"retry-after-ms": "10"}),
            status(503, "busy", {"retry-after-ms": "10"}),
            ok,
        ],
        0,
        b"Hello, world\n",
        3,
        ["retry 2"],
    ),
    "429 until retries run out": Row(
        [status(429, "Rate limit exceeded", {"Retry-After": "0"})],
        5,
        b"",
        3,
        ["429", "Rate limit exceeded", "Retry-After: 0"],
    ),
    "429 with an HTTP-date Retry-After": Row(
        [status(429, "later", {"Retry-After": formatdate(time.time() - 5, usegmt=True)})],
        5,
        b"",
        2,
        ["429"],
        retries=1,
    ),
    "429 with an endless Retry-After (inf): the usual backoff": Row(
        [status(429, "slow", {"Retry-After": "inf"}), ok], 0, b"Hello, world\n", 2, ["retry 1"]
    ),
    "429 with a Retry-After past any calendar": Row(
        [status(429, "later", {"Retry-After": "1e300"})],
        5,
        b"",
        1,
        ["429", "asks to wait 1e+300s", "try again then"],
    ),
    "500 until retries run out": Row(
        [status(500, "internal_error")], 8, b"", 3, ["500", "internal_error"]
    ),
    "502 HTML page": Row(
        [
            lambda ex, wire: wire.respond(
                502,
                "<html><title>Bad Gateway</title>" + "junk " * 999,
                {"Content-Type": "text/html"},
            )
        ],
        8,
        b"",
        1,
        ["Bad Gateway"],
        retries=0,
    ),
    "401 is never retried": Row(
        [status(401, "Invalid API key")], 3, b"", 1, ["401", "Invalid API key"]
    ),
    "403": Row([status(403, "forbidden")], 3, b"", 1, ["403"]),
    "404 rejected": Row([status(404, "resource_not_found")], 4, b"", 1, ["404"]),
    "413 rejected": Row([status(413, "too big")], 4, b"", 1, ["413"]),
    "422 rejected": Row([status(422, "unprocessable")], 4, b"", 1, ["422"]),
    "reset before any response": Row([reset_at_once], 9, b"", 3, ["cannot reach"]),
    "hang-up before any response": Row([hang_up], 9, b"", 3, ["cannot reach"]),
    "reset before response then ok": Row([reset_at_once, ok], 0, b"Hello, world\n", 2),
    "stall before first byte": Row([stall], 6, b"", 2, ["0.4s"], ["--timeout", "0.4"], retries=1),
    "stall mid-stream is not retried": Row(
        [events_then(5, "stall")],
        6,
        b"Hello, \n",
        1,
        ["0.4s", "received 5 events, 7 characters"],
        ["--timeout", "0.4"],
    ),
    "EOF mid-stream is not retried": Row(
        [events_then(4, "eof")],
        7,
        b"Hello\n",
        1,
        ["before response.completed", "received 4 events, 5 characters"],
    ),
    "reset mid-stream is not retried": Row(
        [events_then(4, "reset")], 7, b"Hello\n", 1, ["received 4 events"]
    ),
    "[DONE] before completed": Row([events_then(6, "done")], 7, b"Hello, world\n", 1, ["[DONE]"]),
    "empty 200 body": Row([raw_body("text/event-stream", b"")], 7, b"", 3, ["received 0 events"]),
    "error event mid-stream": Row(
        [
            lambda ex, wire: (
                wire.head(),
                wire.send_chunks([*EVENTS[:4], ERROR_EVENT, FAILED_EVENT]),
            )
        ],
        10,
        b"Hello\n",
        1,
        ["model crashed"],
    ),
    "data that is not JSON": Row(
        [inject(4, NOT_JSON)], 11, b"Hello\n", 1, ["malformed event data", "this is not json"]
    ),
    "invalid UTF-8 becomes U+FFFD": Row(
        [inject(4, BAD_UTF8)], 0, "Hello\ufffd!, world\n".encode(), 1
    ),
    "HTML page with status 200": Row(
        [raw_body("text/html", b"<html><head><title>Login required</title></head></html>")],
        11,
        b"",
        1,
        ["text/html", "Login required"],
    ),
    "JSON error body on a stream request": Row(
        [
            raw_body(
                "application/json",
                b'{"error":{"message":"persona not found","code":"invalid_persona"}}',
            )
        ],
        10,
        b"",
        1,
        ["persona not found"],
    ),
    "a 10 MB event": Row([big_delta(10_000_000)], 0, ("é" * 5_000_000 + "\n").encode(), 1),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_fault(server, name: str) -> None:
    row = ROWS[name]
    server.script(*row.handlers)
    args = ["stream", "--base-url", server.base_url, "--retries", str(row.retries), *row.args, "hi"]
    result = run_mavera(args, expect=row.code, timeout=60)
    assert result.stdout == row.stdout
    assert len(server.requests) == row.requests
    lines = result.stderr.splitlines()
    retry_lines = [line for line in lines if "; retry " in line]
    assert len(retry_lines) == row.requests - 1
    final = [line for line in lines if line not in retry_lines]
    if row.code == 0:
        assert final == []
    else:
        assert len(final) == 1 and final[0].startswith("mavera: error: "), result.stderr
    for needle in row.stderr_has:
        assert needle in result.stderr


@pytest.mark.parametrize(
    "name", ["429 until retries run out", "EOF mid-stream is not retried", "error event mid-stream"]
)
def test_fault_in_events_mode_ends_with_the_error_line(server, name: str) -> None:
    row = ROWS[name]
    server.script(*row.handlers)
    args = [
        "stream",
        "--events",
        "--base-url",
        server.base_url,
        "--retries",
        str(row.retries),
        "hi",
    ]
    result = run_mavera(args, expect=row.code)
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["type"] == "mavera.error" and last["exit_code"] == row.code
    assert last["error"] == {5: "rate_limited", 7: "partial_stream", 10: "not_completed"}[row.code]


def test_quiet_silences_the_error_but_not_the_exit_code(server) -> None:
    server.script(status(500, "boom"))
    result = run_mavera(
        ["stream", "-q", "--retries", "0", "--base-url", server.base_url, "hi"], expect=8
    )
    assert result.stderr == ""


def test_max_time_bounds_the_retries_too(server) -> None:
    server.script(status(503, "busy", {"Retry-After": "20"}))
    started = time.monotonic()
    result = run_mavera(
        ["stream", "--max-time", "1", "--base-url", server.base_url, "hi"],
        expect=6,
        process=True,  # a SIGALRM timer: in its own process, not in pytest's
    )
    assert time.monotonic() - started < 8
    assert len(server.requests) == 1
    assert "--max-time" in result.stderr


def test_retry_waits_follow_retry_after(server) -> None:
    server.script(status(429, "slow", {"Retry-After": "1"}), ok)
    started = time.monotonic()
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"])
    assert time.monotonic() - started >= 1.0
    assert "retry 1 in 1.0s" in result.stderr
