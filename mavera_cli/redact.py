"""The one rule that keeps the API key out of everything written: stdout, stderr, captures.

`Redactor` masks whole values. `StreamRedactor` masks a stream written in pieces (one piece
per network read), where the key may be split across any two pieces. Both also mask the key
spelled with JSON escapes (`\\u0073ome-…`, as a server's JSON may write any character), so
raw JSON (NDJSON lines, captures, traces) never carries a spelling that decodes to the key,
and the JSON stays valid (the mask replaces whole characters). `mask_url_credentials`
masks the other secret a message can quote: the user-info of a URL (a proxy's password).
"""

from __future__ import annotations

import re

KEY_MASK = "***"
# Real keys are 32+ characters. A very short "key" (a test placeholder such as `x`) is not
# masked: replacing every `x` in the output would garble it and protect nothing.
MIN_MASKED_LENGTH = 8


def usable_secret(secret: str | None) -> str | None:
    """The secret as masked (without surrounding whitespace, like the key that is sent), if
    it is long enough to be worth masking, else None."""
    secret = secret.strip() if secret else None
    return secret if secret and len(secret) >= MIN_MASKED_LENGTH else None


# The user-info of a URL (`scheme://user:password@host`), up to the authority's last `@`: a
# password, or a token given as the user name. Only a URL's authority can hold it (no `/`,
# `?` or `#` before the `@`).
_URL_USER_INFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")


def mask_url_credentials(text: str) -> str:
    """`text` with the user-info of every URL in it masked: `https://***@host/`."""
    if "@" not in text or "://" not in text:
        return text
    return _URL_USER_INFO.sub(rf"\g<1>{KEY_MASK}@", text)


_BACKSLASH = 0x5C
_SHORT_ESCAPES = frozenset(b'"\\/')  # the characters JSON may also write as \" \\ \/
_PARTIAL = 0  # what KeySpelling.match returns when the data ends inside a spelling
_NO_MATCH = -1


class _KeySpellings:
    """The ways JSON text may spell the key: any of its characters as `\\u0073` (either case
    of hex), or as `\\/`, `\\"`, `\\\\` for those characters."""

    __slots__ = ("_at", "_markers", "_spelling_bytes", "_spelling_set", "secret")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._at: dict[int, list[int]] = {}  # each character's places in the key
        for index, char in enumerate(secret):
            self._at.setdefault(char, []).append(index)
        # Every byte a spelling may hold: a spelling ends where the data ends in these only.
        self._spelling_bytes = bytes(set(secret) | set(b"\\u0123456789abcdefABCDEF"))
        self._spelling_set = frozenset(self._spelling_bytes)
        # The escapes that can spell one of its characters (most JSON escapes, `\\n` and
        # `\\"`, cannot: text without these is passed over at C speed).
        self._markers = (b"\\u", *(b"\\" + bytes([c]) for c in _SHORT_ESCAPES if c in secret))

    def may_hide(self, data: bytes) -> bool:
        """Whether `data` holds an escape that could spell one of the key's characters."""
        if b"\\u" in data:
            return True
        return len(self._markers) > 1 and any(marker in data for marker in self._markers)

    def may_end_inside(self, data: bytes) -> bool:
        """Whether `data` may end inside a spelling (a cheap look at its last byte)."""
        return bool(data) and data[-1] in self._spelling_set

    def match(self, data: bytes, start: int) -> int:
        """The length of a spelling of the key at `start`: _PARTIAL if the data ends inside
        one, _NO_MATCH if there is none."""
        end = len(data)
        at = start
        for want in self.secret:
            if at >= end:
                return _PARTIAL
            byte = data[at]
            if byte == want and byte != _BACKSLASH:
                at += 1
                continue
            if byte != _BACKSLASH:
                return _NO_MATCH
            if at + 1 >= end:
                return _PARTIAL
            kind = data[at + 1]
            if kind == 0x75:  # \uXXXX
                digits = data[at + 2 : at + 6].lower()
                if digits != (b"%04x" % want)[: len(digits)]:
                    return _NO_MATCH
                if len(digits) < 4:
                    return _PARTIAL
                at += 6
            elif kind == want and want in _SHORT_ESCAPES:
                at += 2
            else:
                return _NO_MATCH
        return at - start

    def escaped_spans(self, data: bytes) -> list[tuple[int, int]]:
        """The spans of `data` that spell the key with at least one escape, in order.

        Such a spelling holds a backslash that spells one of the key's characters, after
        that character's literal prefix of the key: only those places are tried.
        """
        spans: list[tuple[int, int]] = []
        done = 0  # spans do not overlap
        slash = data.find(b"\\")
        while slash != -1:
            for index in self._at.get(_escape_char(data, slash), ()):
                start = slash - index
                if start < done or data[start:slash] != self.secret[:index]:
                    continue
                if _escaped(data, start):
                    continue
                length = self.match(data, start)
                if length > 0:
                    spans.append((start, start + length))
                    done = start + length
                    break
            slash = data.find(b"\\", max(slash + 2, done))
        return spans

    def unfinished(self, data: bytes, escaped_start: bool) -> int | None:
        """Where the earliest spelling of the key that `data` ends inside of starts; with
        `escaped_start`, data[0] is escaped by what came before it."""
        # It lies in the tail made of spelling bytes only (most reads end in other bytes).
        lowest = len(data.rstrip(self._spelling_bytes))
        for position in range(lowest, len(data)):
            byte = data[position]
            if byte != self.secret[0] and byte != _BACKSLASH:
                continue
            if escaped_start if position == 0 else _escaped(data, position):
                continue
            if self.match(data, position) == _PARTIAL:
                return position
        return None


def _escaped(data: bytes, position: int) -> bool:
    """Whether the byte at `position` is itself escaped (an odd run of backslashes before it):
    then it cannot start a spelling."""
    run = 0
    while position - run > 0 and data[position - run - 1] == _BACKSLASH:
        run += 1
    return run % 2 == 1


def _escape_char(data: bytes, slash: int) -> int:
    """The ASCII character the escape at `slash` spells, or -1."""
    kind = data[slash + 1 : slash + 2]
    if kind == b"u":
        digits = data[slash + 2 : slash + 6]
        if len(digits) == 4 and digits[:2] == b"00" and digits.isalnum():
            try:
                return int(digits, 16)
            except ValueError:
                return -1
        return -1
    return kind[0] if kind and kind[0] in _SHORT_ESCAPES else -1


def _masked_spans(data: bytes, spans: list[tuple[int, int]], mask: bytes) -> bytes:
    if not spans:
        return data
    parts = []
    last = 0
    for start, end in spans:
        parts.append(data[last:start])
        parts.append(mask)
        last = end
    parts.append(data[last:])
    return b"".join(parts)


class Redactor:
    """Replaces the secret wherever it occurs, also spelled with JSON escapes (a server's
    JSON may write any character as `\\u0073`); a no-op when there is no (real) secret."""

    __slots__ = ("_bytes", "_spellings", "_text")

    def __init__(self, secret: str | None = None) -> None:
        usable = usable_secret(secret)
        self._text = usable
        self._bytes = usable.encode() if usable else None
        self._spellings = _KeySpellings(self._bytes) if self._bytes else None

    def text(self, value: str) -> str:
        if self._text is None:
            return value
        if self._text in value:
            value = value.replace(self._text, KEY_MASK)
        if "\\" in value:
            value = self.data(value.encode("utf-8", "surrogatepass")).decode(
                "utf-8", "surrogatepass"
            )
        return value

    def data(self, value: bytes) -> bytes:
        if self._bytes is None or self._spellings is None:
            return value
        if self._bytes in value:
            value = value.replace(self._bytes, KEY_MASK.encode())
        if self._spellings.may_hide(value):
            value = _masked_spans(value, self._spellings.escaped_spans(value), KEY_MASK.encode())
        return value


def header_name_redactor(secret: str | None) -> Redactor:
    """For header names, which httpx gives lower-cased: the key in one is lower-cased too."""
    return Redactor(secret.lower() if secret else None)


class StreamRedactor:
    """Masks the secret in a byte stream written in pieces, wherever the pieces split it, and
    however its JSON spells it (plain, or with escapes).

    `feed` returns what is safe to write now: everything but the longest tail that could
    still become the secret, which is held until the next piece shows whether it does.
    `end` returns the held tail (the stream ended, so it was not the secret). Without a
    (real) secret both return their input at once.
    """

    __slots__ = ("_held", "_mask", "_odd_slashes", "_secret", "_spellings")

    def __init__(self, secret: str | None = None) -> None:
        usable = usable_secret(secret)
        self._secret = usable.encode() if usable else b""
        self._spellings = _KeySpellings(self._secret)
        self._mask = KEY_MASK.encode()
        self._held = b""
        # Whether what was written so far ends in an odd run of backslashes: the next
        # piece then starts escaped.
        self._odd_slashes = False

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
        if self._spellings.may_hide(data):
            prefix = b"\\" if self._odd_slashes else b""
            spans = self._spellings.escaped_spans(prefix + data)
            if spans:
                shift = len(prefix)
                spans = [(start - shift, end - shift) for start, end in spans]
                data = _masked_spans(data, spans, self._mask)
        if self._spellings.may_end_inside(data):
            position = self._spellings.unfinished(data, self._odd_slashes)
            if position is not None:
                self._held = data[position:]
                data = data[:position]
        self._note_written(data)
        return data

    def _note_written(self, data: bytes) -> None:
        if not data:
            return
        if data[-1] != _BACKSLASH:
            self._odd_slashes = False
            return
        run = len(data) - len(data.rstrip(b"\\"))
        if run == len(data):
            self._odd_slashes = self._odd_slashes != (run % 2 == 1)
        else:
            self._odd_slashes = run % 2 == 1

    def end(self) -> bytes:
        """The held tail: the stream ended before it could become the secret."""
        held, self._held = self._held, b""
        self._note_written(held)
        return held
