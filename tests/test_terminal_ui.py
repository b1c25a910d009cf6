"""What a person at a terminal sees on stderr, and what a pipe does not: the waiting spinner,
colour policy (NO_COLOR, FORCE_COLOR, --no-color), --usage and `config show`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import TEST_KEY, read_pipe_until, run_mavera
from tests.pty_helpers import ERASE_LINE, HIDE_CURSOR, SHOW_CURSOR, PtyRun, strip_ansi
from tests.scripted_server import (
    DONE,
    Exchange,
    ScriptedServer,
    Wire,
    completed_response,
    sse_event,
    text_stream,
)

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # rich's "dots"
WAITING = "waiting for 127.0.0.1"
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
FIRST_BYTE_DELAY = 1.0  # long enough for several spinner frames


def slow_stream(server: ScriptedServer, delay: float = FIRST_BYTE_DELAY) -> None:
    def handler(exchange: Exchange, wire: Wire) -> None:
        time.sleep(delay)
        wire.head()
        wire.send_chunks(text_stream(["hello ", "world"]))

    server.script(handler)


def slow_response(server: ScriptedServer, delay: float = FIRST_BYTE_DELAY) -> None:
    def handler(exchange: Exchange, wire: Wire) -> None:
        time.sleep(delay)
        wire.respond(200, completed_response("hello world"))

    server.script(handler)


PERSONA = {"id": "p_1", "name": "Gen Z", "category": "Generational"}


def slow_personas(server: ScriptedServer, delay: float = FIRST_BYTE_DELAY) -> None:
    def handler(exchange: Exchange, wire: Wire) -> None:
        time.sleep(delay)
        wire.respond(200, {"object": "list", "data": [PERSONA]})

    server.script(handler)


# command -> (how the server answers it slowly, its arguments, what it prints on stdout)
SLOW_COMMANDS: dict[str, tuple[Callable[[ScriptedServer], None], list[str], bytes]] = {
    "stream": (slow_stream, ["hi"], b"hello world\n"),
    "ask": (slow_response, ["hi"], b"hello world\n"),
    "personas": (slow_personas, [], json.dumps(PERSONA, separators=(",", ":")).encode() + b"\n"),
}


# --- the spinner ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", SLOW_COMMANDS)
def test_spinner_on_a_tty_while_waiting_for_the_first_byte_then_erased(server, command) -> None:
    answer_slowly, args, expected = SLOW_COMMANDS[command]
    answer_slowly(server)
    run = PtyRun([command, "--base-url", server.base_url, *args])
    try:
        seen = run.read_stderr_until(lambda data: WAITING in strip_ansi(data))
        code = run.finish()
    finally:
        run.close()
    assert seen, run.stderr
    assert code == 0
    assert run.stdout == expected, "the spinner leaked into stdout"
    drawn = strip_ansi(run.stderr)
    frames = {char for char in drawn if char in SPINNER_FRAMES}
    assert len(frames) >= 3, f"the spinner did not turn: {drawn!r}"
    # It hid the cursor, and at the end erased its line and gave the cursor back.
    assert HIDE_CURSOR in run.stderr
    tail = run.stderr[run.stderr.rindex(WAITING.encode()) :]
    assert ERASE_LINE in tail and SHOW_CURSOR in tail
    # Nothing but spinner frames was drawn (the seconds appear once the wait grows long).
    frame = rf"[{SPINNER_FRAMES}] {re.escape(WAITING)}…(?: \d+s)?"
    assert re.fullmatch(rf"(?:{frame})+\n?", drawn), drawn


def test_spinner_stops_at_the_first_byte_not_at_the_end(server) -> None:
    release = threading.Event()
    events = text_stream(["hello ", "world"])

    def handler(exchange: Exchange, wire: Wire) -> None:
        time.sleep(FIRST_BYTE_DELAY)
        wire.head()
        wire.send_chunks(events[:4])  # up to and including the first delta
        release.wait(20)
        wire.send_chunks(events[4:])

    server.script(handler)
    run = PtyRun(["stream", "--base-url", server.base_url, "hi"])
    try:
        assert run.proc.stdout is not None
        first = read_pipe_until(run.proc.stdout.fileno(), b"hello ")
        assert first == b"hello "
        # By the time the first delta is on stdout, the spinner has erased itself...
        assert run.read_stderr_until(lambda data: SHOW_CURSOR in data, timeout=5)
        assert WAITING in strip_ansi(run.stderr)
        drawn = len(run.stderr)
        # ...and nothing more is drawn while the rest of the stream is held back.
        assert not run.read_stderr_until(lambda data: len(data) > drawn, timeout=0.8)
        release.set()
        code = run.finish()
    finally:
        release.set()
        run.close()
    assert code == 0
    assert first + run.stdout == b"hello world\n"
    assert len(run.stderr) == drawn


@pytest.mark.parametrize("command", SLOW_COMMANDS)
def test_no_spinner_and_nothing_at_all_on_stderr_when_it_is_a_pipe(server, command) -> None:
    answer_slowly, args, expected = SLOW_COMMANDS[command]
    answer_slowly(server)
    result = run_mavera([command, "--base-url", server.base_url, *args])
    assert result.stdout == expected
    assert result.stderr == ""


def test_no_spinner_with_quiet_on_a_tty(server) -> None:
    slow_stream(server)
    run = PtyRun(["stream", "-q", "--base-url", server.base_url, "hi"])
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 0
    assert run.stdout == b"hello world\n"
    assert run.stderr == b""


def test_no_spinner_on_a_dumb_terminal(server) -> None:
    slow_stream(server)
    run = PtyRun(["stream", "--base-url", server.base_url, "hi"], env={"TERM": "dumb"})
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 0
    assert run.stderr == b""


def test_spinner_stops_before_the_error_line_on_a_tty(server) -> None:
    def handler(exchange: Exchange, wire: Wire) -> None:
        time.sleep(FIRST_BYTE_DELAY)
        wire.respond(400, {"error": {"message": "no such model"}})

    server.script(handler)
    run = PtyRun(["stream", "--base-url", server.base_url, "hi"])
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 4
    text = strip_ansi(run.stderr)
    assert WAITING in text
    last_line = [line for line in text.splitlines() if line.strip()][-1]
    assert last_line.startswith("mavera: error: HTTP 400: no such model"), text


# --- colour --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "flags", "coloured"),
    [
        ({}, [], False),
        ({"FORCE_COLOR": "1"}, [], True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, [], False),
        ({"FORCE_COLOR": "1"}, ["--no-color"], False),
        ({"FORCE_COLOR": "1", "NO_COLOR": ""}, [], True),  # an empty NO_COLOR does not count
        ({"FORCE_COLOR": "0"}, [], False),
    ],
    ids=["piped", "force", "no-color-env-wins", "flag-wins", "empty-no-color", "force-0"],
)
def test_colour_policy_when_piped(env, flags, coloured) -> None:
    result = run_mavera(["stream", *flags, "hi"], env=env, key=None, expect=3)
    assert "mavera: error: no API key" in result.stderr
    assert bool(COLOUR.search(result.stderr)) is coloured, repr(result.stderr)


@pytest.mark.parametrize(
    ("env", "flags", "coloured"),
    [({}, [], True), ({"NO_COLOR": "1"}, [], False), ({}, ["--no-color"], False)],
    ids=["tty", "no-color-env", "no-color-flag"],
)
def test_colour_policy_on_a_tty(env, flags, coloured) -> None:
    run = PtyRun(["stream", *flags, "hi"], env={"MAVERA_API_KEY": "", **env})
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 3
    assert "mavera: error: no API key" in strip_ansi(run.stderr)
    assert bool(COLOUR.search(run.stderr.decode())) is coloured, repr(run.stderr)


def test_no_colour_spinner_still_turns_on_a_tty(server) -> None:
    slow_stream(server)
    run = PtyRun(["stream", "--base-url", server.base_url, "hi"], env={"NO_COLOR": "1"})
    try:
        code = run.finish()
    finally:
        run.close()
    assert code == 0
    assert WAITING in strip_ansi(run.stderr)
    assert not COLOUR.search(run.stderr.decode()), repr(run.stderr)


# --- --usage -------------------------------------------------------------------------------


def stream_with_usage(usage: dict | None, terminal: str = "response.completed") -> list[bytes]:
    """A text stream whose final response carries `usage` (None: no usage at all)."""
    events = text_stream(["hello"], terminal=terminal)
    final = json.loads(events[-2].split(b"data: ", 1)[1])
    final["response"]["usage"] = usage
    return [*events[:-2], sse_event(final), DONE]


USAGE = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12, "credits_used": 2}


def test_usage_prints_tokens_and_credits_to_stderr_after_the_text(server) -> None:
    events = stream_with_usage(USAGE)
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(["stream", "--usage", "--base-url", server.base_url, "hi"])
    assert result.stdout == b"hello\n"
    assert result.stderr == "mavera: usage: 12 tokens (5 input, 7 output), 2 credits used\n"


def test_usage_for_ask(server) -> None:
    server.script(lambda ex, wire: wire.respond(200, completed_response("hello")))
    result = run_mavera(["ask", "--usage", "--base-url", server.base_url, "hi"])
    assert result.stdout == b"hello\n"
    assert result.stderr == "mavera: usage: 3 tokens (1 input, 2 output), 1 credit used\n"


def test_usage_is_silenced_by_quiet_and_absent_without_the_flag(server) -> None:
    events = stream_with_usage(USAGE)
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    quiet = run_mavera(["stream", "--usage", "-q", "--base-url", server.base_url, "hi"])
    plain = run_mavera(["stream", "--base-url", server.base_url, "hi"])
    assert quiet.stderr == plain.stderr == ""
    assert quiet.stdout == plain.stdout == b"hello\n"


def test_usage_is_reported_even_when_the_response_is_incomplete(server) -> None:
    events = stream_with_usage(USAGE, terminal="response.incomplete")
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(["stream", "--usage", "--base-url", server.base_url, "hi"], expect=10)
    lines = result.stderr.splitlines()
    assert lines[0] == "mavera: usage: 12 tokens (5 input, 7 output), 2 credits used"
    assert lines[1].startswith("mavera: error: response incomplete")


def test_usage_says_so_when_the_server_reports_none(server) -> None:
    events = stream_with_usage(None)
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(["stream", "--usage", "--base-url", server.base_url, "hi"])
    assert result.stderr == "mavera: usage: not reported by the server\n"


def test_usage_goes_to_stderr_not_into_ndjson(server) -> None:
    events = stream_with_usage(USAGE)
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(events)))
    result = run_mavera(["stream", "--events", "--usage", "--base-url", server.base_url, "hi"])
    assert all(json.loads(line)["type"] for line in result.stdout.splitlines())
    assert b"usage:" not in result.stdout
    assert "12 tokens" in result.stderr


# --- config show ---------------------------------------------------------------------------


def write_config(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "config" / "mavera" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_config_show_says_where_each_setting_came_from_and_masks_the_key(tmp_path) -> None:
    env = write_config(tmp_path, f'model = "from-file"\napi_key = "{TEST_KEY}"\n')
    env["MAVERA_TIMEOUT"] = "5"
    result = run_mavera(["config", "show"], env=env, key=None)
    rows = {line.split()[0]: line.split() for line in result.text.splitlines()}
    config = str(tmp_path / "config" / "mavera" / "config.toml")
    assert rows["config_file"] == ["config_file", config, "env", "XDG_CONFIG_HOME"]
    assert rows["model"] == ["model", "from-file", "config", config]
    assert rows["timeout"] == ["timeout", "5", "env", "MAVERA_TIMEOUT"]
    assert rows["retries"] == ["retries", "2", "default"]
    assert rows["api_key"] == ["api_key", "***", "config", config]
    assert TEST_KEY not in result.text + result.stderr


def test_config_show_json_with_the_key_from_the_environment(tmp_path) -> None:
    result = run_mavera(["config", "show", "--json"], env={"MAVERA_CONFIG": "/nonexistent.toml"})
    shown = json.loads(result.stdout)
    assert shown["config_file"] == {
        "value": "/nonexistent.toml",
        "source": "env MAVERA_CONFIG",
        "exists": False,
    }
    assert shown["api_key"] == {"value": "***", "source": "env MAVERA_API_KEY"}
    assert shown["base_url"] == {"value": "https://app.mavera.io/api/v1", "source": "default"}
    assert shown["persona"] == {"value": None, "source": "default"}
    assert TEST_KEY not in result.text


def test_config_show_rejects_a_broken_config_file_in_one_line(tmp_path) -> None:
    env = write_config(tmp_path, "model = \n")
    result = run_mavera(["config", "show"], env=env, expect=2)
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1
    assert "is not valid TOML" in result.stderr


def test_config_show_warns_about_unknown_keys(tmp_path) -> None:
    env = write_config(tmp_path, 'modle = "typo"\n')
    result = run_mavera(["config", "show"], env=env)
    assert "unknown setting 'modle' ignored" in result.stderr
    assert "model" in result.text
