"""Streaming redaction and atomic captures, in-process: every split point, every path."""

from __future__ import annotations

import io
import itertools
import json
import os
import resource
import signal
from pathlib import Path

import pytest

from mavera_cli.capture import CaptureWriter
from mavera_cli.errors import OutputFailedError
from mavera_cli.redact import KEY_MASK, Redactor, StreamRedactor, mask_url_credentials
from mavera_cli.render import OutputSink
from tests.chunking import bytewise, every_split, random_splits
from tests.conftest import TEST_KEY

KEY = TEST_KEY.encode()
MASK = KEY_MASK.encode()


def streamed(secret: str, pieces: list[bytes]) -> tuple[bytes, list[bytes]]:
    """All a StreamRedactor writes for `pieces`, and what it wrote after each one."""
    redactor = StreamRedactor(secret)
    outputs = [redactor.feed(piece) for piece in pieces]
    outputs.append(redactor.end())
    return b"".join(outputs), outputs


def every_two_cuts(data: bytes) -> list[list[bytes]]:
    return [
        [data[:i], data[i:j], data[j:]]
        for i, j in itertools.combinations_with_replacement(range(len(data) + 1), 2)
    ]


STREAMS = {
    "key in text": (TEST_KEY, b"before " + KEY + b" after"),
    "key repeated": (TEST_KEY, KEY + KEY + b"x" + KEY),
    "key start, not the key": (TEST_KEY, b"a " + KEY[:20] + b"!" + KEY[:5] + b" b"),
    "ends in the key's start": (TEST_KEY, b"text " + KEY[:-1]),
    "overlapping prefixes": ("abababab", b"xababababababababyabababa"),
    "overlapping, key inside": ("aabaabaaab", b"aabaabaabaabaaabaabaaab"),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_cut_in_two_and_three_masks_like_the_whole(name: str) -> None:
    secret, data = STREAMS[name]
    expected = data.replace(secret.encode(), MASK)
    for pieces in [*every_split(data), *every_two_cuts(data), bytewise(data)]:
        written, outputs = streamed(secret, pieces)
        assert written == expected, pieces
        assert secret.encode() not in b"".join(outputs[:-1]) + outputs[-1]


def test_random_cuts_of_a_long_stream() -> None:
    data = b"".join(
        b"delta %d " % i + (KEY if i % 3 == 0 else KEY[: i % len(KEY)]) for i in range(300)
    )
    for seed in range(20):
        written, _ = streamed(TEST_KEY, random_splits(data, seed, max_size=30))
        assert written == data.replace(KEY, MASK)


def test_only_a_real_start_of_the_key_is_held() -> None:
    redactor = StreamRedactor(TEST_KEY)
    assert redactor.feed(b"I am") == b"I a"  # "m" may start the key
    assert redactor.feed(b"x") == b"mx"
    assert redactor.feed(b"mvx") == b"mvx"  # "mv" + "x" cannot be the key
    assert redactor.feed(b"hello mvra_") == b"hello "
    assert redactor.feed(b"nope") == b"mvra_nope"  # the held tail was not the key
    assert redactor.feed(KEY[:-1]) == b""
    assert redactor.end() == KEY[:-1]
    assert redactor.end() == b""


def test_without_a_key_pieces_pass_through_untouched() -> None:
    for secret in (None, "", "short"):  # a placeholder too short to be a real key
        redactor = StreamRedactor(secret)
        piece = b"short m"
        assert not redactor.active
        assert redactor.feed(piece) is piece
        assert redactor.end() == b""


def escaped(text: str, which: str = "all", upper: bool = False) -> bytes:
    """`text` as JSON may spell it: every character (or every other one) as `\\uXXXX`."""
    form = "\\u%04X" if upper else "\\u%04x"
    return "".join(
        form % ord(char) if which == "all" or index % 2 else char for index, char in enumerate(text)
    ).encode()


SLASHED_KEY = 'mvra/live"quoted"/back\\slash9'  # a key with the characters JSON escapes short
SPELLED = {
    "every character escaped": (TEST_KEY, b'{"delta":"a ' + escaped(TEST_KEY) + b' b"}'),
    "every other one": (TEST_KEY, b'{"delta":"' + escaped(TEST_KEY, "odd") + b'"}'),
    "upper-case hex": (TEST_KEY, b'{"delta":"' + escaped(TEST_KEY, upper=True) + b'"}'),
    "one escape, at the end": (TEST_KEY, b'["' + KEY[:-1] + escaped(TEST_KEY[-1]) + b'"]'),
    "short escapes": (SLASHED_KEY, b'{"k":"' + json.dumps(SLASHED_KEY).encode()[1:-1] + b'"}'),
    "short escapes of slashes": (
        SLASHED_KEY,
        b'{"k":"' + json.dumps(SLASHED_KEY).encode()[1:-1].replace(b"/", b"\\/") + b'"}',
    ),
    "twice, and plain": (TEST_KEY, b'["' + escaped(TEST_KEY) + KEY + escaped(TEST_KEY) + b'"]'),
}


@pytest.mark.parametrize("name", list(SPELLED))
def test_the_key_spelled_with_json_escapes_is_masked_across_every_cut(name: str) -> None:
    """A server's JSON may write any character of the key as an escape: raw JSON written
    (NDJSON, captures, traces) must not decode to the key, and must stay valid JSON."""
    secret, data = SPELLED[name]
    assert secret in decoded_text(data)  # the data does spell the key
    expected = Redactor(secret).data(data)
    assert secret not in decoded_text(expected) and MASK in expected
    cuts = [*every_split(data), bytewise(data), *(random_splits(data, n, 9) for n in range(40))]
    for pieces in cuts:
        written, _ = streamed(secret, pieces)
        assert written == expected, pieces


def decoded_text(data: bytes) -> str:
    """Every string in a JSON text, decoded, one after another."""
    value = json.loads(data)
    if isinstance(value, dict):
        value = list(value.values())
    return " ".join(value)


def test_a_spelling_of_the_key_that_is_only_text_is_left_alone() -> None:
    # An escaped backslash and then "u0073…": the text is `\u0073ome-…`, not the key.
    text = b'{"delta":"\\\\' + escaped(TEST_KEY)[1:] + b'"}'
    assert Redactor(TEST_KEY).data(text) == text
    for pieces in every_split(text):
        assert streamed(TEST_KEY, pieces)[0] == text
    # (A cut right after the escaped backslash: the next piece starts escaped.)
    assert streamed(TEST_KEY, [text[:12], text[12:]])[0] == text
    assert Redactor(TEST_KEY).text(text.decode()) == text.decode()
    assert Redactor(TEST_KEY).text(escaped(TEST_KEY).decode()) == KEY_MASK


class Pipe(io.BytesIO):
    """A stdout that counts writes and flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().write(data)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://user:pw@host/v1", "https://***@host/v1"),
        ("proxy URL('ht!tp://u:p@[::1')", "proxy URL('ht!tp://***@[::1')"),
        ("http://u:p@ss@host/x", "http://***@host/x"),  # up to the authority's last @
        ("https://t0ken@a.b and socks5://u:v@c:1", "https://***@a.b and socks5://***@c:1"),
        ("http://host/path@v2?q=a@b#c@d", "http://host/path@v2?q=a@b#c@d"),  # not user-info
        ("write to me@example.com", "write to me@example.com"),
    ],
)
def test_url_user_info_is_masked_wherever_a_message_quotes_a_url(text: str, masked: str) -> None:
    assert mask_url_credentials(text) == masked


def test_output_sink_masks_across_writes_and_ends_with_the_held_tail() -> None:
    pipe = Pipe()
    sink = OutputSink(pipe, TEST_KEY)
    with sink:
        for piece in (b"one ", KEY[:7], KEY[7:] + b" two ", b"mvra"):
            sink.write(piece)
        assert pipe.getvalue() == b"one *** two "
    assert pipe.getvalue() == b"one *** two mvra"
    assert b"" not in pipe.writes  # nothing is written when everything is held


def test_output_sink_without_a_key_writes_every_piece_at_once() -> None:
    pipe = Pipe()
    sink = OutputSink(pipe)
    sink.write(b"m")
    assert pipe.writes == [b"m"]
    sink.mask(TEST_KEY)
    sink.write(b"a " + KEY[:3])
    sink.mask(TEST_KEY)  # a new mask first writes out what the old one held
    assert pipe.getvalue() == b"ma " + KEY[:3]


# --- CaptureWriter ------------------------------------------------------------------------------


def attempt(writer: CaptureWriter, *chunks: bytes) -> None:
    writer.start_attempt()
    for chunk in chunks:
        writer.write(chunk)
    writer.close()


def test_capture_masks_a_key_split_between_reads(tmp_path: Path) -> None:
    path = tmp_path / "raw.sse"
    data = b'data: {"delta":"' + KEY + b'"}\n\n'
    for pieces in every_split(data):
        attempt(CaptureWriter(str(path), TEST_KEY), *pieces)
        assert path.read_bytes() == data.replace(KEY, MASK)
    assert os.listdir(tmp_path) == ["raw.sse"]


def test_an_attempt_without_a_byte_leaves_the_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "raw.sse"
    path.write_bytes(b"old")
    writer = CaptureWriter(str(path), TEST_KEY)
    attempt(writer)
    assert path.read_bytes() == b"old"
    attempt(writer, b"new ", KEY[:4])  # the held tail is written before the rename
    assert path.read_bytes() == b"new " + KEY[:4]
    assert os.listdir(tmp_path) == ["raw.sse"]


def test_a_failing_write_leaves_the_old_capture(tmp_path: Path) -> None:
    path = tmp_path / "raw.sse"
    path.write_bytes(b"old")
    writer = CaptureWriter(str(path), None)
    writer.start_attempt()
    writer.write(b"new")
    # A real write error: files may not grow past 16 KiB (EFBIG, as a full disk fails).
    previous_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, previous_limit[1]))
    try:
        with pytest.raises(OutputFailedError):
            writer.write(b"x" * 64 * 1024)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_signal)
    writer.close()
    assert path.read_bytes() == b"old"  # a cut-short capture does not replace a whole one
    assert os.listdir(tmp_path) == ["raw.sse"]


def test_an_unwritable_folder_is_a_usage_error(tmp_path: Path) -> None:
    from mavera_cli.errors import UsageError

    writer = CaptureWriter(str(tmp_path / "missing" / "raw.sse"), None)
    with pytest.raises(UsageError, match=r"cannot write .*missing/raw\.sse"):
        writer.start_attempt()
