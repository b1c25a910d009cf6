"""Server text made safe to show on a terminal: no escape sequences, no control characters.

A persona name, an error message or a redirect target comes from the server. On a terminal,
an embedded escape sequence could recolour the screen, retitle the window, move the cursor or
hide text (ECMA-48), and bidirectional overrides can make text read differently from what it
is. Product bytes in a pipe are never passed through here: they stay exactly as received.
Only the standard library is imported: every layer may use this.
"""

from __future__ import annotations

import re
import unicodedata

# ECMA-48 sequences, removed whole so that no half of one (`[31m`) is left on screen:
# CSI (ESC [ or C1 0x9B) parameters, intermediates, final byte; OSC/DCS/SOS/PM/APC strings up
# to BEL or ST (or the end: a terminal would swallow the rest); any other ESC + one character.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# What starts a string (OSC, DCS, SOS, PM, APC), which ends with BEL or ST.
_STRING_INTRODUCERS = frozenset(
    ["\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x90", "\x98", "\x9d", "\x9e", "\x9f"]
)
# An unfinished sequence longer than this is dropped rather than held for the next piece.
_LONGEST_HELD_SEQUENCE = 4096
# Explicit bidirectional embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE_CONTROLS = frozenset("\t\n\r\v\f")


def terminal_safe(text: str) -> str:
    """`text` without escape sequences or control characters; line breaks and tabs become
    spaces, so one value stays on one line of a table or message."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    if text.isprintable():
        return text  # the common case: nothing else to look at
    return "".join(_safe_character(character) for character in text)


def screen_safe(text: str) -> str:
    """Text of many lines for a terminal (the plain answer with --raw): as `terminal_safe`,
    but its line breaks and tabs stay (a CR, which could overwrite what was shown, goes: a
    CRLF, even cut between two pieces, is a line break)."""
    if text.isprintable():
        return text
    return "\n".join(
        "\t".join(terminal_safe(part) for part in line.split("\t"))
        for line in text.replace("\r", "").split("\n")
    )


class ScreenText:
    """`screen_safe` for text that arrives in pieces (a stream's deltas): an escape sequence
    cut between two pieces is held until it ends, then removed whole, so no half of one is
    shown as text. One that never ends is never shown."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        if self._held:
            text, self._held = self._held + text, ""
        if "\x1b" in text or not text.isascii():  # (C1 introducers are not ASCII)
            start = _unfinished_sequence(text)
            if start is not None:
                if len(text) - start <= _LONGEST_HELD_SEQUENCE:
                    self._held = text[start:]
                text = text[:start]
        return screen_safe(text)


def _unfinished_sequence(text: str) -> int | None:
    """Where an escape sequence that `text` ends inside of starts."""
    last = None
    for last in _ESCAPE_SEQUENCE.finditer(text):  # noqa: B007 (the last one is wanted)
        pass
    if last is None or last.end() != len(text):
        return None
    sequence = last.group()
    if sequence[:2] == "\x1b[" or sequence[0] == "\x9b":  # CSI: ends with its final byte
        finished = len(sequence) > (2 if sequence[0] == "\x1b" else 1) and (
            "@" <= sequence[-1] <= "~"
        )
    elif sequence[:2] in _STRING_INTRODUCERS or sequence[0] in _STRING_INTRODUCERS:
        finished = len(sequence) > 2 and sequence.endswith(("\x07", "\x1b\\", "\x9c"))
    else:  # ESC and one character
        finished = len(sequence) == 2
    return None if finished else last.start()


def _safe_character(character: str) -> str:
    if character in _WHITESPACE_CONTROLS:
        return " "
    if character in _BIDI_CONTROLS or unicodedata.category(character) == "Cc":
        return ""
    return character
