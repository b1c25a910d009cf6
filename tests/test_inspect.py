"""mavera inspect: every real recording, synthetic oddities, bad input, and the JSON keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import one_line_error, real_recordings, run_mavera
from tests.scripted_server import DONE, sse_event, text_stream

MANIFEST = real_recordings()
CONTRACT_KEYS = {
    "outcome",
    "bytes",
    "done_marker",
    "events_by_type",
    "sequence",
    "unknown_types",
    "malformed_lines",
    "name_mismatches",
    "usage",
}
TIMING_KEYS = {
    "to_headers",
    "to_first_event",
    "to_first_delta",
    "total",
    "deltas_per_s",
    "chars_per_s",
    "gaps",
    "longest_stalls",
}


def inspect_json(path: Path, expect: int | None = None) -> tuple[dict, int]:
    result = run_mavera(["inspect", "--json", str(path)], expect=expect)
    assert len(result.stdout.splitlines()) == 1  # one JSON object, one line
    return json.loads(result.stdout), result.code


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"].removesuffix(".sse"))
def test_every_recording_matches_its_manifest_and_replays_exit_code(entry) -> None:
    data, code = inspect_json(entry["path"])
    assert code == run_mavera(["replay", str(entry["path"])], expect=None).code
    assert code == run_mavera(["replay", "--events", str(entry["path"])], expect=None).code
    assert data["outcome"]["exit_code"] == code
    assert data["outcome"]["terminal_event"] == (entry["terminal_event"] or None)
    assert data["bytes"] == entry["byte_length"]
    assert data["events_by_type"] == entry["event_type_counts"]
    assert sum(data["events_by_type"].values()) == entry["event_count"]
    assert data["done_marker"] == entry["ends_with_done"]
    assert len(data["name_mismatches"]) == entry["event_name_mismatches"]
    numbers = entry["sequence_numbers"]
    sequence = data["sequence"]
    if numbers["present"]:
        assert (sequence["first"], sequence["last"]) == (numbers["first"], numbers["last"])
    contiguous = not (sequence["gaps"] or sequence["repeats"] or sequence["out_of_order"])
    assert contiguous == numbers["contiguous"]
    assert data["malformed_lines"] == []
    if entry["usage"] is not None:
        assert {k: v for k, v in data["usage"].items() if k != "credits_used"} == entry["usage"]
        assert "credits_used" in data["usage"]


def test_the_report_has_the_contract_keys_and_a_capture_has_no_timing() -> None:
    data, _ = inspect_json(MANIFEST[0]["path"])
    assert set(data) >= CONTRACT_KEYS
    assert set(data["outcome"]) >= {"terminal_event", "exit_code", "error"}
    assert set(data["sequence"]) >= {"gaps", "repeats", "out_of_order"}
    assert "timing" not in data


def test_sequence_unknown_types_malformed_mismatches_and_done(tmp_path: Path) -> None:
    def ev(kind: str, number: int, name: str | None = None, **fields) -> bytes:
        return sse_event({"type": kind, "sequence_number": number, **fields}, name)

    body = b"".join(
        [
            ev("response.created", 0),
            ev("response.output_text.delta", 1, delta="a"),
            ev("response.output_text.delta", 3, delta="b"),  # 2 is missing
            ev("response.output_text.delta", 3, delta="c"),  # a repeat
            ev("response.shiny_new_thing", 5),  # unknown type; 4 is missing
            ev("response.output_text.delta", 4, delta="d"),  # backwards
            ev("response.output_text.delta", 6, "response.in_progress", delta="e"),  # mismatch
            ev(
                "response.completed",
                7,
                response={"status": "completed", "usage": {"total_tokens": 3}},
            ),
            b"data: {not json\n\n",  # after the end: reported, but replay never reads it
            DONE,
        ]
    )
    capture = tmp_path / "odd.sse"
    capture.write_bytes(body)
    data, code = inspect_json(capture, expect=0)
    assert code == run_mavera(["replay", str(capture)]).code == 0
    sequence = data["sequence"]
    assert sequence["gaps"] == [
        {"event": 3, "after": 1, "next": 3},
        {"event": 5, "after": 3, "next": 5},
    ]
    assert sequence["repeats"] == [{"event": 4, "number": 3}]
    assert sequence["out_of_order"] == [{"event": 6, "number": 4, "after": 5}]
    assert data["unknown_types"] == {"response.shiny_new_thing": 1}
    assert data["name_mismatches"] == [
        {"event": 7, "event_name": "response.in_progress", "type": "response.output_text.delta"}
    ]
    assert data["malformed_lines"] == [{"event": 9, "data": "{not json"}]
    assert data["done_marker"] is True
    assert data["events_after_end"] == 0  # the malformed one is not an event
    assert data["usage"] == {"credits_used": None, "total_tokens": 3}


def test_a_malformed_event_before_the_end_exits_11_like_replay(tmp_path: Path) -> None:
    capture = tmp_path / "bad.sse"
    capture.write_bytes(
        b"".join(text_stream(["x"])[:3]) + b"data: {oops\n\n" + text_stream(["x"])[-2]
    )
    data, code = inspect_json(capture)
    replayed = run_mavera(["replay", str(capture)], expect=None)
    assert code == replayed.code == 11
    assert data["outcome"]["error"] == "invalid_output"


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01\x02\xff\xfe" * 100, b"just some notes\nnothing to see\n"],
    ids=["empty", "binary", "other-text"],
)
def test_a_file_that_is_neither_trace_nor_sse_is_unreadable_input(tmp_path: Path, content) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    result = run_mavera(["inspect", str(path)], expect=2)
    one_line_error(result.stderr, "no SSE event and no trace line")
    assert result.stdout == b""


def test_a_missing_file_is_unreadable_input(tmp_path: Path) -> None:
    result = run_mavera(["inspect", str(tmp_path / "nope.sse")], expect=2)
    one_line_error(result.stderr, "cannot read", "nope.sse")


def test_a_capture_cut_mid_event_still_reports_what_it_holds(tmp_path: Path) -> None:
    body = b"".join(text_stream(["a", "b"]))
    capture = tmp_path / "cut.sse"
    capture.write_bytes(body[: body.index(b"response.completed") + 30])
    data, code = inspect_json(capture)
    assert code == run_mavera(["replay", str(capture)], expect=None).code == 7
    assert data["outcome"]["terminal_event"] is None
    assert any("inside an event" in note for note in data["notes"])


def test_inspect_reads_stdin(tmp_path: Path) -> None:
    body = MANIFEST[0]["path"].read_bytes()
    result = run_mavera(["inspect", "-"], stdin=body, expect=None)
    assert json.loads(result.stdout)["bytes"] == len(body)


def test_a_live_trace_gives_timing_with_the_pauses(server, tmp_path: Path) -> None:
    import time

    events = text_stream(["a", "b", "c"])

    def handler(exchange, wire) -> None:
        wire.head()
        time.sleep(0.2)  # before the first byte
        wire.send(b"".join(events[:4]))  # created … first delta
        time.sleep(0.5)  # the stall, after event 4
        wire.send(b"".join(events[4:]))

    server.script(handler)
    trace = tmp_path / "run.trace"
    run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    data, _code = inspect_json(trace, expect=0)
    timing = data["timing"]
    assert set(timing) >= TIMING_KEYS
    assert set(timing["gaps"]) == {"p50", "p90", "p99", "max"}
    assert 0.15 <= timing["to_first_event"] - timing["to_headers"] <= 3
    stall = timing["longest_stalls"][0]
    assert stall["after_event"] == 4 and stall["event_type"] == "response.output_text.delta"
    assert 0.4 <= stall["seconds"] <= 3
    assert timing["gaps"]["max"] == stall["seconds"]
    assert timing["gaps"]["p50"] < 0.4
    assert timing["total"] >= timing["to_first_event"] + 0.4
    assert data["attempts"] == 1 and data["recorded"] == {"exit_code": 0, "error": None}


def test_the_terminal_table_and_chart() -> None:
    from mavera_cli.inspect import inspect_file
    from mavera_cli.render.inspect import arrivals_chart, table_text
    from mavera_cli.timing import TimingFigures

    text = table_text(inspect_file(str(MANIFEST[0]["path"])))
    assert "outcome" in text and "response.completed" in text
    chart = arrivals_chart(TimingFigures(total=1.0, arrivals=[(0.0, 1), (0.5, 4), (0.99, 1)]), 10)
    bars = chart.splitlines()[0].split("|")[1]
    assert len(bars) == 10 and bars[5] == "█" and bars[1] == " "


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"].removesuffix(".sse"))
def test_inspect_of_a_live_trace_agrees_with_what_stream_did(server, entry, tmp_path: Path) -> None:
    from tests.chunking import random_splits

    data = entry["path"].read_bytes()
    chunks = random_splits(data, seed=len(data), max_size=301)

    def handler(exchange, wire) -> None:
        wire.head()
        wire.send_chunks(chunks)

    server.script(handler)
    trace, capture = tmp_path / "run.trace", tmp_path / "run.sse"
    args = ["--trace", str(trace), "--save-raw", str(capture), "--base-url", server.base_url]
    streamed = run_mavera(["stream", *args, "hi"], expect=None)
    from_trace, code = inspect_json(trace)
    from_capture, capture_code = inspect_json(capture)
    assert code == capture_code == streamed.code
    assert from_trace["recorded"]["exit_code"] == streamed.code
    for key in ("outcome", "bytes", "events_by_type", "sequence", "usage", "done_marker"):
        assert from_trace[key] == from_capture[key], key
    assert from_trace["timing"]["to_first_event"] is not None


def test_a_long_closing_event_is_folded_as_replay_folds_it(tmp_path: Path) -> None:
    # replay (as stream) cuts a long line of a closing event short and never parses it: a
    # malformed one does not fail there, so inspect must not fail on it either. Its sequence
    # number is still read from the head that was kept.
    events = text_stream(["a"])
    long_done = (
        b'event: response.output_text.done\ndata: {"type":"response.output_text.done",'
        b'"sequence_number":4,"text":"' + b"x" * 300_000 + b"\n\n"  # no closing quote/brace
    )
    capture = tmp_path / "long.sse"
    capture.write_bytes(b"".join(events[:4]) + long_done + b"".join(events[5:]))
    data, code = inspect_json(capture)
    assert code == run_mavera(["replay", str(capture)], expect=None).code == 0
    assert data["events_by_type"]["response.output_text.done"] == 1
    assert data["sequence"]["gaps"] == [] and data["sequence"]["last"] == 5
    assert data["malformed_lines"] == []
