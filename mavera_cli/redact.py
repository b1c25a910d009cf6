"""The one rule that keeps the API key out of everything written: stdout, stderr, captures.

`Redactor` masks whole values. `StreamRedactor` masks a stream written in pieces (one piece
per network read), where the key may be split across any two pieces. `mask_url_credentials`
masks the other secret a message can quote: the user-info of a URL (a proxy's password).
"""

from __future__ import annotations

import re

KEY_MASK = "***"
# Real keys are 32+ characters. A very short "key" (a test placeholder such as `x`) is not
# masked: replacing every `x` in the output would garble it and protect nothing.
MIN_MASKED_LENGTH = 8
# JSON escapes that can spell a key character in a form the plain-text mask never sees;
# `\"`, `\\` and `\/` matter only for a key that holds that character.
_ESCAPES_FOR_CHAR = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/"}


def usable_secret(secret: str | None) -> str | None:
    """The secret as masked (without surrounding whitespace, like the key that is sent), if
    it is long enough to be worth masking, else None."""
    secret = secret.strip() if secret else None
    return secret if secret and len(secret) >= MIN_MASKED_LENGTH else None


def json_escapes(secret: str | None) -> tuple[bytes, ...]:
    """The JSON escapes that could hide this secret in raw JSON text (none without one)."""
    usable = usable_secret(secret)
    if usable is None:
        return ()
    return (b"\\u", *(escape for char, escape in _ESCAPES_FOR_CHAR.items() if char in usable))


# The user-info of a URL (`scheme://user:password@host`), up to the authority's last `@`: a
# password, or a token given as the user name. Only a URL's authority can hold it (no `/`,
# `?` or `#` before the `@`).
_URL_USER_INFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")


def mask_url_credentials(text: str) -> str:
    """`text` with the user-info of every URL in it masked: `https://***@host/`."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_USER_INFO.sub(rf"\g<1>{KEY_MASK}@", text)


class Redactor:
    """Replaces the secret wherever it occurs; a no-op when there is no (real) secret."""

    __slots__ = ("_bytes", "_text")

    def __init__(self, secret: str | None = None) -> None:
        usable = usable_secret(secret)
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

    def contains(self, value: bytes) -> bool:
        """True if the secret is in `value`."""
        return self._bytes is not None and self._bytes in value


class StreamRedactor:
    """Masks the secret in a byte stream written in pieces, wherever the pieces split it.

    `feed` returns what is safe to write now: everything but the longest tail that is a
    proper prefix of the secret, which is held until the next piece shows whether the secret
    goes on. `end` returns the held tail (the stream ended, so it was not the secret).
    Without a (real) secret both return their input at once.
    """

    __slots__ = ("_first", "_held", "_mask", "_secret", "_window")

    def __init__(self, secret: str | None = None) -> None:
        usable = usable_secret(secret)
        self._secret = usable.encode() if usable else b""
        self._mask = KEY_MASK.encode()
        self._first = self._secret[:1]
        # A tail that could still become the secret is shorter than the secret itself.
        self._window = len(self._secret) - 1
        self._held = b""

    @property
    def active(self) -> bool:
        """False when there is no secret to mask: callers may skip the redactor entirely."""
        return bool(self._secret)

    def feed(self, data: bytes) -> bytes:
        """What of `held + data` can be written now, the secret masked."""
        secret = self._secret
        if not secret:
            return data
        if self._held:
            data = self._held + data
            self._held = b""
        if secret in data:
            data = data.replace(secret, self._mask)
        # Only the last len(secret)-1 bytes can start an unfinished secret, and such a start
        # is a copy of the secret's first byte: look there first, compare only where it is.
        first = self._first
        position = data.find(first, max(0, len(data) - self._window))
        while position != -1:
            if secret.startswith(data[position:]):
                self._held = data[position:]
                return data[:position]
            position = data.find(first, position + 1)
        return data

    def end(self) -> bytes:
        """The held tail: the stream ended before it could become the secret."""
        held, self._held = self._held, b""
        return held
