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


def _safe_character(character: str) -> str:
    if character in _WHITESPACE_CONTROLS:
        return " "
    if character in _BIDI_CONTROLS or unicodedata.category(character) == "Cc":
        return ""
    return character
