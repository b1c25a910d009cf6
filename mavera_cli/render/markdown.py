"""Markdown on a terminal, as it streams: finished blocks rendered once, the growing one shown
as plain text until it is finished.

Block boundaries are decided on the plain text, line by line: a blank line outside a fenced
code block, a closed fence, a heading line. A finished block is rendered with rich's Markdown
to the terminal's width and written once: nothing committed is ever redrawn, so an answer
longer than the screen scrolls like any output. The block still growing is drawn below it,
dimmed, as its last few rows only; it is erased and redrawn at most `REDRAW_INTERVAL` apart,
and erased for good when the block is committed. Erasing moves up as many rows as were drawn,
so every row is cut to fit the terminal's real width in cells (wide characters count two) and
drawn with autowrap off: the terminal never wraps a row behind the renderer's back. The work
per redraw is bounded by the region's size, whatever the length of the answer; rich renders
each block once.

Only for stdout on a terminal (`render/choose.py` decides); a pipe always gets the plain text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from io import StringIO
from typing import Any

from mavera_cli.errors import MaveraError
from mavera_cli.events import ResponseAccumulator
from mavera_cli.printable import terminal_safe
from mavera_cli.redact import KEY_MASK, Redactor, usable_secret
from mavera_cli.render import OutputSink
from mavera_cli.render.text import TextRenderer

# At most this many redraws of the growing block per second (each costs O(region), not O(answer)).
REDRAW_INTERVAL = 0.05
# The growing block shows at most this many rows (fewer on a short terminal).
TAIL_ROWS = 6
# Narrower than this, rich's list indents and code padding leave no room for the text itself:
# a finished block is shown as its plain text instead, so nothing is lost.
MIN_RENDER_WIDTH = 8
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}#{1,6}(?:\s|$)")
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_ERASE_LINE = "\x1b[K"
# Down a row, erase from there to the screen's end, back up. Not "erase below" from the top
# row: at the screen's top-left corner tmux takes that for a clear screen and scrolls the
# screen into its history (scroll-on-clear), keeping a copy of the growing block there.
_ERASE_ROWS_BELOW = "\x1b[B\x1b[J\x1b[A"
# DECAWM: while off, text reaching the right margin is clipped instead of wrapped.
_AUTOWRAP_OFF = "\x1b[?7l"
_AUTOWRAP_ON = "\x1b[?7h"


class BlockSplitter:
    """Cuts streamed text into finished markdown blocks; the rest is the growing block.

    `feed` takes text in any pieces and calls `on_block` with each block as it finishes.
    Only complete lines are examined, each once; the unfinished last line is kept as pieces.
    """

    def __init__(self, on_block: Callable[[str], None]) -> None:
        self._on_block = on_block
        self._block: list[str] = []  # complete lines of the growing block
        self._partial: list[str] = []  # pieces of its unfinished last line
        self._fence: str | None = None  # the open fence's marker (``` or ~~~, its length)

    def feed(self, text: str) -> None:
        if "\n" not in text:
            self._partial.append(text)
            return
        self._partial.append(text)
        lines = "".join(self._partial).split("\n")
        rest = lines.pop()  # the unfinished last line ("" after a newline)
        self._partial = [rest] if rest else []
        for line in lines:
            self._line(line)

    def end(self) -> None:
        """The text is complete: whatever is left is a finished block."""
        if self._partial:
            self._block.append("".join(self._partial))
            self._partial = []
        self._fence = None
        self._commit()

    def growing_lines(self, rows: int, width: int, margin: int = 0) -> list[str]:
        """The last lines of the growing block (at least enough for `rows` rows of `width`,
        and `margin` characters more of an unfinished line, which is cut there)."""
        lines = self._block[-rows:]
        budget = rows * max(width, 1) + margin
        tail: list[str] = []
        size = 0
        for piece in reversed(self._partial):  # an unfinished line can be very long
            tail.append(piece)
            size += len(piece)
            if size >= budget:
                break
        if self._partial:
            partial = "".join(reversed(tail))
            lines = [*lines, partial[-budget:]]
        return lines

    @property
    def growing(self) -> bool:
        return bool(self._block or self._partial)

    def _line(self, line: str) -> None:
        fence = self._fence
        if fence is not None:
            self._block.append(line)
            match = _FENCE.match(line)
            closes = match is not None and not line[match.end() :].strip()
            if (
                closes
                and match
                and match.group(1)[0] == fence[0]
                and len(match.group(1)) >= len(fence)
            ):
                self._fence = None
                self._commit()
            return
        match = _FENCE.match(line)
        if match:
            self._commit()  # a fence interrupts a paragraph
            self._fence = match.group(1)
            self._block.append(line)
            return
        if not line.strip():
            self._commit()
            return
        if _HEADING.match(line):
            self._commit()
            self._block.append(line)
            self._commit()
            return
        self._block.append(line)

    def _commit(self) -> None:
        if self._block:
            block, self._block = "\n".join(self._block), []
            self._on_block(block)


class MarkdownRenderer(TextRenderer):
    """Text mode for a terminal: the same deltas, drawn as rendered markdown."""

    def __init__(
        self,
        sink: OutputSink,
        *,
        width: int,
        height: int,
        color: bool = True,
        secret: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """`width` x `height` is the terminal's size; `size`, if given, reads it again before
        each drawing, so a terminal resized mid-answer is drawn at its new size."""
        super().__init__(sink, final_newline=False)
        self._size = size
        self._width = 1
        self._rows = 1
        self._resize(width, height)
        self._color = color
        self._redactor = Redactor(secret)
        self._key_length = len(usable_secret(secret) or "")
        self._clock = clock
        self._splitter = BlockSplitter(self._commit_block)
        # Cells of each row of the growing block on screen now (a blank separator row is 0).
        self._drawn: list[int] = []
        self._blocks = 0
        self._last_draw = 0.0
        self._console_buffer = StringIO()
        self._console = self._make_console()
        self._key_unmarked = _unmarked(usable_secret(secret) or "")

    def _resize(self, width: int, height: int) -> None:
        self._width = max(width, 1)
        self._rows = max(1, min(TAIL_ROWS, height - 2))

    def _measure(self) -> None:
        """Read the terminal's size again, if we can (it may have been resized)."""
        if self._size is None:
            return
        try:
            width, height = self._size()
        except (OSError, ValueError):  # stdout closed or no longer a terminal: keep the last
            return
        self._resize(width, height)

    def _make_console(self) -> Any:
        from rich.console import Console

        return Console(
            file=self._console_buffer,
            force_terminal=True,
            width=max(self._width, MIN_RENDER_WIDTH),
            no_color=not self._color,
            color_system="truecolor" if self._color else None,
            highlight=False,
            emoji=False,
        )

    def _masked_across_marks(self, source: str) -> str:
        """`source` with the key masked where markdown's marks stand between its characters
        (`**mvra_live**_SENTINEL…` holds no key, but shows one, with style codes inside it
        where no mask looks): the marks within the key, and next to it, go with it."""
        key = self._key_unmarked
        if not key or key not in _unmarked(source):  # (the common case, at C speed)
            return source
        kept: list[int] = []  # where each character of the unmarked source is in `source`
        last = 0
        for mark in _INLINE_MARKS.finditer(source):
            kept.extend(range(last, mark.start()))
            last = mark.end()
        kept.extend(range(last, len(source)))
        unmarked = "".join(source[place] for place in kept)
        found = unmarked.find(key)
        if found == -1:
            return source
        pieces: list[str] = []
        done = 0
        while found != -1:
            start, end = kept[found], kept[found + len(key) - 1] + 1
            while start > done and _INLINE_MARKS.fullmatch(source[start - 1]):
                start -= 1
            after = _INLINE_MARKS.match(source, end)
            while after is not None:
                end = after.end()
                after = _INLINE_MARKS.match(source, end)
            pieces += [source[done:start], KEY_MASK]
            done = end
            found = unmarked.find(key, found + len(key))
        pieces.append(source[done:])
        return "".join(pieces)

    def start(self, accumulator: ResponseAccumulator) -> None:
        self._splitter = BlockSplitter(self._commit_block)
        self._blocks = 0

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._splitter.feed(text)
        now = self._clock()
        if now - self._last_draw >= REDRAW_INTERVAL:
            self._last_draw = now
            self._draw_growing()

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._end()

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._end()  # what arrived stays on screen, rendered

    def _end(self) -> None:
        self.flush()
        self._splitter.end()
        self._erase_growing()
        self._sink.end()

    # --- drawing ---

    def _commit_block(self, block: str) -> None:
        from rich.markdown import Markdown

        self._measure()
        source = self._masked_across_marks(self._redactor.text(_safe_source(block)))
        if self._width < MIN_RENDER_WIDTH:
            rendered = "".join(_fit(line, self._width) + "\n" for line in source.split("\n"))
        else:
            buffer = self._console_buffer
            buffer.seek(0)
            buffer.truncate()
            self._console.width = self._width
            self._console.print(Markdown(source, code_theme="monokai", hyperlinks=False))
            rendered = buffer.getvalue()
        out = self._erase_sequence() + ("\n" if self._blocks else "") + rendered
        self._blocks += 1
        self._sink.write(out.encode("utf-8", "surrogatepass"))
        self._last_draw = 0.0  # the growing block below is drawn again at the next flush

    def _draw_growing(self) -> None:
        if not self._splitter.growing:
            return
        self._measure()
        # A key's length more than the screen shows: a key the cut falls in is whole in what
        # is masked (its tail alone would be shown, unmasked), and lies off the screen.
        lines = self._splitter.growing_lines(self._rows, self._width, self._key_length)
        rows = self._rows_of(lines)
        body = "\n".join(text for text, _ in rows)
        styled = f"{_DIM}{body}{_RESET}" if self._color else body
        prefix = "\n" if self._blocks and not self._drawn else ""
        # Autowrap off as well: should the terminal count a character wider than rich does
        # (an emoji sequence, an ambiguous-width symbol), the row is clipped, not wrapped.
        out = self._erase_sequence() + prefix + _AUTOWRAP_OFF + styled + _AUTOWRAP_ON
        self._drawn = ([0] if prefix else []) + [cells for _, cells in rows]
        self._sink.write(self._redactor.text(out).encode("utf-8", "surrogatepass"))

    def _erase_growing(self) -> None:
        self._measure()
        erase = self._erase_sequence()
        if erase:
            self._sink.write(erase.encode())

    def _erase_sequence(self) -> str:
        """Back to the start of the growing block's region, erasing it (empty if none)."""
        drawn, self._drawn = self._drawn, []
        if not drawn:
            return ""
        # Each row was drawn narrower than the width of the time. If the terminal has since
        # been made narrower, it re-flows (tmux, VTE, kitty, iTerm2, Windows Terminal) each
        # row longer than the new width onto several rows, the cursor with its text. (The
        # caller has just measured the terminal.)
        rows = sum(max(1, -(-cells // self._width)) for cells in drawn)
        if rows == 1:  # nothing below it (and it may be the screen's last row: no going down)
            return "\r" + _ERASE_LINE
        return f"\r\x1b[{rows - 1}A" + _ERASE_LINE + _ERASE_ROWS_BELOW

    def _rows_of(self, lines: list[str]) -> list[tuple[str, int]]:
        """The last screen rows these lines fill, with their cells; none wider than width-1
        (or 1 on a one-column terminal), so none ends in the pending-wrap state."""
        limit = max(self._width - 1, 1)
        rows: list[tuple[str, int]] = []
        for line in lines:
            # Masked before it is cut into rows: a key split over two rows is no longer whole.
            line = self._redactor.text(terminal_safe(line.replace("\t", "    ")))
            rows.extend(_chop(line, limit, self._width))
        return rows[-self._rows :]


# Markdown's inline marks (emphasis, code, links' brackets and targets, escapes): what may
# stand between the key's characters in the source and be gone on screen.
_INLINE_MARKS = re.compile(r"\]\([^)\s]*\)|[*_`~\[\]<>!\\]")


def _unmarked(text: str) -> str:
    return _INLINE_MARKS.sub("", text)


def _chop(line: str, limit: int, width: int) -> list[tuple[str, int]]:
    """`line` cut into rows of at most `limit` cells (a wide character that does not fit in
    what is left of a row starts the next one), each with its cells."""
    from rich.cells import get_character_cell_size

    rows: list[tuple[str, int]] = []
    row: list[str] = []
    cells = 0
    for char in line:
        size = get_character_cell_size(char)
        if size > width:  # two cells on a one-column terminal: it cannot be shown at all
            char, size = "?", 1
        if cells + size > limit and row:
            rows.append(("".join(row), cells))
            row, cells = [], 0
        row.append(char)
        cells += size
    rows.append(("".join(row), cells))
    return rows


def _fit(line: str, width: int) -> str:
    """`line` with every character the terminal can show in `width` columns."""
    if width >= 2:
        return line
    return "".join(text for text, _ in _chop(line, width, width))


def _safe_source(block: str) -> str:
    """The block without escape sequences or control characters (line by line: terminal_safe
    would join lines), tabs as four spaces."""
    return "\n".join(terminal_safe(line.replace("\t", "    ")) for line in block.split("\n"))
