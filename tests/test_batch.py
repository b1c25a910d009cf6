"""`mavera batch` end to end against real loopback servers: the built-in mock (a real sliding
window, per-prompt faults, request counts per input) and the scripted server.

Runs in this process (`run_mavera`): the real `entry.main`, real sockets. Requests are counted
at the server, never inferred from the client.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mavera_cli.client import MaveraClient
from mavera_cli.config import Settings
from mavera_cli.mock import MockServer
from mavera_cli.mock.ratelimit import SlidingWindow, WindowState
from tests.conftest import mavera_env, one_line_error, run_mavera
from tests.scripted_server import Exchange, ScriptedServer, Wire, text_stream
from tests.test_sessions import FUNCTIONS


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with MockServer() as server:
        yield server


def results(data: bytes) -> list[dict[str, Any]]:
    """Every line of a results stream, each a whole JSON object."""
    lines = data.decode().splitlines()
    return [json.loads(line) for line in lines]


def write_items(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


RESULT_KEYS = {
    "id",
    "index",
    "persona_id",
    "exit_code",
    "error",
    "message",
    "status",
    "response_id",
    "usage",
    "attempts",
    "elapsed_s",
}


def test_every_item_once_with_the_contract_keys_and_at_most_j_in_flight(
    tmp_path: Path,
) -> None:
    prompts = [f"prompt number {n}" for n in range(24)]
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(prompts[:12]) + "\n\n" + "\n".join(prompts[12:]) + "\n")
    with MockServer(think_ms=30) as server:
        result = run_mavera(["batch", "--lines", str(source), "-j", "3"], env=_at(server))
        peak = server.in_flight_peak
        seen = dict(server.inputs_seen)
    lines = results(result.stdout)
    assert len(lines) == 24
    assert all(set(line) == RESULT_KEYS | {"text"} for line in lines)
    assert {line["text"] for line in lines} == {f"You said: {p}" for p in prompts}
    assert seen == {p: 1 for p in prompts}, "each item is requested exactly once"
    assert 1 < peak <= 3, f"in flight at once: {peak}"
    # The id is the line number (the blank line counted); index counts items only.
    by_text = {line["text"]: line for line in lines}
    assert by_text["You said: prompt number 12"]["id"] == "14"
    assert by_text["You said: prompt number 12"]["index"] == 12
    assert all(line["exit_code"] == 0 and line["error"] is None for line in lines)
    assert all(line["usage"]["credits_used"] == 1 and line["attempts"] == 1 for line in lines)
    assert "batch: 24 to run: 24 ok" in result.stderr


FAULT_CODES = {
    "none": (0, None, 1),
    "rate-limit": (5, "rate_limited", 2),
    "server-error": (8, "server_error", 2),
    "drop-after:2": (7, "partial_stream", 2),  # broke mid-stream: retried, nothing was written
    "stall-after:2": (6, "timeout", 2),
    "failed": (10, "not_completed", 1),
    "incomplete": (10, "not_completed", 1),
    "bad-json": (11, "invalid_output", 1),
}


def test_every_fault_kind_in_one_batch_gives_valid_lines_and_exit_13(
    tmp_path: Path, mock: MockServer
) -> None:
    items = [{"id": kind, "input": f"ask mock-fault:{kind}"} for kind in FAULT_CODES]
    source = write_items(tmp_path / "items.jsonl", items)
    out = tmp_path / "results.jsonl"
    args = ["batch", str(source), "-j", "8", "-o", str(out), "--retries", "1", "--timeout", "0.5"]
    result = run_mavera(args, env=_at(mock), expect=13)
    assert result.stdout == b"", "with -o, stdout carries nothing"
    lines = results(out.read_bytes())
    assert len(lines) == len(FAULT_CODES)
    for line in lines:
        code, name, attempts = FAULT_CODES[line["id"]]
        assert (line["exit_code"], line["error"], line["attempts"]) == (code, name, attempts)
        assert (line["message"] is None) == (code == 0)
        # Requests counted at the server: a retried failure twice, a final one once.
        assert mock.inputs_seen[f"ask mock-fault:{line['id']}"] == attempts
    assert {line["status"] for line in lines if line["id"] in ("failed", "incomplete")} == {
        "failed",
        "incomplete",
    }
    one_line_error(result.stderr, "1 ok, 7 failed (1 invalid_output, 2 not_completed", str(out))


def test_a_401_stops_the_whole_batch_with_exit_3(tmp_path: Path, server: ScriptedServer) -> None:
    def refuse(exchange: Exchange, wire: Wire) -> None:
        time.sleep(0.05)
        wire.respond(401, {"error": {"message": "Invalid API key.", "code": "invalid_api_key"}})

    server.script(refuse)
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(40)))
    result = run_mavera(
        ["batch", "--lines", str(source), "-j", "4", "--base-url", server.base_url], expect=3
    )
    assert len(server.requests) <= 4, "nothing starts after the first 401"
    lines = results(result.stdout)
    assert len(lines) == len(server.requests)
    assert {line["error"] for line in lines} == {"auth"}
    one_line_error(result.stderr, "HTTP 401", "the batch stopped", "not started")


@pytest.mark.parametrize(
    ("content", "flags", "needle"),
    [
        ('{"input": "a"}\n{"input": "b"\n', [], "input line 2: not valid JSON"),
        ('{"input": "a"}\n\n{"id": "x"}\n', [], "input line 3: the item has no `input`"),
        ('{"id": "a", "input": "1"}\n{"id": "a", "input": "2"}\n', [], "line 2: duplicate item a"),
        ('{"input": "a"}\n{"id": "1", "input": "b"}\n', [], "line 2: duplicate item 1"),
        (
            '{"id": "a", "input": "1", "persona_id": "P"}\n{"id": "a", "input": "2"}\n',
            ["-p", "P"],
            "line 2: duplicate item a (persona P)",
        ),
        ('{"input": "a", "schema": {"type": 7}}\n', ["--as", "json"], "input line 1: "),
        ('{"input": 3}\n', [], "input line 1: `input` must be text"),
        ("[1]\n", [], "input line 1: an item must be a JSON object"),
    ],
)
def test_bad_input_is_a_usage_error_naming_the_line_before_any_request(
    tmp_path: Path, mock: MockServer, content: str, flags: list[str], needle: str
) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(content)
    result = run_mavera(["batch", str(source), *flags], env=_at(mock), expect=2)
    one_line_error(result.stderr, needle)
    assert mock.requests_seen == 0
    assert result.stdout == b""


def test_unreadable_input_and_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    result = run_mavera(["batch", "--mock", str(tmp_path / "missing.jsonl")], expect=2)
    one_line_error(result.stderr, "cannot read")
    result = run_mavera(["batch", "--mock", "--as", "tools", "-"], expect=2)
    one_line_error(result.stderr, "--as tools needs --functions")
    result = run_mavera(["batch", "--mock", "-j", "0", "-"], expect=2)
    one_line_error(result.stderr, "--concurrency must be 1 or more")
    # (It ran nothing and ended 13, as if the credits were spent.)
    result = run_mavera(["batch", "--mock", "--max-credits", "-1", "-"], stdin=b"{}\n", expect=2)
    one_line_error(result.stderr, "--max-credits must be 0 or more (got -1)")


def test_a_pipe_given_by_name_is_read_once_and_a_device_is_refused(
    tmp_path: Path, mock: MockServer
) -> None:
    """`batch <(generate)`: the input is read twice (checked, then run), and a pipe only
    once: it hung on the second read. A device has no end (`/dev/zero`)."""
    fifo = tmp_path / "items.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as writer:
            writer.write(b'{"input": "a"}\n{"input": "b"}\n')

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    result = run_mavera(["batch", str(fifo)], env=_at(mock), timeout=20)
    feeder.join(5)
    assert sorted(line["text"] for line in results(result.stdout)) == [
        "You said: a",
        "You said: b",
    ]
    refused = run_mavera(["batch", "--lines", "/dev/zero"], env=_at(mock), expect=2)
    one_line_error(refused.stderr, "cannot read /dev/zero: a device")
    assert mock.requests_seen == 2


def test_an_input_line_without_end_is_refused_before_it_fills_the_memory(
    tmp_path: Path, mock: MockServer
) -> None:
    source = tmp_path / "blob.bin"
    with source.open("wb") as blob:
        blob.truncate(65 << 20)  # 65 MiB of zeros, no newline
    result = run_mavera(["batch", "--lines", str(source)], env=_at(mock), expect=2)
    one_line_error(result.stderr, "input line 1: longer than 64 MiB")
    assert mock.requests_seen == 0


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_results_to_a_device_are_written_not_read_back(device: str) -> None:
    """Resume read the -o file first: /dev/full gives zeros without end (the batch grew
    until the kernel killed it), a pipe (`-o /dev/stdout`) blocked forever."""

    def limited() -> None:  # (the old code must fail, not take the machine's memory)
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", "batch", "--mock", "--lines", "-o", device, "-"],
        input=b"a\nb\n",
        capture_output=True,
        env=mavera_env(),
        preexec_fn=limited,
        timeout=60,
    )
    stderr = proc.stderr.decode()
    if device == "/dev/null":
        assert proc.returncode == 0, stderr
        assert "2 ok" in stderr
    else:
        assert proc.returncode == 74, stderr
        one_line_error(stderr, "cannot write /dev/full: No space left on device")


def test_an_input_nested_past_what_json_writes_is_refused_naming_the_line(
    tmp_path: Path, mock: MockServer
) -> None:
    """300 levels go (orjson writes 254: the standard library takes over); 1,020 levels were an
    internal error when the request was written."""
    source = tmp_path / "items.jsonl"
    deep = "[" * 300 + '"x"' + "]" * 300
    too_deep = "[" * 1020 + "]" * 1020
    source.write_text(f'{{"input": [{{"role": "user", "content": "a", "x": {deep}}}]}}\n')
    assert results(run_mavera(["batch", str(source)], env=_at(mock)).stdout)[0]["exit_code"] == 0
    source.write_text(f'{{"input": "a"}}\n{{"input": [{too_deep}]}}\n')
    result = run_mavera(["batch", str(source)], env=_at(mock), expect=2)
    one_line_error(result.stderr, "input line 2: `input` is not usable JSON: nested too deeply")
    assert mock.requests_seen == 1


def test_the_output_file_cannot_be_the_input(tmp_path: Path, mock: MockServer) -> None:
    """Before, the first result was appended to the items, and the next run read it as one."""
    source = tmp_path / "items.jsonl"
    source.write_text('{"input": "a"}\n{"input": "b"}\n')
    alias = tmp_path / "alias.jsonl"
    alias.symlink_to(source)
    for output in (source, alias):
        result = run_mavera(["batch", str(source), "-o", str(output)], env=_at(mock), expect=2)
        one_line_error(result.stderr, "is the input file")
    assert mock.requests_seen == 0
    assert source.read_text() == '{"input": "a"}\n{"input": "b"}\n'


@pytest.mark.parametrize("lines", [False, True])
def test_a_byte_order_mark_before_the_first_item_is_not_part_of_it(
    tmp_path: Path, mock: MockServer, lines: bool
) -> None:
    source = tmp_path / "items.txt"
    body = "first\r\nsecond\r\n" if lines else '{"input": "first"}\r\n{"input": "second"}\r\n'
    source.write_bytes("\ufeff".encode() + body.encode())
    result = run_mavera(["batch", str(source), *(["--lines"] if lines else [])], env=_at(mock))
    assert sorted(line["text"] for line in results(result.stdout)) == [
        "You said: first",
        "You said: second",
    ]


@pytest.mark.parametrize("allowed", [3, 0])
def test_fewer_workers_when_the_system_allows_no_more_threads(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch, allowed: int
) -> None:
    """Before: an internal error ("can't start new thread") at a high -j under ulimits."""
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("mavera-batch-") and int(thread.name[13:]) >= allowed:
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(10)))
    args = ["batch", "--lines", str(source), "-j", "8"]
    if allowed:
        result = run_mavera(args, env=_at(mock))
        assert [line["exit_code"] for line in results(result.stdout)] == [0] * 10
        assert "-j 8: only 3 workers could start" in result.stderr
    else:
        result = run_mavera(args, env=_at(mock), expect=2)
        one_line_error(result.stderr, "-j 8: cannot start a worker thread")
        assert mock.requests_seen == 0


def test_stdin_items_and_persona_fan_out(mock: MockServer) -> None:
    items = b'{"id": "q1", "input": "first"}\n{"id": "q2", "input": "second"}\n'
    result = run_mavera(
        ["batch", "-", "-p", "pers_a", "-p", "pers_b", "-j", "2"], stdin=items, env=_at(mock)
    )
    lines = results(result.stdout)
    assert sorted((line["id"], line["persona_id"], line["index"]) for line in lines) == [
        ("q1", "pers_a", 0),
        ("q1", "pers_b", 0),
        ("q2", "pers_a", 1),
        ("q2", "pers_b", 1),
    ]
    assert mock.inputs_seen == {"first": 2, "second": 2}


def test_fan_out_sends_each_persona(tmp_path: Path, server: ScriptedServer) -> None:
    def answer(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(text_stream([exchange.json()["persona_id"]]))

    server.script(answer)
    source = write_items(
        tmp_path / "i.jsonl", [{"input": "hi"}, {"input": "yo", "persona_id": "own"}]
    )
    result = run_mavera(["batch", str(source), "-p", "A", "-p", "B", "--base-url", server.base_url])
    lines = results(result.stdout)
    assert sorted((line["id"], line["persona_id"], line["text"]) for line in lines) == [
        ("1", "A", "A"),
        ("1", "B", "B"),
        ("2", "own", "own"),  # an item's own persona wins over the fan-out
    ]


def test_json_items_hold_the_parsed_object_and_an_item_schema_wins(
    tmp_path: Path, mock: MockServer
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    own = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
    source = write_items(
        tmp_path / "i.jsonl", [{"id": "a", "input": "x"}, {"id": "b", "input": "y", "schema": own}]
    )
    result = run_mavera(
        ["batch", str(source), "--as", "json", "--schema", json.dumps(schema)], env=_at(mock)
    )
    parsed = {line["id"]: line["parsed"] for line in results(result.stdout)}
    assert isinstance(parsed["a"]["n"], int)
    assert isinstance(parsed["b"]["s"], str)


def test_tools_items_hold_the_parsed_calls(tmp_path: Path, mock: MockServer) -> None:
    functions = tmp_path / "f.json"
    functions.write_text(json.dumps(FUNCTIONS))
    result = run_mavera(
        ["batch", "--lines", "-", "--as", "tools", "--functions", str(functions)],
        stdin=b"weather in Paris?\n",
        env=_at(mock),
    )
    (line,) = results(result.stdout)
    (call,) = line["calls"]
    assert call["name"] == "get_weather" and isinstance(call["arguments"]["city"], str)


def test_max_credits_starts_no_new_item_then_exit_13(tmp_path: Path, mock: MockServer) -> None:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(10)))
    result = run_mavera(
        ["batch", "--lines", str(source), "-j", "1", "--max-credits", "3"], env=_at(mock), expect=13
    )
    assert len(results(result.stdout)) == 3
    assert mock.requests_seen == 3
    one_line_error(result.stderr, "batch: 10 to run: 3 ok, 7 not started; 3 credits")


def test_resume_runs_only_what_did_not_complete_and_ignores_a_torn_line(
    tmp_path: Path, mock: MockServer
) -> None:
    items = [{"id": f"i{n}", "input": f"ok {n}"} for n in range(5)]
    items.append({"id": "bad", "input": "x mock-fault:failed"})
    source = write_items(tmp_path / "items.jsonl", items)
    out = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(out)]
    run_mavera(args, env=_at(mock), expect=13)
    assert mock.requests_seen == 6
    # A crash mid-line: the next run cuts the torn tail and appends whole lines.
    with out.open("ab") as file:
        file.write(b'{"id": "i0", "exit_co')
    run_mavera(args, env=_at(mock), expect=13)
    assert mock.requests_seen == 7, "only the failed item ran again"
    lines = results(out.read_bytes())  # every line whole: the torn one is gone
    assert [line["id"] for line in lines].count("bad") == 2
    assert len(lines) == 7
    # --overwrite starts afresh.
    run_mavera([*args, "--overwrite"], env=_at(mock), expect=13)
    assert len(results(out.read_bytes())) == 6


def test_a_429_pauses_every_worker_for_its_retry_after(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(6)))
    with MockServer(fault="rate-limit", fail_first=1) as server:
        started = time.monotonic()
        result = run_mavera(["batch", "--lines", str(source), "-j", "4"], env=_at(server))
        elapsed = time.monotonic() - started
        assert server.requests_seen == 7  # the 429 once, then every item once
    lines = results(result.stdout)
    assert all(line["exit_code"] == 0 for line in lines)
    # The first wave goes before the window is known; its first request is refused, and
    # nobody starts anything for the server's Retry-After (1 s).
    assert elapsed >= 1.0
    assert sorted(line["attempts"] for line in lines) == [1, 1, 1, 1, 1, 2]


def test_a_first_wave_starts_before_the_window_is_known(tmp_path: Path) -> None:
    """Four items at -j 4 all start at once: none waits a whole answer for the first one's
    headers to tell the window."""
    source = tmp_path / "p.txt"
    source.write_text("a\nb\nc\nd\n")
    with MockServer(think_ms=300) as server:
        run_mavera(["batch", "--lines", str(source), "-j", "4"], env=_at(server))
        assert server.in_flight_peak == 4  # one at a time first: 1, then 3
        assert server.requests_seen == 4


def test_a_sliding_window_is_never_exceeded(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(12)))
    with MockServer(rate_limit="5/1", think_ms=20) as server:
        result = run_mavera(["batch", "--lines", str(source), "-j", "8"], env=_at(server))
        assert server.rate_limited == 0, "a request was started that the window could not take"
        assert max(server.inputs_seen.values()) == 1
    assert len(results(result.stdout)) == 12


class RecordedWindow(SlidingWindow):
    """The mock's window on a clock `behind` seconds behind ours (its Date too, unless fixed),
    noting each request's fate."""

    def __init__(self, limit: int, behind: float, date: float | None = None) -> None:
        super().__init__(limit, 1.0, lambda: time.time() - behind, fractional_reset=True)
        self.admitted: list[bool] = []
        self.date = date

    def now(self) -> float:
        return super().now() if self.date is None else self.date

    def take(self, age: float = 0.0) -> WindowState:
        state = super().take(age)
        self.admitted.append(state.admitted)
        return state


@pytest.mark.parametrize(
    ("behind", "most_429s", "date"),
    [
        (0.5, 10, None),
        (120.0, 10, None),
        (-120.0, 1, None),
        (0.0, 1, 784111777.0),  # a fixed Date, as in RFC 9110's example (1994)
        (0.0, 1, 2082758400.0),  # a fixed Date in 2036
    ],
)
def test_a_server_clock_off_from_ours_still_paces_by_its_window(
    tmp_path: Path, behind: float, most_429s: int, date: float | None
) -> None:
    """X-RateLimit-Reset is on the server's clock. Before: half a second behind ours, a 1 s
    window looked half as long (13 to 18 429s for 30 items, one every window); two minutes
    behind, a Reset in the past (5 429s); two minutes ahead, a window two minutes long (the
    batch sat still). Date, on the same clock, tells a clock ahead by more than a second or
    so (a Date that does not keep time is not believed); 429s that go on despite a wider
    margin turn the limiter to what Remaining counted."""
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(40)))
    with MockServer(think_ms=20) as server:
        server.window = window = RecordedWindow(10, behind, date)
        result = run_mavera(["batch", "--lines", str(source), "-j", "4"], env=_at(server))
        assert max(server.inputs_seen.values()) <= 3
    assert [line["exit_code"] for line in results(result.stdout)] == [0] * 40
    # Each correction costs at most the -j requests in flight; none once corrected.
    assert window.admitted.count(False) <= most_429s
    assert all(window.admitted[-20:])


def test_a_retry_after_longer_than_mavera_waits_stops_the_batch(
    tmp_path: Path, server: ScriptedServer
) -> None:
    """Before, every worker paused for the hour the server asked for."""

    def refuse(exchange: Exchange, wire: Wire) -> None:
        time.sleep(0.05)
        wire.respond(429, {"error": {"message": "Quota used up."}}, {"Retry-After": "3600"})

    server.script(refuse)
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(20)))
    started = time.monotonic()
    result = run_mavera(
        ["batch", "--lines", str(source), "-j", "2", "--base-url", server.base_url], expect=13
    )
    assert time.monotonic() - started < 30
    assert len(server.requests) <= 2, "nothing starts after the first such 429"
    lines = results(result.stdout)
    assert len(lines) == len(server.requests)
    assert {line["exit_code"] for line in lines} == {5}
    assert all("try again then" in line["message"] for line in lines)
    one_line_error(result.stderr, "not started (the server asks to wait 3600s (until ")


def test_a_window_that_reopens_hours_away_stops_the_batch_saying_when(
    tmp_path: Path, server: ScriptedServer
) -> None:
    """Before, the batch sat silent until the Reset (here, an hour; a year is no different)."""

    def answer(exchange: Exchange, wire: Wire) -> None:
        headers = {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0"}
        wire.head(headers={**headers, "X-RateLimit-Reset": f"{time.time() + 3600:.0f}"})
        wire.send_chunks(text_stream(["ok"]))

    server.script(answer)
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(6)))
    out = tmp_path / "out.jsonl"
    args = ["batch", "--lines", str(source), "-j", "2", "-o", str(out)]
    result = run_mavera([*args, "--base-url", server.base_url], expect=13)
    # The first wave (the second worker may only start once the first answer is in), then a
    # full window for an hour.
    sent = len(server.requests)
    assert sent in (1, 2)
    assert [line["exit_code"] for line in results(out.read_bytes())] == [0] * sent
    waits = f"{sent} ok, {6 - sent} not started (the server asks to wait 3"
    one_line_error(result.stderr, waits, "s (until ")


@pytest.mark.parametrize("form", ["milliseconds", "seconds from now"])
def test_a_reset_in_another_form_than_unix_seconds_is_read_as_such(
    tmp_path: Path, server: ScriptedServer, form: str
) -> None:
    """Mavera sends a Unix time in seconds; a server that sends milliseconds (before: an
    internal error, a wait of centuries) or seconds from now (before: a time in 1970) is
    still paced by its window: 2 per 0.5 s here."""
    arrivals: list[float] = []

    def answer(exchange: Exchange, wire: Wire) -> None:
        now = time.time()
        arrivals.append(now)
        recent = sum(1 for t in arrivals if t > now - 0.5)
        reset = f"{(now + 0.5) * 1000:.0f}" if form == "milliseconds" else "0.5"
        headers = {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": str(max(0, 2 - recent))}
        wire.head(headers={**headers, "X-RateLimit-Reset": reset})
        wire.send_chunks(text_stream(["ok"]))

    server.script(answer)
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(6)))
    result = run_mavera(["batch", "--lines", str(source), "-j", "2", "--base-url", server.base_url])
    assert [line["exit_code"] for line in results(result.stdout)] == [0] * 6
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 0.9  # three windows of two


def test_rpm_spaces_the_starts(tmp_path: Path, mock: MockServer) -> None:
    source = tmp_path / "p.txt"
    source.write_text("a\nb\nc\nd\n")
    started = time.monotonic()
    run_mavera(["batch", "--lines", str(source), "-j", "4", "--rpm", "300"], env=_at(mock))
    assert time.monotonic() - started >= 0.6  # 4 starts, 0.2 s apart


def test_usage_totals_for_the_batch(tmp_path: Path, mock: MockServer) -> None:
    result = run_mavera(["batch", "--lines", "-", "--usage"], stdin=b"a\nb\nc\n", env=_at(mock))
    assert "3 credits used over 3 responses" in result.stderr


def test_quiet_has_no_summary(mock: MockServer) -> None:
    result = run_mavera(["batch", "--lines", "-", "-q"], stdin=b"a\n", env=_at(mock))
    assert result.stderr == ""


def _at(server: MockServer) -> dict[str, str]:
    return {"MAVERA_BASE_URL": server.base_url}


def test_an_item_waiting_to_retry_when_a_401_stops_the_batch_still_gets_its_line(
    tmp_path: Path, server: ScriptedServer
) -> None:
    def busy(exchange: Exchange, wire: Wire) -> None:
        wire.respond(500, {"error": {"message": "busy"}})

    def refuse(exchange: Exchange, wire: Wire) -> None:
        wire.respond(401, {"error": {"message": "Invalid API key."}})

    server.script(busy, refuse)
    result = run_mavera(
        ["batch", "--lines", "-", "-j", "2", "--retries", "3", "--base-url", server.base_url],
        stdin=b"first\nsecond\nthird\n",
        expect=3,
    )
    lines = results(result.stdout)
    assert sorted(line["error"] for line in lines) == ["auth", "server_error"]
    assert len(server.requests) == 2, "no retry and no new item after the 401"


def test_batch_paces_by_when_each_request_was_written_before_its_answer() -> None:
    """The client says when a request's head is on the connection: before the server's
    think time, not when the answer comes (what `batch`'s window slides on)."""
    written: list[float] = []
    with MockServer(think_ms=300) as server:
        settings = Settings(base_url=server.base_url, api_key="k")
        with MaveraClient(settings) as client:
            payload = {"model": "m", "input": "hi", "stream": True}
            with client.open_stream(payload, on_written=lambda: written.append(time.time())):
                answered = time.time()
    assert len(written) == 1
    assert answered - written[0] >= 0.25
