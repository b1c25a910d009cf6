"""The mock's batch features on the wire: `--rate-limit` is a real sliding window with the
three headers on every answer and 429 + Retry-After past it; a prompt picks its own fault."""

from __future__ import annotations

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
