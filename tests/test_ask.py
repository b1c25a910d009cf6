"""`mavera ask`: one non-streamed request; the text of every output_text part, in order."""

from __future__ import annotations

import json

from tests.conftest import run_mavera
from tests.scripted_server import completed_response


def ask(server, *args: str, expect: int = 0):
    return run_mavera(
        ["ask", "--base-url", server.base_url, "--retries", "0", *args, "q"], expect=expect
    )


def test_prints_all_output_text_parts_in_order(server) -> None:
    response = completed_response("first ")
    response["output"].insert(0, {"type": "reasoning", "id": "rs_1", "summary": []})
    response["output"][1]["content"].append(
        {"type": "output_text", "text": "second", "annotations": []}
    )
    response["output"].append(
        {
            "type": "message",
            "content": [{"type": "refusal", "refusal": "no"}, {"type": "output_text", "text": "!"}],
        }
    )
    server.script(lambda ex, wire: wire.respond(200, response))
    # A refusal part is never printed; it makes the exit 10 (issue 11 item 14: it was 0).
    result = ask(server, expect=10)
    assert result.stdout == b"first second!\n"
    assert result.stderr == "mavera: error: no\n"
    assert server.requests[0].json()["stream"] is False


def test_json_prints_the_whole_response(server) -> None:
    response = completed_response("hi")
    server.script(lambda ex, wire: wire.respond(200, response))
    assert json.loads(ask(server, "--json").stdout) == response


def test_failed_and_incomplete_status_exit_10(server) -> None:
    failed = completed_response("part", status="failed")
    failed["error"] = {"code": "server_error", "message": "boom"}
    server.script(lambda ex, wire: wire.respond(200, failed))
    result = ask(server, expect=10)
    assert "boom" in result.stderr
    assert result.stdout == b"part\n"
    server.script(lambda ex, wire: wire.respond(200, completed_response("", status="incomplete")))
    ask(server, expect=10)


def test_non_json_body_is_invalid_output(server) -> None:
    server.script(
        lambda ex, wire: wire.respond(200, "<html>oops</html>", {"Content-Type": "text/html"})
    )
    result = ask(server, expect=11)
    assert len(result.stderr.strip().splitlines()) == 1


def test_retries_a_503_then_succeeds(server) -> None:
    server.script(
        lambda ex, wire: wire.respond(503, {"error": {"message": "busy"}}, {"Retry-After": "0"}),
        lambda ex, wire: wire.respond(200, completed_response("after retry")),
    )
    result = run_mavera(["ask", "--base-url", server.base_url, "--retries", "1", "q"])
    assert result.stdout == b"after retry\n"
    assert len(server.requests) == 2
    assert "retry 1" in result.stderr


def test_save_raw_keeps_the_body_of_the_answered_attempt(server, tmp_path) -> None:
    """`ask --save-raw FILE` saves the response body; after a retried 503 it is the 200's."""
    response = completed_response("saved")
    body = json.dumps(response).encode()
    server.script(
        lambda ex, wire: wire.respond(503, {"error": {"message": "busy"}}, {"Retry-After": "0"}),
        lambda ex, wire: wire.respond(200, response),
    )
    capture = tmp_path / "ask.json"
    result = run_mavera(
        ["ask", "--base-url", server.base_url, "--retries", "1", "--save-raw", str(capture), "q"]
    )
    assert result.stdout == b"saved\n"
    assert json.loads(capture.read_bytes()) == response
    assert capture.read_bytes() == body


def test_save_raw_is_untouched_when_ask_fails_before_a_body(server, tmp_path) -> None:
    server.script(lambda ex, wire: wire.respond(401, {"error": {"message": "no"}}))
    capture = tmp_path / "ask.json"
    capture.write_bytes(b"previous")
    run_mavera(["ask", "--base-url", server.base_url, "--save-raw", str(capture), "q"], expect=3)
    assert capture.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ask.json"]
