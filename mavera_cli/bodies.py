"""Response bodies read aside from the event stream: a whole JSON body with every number
kept, and an error body, bounded and decoded per its Content-Encoding (httpx's raw reads do
not decode, and a gzip bomb must stay small).
"""

from __future__ import annotations

import zlib
from typing import Any

import httpx

from mavera_cli.errors import InvalidOutputError
from mavera_cli.jsonin import strict_loads
from mavera_cli.observe import StreamObserver

MAX_ERROR_BODY = 64 * 1024  # enough for any error message; an HTML page is cut short
# A whole (not streamed) answer: `ask`'s Response, the persona list, the usage report. A
# model's longest answer is well under a megabyte; a body that decodes past this (a gzip
# bomb, a server that never stops) is not read further.
MAX_RESPONSE_BODY = 64 * 1024 * 1024
# The content codings mavera can undo: zlib's, always there (httpx decodes these in a body;
# br and zstd need optional packages, and an error body is decoded here, bounded).
_ZLIB_WBITS = {"gzip": (zlib.MAX_WBITS | 16,), "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}


def exact_json(body: bytes) -> Any:
    """`body` parsed as JSON, every number kept (orjson makes floats of big integers and
    refuses 1e400); None if it is not JSON."""
    try:
        return strict_loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def content_encodings(response: httpx.Response) -> list[str]:
    """The body's content codings, in the order applied (identity left out)."""
    values = response.headers.get_list("content-encoding", split_commas=True)
    return [value for value in (v.strip().lower() for v in values) if value not in ("", "identity")]


def check_encoding(response: httpx.Response) -> None:
    """A body in a coding httpx would pass through undecoded is unusable: say so."""
    for encoding in content_encodings(response):
        if encoding not in _ZLIB_WBITS:
            raise InvalidOutputError(
                f"the server sent its response with Content-Encoding: {encoding}, which "
                "mavera cannot decode"
            )


def read_error_body(response: httpx.Response, observer: StreamObserver | None) -> bytes:
    """At most MAX_ERROR_BODY bytes of an error body, decoded per its Content-Encoding (the
    limit bounds the decoded size: a gzip bomb stays small); a line saying why in its place
    when it cannot be decoded. `observer` hears the body as one read."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass  # the status already says what happened; the body is only decoration
    raw = b"".join(chunks)[:MAX_ERROR_BODY]
    encodings = content_encodings(response)
    body = decoded(raw, encodings) if raw else raw
    if observer is not None and raw:
        observer.on_read(raw if body is None else body)
    if body is None:
        coding = ", ".join(encodings)
        return f"a body with Content-Encoding: {coding}, which mavera could not decode".encode()
    return body


def decoded(data: bytes, encodings: list[str]) -> bytes | None:
    """`data` with its content codings undone (the last applied first), at most
    MAX_ERROR_BODY bytes of it; None if it cannot be."""
    for encoding in reversed(encodings):
        for wbits in _ZLIB_WBITS.get(encoding, ()):
            try:
                data = zlib.decompressobj(wbits).decompress(data, MAX_ERROR_BODY)
                break
            except zlib.error:
                continue  # "deflate" is also sent raw, without its zlib header
        else:
            return None
    return data
