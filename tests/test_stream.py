"""`mavera stream`: deltas reach the pipe immediately; prompt, payload and capture behave."""

from __future__ import annotations

import json
import threading

from tests.conftest import read_pipe_until, run_mavera, start_mavera
from tests.pty_helpers import run_on_a_pty
from tests.scripted_server import text_stream


def test_delta_is_on_the_pipe_while_the_server_holds_the_next_event(server) -> None:
    events = text_stream(["first ", "second"])
    release = threading.Event()

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(events[:4])  # up to and including the first delta
        release.wait(10)
        wire.send_chunks(events[4:])

    server.script(handler)
    proc = start_mavera(["stream", "--base-url", server.base_url, "hi"])
    try:
        early = read_pipe_until(proc.stdout.fileno(), b"first ", timeout=10)
        assert early == b"first ", "the first delta did not reach the pipe before the next event"
        assert proc.poll() is None
        release.set()
        rest, _ = proc.communicate(timeout=10)
    finally:
        release.set()
        proc.kill() if proc.poll() is None else None
    assert early + rest == b"first second\n"
    assert proc.returncode == 0


def test_prompt_order_stdin_files_words(server, tmp_path) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["ok"]))))
    notes = tmp_path / "notes.md"
    notes.write_text("file text\n\n\n")
    run_mavera(
        ["stream", "--base-url", server.base_url, "-f", str(notes), "summarise", "this"],
        stdin=b"piped text\n",
    )
    assert server.requests[0].json()["input"] == "piped text\n\nfile text\n\nsummarise this"


def test_a_byte_order_mark_is_not_sent_as_part_of_the_prompt(server, tmp_path) -> None:
    """Files saved by Windows Notepad start with one; before, it went into the prompt."""
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["ok"]))))
    notes = tmp_path / "notes.txt"
    notes.write_bytes("\ufeffnotes\r\n".encode())
    piped = "\ufeffpiped \ufeff inside\n".encode()
    run_mavera(["stream", "--base-url", server.base_url, "-f", str(notes)], stdin=piped)
    # Only a mark at the very start is dropped: one inside the text is the user's.
    assert server.requests[0].json()["input"] == "piped \ufeff inside\n\nnotes"


def test_dash_reads_stdin_and_empty_stdin_adds_nothing(server) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["ok"]))))
    run_mavera(["stream", "--base-url", server.base_url, "-"], stdin=b"only stdin")
    run_mavera(["stream", "--base-url", server.base_url, "words"], stdin=b"")
    assert [r.json()["input"] for r in server.requests] == ["only stdin", "words"]


def test_payload_carries_settings_from_flags_and_environment(server) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["ok"]))))
    run_mavera(
        ["stream", "--base-url", server.base_url, "-m", "mavera-2", "-s", "be brief", "hi"],
        env={"MAVERA_PERSONA_ID": "clx_persona"},
    )
    body = server.requests[0].json()
    assert body == {
        "model": "mavera-2",
        "input": "hi",
        "stream": True,
        "persona_id": "clx_persona",
        "instructions": "be brief",
    }
    headers = server.requests[0].headers
    assert headers["authorization"].startswith("Bearer mvra_live_")
    assert headers["accept-encoding"] == "identity"


def test_no_newline_flag(server) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["x", "y"]))))
    assert run_mavera(["stream", "-n", "--base-url", server.base_url, "hi"]).stdout == b"xy"


def test_unknown_event_types_are_passed_through_in_ndjson_and_ignored_in_text(server) -> None:
    events = text_stream(["t"])
    odd = b'event: mavera.analysis\ndata: {"type":"mavera.analysis","confidence":7}\n\n'
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks([events[0], odd, *events[1:]])))
    assert run_mavera(["stream", "--base-url", server.base_url, "hi"]).stdout == b"t\n"
    lines = run_mavera(
        ["stream", "--events", "--base-url", server.base_url, "hi"]
    ).stdout.splitlines()
    assert json.loads(lines[1]) == {"type": "mavera.analysis", "confidence": 7}


def test_save_raw_keeps_exact_bytes_and_masks_an_echoed_key(server, tmp_path) -> None:
    from tests.conftest import TEST_KEY

    events = text_stream(["echo: ", TEST_KEY])
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    capture = tmp_path / "raw.sse"
    result = run_mavera(["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"])
    assert TEST_KEY.encode() not in result.stdout
    assert result.stdout == b"echo: ***\n"
    saved = capture.read_bytes()
    assert TEST_KEY.encode() not in saved
    expected = b"".join(events).replace(TEST_KEY.encode(), b"***")
    # Exactly what was received: reading stops at response.completed, so a `[DONE]` that
    # comes in a later network read is not part of it.
    assert expected.startswith(saved)
    assert b"response.completed" in saved
    assert expected[len(saved) :] in (b"", b"data: [DONE]\n\n")


def test_text_that_ends_with_a_newline_gets_no_second_one(server) -> None:
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["line\n"]))))
    assert run_mavera(["stream", "--base-url", server.base_url, "hi"]).stdout == b"line\n"
    assert run_mavera(["stream", "-n", "--base-url", server.base_url, "hi"]).stdout == b"line\n"


def test_replay_events_of_a_failed_capture_has_one_error_line(tmp_path) -> None:
    capture = tmp_path / "cut.sse"
    capture.write_bytes(b"".join(text_stream(["a"])[:4]))
    result = run_mavera(["replay", "--events", str(capture)], expect=7)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines].count("mavera.error") == 1
    assert lines[-1]["exit_code"] == 7


def test_long_answer_closing_events_are_not_needed_in_text_mode(server) -> None:
    """The closing events repeat the whole text; text mode reads past them (the decoder cuts
    them short) and still knows how the response ended."""
    deltas = ["0123456789abcdef" * 64] * 400  # 400 KiB of text, repeated 3× at the end
    events = text_stream(deltas)
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events, pause=0)))
    text = "".join(deltas)
    assert (
        run_mavera(["stream", "--base-url", server.base_url, "hi"]).stdout == (text + "\n").encode()
    )
    ndjson = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"]).stdout
    completed = json.loads(ndjson.splitlines()[-1])
    assert completed["response"]["output"][0]["content"][0]["text"] == text  # NDJSON: whole
    failed = text_stream(deltas, terminal="response.failed")
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(failed)))
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=10)
    assert "the model fell over" in result.stderr


def test_usage_of_a_long_answer_is_still_reported(server) -> None:
    deltas = ["0123456789abcdef" * 64] * 400  # closing events far above the decoder's cut
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(deltas))))
    result = run_mavera(["stream", "--usage", "--base-url", server.base_url, "hi"])
    assert "usage: 3 tokens" in result.stderr


def test_events_on_a_terminal_escape_c1_and_bidi_controls(server) -> None:
    """JSON may carry a C1 CSI (U+009B) or a bidi override raw: a terminal acts on them. On
    one they are written as escapes (the same JSON value); in a pipe, as received."""
    hostile = "a \u009b2J b \u202egnp.exe"
    raw = [  # sent raw, as UTF-8 (json.dumps would escape them)
        event.replace(b"\\u009b", "\u009b".encode()).replace(b"\\u202e", "\u202e".encode())
        for event in text_stream([hostile])
    ]
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(raw)))
    drawn, _, code = run_on_a_pty(["stream", "--events", "--base-url", server.base_url, "hi"])
    assert code == 0
    assert "\u009b".encode() not in drawn and "\u202e".encode() not in drawn
    deltas = [json.loads(line) for line in drawn.splitlines() if b"output_text.delta" in line]
    assert deltas[0]["delta"] == hostile  # the same value, escaped
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(raw)))
    piped = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"])
    assert hostile.encode() in piped.stdout
