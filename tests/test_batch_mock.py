"""The mock's batch features on the wire: `--rate-limit` is a real sliding window with the
three headers on every answer and 429 + Retry-After past it; a prompt picks its own fault."""

from __future__ import annotations

import socket
import time

import httpx

from mavera_cli.errors import UsageError
from mavera_cli.mock import MockServer
from mavera_cli.mock.ratelimit import SlidingWindow, parse_rate_limit


def ask(client: httpx.Client, base_url: str, text: str = "hi") -> httpx.Response:
    return client.post(f"{base_url}/responses", json={"model": "m", "input": text})


def test_rate_limit_admits_n_per_window_with_headers_then_429() -> None:
    with MockServer(rate_limit="3/1") as server, httpx.Client() as client:
        answers = [ask(client, server.base_url) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
        reset = float(answers[0].headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 2 and reset == int(reset)  # whole seconds
        assert 1 <= int(answers[3].headers["retry-after"]) <= 2
        assert server.rate_limited == 1
        time.sleep(float(answers[3].headers["retry-after"]))
        assert ask(client, server.base_url).status_code == 200  # the window slid


def test_without_rate_limit_no_window_headers_are_claimed() -> None:
    with MockServer() as server, httpx.Client() as client:
        answer = ask(client, server.base_url)
    assert answer.status_code == 200
    assert "x-ratelimit-limit" not in answer.headers


def test_a_prompt_picks_its_own_fault() -> None:
    with MockServer() as server, httpx.Client() as client:
        assert ask(client, server.base_url, "x mock-fault:server-error").status_code == 500
        assert ask(client, server.base_url, "x mock-fault:rate-limit").status_code == 429
        assert ask(client, server.base_url, "x mock-fault:nonsense").status_code == 200
        assert server.inputs_seen["x mock-fault:server-error"] == 1


def test_sliding_window_from_memory() -> None:
    now = [100.0]
    window = SlidingWindow(2, 10, clock=lambda: now[0])
    assert window.take().admitted and window.take().admitted
    refused = window.take()
    assert not refused.admitted and refused.reset == 110
    now[0] = 110.0
    assert window.take().admitted  # the first left the window exactly 10 s after it came


def test_bad_rate_limit_specs_are_usage_errors() -> None:
    for spec in ("0/1", "x/1", "5/0", "5/-1"):
        try:
            parse_rate_limit(spec)
        except UsageError:
            continue
        raise AssertionError(spec)
    assert parse_rate_limit("60").seconds == 60


def test_the_window_counts_a_request_when_it_arrived() -> None:
    """The mock's threads may get to a request late: it is counted when it came."""
    now = [100.0]
    window = SlidingWindow(1, 1, clock=lambda: now[0])
    assert window.take().admitted
    now[0] = 101.01
    early = window.take(age=0.02)  # it came at 100.99, before the first left the window
    assert not early.admitted and early.reset == 101.0
    late = window.take()  # one that came now: the first has left
    assert late.admitted and late.reset == 102.01 and late.remaining == 0


def test_a_request_counted_after_a_later_one_keeps_every_window_within_the_limit() -> None:
    now = [100.0]
    window = SlidingWindow(1, 1, clock=lambda: now[0])
    assert window.take().admitted
    now[0] = 101.5
    assert window.take().admitted  # came at 101.5, counted first
    now[0] = 101.51
    # Came at 101.49 (alone in its own window), counted second: with it, the second's
    # window (100.5, 101.5] would hold two.
    assert not window.take(age=0.02).admitted


def _raw_request(path: str, body: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Content-Type: application/json\r\n\r\n" + body


def test_on_the_wire_a_request_counts_from_its_first_byte_not_its_reading() -> None:
    """Its head arrives in two parts 0.4 s apart: the window counts it from the first."""
    with MockServer(rate_limit="5/1") as server:
        server.window.fractional_reset = True  # type: ignore[union-attr]
        port = int(server.base_url.split(":")[2].split("/")[0])
        body = b'{"model": "m", "input": "hi"}'
        request = _raw_request("/api/v1/responses", body)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            sent = time.time()
            connection.sendall(request[:10])
            time.sleep(0.4)
            connection.sendall(request[10:])
            answer = connection.recv(65536)
        head = answer.split(b"\r\n\r\n")[0].decode().lower()
        reset = float(head.split("x-ratelimit-reset: ")[1].split("\r\n")[0])
        assert sent + 1 <= reset + 0.005  # (the kernel's stamp and ours, a little apart)
        assert reset < sent + 1.2  # not the 1.4 s it would be from when it was read


def test_requests_sent_together_on_one_connection_are_each_answered() -> None:
    """Pipelined: the second is read from what the first read brought, never waited for."""
    with MockServer(rate_limit="5/1") as server:
        port = int(server.base_url.split(":")[2].split("/")[0])
        usage = b"GET /api/v1/usage HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(
                usage + usage + b"GET /api/v1/usage HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\n\r\n"
            )
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        assert received.count(b"HTTP/1.1 200 ") == 3
        assert server.requests_seen == 3
