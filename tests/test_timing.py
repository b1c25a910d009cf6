"""--timing: the one stderr line, against a server that pauses; the recorder's arithmetic;
and paced replay of a trace, timed on a pipe."""

from __future__ import annotations

import json
import re
import select
import time
from pathlib import Path

from tests.conftest import run_mavera, start_mavera
from tests.scripted_server import text_stream

LINE = re.compile(
    r"^mavera: timing: headers (?P<headers>[\d.]+)s, first event (?P<event>[\d.]+)s, "
    r"first delta (?P<delta>[\d.]+)s, total (?P<total>[\d.]+)s, (?P<deltas>\d+) deltas "
    r"\(.*\), (?P<chars>\d+) chars \(.*\), longest gap (?P<gap>[\d.]+)s after event "
    r"(?P<after>\d+) \((?P<type>[^)]+)\)",
    re.M,
)


def test_timing_line_shows_the_longest_gap_where_the_server_paused(server) -> None:
    events = text_stream(["Hel", "lo ", "there"])

    def handler(exchange, wire) -> None:
        wire.head()
        wire.send(b"".join(events[:5]))  # created, in_progress, item, 2 deltas
        time.sleep(0.6)
        wire.send(b"".join(events[5:]))

    server.script(handler)
    result = run_mavera(["stream", "--timing", "--base-url", server.base_url, "hi"])
    assert result.stdout == b"Hello there\n"
    match = LINE.search(result.stderr)
    assert match, result.stderr
    assert int(match["deltas"]) == 3 and int(match["chars"]) == len("Hello there")
    assert (int(match["after"]), match["type"]) == (5, "response.output_text.delta")
    assert 0.5 <= float(match["gap"]) <= 3
    assert float(match["total"]) >= float(match["gap"])
    assert float(match["headers"]) <= float(match["event"]) <= float(match["delta"])


def test_timing_is_printed_after_a_failure_and_not_with_quiet(server) -> None:
    server.script(lambda exchange, wire: (wire.head(), wire.send(b"".join(text_stream(["x"])[:4]))))
    failed = run_mavera(["stream", "--timing", "--base-url", server.base_url, "hi"], expect=7)
    timing = [line for line in failed.stderr.splitlines() if "timing:" in line]
    assert len(timing) == 1 and "1 deltas" in timing[0] and "total " in timing[0]
    assert "mavera: error:" in failed.stderr
    quiet = run_mavera(["stream", "-q", "--timing", "--base-url", server.base_url, "hi"], expect=7)
    assert quiet.stderr == ""


def test_recorder_counts_fast_path_deltas_and_slow_events_alike() -> None:
    from mavera_cli.timing import TimingRecorder

    now = [0.0]
    recorder = TimingRecorder(lambda: now[0], keep_gaps=True)
    recorder.on_request("POST", "u", 1)
    now[0] = 0.1
    recorder.on_response(200, ())
    now[0] = 0.2
    recorder.on_read(b"")
    recorder.on_event("response.created", 1)  # then 2 deltas by the fast path
    recorder.on_read_done(3, 4)
    now[0] = 1.2
    recorder.on_read(b"")
    recorder.on_event("response.output_text.delta", 4)  # a delta by the slow path
    recorder.on_event("response.completed", 5)
    recorder.on_read_done(5, 6)
    recorder.on_end(None)
    figures = recorder.figures
    assert (figures.to_headers, figures.to_first_event, figures.to_first_delta) == (0.1, 0.2, 0.2)
    assert (figures.events, figures.deltas, figures.chars) == (5, 3, 6)
    stall = figures.longest_gap
    assert stall is not None
    assert (stall.after_event, stall.event_type) == (3, "response.output_text.delta")
    assert abs(stall.seconds - 1.0) < 1e-9
    assert figures.deltas_per_s == 3 / 1.0
    # Gaps: 2 inside the first read, 1 between reads, 1 inside the second read.
    assert figures.gap_percentiles() == {
        "p50": 0.0,
        "p90": stall.seconds,
        "p99": stall.seconds,
        "max": stall.seconds,
    }


def write_trace(path: Path, reads: list[tuple[float, bytes]]) -> None:
    lines = [
        {"type": "mavera.request", "t": 0, "method": "POST", "url": "u", "body_bytes": 1},
        {"type": "mavera.response", "t": 0.01, "status": 200, "headers": {}},
        *({"type": "mavera.read", "t": t, "data": data.decode()} for t, data in reads),
        {"type": "mavera.end", "t": reads[-1][0], "exit_code": 0, "error": None, "message": None},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def arrival_times(args: list[str]) -> tuple[float, list[tuple[float, bytes]]]:
    """Run mavera with stdout a pipe; (time to start, [(seconds after start, bytes)])."""
    started = time.monotonic()
    proc = start_mavera([*args])
    pieces: list[tuple[float, bytes]] = []
    assert proc.stdout is not None
    while True:
        select.select([proc.stdout], [], [], 10)
        piece = proc.stdout.read1(65536)
        if not piece:
            break
        pieces.append((time.monotonic() - started, piece))
    assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    return started, pieces


def test_paced_replay_keeps_the_recorded_rhythm_on_a_pipe(tmp_path: Path) -> None:
    events = text_stream(["first ", "second"])
    trace = tmp_path / "paced.trace"
    # The first read came 0.6 s after the request, the second 0.6 s later.
    write_trace(trace, [(0.6, b"".join(events[:4])), (1.2, b"".join(events[4:]))])
    _, pieces = arrival_times(["replay", "--pace", "original", str(trace)])
    first = next(t for t, data in pieces if b"first" in data)
    second = next(t for t, data in pieces if b"second" in data)
    assert first >= 0.6  # the wait before the first read is re-created
    assert 0.45 <= second - first <= 2.0
    _, fast = arrival_times(["replay", "--pace", "4", str(trace)])
    first = next(t for t, data in fast if b"first" in data)
    second = next(t for t, data in fast if b"second" in data)
    assert 0.1 <= second - first <= 0.45  # 0.6 s at four times the speed: 0.15 s
    unpaced = run_mavera(["replay", str(trace)])
    assert unpaced.stdout == b"first second\n"


def test_pace_on_a_raw_capture_is_a_usage_error(tmp_path: Path) -> None:
    capture = tmp_path / "raw.sse"
    capture.write_bytes(b"".join(text_stream(["x"])))
    result = run_mavera(["replay", "--pace", "original", str(capture)], expect=2)
    assert "--pace needs a trace" in result.stderr
    bad = run_mavera(["replay", "--pace", "0", str(capture)], expect=2)
    assert "--pace takes" in bad.stderr
