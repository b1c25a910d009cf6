"""Markdown on a terminal: finished blocks rendered once, the growing block shown and replaced,
nothing drawn twice, long answers scrolling; and in a pipe, the plain text byte for byte."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from mavera_cli.events import ResponseAccumulator
from mavera_cli.printable import ScreenText
from mavera_cli.render import OutputSink
from mavera_cli.render.markdown import BlockSplitter, MarkdownRenderer
from tests.conftest import TEST_KEY, mavera_env, real_recordings, run_mavera
from tests.scripted_server import DONE, Exchange, ScriptedServer, Wire, text_stream

DOCUMENT = """# Weekly report

Some **bold** words and `inline code` here.

## Numbers

| name | count |
|------|-------|
| apples | 3 |
| pears | 4 |

- first point
- second point

```python
def greet(name):
    return "hello " + name
```

The end.
"""


def blocks_of(text: str, pieces: int = 1) -> list[str]:
    found: list[str] = []
    splitter = BlockSplitter(found.append)
    size = max(1, len(text) // pieces)
    for start in range(0, len(text), size):
        splitter.feed(text[start : start + size])
    splitter.end()
    return found


@pytest.mark.parametrize("pieces", [1, 7, len(DOCUMENT)])
def test_blocks_end_at_blank_lines_headings_and_closed_fences(pieces: int) -> None:
    assert blocks_of(DOCUMENT, pieces) == [
        "# Weekly report",
        "Some **bold** words and `inline code` here.",
        "## Numbers",
        "| name | count |\n|------|-------|\n| apples | 3 |\n| pears | 4 |",
        "- first point\n- second point",
        '```python\ndef greet(name):\n    return "hello " + name\n```',
        "The end.",
    ]


def test_a_blank_line_inside_a_fence_does_not_end_the_block() -> None:
    text = "~~~\na\n\nb\n```\nstill code\n~~~\nafter"
    assert blocks_of(text, 3) == ["~~~\na\n\nb\n```\nstill code\n~~~", "after"]


def test_an_unclosed_fence_is_one_block_at_the_end() -> None:
    assert blocks_of("```\nx\n\ny") == ["```\nx\n\ny"]


def _renderer(
    out: io.BytesIO, clock: Iterator[float], *, secret: str | None = None, width: int = 60
) -> MarkdownRenderer:
    return MarkdownRenderer(
        OutputSink(out, secret),  # type: ignore[arg-type]
        width=width,
        height=20,
        color=False,
        secret=secret,
        clock=lambda: next(clock),
    )


def test_a_long_paragraph_is_rendered_once_and_redraws_stay_small() -> None:
    out = io.BytesIO()
    renderer = _renderer(out, iter(float(n) for n in range(10**6)))
    renderer.start(ResponseAccumulator())
    words = [f"w{n} " for n in range(20_000)]
    for word in words:
        renderer.delta_sink.append(word)  # type: ignore[union-attr]
        renderer.flush()
    drawn_before_end = len(out.getvalue())
    renderer.finish(ResponseAccumulator())
    # Each redraw shows only the visible tail: at most a few rows of 60 columns, whatever
    # the length of the paragraph (about 128 KB here).
    assert drawn_before_end < 20_000 * (6 * 60 + 40)
    screen = emulate(out.getvalue(), rows=20, cols=60)
    text = " ".join(screen).split()
    assert text == [word.strip() for word in words]


def test_redraws_are_bounded_by_the_clock() -> None:
    out = io.BytesIO()
    renderer = _renderer(out, iter([0.0] * 10**6))  # time stands still: no redraw is due
    renderer.start(ResponseAccumulator())
    for n in range(1000):
        renderer.delta_sink.append(f"x{n} ")  # type: ignore[union-attr]
        renderer.flush()
    assert out.getvalue().count(b"x1 ") <= 1  # drawn at most once (the first flush)


def test_the_key_is_masked_before_rendering() -> None:
    # On a narrow terminal rich folds a long word across lines: masked afterwards, the key's
    # pieces would slip past the stdout mask.
    out = io.BytesIO()
    renderer = _renderer(out, iter(float(n) for n in range(10**6)), secret=TEST_KEY, width=20)
    renderer.start(ResponseAccumulator())
    renderer.write_text(f"key {TEST_KEY} here\n\nand {TEST_KEY[:12]}")
    renderer.write_text(f"{TEST_KEY[12:]} again")
    renderer.finish(ResponseAccumulator())
    screen = emulate(out.getvalue(), rows=20, cols=20)
    assert TEST_KEY not in "".join(screen)
    assert "".join(screen).count("***") == 2


# --- a terminal emulator just big enough for what is drawn: text, CR/LF, cursor up, erase ---

_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([ -/]*)([@-~])|\x1b[()78=>][0-9A-Za-z]?|\r|\n|[^\x1b\r\n]")


def emulate(data: bytes, *, rows: int, cols: int) -> list[str]:
    """Every line ever on screen (scrollback included) after `data` is drawn, as xterm would:
    the cursor cannot go above the screen's top, so what scrolled off stays as it was."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for match in _TOKEN.finditer(data.decode("utf-8", "replace")):
        token = match.group(0)
        if token == "\r":
            col = 0
        elif token == "\n":  # a terminal's default ONLCR: a line feed returns the carriage
            row, col = row + 1, 0
            if row == len(lines):
                lines.append([])
        elif match.group(3):
            final, params = match.group(3), match.group(1)
            count = int(params) if params.isdigit() else (1 if final == "A" else 0)
            if final == "A":
                row = max(row - count, max(0, len(lines) - rows))
            elif final == "J":
                del lines[row][col:]
                del lines[row + 1 :]
            elif final == "K":
                lines[row] = [] if count == 2 else lines[row][:col]
        elif not token.startswith("\x1b"):
            if col >= cols:  # xterm wraps when the next character comes
                row, col = row + 1, 0
                if row == len(lines):
                    lines.append([])
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = token
            else:
                line.append(token)
            col += 1
    return ["".join(line).rstrip() for line in lines]


class MarkdownTerminal:
    """`mavera stream` with stdout on a pseudo-terminal of `rows` x `cols`."""

    def __init__(self, args: list[str], rows: int, cols: int, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # the bytes as written: LF stays LF
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mavera_cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env=mavera_env({"TERM": "xterm-256color", **env}),
        )
        os.close(slave)

    def output(self, timeout: float = 30) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                piece = os.read(self.master, 65536)
            except OSError:
                break
            if not piece:
                break
            data += piece
        assert self.proc.wait(10) == 0
        os.close(self.master)
        return data


def serve_paced(server: ScriptedServer, text: str, size: int = 3, pause: float = 0.002) -> None:
    deltas = [text[i : i + size] for i in range(0, len(text), size)]

    def handler(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(text_stream(deltas), pause=pause)

    server.script(handler)


def test_markdown_on_a_terminal_is_rendered(server: ScriptedServer) -> None:
    serve_paced(server, DOCUMENT)
    term = MarkdownTerminal(["stream", "--base-url", server.base_url, "hi"], 30, 80, {})
    drawn = term.output()
    screen = emulate(drawn, rows=30, cols=80)
    shown = "\n".join(screen)
    assert "## " not in shown and "# Weekly" not in shown
    assert "```" not in shown and "**" not in shown and "|------|" not in shown
    for word in re.findall(r"[A-Za-z]+", DOCUMENT):
        if word not in ("python",):  # the fence's language tag is not shown
            assert word in shown, word
    assert b"\x1b[1m" in drawn  # styled by rich: bold for the heading and **bold**


def test_a_long_answer_scrolls_and_shows_each_line_once_in_order(server: ScriptedServer) -> None:
    items = [f"- item {n:02d} of the list" for n in range(1, 31)]
    code = [f"code_{n:02d} = {n}" for n in range(1, 26)]
    text = "# Long\n\nIntro line.\n\n" + "\n".join(items) + "\n\n```\n" + "\n".join(code)
    text += "\n```\n\nLast line.\n"
    serve_paced(server, text, size=4, pause=0.001)
    term = MarkdownTerminal(["stream", "--base-url", server.base_url, "hi"], 20, 60, {})
    screen = emulate(term.output(), rows=20, cols=60)
    markers = [f"item {n:02d}" for n in range(1, 31)] + [f"code_{n:02d}" for n in range(1, 26)]
    markers = ["Long", "Intro line.", *markers, "Last line."]
    positions = []
    for marker in markers:
        hits = [index for index, line in enumerate(screen) if marker in line]
        assert len(hits) == 1, (marker, hits, screen)
        positions.append(hits[0])
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("flag", "env"),
    [("--raw", {}), (None, {"MAVERA_RAW": "1"}), (None, {"TERM": "dumb"})],
    ids=["--raw", "MAVERA_RAW", "TERM=dumb"],
)
def test_raw_on_a_terminal_is_the_plain_text(
    server: ScriptedServer, flag: str | None, env: dict[str, str]
) -> None:
    serve_paced(server, DOCUMENT, pause=0)
    args = ["stream", "--base-url", server.base_url, *([flag] if flag else []), "hi"]
    term = MarkdownTerminal(args, 30, 80, env)
    assert term.output() == DOCUMENT.encode()


HOSTILE = "hi \x1b]0;PWNED\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\r\x08 there\n\tok\r\nend\x1b"


@pytest.mark.parametrize(
    ("flag", "env"),
    [("--raw", {}), (None, {"TERM": "dumb"})],
    ids=["--raw", "TERM=dumb"],
)
def test_raw_on_a_terminal_keeps_a_servers_escape_sequences_off_it(
    server: ScriptedServer, flag: str | None, env: dict[str, str]
) -> None:
    """Retitling the window, writing the clipboard (OSC 52), clearing the screen: the plain
    text reached the terminal as sent. Line breaks and tabs stay; in a pipe, every byte."""
    serve_paced(server, HOSTILE, size=2, pause=0)
    args = ["stream", "--base-url", server.base_url, *([flag] if flag else []), "hi"]
    assert MarkdownTerminal(args, 30, 80, env).output() == b"hi  there\n\tok\nend\n"
    # However the pieces cut a sequence, none of it shows, and nothing else is lost.
    for size in (1, 2, 3, 7):
        screen = ScreenText()
        pieces = [HOSTILE[i : i + size] for i in range(0, len(HOSTILE), size)]
        assert "".join(map(screen.feed, pieces)) == "hi  there\n\tok\nend"
    serve_paced(server, HOSTILE, size=2, pause=0)
    piped = run_mavera(["stream", "--raw", "--base-url", server.base_url, "hi"])
    assert piped.stdout == HOSTILE.encode() + b"\n"


@pytest.mark.parametrize("entry", real_recordings(), ids=lambda entry: entry["file"])
def test_in_a_pipe_every_real_recording_is_the_plain_text(
    server: ScriptedServer, entry: dict
) -> None:
    data = entry["path"].read_bytes()

    def handler(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send(data + DONE)

    server.script(handler)
    text = entry["final_text"]
    expected = (text if not text or text.endswith("\n") else text + "\n").encode()
    # A terminal's TERM and no --raw: markdown would be drawn if stdout were a terminal.
    env = {"TERM": "xterm-256color", "COLUMNS": "80"}
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], env=env, expect=None)
    assert result.stdout == expected


def test_in_a_real_pipe_stdout_is_the_plain_text(server: ScriptedServer) -> None:
    serve_paced(server, DOCUMENT, pause=0)
    result = run_mavera(
        ["stream", "--base-url", server.base_url, "hi"],
        env={"TERM": "xterm-256color"},
        process=True,
    )
    assert result.stdout == DOCUMENT.encode()
