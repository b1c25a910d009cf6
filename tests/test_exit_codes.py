"""One test per exit code of the contract, each made to happen against a real local server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from tests.conftest import mavera_env, one_line_error, run_mavera
from tests.scripted_server import DONE, sse_event, text_stream


def stream_args(server, *extra: str) -> list[str]:
    return ["stream", "--base-url", server.base_url, "--retries", "0", *extra, "hello"]


def test_0_ok(server) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["a", "b"]))))
    result = run_mavera(stream_args(server), expect=0)
    assert result.stdout == b"ab\n"
    assert result.stderr == ""


def test_2_usage_no_prompt(server) -> None:
    result = run_mavera(["stream", "--base-url", server.base_url], expect=2)
    assert "no prompt" in result.stderr
    assert result.stdout == b""
    assert server.requests == []


def test_2_usage_unknown_flag() -> None:
    result = run_mavera(["stream", "--no-such-flag", "hi"], expect=2)
    assert "--no-such-flag" in result.stderr


def test_2_usage_unreadable_prompt_file(tmp_path) -> None:
    result = run_mavera(["stream", "-f", str(tmp_path / "missing.md"), "hi"], expect=2)
    one_line_error(result.stderr, "missing.md")


def test_3_auth_no_key(server) -> None:
    result = run_mavera(stream_args(server), key=None, expect=3)
    one_line_error(result.stderr, "MAVERA_API_KEY")
    assert server.requests == []


def test_3_auth_401(server) -> None:
    body = {
        "error": {
            "message": "Invalid API key",
            "type": "authentication_error",
            "code": "invalid_api_key",
        }
    }
    server.script(lambda ex, wire: wire.respond(401, body))
    result = run_mavera(stream_args(server), expect=3)
    one_line_error(result.stderr, "401", "Invalid API key")


def test_3_auth_403(server) -> None:
    server.script(lambda ex, wire: wire.respond(403, {"error": {"message": "forbidden"}}))
    run_mavera(stream_args(server), expect=3)


def test_4_rejected_400_quotes_the_server(server) -> None:
    body = {
        "error": {"message": "Invalid value for 'model'", "code": "invalid_model", "param": "model"}
    }
    server.script(lambda ex, wire: wire.respond(400, body))
    result = run_mavera(stream_args(server), expect=4)
    one_line_error(result.stderr, "400", "Invalid value for 'model'", "invalid_model")
    assert len(server.requests) == 1


def test_4_rejected_402(server) -> None:
    server.script(lambda ex, wire: wire.respond(402, {"error": {"message": "credits exhausted"}}))
    run_mavera(stream_args(server), expect=4)


def test_5_rate_limited_says_retry_after(server) -> None:
    server.script(
        lambda ex, wire: wire.respond(
            429, {"error": {"message": "slow down"}}, {"Retry-After": "30"}
        )
    )
    result = run_mavera(stream_args(server), expect=5)
    one_line_error(result.stderr, "429", "Retry-After: 30")


def test_6_timeout_idle_before_first_byte(server) -> None:
    server.script(lambda ex, wire: wire.hold(5))
    result = run_mavera(stream_args(server, "--timeout", "0.5"), expect=6)
    one_line_error(result.stderr, "0.5")


def test_6_timeout_idle_mid_stream_keeps_the_text(server) -> None:
    events = text_stream(["partial ", "answer"])

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(events[:5])
        wire.hold(5)

    server.script(handler)
    result = run_mavera(stream_args(server, "--timeout", "0.5"), expect=6)
    assert result.stdout == b"partial answer\n"


def test_6_max_time(server) -> None:
    def handler(ex, wire) -> None:
        wire.head()
        for event in text_stream(["tick "] * 50):
            wire.send(event)
            wire.hold(0.05)

    server.script(handler)
    # A SIGALRM timer: in its own process, where it cannot land in pytest's own handlers.
    result = run_mavera(stream_args(server, "--max-time", "0.6"), expect=6, process=True)
    one_line_error(result.stderr, "--max-time")
    assert result.stdout.startswith(b"tick tick ")


def test_7_partial_stream_eof_before_completed(server) -> None:
    events = text_stream(["one ", "two"])
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events[:5])))
    result = run_mavera(stream_args(server), expect=7)
    assert result.stdout == b"one two\n"
    one_line_error(result.stderr, "before response.completed")


def test_7_partial_stream_done_before_completed(server) -> None:
    events = text_stream(["one"])
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks([*events[:4], DONE])))
    result = run_mavera(stream_args(server), expect=7)
    assert result.stdout == b"one\n"
    one_line_error(result.stderr, "[DONE]")


def test_7_partial_stream_connection_reset(server) -> None:
    events = text_stream(["kept"])

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(events[:4])
        wire.hold(0.2)
        wire.reset()

    server.script(handler)
    result = run_mavera(stream_args(server), expect=7)
    assert result.stdout == b"kept\n"


def test_8_server_error(server) -> None:
    server.script(lambda ex, wire: wire.respond(500, {"error": {"message": "internal_error"}}))
    result = run_mavera(stream_args(server), expect=8)
    one_line_error(result.stderr, "500")


def test_8_server_error_html_page_quotes_only_its_title(server) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 5000 + "</body></html>"
    server.script(lambda ex, wire: wire.respond(502, page, {"Content-Type": "text/html"}))
    result = run_mavera(stream_args(server), expect=8)
    one_line_error(result.stderr, "502 Bad Gateway")
    assert "xxxx" not in result.stderr


def test_9_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_mavera(
        ["stream", "--base-url", f"http://127.0.0.1:{port}/api/v1", "--retries", "0", "hi"],
        expect=9,
    )
    one_line_error(result.stderr, f"127.0.0.1:{port}")


def test_10_response_failed(server) -> None:
    events = text_stream(["so far"], terminal="response.failed")
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(stream_args(server), expect=10)
    assert result.stdout == b"so far\n"
    one_line_error(result.stderr, "the model fell over")


def test_10_response_incomplete(server) -> None:
    events = text_stream(["cut"], terminal="response.incomplete")
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(stream_args(server), expect=10)
    one_line_error(result.stderr, "max_output_tokens")


def test_10_error_event_then_failed_gives_both_ndjson_lines(server) -> None:
    error = {
        "type": "error",
        "sequence_number": 2,
        "error": {"code": "insufficient_quota", "message": "quota"},
    }
    failed = {"type": "response.failed", "sequence_number": 3, "response": {"status": "failed"}}
    server.script(
        lambda ex, wire: (
            wire.head(),
            wire.send_chunks([text_stream([])[0], sse_event(error), sse_event(failed)]),
        )
    )
    result = run_mavera(stream_args(server, "--events"), expect=10)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == [
        "response.created",
        "error",
        "response.failed",
        "mavera.error",
    ]
    assert lines[-1] == {
        "type": "mavera.error",
        "exit_code": 10,
        "error": "not_completed",
        "message": lines[-1]["message"],
    }
    assert "quota" in lines[-1]["message"]


def test_11_malformed_event_data(server) -> None:
    events = text_stream(["good "])
    bad = (
        b"event: response.output_text.delta\n"
        b'data: {"type": "response.output_text.delta", "delta": \n\n'
    )
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks([*events[:4], bad, *events[4:]])))
    result = run_mavera(stream_args(server), expect=11)
    assert result.stdout == b"good \n"
    one_line_error(result.stderr, "malformed event data")


def test_events_mode_failure_before_stream_still_writes_the_error_line(server) -> None:
    server.script(lambda ex, wire: wire.respond(401, {"error": {"message": "bad key"}}))
    result = run_mavera(stream_args(server, "--events"), expect=3)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"type": "mavera.error", "exit_code": 3, "error": "auth", "message": lines[0]["message"]}
    ]


def test_1_internal_error_is_one_line_and_no_traceback(server) -> None:
    """A bug anywhere inside still ends at the boundary: one line, exit 1."""
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["a"]))))
    code = (
        "import sys\n"
        "from mavera_cli import events\n"
        "def broken(self, event):\n"
        "    raise RuntimeError('simulated bug')\n"
        "events.ResponseAccumulator.add = broken\n"
        "from mavera_cli.entry import main\n"
        f"sys.exit(main(['stream', '--base-url', '{server.base_url}', 'hi']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=mavera_env(), timeout=30
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    one_line_error(stderr, "internal error", "simulated bug", "bug in mavera")
    assert "Traceback" not in stderr
