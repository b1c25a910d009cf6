"""The one rule that keeps the API key out of everything written: stdout, stderr, captures."""

from __future__ import annotations

KEY_MASK = "***"
# Real keys are 32+ characters. A very short "key" (a test placeholder such as `x`) is not
# masked: replacing every `x` in the output would garble it and protect nothing.
MIN_MASKED_LENGTH = 8


class Redactor:
    """Replaces the secret wherever it occurs; a no-op when there is no (real) secret."""

    __slots__ = ("_bytes", "_text")

    def __init__(self, secret: str | None = None) -> None:
        usable = secret if secret and len(secret) >= MIN_MASKED_LENGTH else None
        self._text = usable
        self._bytes = usable.encode() if usable else None

    def text(self, value: str) -> str:
        if self._text is not None and self._text in value:
            return value.replace(self._text, KEY_MASK)
        return value

    def data(self, value: bytes) -> bytes:
        if self._bytes is not None and self._bytes in value:
            return value.replace(self._bytes, KEY_MASK.encode())
        return value
