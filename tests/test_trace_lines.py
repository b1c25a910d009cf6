"""`mavera.read` lines: any chunk of bytes round-trips exactly, as text or as base64."""

from __future__ import annotations

import base64
import io
import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from mavera_cli.trace import read_trace
from mavera_cli.tracelog import read_line

# Characters that need care in a JSON string or in UTF-8: quotes, backslashes, controls, DEL,
# U+2028/U+2029 (line separators to JavaScript, not to JSON), two-, three- and four-byte forms.
_AWKWARD = '"\\\n\r\t\x00\x01\x1f\x7f\u2028\u2029é€😀/'
_texts = st.text(alphabet=st.sampled_from(_AWKWARD) | st.characters(codec="utf-8"), max_size=200)


@st.composite
def chunks(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or UTF-8 text cut at any byte (often inside a character)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    encoded = draw(_texts).encode("utf-8")
    start = draw(st.integers(0, len(encoded)))
    end = draw(st.integers(start, len(encoded)))
    return encoded[start:end]


def _template_line(t: float, data: bytes) -> bytes:
    """The line as the first trace writer spelt it (decode, then splice orjson's string)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return b'{"type":"mavera.read","t":%s,"b64":"%s"}\n' % (
            orjson.dumps(t),
            base64.b64encode(data),
        )
    return b'{"type":"mavera.read","t":%s,"data":%s}\n' % (orjson.dumps(t), orjson.dumps(text))


@settings(max_examples=400)
@given(data=chunks(), t=st.floats(0, 1e6, allow_nan=False).map(lambda x: round(x, 6)))
def test_a_read_line_gives_back_its_bytes_exactly(data: bytes, t: float) -> None:
    line = read_line(t, data)
    # One line: every newline inside the data is escaped.
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert list(record)[:2] == ["type", "t"] and record["type"] == "mavera.read"
    assert record["t"] == t
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert base64.b64decode(record["b64"], validate=True) == data and "data" not in record
    else:
        assert record["data"] == text and "b64" not in record
    # The same bytes the writer has always written, so old and new traces read alike.
    assert line == _template_line(t, data)


@settings(max_examples=100)
@given(pieces=st.lists(chunks(), max_size=8))
def test_a_trace_of_any_reads_reads_back_as_the_same_bytes(pieces: list[bytes]) -> None:
    request = {"type": "mavera.request", "t": 0, "method": "POST", "url": "u", "body_bytes": 0}
    lines = [json.dumps(request).encode() + b"\n"]
    lines += [read_line(0.5 + i, piece) for i, piece in enumerate(pieces)]
    trace = read_trace(io.BytesIO(b"".join(lines)), "t.trace")
    assert not trace.torn_line
    assert [data for _, data in trace.attempts[0].reads] == pieces
