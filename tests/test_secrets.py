"""The API key never shows: not in stdout, stderr (also with -v), NDJSON error lines or captures,
in any failure mode, even when the server echoes it back."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_KEY, run_mavera
from tests.scripted_server import text_stream
from tests.test_fault_matrix import ROWS

KEY = TEST_KEY.encode()


def echo_key_everywhere(ex, wire) -> None:
    """A hostile server: the key in a header, in an error body and in the text."""
    body = {"error": {"message": f"bad key {TEST_KEY}", "code": TEST_KEY}}
    wire.respond(400, body, {"X-Echo": TEST_KEY})


def echo_key_in_stream(ex, wire) -> None:
    wire.head(headers={"X-Echo": ex.headers["authorization"]})
    wire.send_chunks(text_stream(["your key is ", TEST_KEY, "."]))


def assert_no_key(result, *files) -> None:
    assert KEY not in result.stdout
    assert TEST_KEY not in result.stderr
    for path in files:
        if path.exists():
            assert KEY not in path.read_bytes()


@pytest.mark.parametrize("name", [name for name in ROWS if name != "a 10 MB event"])
@pytest.mark.parametrize("mode", ["text", "events"])
def test_key_absent_in_every_failure_mode(server, tmp_path, name: str, mode: str) -> None:
    row = ROWS[name]
    server.script(*row.handlers)
    capture = tmp_path / "raw.sse"
    args = ["stream", "-v", "--save-raw", str(capture), "--base-url", server.base_url]
    args += ["--retries", "1", *row.args, "hi"]
    if mode == "events":
        args.insert(1, "--events")
    result = run_mavera(args, expect=None, timeout=60)
    assert result.code in (row.code, 0, 5, 6, 7, 8, 9)  # fewer retries than the matrix row
    assert "Authorization: Bearer ***" in result.stderr or "authorization: Bearer ***" in (
        result.stderr
    )
    assert_no_key(result, capture)


@pytest.mark.parametrize("command", ["stream", "ask"])
def test_echoed_key_is_masked(server, tmp_path, command: str) -> None:
    server.script(echo_key_everywhere)
    result = run_mavera(
        [command, "-v", "--retries", "0", "--base-url", server.base_url, "hi"], expect=4
    )
    assert "***" in result.stderr
    assert_no_key(result)


def test_key_echoed_in_stream_text_header_and_capture_is_masked(server, tmp_path) -> None:
    server.script(echo_key_in_stream)
    capture = tmp_path / "raw.sse"
    for extra in ([], ["--events"]):
        result = run_mavera(
            ["stream", "-v", *extra, "--save-raw", str(capture), "--base-url", server.base_url, "x"]
        )
        assert_no_key(result, capture)
    assert b"your key is ***." in run_mavera(["replay", str(capture)]).stdout


def test_key_from_config_file_is_masked_too(server, tmp_path) -> None:
    config = tmp_path / "config" / "mavera" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'api_key = "{TEST_KEY}"\n')
    config.chmod(0o644)
    server.script(echo_key_everywhere)
    result = run_mavera(
        ["stream", "-v", "--retries", "0", "--base-url", server.base_url, "hi"], key=None, expect=4
    )
    assert "readable by others" in result.stderr
    assert server.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    assert_no_key(result)


def test_a_placeholder_key_too_short_to_be_real_does_not_garble_output(server) -> None:
    server.script(
        lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["x marks", " exit"])))
    )
    result = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"], key="x")
    assert b'"exit_code"' not in result.stdout  # no error line
    assert b'"delta":"x marks"' in result.stdout and b"***" not in result.stdout
