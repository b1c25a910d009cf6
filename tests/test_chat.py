"""`mavera chat`: piped (one line, one turn, answers in order) and on a real terminal (line
editing, answers streaming, /reset, Ctrl-C stopping one answer, Ctrl-D leaving)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.conftest import TEST_KEY, mavera_env, one_line_error, run_mavera
from tests.scripted_server import Exchange, ScriptedServer, Wire, text_stream
from tests.test_sessions import mock_answer

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")


def test_piped_chat_is_one_turn_per_line_with_answers_in_order(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    lines = b"hello\n\nsecond\n/reset\nthird\nfourth\n"
    result = run_mavera(["chat", "--mock", "--session", "c"], stdin=lines, env=env)
    assert result.text == (
        "You said: hello\n"
        'You said: second [turn 2; 3 input items; earlier: "hello"]\n'
        "You said: third\n"
        'You said: fourth [turn 2; 3 input items; earlier: "third"]\n'
    )
    stored = json.loads((tmp_path / "state/mavera/sessions/c.json").read_text())
    assert [turn["items"][0]["content"] for turn in stored["turns"]] == ["third", "fourth"]


def test_piped_chat_stops_at_exit(server: ScriptedServer) -> None:
    server.script(mock_answer())
    result = run_mavera(["chat", "--base-url", server.base_url], stdin=b"one\n/exit\ntwo\n")
    assert result.text == "You said: one\n"
    assert len(server.requests) == 1


def test_piped_chat_ends_at_the_first_failed_turn_with_its_code(server: ScriptedServer) -> None:
    def down(exchange: Exchange, wire: Wire) -> None:
        wire.respond(500, {"error": {"message": "down"}})

    server.script(mock_answer(), down, mock_answer())
    result = run_mavera(
        ["chat", "--retries", "0", "--base-url", server.base_url],
        stdin=b"one\ntwo\nthree\n",
        expect=8,
    )
    assert result.text == "You said: one\n"
    assert len(server.requests) == 2
    one_line_error(result.stderr, "500")


def test_chat_refuses_files() -> None:
    result = run_mavera(["chat", "--mock", "-f", "x.md"], stdin=b"hi\n", expect=2)
    one_line_error(result.stderr, "-f")


class TerminalChat:
    """`mavera chat` with stdin, stdout and stderr on one pseudo-terminal, as a person runs it."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 30) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 100, 0, 0))

        def controlling_terminal() -> None:  # Ctrl-C typed on the pty reaches the process
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mavera_cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=mavera_env({"TERM": "xterm-256color", **env}),
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.screen = b""
        self.seen = 0

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_for(self, wanted: str, timeout: float = 15) -> str:
        """Read until `wanted` is on screen (escape sequences removed) after what was seen
        before; the text so far."""
        deadline = time.monotonic() + timeout
        while wanted not in self.text[self.seen :]:
            import select

            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"{wanted!r} never appeared; screen: {self.text!r}")
            try:
                piece = os.read(self.master, 65536)
            except OSError:
                piece = b""
            if not piece:
                raise AssertionError(f"EOF before {wanted!r}; screen: {self.text!r}")
            self.screen += piece
        self.seen = self.text.index(wanted, self.seen) + len(wanted)
        return self.text

    def answer_then_prompt(self, line: bytes, wanted: str) -> None:
        """Type a line, see `wanted`, then the next prompt (readline reads again)."""
        self.type(line)
        self.wait_for(wanted)
        self.wait_for("> ")

    @property
    def text(self) -> str:
        return _ANSI.sub(b"", self.screen).decode("utf-8", "replace")

    def close(self) -> int:
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            os.close(self.master)


def test_chat_on_a_terminal(server: ScriptedServer, tmp_path: Path) -> None:
    answered_slowly = []

    def slow(exchange: Exchange, wire: Wire) -> None:
        answered_slowly.append(exchange.json())
        wire.head()
        wire.send(b"".join(text_stream(["partial ", "answer "])[:5]))
        wire.hold(20)

    server.script(mock_answer(), slow, mock_answer())
    chat = TerminalChat(
        ["chat", "--base-url", server.base_url], {"XDG_STATE_HOME": str(tmp_path / "state")}
    )
    try:
        chat.wait_for("> ")
        chat.answer_then_prompt(b"hello\r", "You said: hello")
        chat.type(b"slow one\r")
        chat.wait_for("partial answer")  # streamed: shown while the answer is still open
        chat.type(b"\x03")  # Ctrl-C stops this answer only
        chat.wait_for("answer stopped")
        chat.wait_for("> ")
        before = len(chat.text)
        chat.answer_then_prompt(b"after\r", 'earlier: "hello"]')
        assert "slow one" not in chat.text[before:]  # the stopped turn was not kept
        chat.answer_then_prompt(b"/reset\r", "conversation reset")
        chat.answer_then_prompt(b"fresh\r", "You said: fresh")
        chat.type(b"\x04")  # Ctrl-D leaves
        assert chat.close() == 0
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
    assert "You said: fresh [" not in chat.text  # after /reset: a first turn again
    bodies = [request.json() for request in server.requests]
    assert [item.get("content") for item in bodies[2]["input"] if item.get("role") == "user"] == [
        "hello",
        "after",
    ]
    assert bodies[3]["input"] == [{"role": "user", "content": "fresh"}]
    # The line history is kept for the next chat, privately.
    history = tmp_path / "state" / "mavera" / "chat_history"
    assert "fresh" in history.read_text()
    assert history.stat().st_mode & 0o077 == 0


def test_usage_is_told_per_turn_on_stderr() -> None:
    result = run_mavera(["chat", "--mock", "--usage"], stdin=b"one\ntwo words\n")
    lines = [line for line in result.stderr.splitlines() if "usage:" in line]
    assert len(lines) == 2, result.stderr
    assert "credit" in lines[0] and "over" not in lines[1]  # each line is one turn's


def test_bytes_typed_that_are_not_utf8_become_replacement_characters(tmp_path: Path) -> None:
    chat = TerminalChat(
        ["chat", "--mock", "--session", "p2"], {"XDG_STATE_HOME": str(tmp_path / "state")}
    )
    try:
        chat.wait_for("> ")
        chat.answer_then_prompt(b"ab\xff\xfecd\r", "You said: ab")
        chat.answer_then_prompt(b"after\r", "You said: after [turn 2")  # the chat went on
        chat.type(b"\x04")
        assert chat.close() == 0
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
    assert "internal error" not in chat.text
    stored = json.loads((tmp_path / "state/mavera/sessions/p2.json").read_text())
    assert stored["turns"][0]["items"][0]["content"] == "ab\ufffd\ufffdcd"  # as piped chat reads it


def test_a_key_typed_in_chat_is_masked_in_the_input_history(tmp_path: Path) -> None:
    state = tmp_path / "state" / "mavera"
    state.mkdir(parents=True)
    # A history from before the key was masked there is cleaned too.
    (state / "chat_history").write_text(f"old {TEST_KEY} line\n")
    chat = TerminalChat(["chat", "--mock"], {"XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        chat.wait_for("> ")
        chat.answer_then_prompt(f"my key is {TEST_KEY}\r".encode(), "You said: my key is ***")
        chat.type(b"\x04")
        assert chat.close() == 0
    finally:
        if chat.proc.poll() is None:
            chat.proc.kill()
    history = (state / "chat_history").read_text()
    assert TEST_KEY not in history
    assert "my key is ***" in history and "old *** line" in history
