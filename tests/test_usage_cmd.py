"""`mavera usage` (GET /usage) against pytest-httpserver: the server's JSON on one line in a
pipe, a table on a terminal, errors as exit codes."""

from __future__ import annotations

import io
import json

from pytest_httpserver import HTTPServer

from mavera_cli.mock import MockServer
from mavera_cli.render import OutputSink
from mavera_cli.render.account import render_usage
from tests.conftest import TEST_KEY, one_line_error, run_mavera
from tests.pty_helpers import PtyRun, run_on_a_pty, strip_ansi

REPORT = {
    "credits": {"used": 1234, "included": 10000, "remaining": 8766, "percentage_used": 12.34},
    "billing_period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
    "api_requests": {"total_requests": 321, "credits_used": 1234, "avg_latency_ms": 812},
    "rate_limit": {"requests_per_minute": 240},
    "auto_recharge": {"enabled": False},
    "new_field": "kept",
}


def base_url(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/api/v1")


def test_a_pipe_gets_the_servers_object_on_one_line(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/api/v1/usage", method="GET", headers={"Authorization": f"Bearer {TEST_KEY}"}
    ).respond_with_json(REPORT)
    result = run_mavera(["usage", "--base-url", base_url(httpserver)])
    assert result.stdout.count(b"\n") == 1 and result.stdout.endswith(b"\n")
    assert json.loads(result.stdout) == REPORT  # unknown fields pass through unchanged
    httpserver.check_assertions()


def test_the_table_names_credits_period_and_rate_limit() -> None:
    buffer = io.BytesIO()
    render_usage(REPORT, json.dumps(REPORT).encode(), OutputSink(buffer), as_table=True)
    table = buffer.getvalue().decode()
    assert "credits remaining" in table and "8766" in table
    assert "billing period end" in table and "2026-12-01T00:00:00Z" in table
    assert "rate limit (requests/minute)" in table and "240" in table
    assert "api_requests.avg_latency_ms" in table, "fields it does not know are still shown"
    assert "new_field" in table and "kept" in table


def test_a_terminal_gets_the_table(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/usage").respond_with_json(REPORT)
    drawn, stderr, code = run_on_a_pty(["usage", "--base-url", base_url(httpserver)])
    assert code == 0 and stderr == ""
    text = strip_ansi(drawn)
    assert "credits remaining" in text and "8766" in text
    assert "{" not in text.split("api_requests")[0], "a table, not JSON"


def test_a_pipe_gets_json_even_when_stderr_is_a_terminal(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/usage").respond_with_json(REPORT)
    run = PtyRun(["usage", "--base-url", base_url(httpserver)])
    code = run.finish()
    assert code == 0
    assert json.loads(run.stdout) == REPORT


def test_401_is_exit_3_and_a_missing_key_too(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/usage").respond_with_json(
        {"error": {"message": "Invalid API key."}}, status=401
    )
    result = run_mavera(["usage", "--base-url", base_url(httpserver)], expect=3)
    one_line_error(result.stderr, "HTTP 401")
    result = run_mavera(["usage", "--base-url", base_url(httpserver)], key=None, expect=3)
    assert result.stdout == b""


def test_usage_from_the_mock_counts_what_it_served() -> None:
    result = run_mavera(["usage", "--mock"])
    report = json.loads(result.stdout)
    assert report["credits"]["used"] == 0
    assert report["rate_limit"]["requests_per_minute"] is None  # no --rate-limit: no window
    with MockServer(rate_limit="100/1") as server:
        result = run_mavera(["usage", "--base-url", server.base_url])
    assert json.loads(result.stdout)["rate_limit"]["requests_per_minute"] == 6000
