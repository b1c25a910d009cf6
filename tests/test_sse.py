"""The SSE decoder against the WHATWG rules, at every split point and under any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mavera_cli.sse import SSEDecoder, SSEEvent
from tests.chunking import bytewise, every_split, random_splits, to_cr, to_crlf


def decode(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


def ev(data: bytes, event: str = "message", id: str | None = None, retry: int | None = None):
    return SSEEvent(event, data, id, retry)


def test_whatwg_example_1_stock_ticker_multiline_data() -> None:
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert decode([stream]) == [ev(b"YHOO\n+2\n10")]


def test_whatwg_example_2_comment_and_id_persists() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n\n"
    )
    assert decode([stream]) == [
        ev(b"first event", id="1"),
        ev(b"second event", id=""),
        ev(b" third event", id=""),
    ]


def test_whatwg_example_3_empty_data_and_unfinished_event_dropped() -> None:
    stream = b"data\n\ndata\ndata\n\ndata:"
    assert decode([stream]) == [ev(b""), ev(b"\n")]


def test_whatwg_example_4_one_leading_space_removed() -> None:
    stream = b"data:test\n\ndata: test\n\n"
    assert decode([stream]) == [ev(b"test"), ev(b"test")]


def test_event_name_and_blank_event_without_data_dispatches_nothing() -> None:
    stream = b"event: ping\n\nevent: response.created\ndata: {}\n\n"
    assert decode([stream]) == [ev(b"{}", event="response.created")]


@pytest.mark.parametrize("convert", [lambda b: b, to_crlf, to_cr], ids=["lf", "crlf", "cr"])
def test_line_endings_at_every_split_point(convert) -> None:
    stream = convert(b"event: a\ndata: x\n\n: comment\ndata: y\ndata: z\n\n")
    expected = [ev(b"x", event="a"), ev(b"y\nz")]
    assert decode([stream]) == expected
    for chunks in every_split(stream):
        assert decode(chunks) == expected, chunks
    assert decode(bytewise(stream)) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_break() -> None:
    assert decode([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [ev(b"a"), ev(b"b")]


def test_leading_bom_is_stripped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    assert decode([stream]) == [ev(b"x")]
    for chunks in every_split(stream):
        assert decode(chunks) == [ev(b"x")]
    assert decode(bytewise(stream)) == [ev(b"x")]


def test_only_the_first_bom_is_stripped() -> None:
    assert decode([b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"]) == [ev(b"a")]


def test_multibyte_utf8_split_across_reads_is_kept_whole() -> None:
    stream = 'data: {"delta":"héllo ✓ 🎉"}\n\n'.encode()
    for chunks in every_split(stream):
        assert decode(chunks) == [ev('{"delta":"héllo ✓ 🎉"}'.encode())]


def test_unicode_line_separators_are_not_line_breaks() -> None:
    stream = "data: a\u2028b\u0085c\x0bd\x0ce\n\n".encode()
    assert decode([stream]) == [ev("a\u2028b\u0085c\x0bd\x0ce".encode())]


def test_id_with_nul_is_ignored_and_retry_needs_digits() -> None:
    stream = b"id: 7\nretry: 1500\ndata: a\n\nid: x\x00y\nretry: 12a\ndata: b\n\n"
    assert decode([stream]) == [ev(b"a", id="7", retry=1500), ev(b"b", id="7", retry=1500)]


def test_unfinished_event_at_eof_is_dropped_and_reported_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut") == [ev(b"complete")]
    assert decoder.pending
    assert decoder.flush() == []


def test_unknown_fields_and_lines_without_colon_are_ignored() -> None:
    assert decode([b"foo: bar\nbaz\ndata: x\n\n"]) == [ev(b"x")]


def test_done_marker_is_just_data_here() -> None:
    assert decode([b"data: [DONE]\n\n"]) == [ev(b"[DONE]")]


def test_large_event_arriving_in_many_pieces() -> None:
    payload = b"x" * (3 * 1024 * 1024)
    stream = b"data: " + payload + b"\n\n"
    assert decode(random_splits(stream, seed=1, max_size=65536)) == [ev(payload)]


# --- properties -----------------------------------------------------------------------------

field_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["", "response.created", "x"]),
        st.lists(field_values, min_size=1, max_size=3),
    ),
    max_size=8,
)


def serialize(events: list[tuple[str, list[str]]], newline: bytes) -> bytes:
    out = b""
    for name, lines in events:
        if name:
            out += b"event: " + name.encode() + newline
        for line in lines:
            out += b"data: " + line.encode() + newline
        out += newline
    return out


@settings(max_examples=200, deadline=None)
@given(
    events=events_strategy,
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    seed=st.integers(0, 10**6),
)
def test_any_chunking_gives_the_same_events_as_the_whole(events, newline, seed) -> None:
    stream = serialize(events, newline)
    whole = decode([stream])
    assert decode(random_splits(stream, seed=seed, max_size=7)) == whole
    assert [e.data.decode() for e in whole] == ["\n".join(lines) for _, lines in events]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), seed=st.integers(0, 10**6))
def test_arbitrary_bytes_never_raise(data, seed) -> None:
    whole = decode([data])
    assert decode(random_splits(data, seed=seed, max_size=5)) == whole


# --- cutting long lines of events the caller does not need ------------------------------


def decode_truncating(chunks: list[bytes], keep: int = 16) -> list[SSEEvent]:
    decoder = SSEDecoder(truncate={"big"}, keep=keep)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


LONG_STREAM = (
    b"event: big\ndata: " + b'{"status":"done","text":"' + b"x" * 500 + b'"}\n\n'
    b"event: small\ndata: " + b"y" * 100 + b"\n\n"
    b"event: big\ndata: short\n\n"
)


def test_long_data_of_a_truncatable_event_is_cut_and_marked() -> None:
    for chunks in [random_splits(LONG_STREAM, seed=seed, max_size=9) for seed in range(30)]:
        events = decode_truncating(chunks)
        assert [(e.event, e.truncated) for e in events] == [
            ("big", True),
            ("small", False),
            ("big", False),
        ]
        assert events[0].data == (b'data: {"status":"done"')[:16][6:]  # the line's first bytes
        assert events[1].data == b"y" * 100  # other events keep everything
        assert events[2].data == b"short"


def test_a_long_line_arriving_whole_is_kept() -> None:
    # Only lines that pile up across reads are cut: memory is bounded by the read size then.
    assert decode_truncating([LONG_STREAM])[0].truncated is False


@settings(max_examples=100, deadline=None)
@given(events=events_strategy, seed=st.integers(0, 10**6))
def test_truncation_never_changes_events_it_was_not_asked_about(events, seed) -> None:
    stream = serialize(events, b"\n")
    decoder = SSEDecoder(truncate={"unused-name"}, keep=1)
    got = [e for chunk in random_splits(stream, seed=seed, max_size=3) for e in decoder.feed(chunk)]
    assert got == decode([stream])
