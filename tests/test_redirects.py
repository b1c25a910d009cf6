"""A 3xx is never followed (the key would go wherever it points): exit 4, and the one-line
message says where it pointed and what --base-url to try (issue 11 item 21)."""

from __future__ import annotations

import pytest

from mavera_cli.errors import ExitCode, RejectedError, redirect_error
from tests.conftest import one_line_error, run_mavera

COMMANDS = {
    "stream": ["stream", "hi"],
    "stream --events": ["stream", "--events", "hi"],
    "ask": ["ask", "hi"],
    "json": ["json", "hi"],
    "personas": ["personas"],
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_redirect_is_exit_4_naming_the_target(server, status: int, command: str) -> None:
    endpoint = "personas" if command == "personas" else "responses"
    target = f"https://elsewhere.example/api/v2/{endpoint}"
    body = {"moved": "see Location"}  # JSON, as a real server's redirect body often is
    server.script(lambda exchange, wire: wire.respond(status, body, {"Location": target}))
    result = run_mavera([*COMMANDS[command], "--base-url", server.base_url], expect=4)
    line = one_line_error(
        result.stderr,
        f"HTTP {status}: the server redirected to {target}; not followed",
        "if you trust it, use --base-url https://elsewhere.example/api/v2",
    )
    assert "event stream" not in line
    assert len(server.requests) == 1  # not followed, not retried
    if command == "stream --events":
        assert b'"exit_code":4' in result.stdout and b'"error":"rejected"' in result.stdout
    else:
        assert result.stdout == b""


def test_a_relative_redirect_is_shown_resolved(server) -> None:
    server.script(lambda exchange, wire: wire.respond(302, "", {"Location": "/login?next=x"}))
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=4)
    one_line_error(
        result.stderr,
        f"redirected to http://127.0.0.1:{server.port}/login?next=x; not followed",
        "(use that URL as --base-url if you trust it)",
    )


def test_a_redirect_without_location_is_still_exit_4(server) -> None:
    server.script(lambda exchange, wire: wire.respond(307, ""))
    result = run_mavera(["ask", "--base-url", server.base_url, "hi"], expect=4)
    one_line_error(result.stderr, "HTTP 307: a redirect without a Location; not followed")


def test_redirect_error_is_rejected_and_shows_no_escape_sequences() -> None:
    error = redirect_error(301, "https://x.test/\x1b]0;pwned\x07a", "https://y.test/v1/responses")
    assert isinstance(error, RejectedError) and error.exit_code == ExitCode.rejected
    assert "\x1b" not in error.message and "https://x.test/a" in error.message
