"""Server text shown on a terminal carries no escape sequences or control characters (issue 11
item 19); in a pipe the same data stays exactly as the server sent it."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from mavera_cli.printable import terminal_safe
from mavera_cli.render import OutputSink
from mavera_cli.render.table import render_personas
from tests.conftest import mavera_env, run_mavera

HOSTILE_NAME = "\x1b[31mRed\x1b[0m \x1b]0;pwned\x07Team\x1b[2J [/] [bold]x"
PERSONAS = {
    "object": "list",
    "data": [
        {"id": "p_\x1b[8mhidden", "name": HOSTILE_NAME, "category": "Gen\u202eZ\r\nnext\x9b5A"},
        {"id": "p_plain", "name": "Plain", "category": "Generational"},
    ],
}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, café 名前", "plain text, café 名前"),
        ("\x1b[31mred\x1b[0m", "red"),  # CSI colour
        ("a\x1b]0;window title\x07b", "ab"),  # OSC, BEL-terminated
        ("a\x1b]8;;https://x.test\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # OSC 8 hyperlink, ST
        ("x\x9b2Jy", "xy"),  # C1 CSI
        ("\x1bcreset", "reset"),  # RIS
        ("bell\x07 del\x7f nul\x00", "bell del nul"),
        ("line\r\nbreak\ttab", "line  break tab"),
        ("\u202eevil\u2066", "evil"),  # bidi override and isolate
        ("ends with ESC\x1b", "ends with ESC"),
    ],
)
def test_terminal_safe_removes_escapes_and_controls(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown


def test_personas_table_shows_server_text_without_escapes_or_markup() -> None:
    out = io.BytesIO()
    render_personas(PERSONAS["data"], OutputSink(out), as_table=True)
    _header, *rows = out.getvalue().decode().splitlines()
    body = "\n".join(rows)
    assert "\x1b" not in body and "\x07" not in body and "\x9b" not in body and "\r" not in body
    assert "\u202e" not in body
    assert "Red Team [/] [bold]x" in body  # rich markup in a name is shown as written
    assert "p_hidden" in body and "GenZ  next" in body
    assert len(rows) == 2  # a CR/LF in a cell does not start a new row


def read_terminal(leader: int, timeout: float = 20) -> bytes:
    """Everything written to the pty until the process closes it."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            piece = os.read(leader, 65536)
        except OSError:  # EIO: Linux's way of saying the other side is closed
            break
        if not piece:
            break
        data += piece
    return data


def test_personas_on_a_terminal_strip_escapes_and_in_a_pipe_keep_them(server) -> None:
    server.script(lambda exchange, wire: wire.respond(200, PERSONAS))
    piped = run_mavera(["personas", "--base-url", server.base_url])
    assert [json.loads(line) for line in piped.stdout.splitlines()] == PERSONAS["data"]

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", "personas", "--base-url", server.base_url],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=mavera_env({"TERM": "xterm-256color", "COLUMNS": "200"}),
    )
    os.close(follower)
    try:
        shown = read_terminal(leader)
        proc.wait(timeout=20)
    finally:
        os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    rows = shown.decode().split("\n", 1)[1]  # rich styles only the header line
    assert "Red Team [/] [bold]x" in rows
    assert "\x1b" not in rows and "\x07" not in rows
