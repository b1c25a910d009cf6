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
from rich.cells import get_character_cell_size

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
    out: io.BytesIO,
    clock: Iterator[float],
    *,
    secret: str | None = None,
    width: int = 60,
    color: bool = False,
) -> MarkdownRenderer:
    return MarkdownRenderer(
        OutputSink(out, secret),  # type: ignore[arg-type]
        width=width,
        height=20,
        color=color,
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


@pytest.mark.parametrize(
    "source",
    [
        f"see **{TEST_KEY[:9]}**{TEST_KEY[9:]} end",  # bold, then the rest
        f"see [{TEST_KEY[:10]}](http://a){TEST_KEY[10:]} end",  # a link's text, then the rest
        f"see `{TEST_KEY[:12]}`{TEST_KEY[12:]} end",  # code, then the rest
    ],
    ids=["emphasis", "link", "code"],
)
def test_the_key_is_not_shown_between_styles(source: str) -> None:
    """`**mvra_live**_SENTINEL…` holds no key, but is one on screen, where style codes stand
    between its characters and no mask looks: such a block is drawn without styles."""
    out = io.BytesIO()
    clock = iter(float(n) for n in range(10**6))
    renderer = _renderer(out, clock, secret=TEST_KEY, width=100, color=True)
    renderer.start(ResponseAccumulator())
    renderer.write_text(f"{source}\n\nnext **bold** block")
    renderer.finish(ResponseAccumulator())
    drawn = out.getvalue().decode()
    shown = "".join(emulate(out.getvalue(), rows=20, cols=100))
    assert TEST_KEY not in shown and "see *** end" in shown
    assert "\x1b[1m" in drawn  # the next block still has its styles


def test_the_growing_block_masks_the_key_before_cutting_it_into_rows() -> None:
    """On a narrow terminal the unfinished paragraph is cut into rows: a key over two rows
    was drawn whole, a line break apart."""
    out = io.BytesIO()
    renderer = _renderer(out, iter(float(n) for n in range(10**6)), secret=TEST_KEY, width=30)
    renderer.start(ResponseAccumulator())
    renderer.write_text("see this: ")
    renderer.write_text(f"{TEST_KEY} end")  # no blank line: still growing
    drawn = out.getvalue()
    assert TEST_KEY.encode() not in re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\r|\n", b"", drawn)
    assert b"***" in drawn


# --- a terminal emulator just big enough for what is drawn: text (wide characters take two
# columns), CR/LF, cursor up/down, erase, autowrap on/off, and a resize that re-flows ---

_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([ -/]*)([@-~])|\x1b[()78=>][0-9A-Za-z]?|\r|\n|[^\x1b\r\n]")


def emulate(
    data: bytes, *, rows: int, cols: int, resizes: list[tuple[int, int]] | None = None
) -> list[str]:
    """Every line ever on screen (scrollback included) after `data` is drawn, as xterm would:
    the cursor cannot go above the screen's top, so what scrolled off stays as it was. As
    tmux does, "erase below" from the screen's top-left corner first scrolls the screen into
    the scrollback (scroll-on-clear), and `resizes` ((byte offset, new width), in order)
    re-flow every line longer than the new width onto several rows, the cursor with them."""
    lines: list[list[str]] = [[]]  # a wide character is its glyph, then "" for its 2nd column
    row = col = 0
    autowrap = True
    text = data.decode("utf-8", "replace")
    cuts = [
        (len(data[:offset].decode("utf-8", "replace")), width) for offset, width in resizes or []
    ]
    for match in _TOKEN.finditer(text):
        while cuts and match.start() >= cuts[0][0]:
            cols = cuts.pop(0)[1]
            lines, row, col = _reflow(lines, row, col, cols)
        token = match.group(0)
        top = max(0, len(lines) - rows)
        if token == "\r":
            col = 0
        elif token == "\n":  # a terminal's default ONLCR: a line feed returns the carriage
            row, col = row + 1, 0
            if row == len(lines):
                lines.append([])
        elif match.group(3):
            final, params = match.group(3), match.group(1)
            count = int(params) if params.isdigit() else (1 if final in "AB" else 0)
            if params == "?7" and final in "hl":  # DECAWM
                autowrap = final == "h"
            elif final == "A":
                row = max(row - count, top)
            elif final == "B":
                row = min(row + count, max(len(lines), rows) - 1)
                lines.extend([] for _ in range(row + 1 - len(lines)))
            elif final == "J":
                if row == top and col == 0 and any(lines[top:]):  # tmux's scroll-on-clear
                    lines.append([])
                    row = len(lines) - 1
                del lines[row][col:]
                del lines[row + 1 :]
            elif final == "K":
                lines[row] = [] if count == 2 else lines[row][:col]
        elif not token.startswith("\x1b"):
            size = get_character_cell_size(token)
            if col + size > cols:
                if autowrap:  # xterm wraps when the next character comes
                    row, col = row + 1, 0
                    if row == len(lines):
                        lines.append([])
                else:  # clipped: it lands in the last column(s)
                    col = max(cols - size, 0)
            line = lines[row]
            line.extend(" " * (col + size - len(line)))
            line[col : col + size] = [token] + [""] * (size - 1)
            col += size
    return ["".join(line).rstrip() for line in lines]


def _reflow(
    lines: list[list[str]], row: int, col: int, cols: int
) -> tuple[list[list[str]], int, int]:
    """The lines re-flowed to `cols` columns (longer ones split; none joined), and the cursor."""
    flowed: list[list[str]] = []
    for index, line in enumerate(lines):
        pieces = [line[start : start + cols] for start in range(0, len(line), cols)] or [[]]
        if index == row:
            # Just past a piece's end, the cursor stays on its row, pending a wrap (as tmux).
            pending = col and col % cols == 0 and col >= len(line)
            extra = (col - 1) // cols if pending else col // cols
            row, col = len(flowed) + extra, col - extra * cols
            pieces.extend([] for _ in range(extra + 1 - len(pieces)))
        flowed.extend(pieces)
    return flowed, row, col


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


NARROW = (
    "You said: alpha beta gamma delta epsilon\n\n"
    "日本語の文章 and 😀😀 then supercalifragilistic, a word wider than the screen. The end.\n"
)


def drawn_at_once(text: str, rows: int, cols: int) -> list[str]:
    """The screen when the whole answer arrives in one piece: each block drawn once, at once."""
    out = io.BytesIO()
    renderer = _renderer(out, iter([0.0] * 1000), width=cols)
    renderer.start(ResponseAccumulator())
    renderer.write_text(text)
    renderer.finish(ResponseAccumulator())
    return emulate(out.getvalue(), rows=rows, cols=cols)


@pytest.mark.parametrize("cols", [1, 2, 5, 10, 11, 12, 13, 20])
def test_on_a_narrow_terminal_each_line_is_drawn_once(server: ScriptedServer, cols: int) -> None:
    """The growing block is redrawn many times (2 characters every 30 ms) and wraps, holds
    wide characters (2 columns) and a word longer than the width: what stays on screen, the
    scrollback included, is the answer as if drawn at once, no earlier state of it left."""
    serve_paced(server, NARROW, size=2, pause=0.03)
    term = MarkdownTerminal(["stream", "--base-url", server.base_url, "hi"], 8, cols, {})
    drawn = term.output()
    assert drawn.count(b"\r") > 10  # back to the growing block's start, to draw it again
    screen = emulate(drawn, rows=8, cols=cols)
    assert screen == drawn_at_once(NARROW, rows=8, cols=cols)
    # ... and that is the whole answer, once (one column cannot show a 2-column character).
    shown = "".join(screen).replace(" ", "")
    expected = NARROW if cols > 1 else re.sub(r"[日本語の文章😀]", "?", NARROW)
    assert shown == re.sub(r"\s", "", expected)


@pytest.mark.parametrize("widths", [(20, 11, 6, 3, 30), (12, 2, 9)], ids=str)
def test_a_terminal_resized_mid_answer_is_drawn_at_its_new_width(
    widths: tuple[int, ...],
) -> None:
    """The size is read again before each drawing; a terminal made narrower re-flows the rows
    already drawn (tmux, VTE, kitty), and the erase counts the rows they now take."""
    out = io.BytesIO()
    width = [widths[0]]
    renderer = MarkdownRenderer(
        OutputSink(out),  # type: ignore[arg-type]
        width=widths[0],
        height=40,
        color=False,
        clock=iter(float(n) for n in range(10**6)).__next__,
        size=lambda: (width[0], 40),
    )
    renderer.start(ResponseAccumulator())
    words = [f"w{n:02d}" for n in range(60)]
    resizes = []
    for n, word in enumerate(words):
        if n and n % (len(words) // len(widths)) == 0 and len(resizes) < len(widths) - 1:
            width[0] = widths[len(resizes) + 1]
            resizes.append((len(out.getvalue()), width[0]))
        renderer.write_text(word + ("\n\n" if n % 25 == 24 else " "))
    renderer.finish(ResponseAccumulator())
    assert len(resizes) == len(widths) - 1
    screen = emulate(out.getvalue(), rows=40, cols=widths[0], resizes=resizes)
    assert "".join(screen).replace(" ", "") == "".join(words)


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
