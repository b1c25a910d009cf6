"""Prompt assembly: piped stdin, then each `-f` file, then the words, joined by a blank line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mavera_cli.errors import UsageError

STDIN_WORD = "-"


def assemble_prompt(
    words: Sequence[str],
    files: Sequence[str],
    stdin: BinaryIO | None,
    stdin_is_tty: bool,
) -> str:
    """The prompt text, or a UsageError when there is none (never waits on a terminal)."""
    wants_stdin = STDIN_WORD in words
    words = [word for word in words if word != STDIN_WORD]
    parts: list[str] = []
    if stdin is not None and (wants_stdin or not stdin_is_tty):
        parts.append(_decode(stdin.read(), "standard input"))
    for name in files:
        parts.append(_read_file(name))
    if words:
        parts.append(_checked_words(words))
    # A part's own trailing newlines are dropped so that exactly one blank line separates parts.
    cleaned = [part.rstrip("\r\n") for part in parts]
    prompt = "\n\n".join(part for part in cleaned if part.strip())
    if not prompt:
        raise UsageError("no prompt: give words, pipe text on stdin, or use -f FILE")
    return prompt


def _checked_words(words: Sequence[str]) -> str:
    text = " ".join(words)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Python keeps undecodable argv bytes as lone surrogates (PEP 383); no API takes them.
        raise UsageError(
            f"the prompt words are not UTF-8 text (undecodable byte at character {exc.start})"
        ) from exc
    return text


def _read_file(name: str) -> str:
    if name == STDIN_WORD:
        raise UsageError("-f - is not supported: pipe the text on stdin instead")
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return _decode(data, name)


def _decode(data: bytes, where: str) -> str:
    try:
        # A byte order mark (Windows Notepad writes one) is not part of the text.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
