"""The key never leaks, wherever the network splits it (issue 11, items 1-5 and 9's capture).

A scripted loopback server sends the key cut at every byte position, each piece in its own
TCP write with a pause, so the client reads the pieces apart. Masking is streaming
(`redact.StreamRedactor`): a possible start of the key waits for the next write.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import (
    TEST_KEY,
    one_line_error,
    read_pipe_until,
    run_mavera,
    start_mavera,
)
from tests.pty_helpers import PtyRun, strip_ansi
from tests.scripted_server import DONE, Exchange, ScriptedServer, Wire, sse_event, text_stream
from tests.test_tools import WEATHER, call_stream, write_json

KEY = TEST_KEY.encode()
MASK = b"***"
PAUSE = 0.004  # long enough that the client reads each TCP write on its own
SPLITS = range(1, len(KEY))  # every cut that leaves a piece of the key on both sides


def assert_no_key(*outputs: bytes | str) -> None:
    for output in outputs:
        data = output.encode() if isinstance(output, str) else output
        assert KEY not in data


def delta_event(delta: str, seq: int) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "sequence_number": seq,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": delta,
    }


def split_key_stream() -> tuple[list[bytes], bytes]:
    """TCP writes carrying the key cut at every position, and the text they spell masked.

    Two kinds of cut, for every position: between two deltas (two events, two writes), and
    inside one event's bytes (one event, two writes: only the capture sees that cut).
    """
    seq = itertools.count()
    writes = [sse_event({"type": "response.created", "sequence_number": next(seq)})]
    text = b""
    for cut in SPLITS:
        head, tail = f"<{cut}:{TEST_KEY[:cut]}", f"{TEST_KEY[cut:]}> "
        writes += [sse_event(delta_event(head, next(seq))), sse_event(delta_event(tail, next(seq)))]
        whole = sse_event(delta_event(f"[{cut}:{TEST_KEY}] ", next(seq)))
        at = whole.index(KEY) + cut
        writes += [whole[:at], whole[at:]]
        text += f"<{cut}:".encode() + MASK + b"> " + f"[{cut}:".encode() + MASK + b"] "
    completed = {
        "type": "response.completed",
        "sequence_number": next(seq),
        "response": {"id": "resp_1", "status": "completed", "output": [], "usage": {}},
    }
    writes.append(sse_event(completed))  # the client stops reading here: no [DONE] after it
    return writes, text


def paced(writes: list[bytes], headers: dict[str, str] | None = None) -> Callable[..., None]:
    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head(headers=headers)
        wire.send_chunks(writes, pause=PAUSE)

    return handler


def save_raw(capture: Path, server: ScriptedServer) -> list[str]:
    return ["--save-raw", str(capture), "--base-url", server.base_url]


def ndjson_lines(writes: list[bytes]) -> list[bytes]:
    """What `--events` must print for these writes: each data JSON as sent, the key masked."""
    lines = []
    for event in b"".join(writes).split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: {"):
                lines.append(line.removeprefix(b"data: ").replace(KEY, MASK))
    return lines


# --- the key split by the network, at every position ----------------------------------------


def test_text_mode_masks_the_key_split_at_every_position(server, tmp_path: Path) -> None:
    writes, text = split_key_stream()
    server.script(paced(writes, {"X-Echo": TEST_KEY}))
    capture = tmp_path / "raw.sse"
    result = run_mavera(["stream", "-v", "--usage", *save_raw(capture, server), "hi"])
    assert result.stdout == text + b"\n"
    assert capture.read_bytes() == b"".join(writes).replace(KEY, MASK)
    assert "< x-echo: ***" in result.stderr  # a response header, shown by -v
    assert_no_key(result.stdout, result.stderr, capture.read_bytes())


def test_events_mode_masks_the_key_split_at_every_position(server, tmp_path: Path) -> None:
    writes, text = split_key_stream()
    server.script(paced(writes))
    capture = tmp_path / "raw.sse"
    result = run_mavera(["stream", "--events", "-v", *save_raw(capture, server), "hi"])
    lines = result.stdout.splitlines()
    sent = ndjson_lines(writes)
    events = [json.loads(line) for line in lines]
    assert [event["type"] for event in events] == [json.loads(line)["type"] for line in sent]
    # The deltas that spell the key between them carry it masked (`jq -j .delta` joined the
    # halves again); every other line is as sent.
    joined = "".join(event.get("delta", "") for event in events)
    assert joined.encode() == text
    assert sum(line != as_sent for line, as_sent in zip(lines, sent, strict=True)) == 2 * len(
        SPLITS
    )
    assert capture.read_bytes() == b"".join(writes).replace(KEY, MASK)
    assert_no_key(result.stdout, result.stderr, capture.read_bytes(), joined)


def test_a_key_split_by_one_byte_writes_is_masked(server, tmp_path: Path) -> None:
    # The harshest cut: the whole stream one byte per TCP write.
    events = text_stream(["key: ", TEST_KEY, " end"])[:-1]
    data = b"".join(events)
    server.script(paced([data[i : i + 1] for i in range(len(data))]))
    capture = tmp_path / "raw.sse"
    result = run_mavera(["stream", "--save-raw", str(capture), "--base-url", server.base_url, "x"])
    assert result.stdout == b"key: *** end\n"
    assert capture.read_bytes() == data.replace(KEY, MASK)


# --- what is held back reaches stdout on every path -----------------------------------------


def test_a_tail_like_the_keys_start_is_written_at_completion(server) -> None:
    start = TEST_KEY[:9]  # "mvra_live": held back until the stream shows it is not the key
    server.script(paced(text_stream(["almost ", start])))
    result = run_mavera(["stream", "-n", "--base-url", server.base_url, "hi"])
    assert result.stdout == f"almost {start}".encode()


def test_a_tail_like_the_keys_start_is_written_when_the_stream_breaks(server) -> None:
    events = text_stream(["almost ", TEST_KEY[:9]])[:5]  # no completion

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events, pause=PAUSE)
        wire.reset()

    server.script(handler)
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=7)
    assert result.stdout == f"almost {TEST_KEY[:9]}\n".encode()


def test_a_tail_like_the_keys_start_is_written_on_ctrl_c(server) -> None:
    events = text_stream(["almost ", TEST_KEY[:9]])[:5]
    release = threading.Event()

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events, pause=PAUSE)
        release.wait(10)

    server.script(handler)
    proc = start_mavera(["stream", "--base-url", server.base_url, "hi"])
    try:
        assert proc.stdout is not None
        early = read_pipe_until(proc.stdout.fileno(), b"almost ")
        # The held tail is not out yet: it could still become the key.
        assert early == b"almost "
        threading.Event().wait(0.3)  # the last delta has arrived too, and is held
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert (early + rest).rstrip(b"\n") == f"almost {TEST_KEY[:9]}".encode()
    assert b"Traceback" not in stderr


# --- JSON escapes, error bodies, headers ------------------------------------------------------


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


def test_events_mode_masks_a_key_split_across_argument_deltas(server, tmp_path: Path) -> None:
    """`tools --events`: a call's arguments echoing the key in two deltas gave both halves."""
    arguments = json.dumps({"city": TEST_KEY})
    cut = arguments.index(TEST_KEY) + 7
    stream = call_stream([("call_1", "get_weather", [arguments[:cut], arguments[cut:]])])
    server.script(paced(stream))
    functions = write_json(tmp_path / "functions.json", [WEATHER])
    args = ["tools", "--events", "--functions", str(functions), "hi"]
    result = run_mavera([*args, "--base-url", server.base_url])
    events = [json.loads(line) for line in result.stdout.splitlines()]
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == json.dumps({"city": "***"})
    assert_no_key(result.stdout, "".join(deltas))


def test_a_json_escaped_key_is_masked_in_events_and_text(server) -> None:
    seq = itertools.count()
    plain = json.dumps(delta_event("café ", next(seq)), separators=(",", ":"))  # "caf\u00e9"
    hidden = json.dumps(delta_event("KEY!", next(seq)), separators=(",", ":"))
    hidden = hidden.replace("KEY!", "is " + escaped(TEST_KEY) + " ok")
    completed = json.dumps({"type": "response.completed", "response": {"status": "completed"}})
    writes = [f"data: {line}\n\n".encode() for line in (plain, hidden, completed)] + [DONE]
    server.script(paced(writes))
    events = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"])
    lines = events.stdout.splitlines()
    assert lines[0] == plain.encode()  # an escape without the key: passed through as received
    assert lines[1] == orjson.dumps({**json.loads(hidden), "delta": "is *** ok"})
    assert lines[2] == completed.encode()
    assert_no_key(events.stdout, json.dumps([json.loads(line) for line in lines]))
    text = run_mavera(["stream", "--base-url", server.base_url, "hi"])
    assert text.stdout == "café is *** ok\n".encode()


def test_a_json_escaped_key_is_masked_in_captures_and_traces(server, tmp_path: Path) -> None:
    """A capture or trace is the server's bytes, to replay or attach to a bug report: its JSON
    must not decode to the key either (it did: only the plain spelling was masked)."""
    half = "".join(c if i % 2 else escaped(c) for i, c in enumerate(TEST_KEY))
    deltas = [f"a {escaped(TEST_KEY)} b", f"c {half} d"]
    events = [
        f"data: {json.dumps(delta_event('@', n)).replace('@', text)}\n\n".encode()
        for n, text in enumerate(deltas)
    ]
    done = json.dumps({"type": "response.completed", "response": {"status": "completed"}})
    writes = [piece for event in events for piece in (event[:40], event[40:])]
    server.script(paced([*writes, f"data: {done}\n\n".encode(), DONE]))
    capture, trace = tmp_path / "run.sse", tmp_path / "run.trace"
    args = ["stream", "--save-raw", str(capture), "--trace", str(trace), "hi"]
    result = run_mavera([*args, "--base-url", server.base_url])
    assert result.stdout == b"a *** bc *** d\n"
    raw = capture.read_bytes()
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    traced = "".join(line["data"] for line in lines if line["type"] == "mavera.read").encode()
    assert traced == raw
    decoded = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: {")]
    assert [event.get("delta") for event in decoded[:2]] == ["a *** b", "c *** d"]
    assert_no_key(raw, json.dumps(decoded), trace.read_bytes())


@pytest.mark.parametrize("command", ["stream", "ask"])
def test_a_long_401_body_echoing_the_key_is_masked_before_it_is_cut(server, command) -> None:
    body = "denied " + "x" * 180 + " for " + TEST_KEY + " " + "y" * 300
    server.script(lambda ex, wire: wire.respond(401, body))
    result = run_mavera([command, "--base-url", server.base_url, "hi"], expect=3)
    line = one_line_error(result.stderr, "HTTP 401")
    masked = " ".join(body.replace(TEST_KEY, "***").split())
    assert line == f"mavera: error: HTTP 401: {masked[:200]}…"
    assert TEST_KEY[:8] not in result.stderr


def test_an_html_title_echoing_the_key_is_masked_before_it_is_cut(server) -> None:
    title = "Blocked " + "t" * 170 + " " + TEST_KEY + " by the proxy"
    page = f"<html><head><title>{title}</title></head><body>{TEST_KEY}</body></html>"
    server.script(lambda ex, wire: wire.respond(403, page, {"Content-Type": "text/html"}))
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=3)
    expected = title.replace(TEST_KEY, "***")
    assert len(expected) < 200 < len(title)  # cut after masking: the whole title fits
    assert one_line_error(result.stderr) == f"mavera: error: HTTP 403: {expected}"


def test_a_json_error_spelling_the_key_with_escapes_is_masked(server) -> None:
    body = '{"error":{"message":"bad key ' + escaped(TEST_KEY) + '","code":"invalid_key"}}'
    server.script(lambda ex, wire: wire.respond(401, body, {"Content-Type": "application/json"}))
    result = run_mavera(["stream", "--events", "--base-url", server.base_url, "hi"], expect=3)
    assert one_line_error(result.stderr) == "mavera: error: HTTP 401: bad key *** (invalid_key)"
    assert json.loads(result.stdout)["message"] == "HTTP 401: bad key *** (invalid_key)"
    assert_no_key(result.stdout, result.stderr)


def test_a_key_in_a_response_header_is_masked_with_verbose(server) -> None:
    server.script(
        paced(text_stream(["hi"]), {"X-Your-Key": TEST_KEY, "X-Auth": "Bearer " + TEST_KEY})
    )
    result = run_mavera(["stream", "-v", "--base-url", server.base_url, "hi"])
    assert "< x-your-key: ***" in result.stderr
    assert "< x-auth: Bearer ***" in result.stderr
    assert result.stdout == b"hi\n"
    assert_no_key(result.stderr)


def test_a_key_in_a_response_header_name_is_masked_in_the_trace(server, tmp_path: Path) -> None:
    """Names were recorded as sent (lower-cased): only values were masked."""
    server.script(paced(text_stream(["hi"]), {f"X-{TEST_KEY}": "1", f"X-{TEST_KEY.upper()}": "2"}))
    trace = tmp_path / "run.trace"
    run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    response = next(
        line
        for line in map(json.loads, trace.read_text().splitlines())
        if line["type"] == "mavera.response"
    )
    assert response["headers"]["x-***"] == "1, 2"
    assert TEST_KEY.lower() not in trace.read_text().lower()


def test_a_control_character_hidden_in_the_key_does_not_unmask_it(server) -> None:
    """stderr lines lose their control characters: removed after the mask had looked, a BEL
    inside the key joined it again, in plain sight."""
    hidden = TEST_KEY[:9] + "\\u0007" + TEST_KEY[9:]
    body = '{"error":{"message":"bad key ' + hidden + '"}}'
    server.script(lambda ex, wire: wire.respond(400, body, {"Content-Type": "application/json"}))
    result = run_mavera(["ask", "--base-url", server.base_url, "hi"], expect=4)
    one_line_error(result.stderr, "bad key ***")
    failed = text_stream(["x"], terminal="response.failed")
    failed[-2] = failed[-2].replace(b"the model fell over", hidden.encode())
    server.script(paced(failed))
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=10)
    assert "***" in result.stderr
    assert_no_key(result.stderr)


def test_a_key_in_a_header_name_or_hidden_in_a_value_is_masked_with_verbose(server) -> None:
    value = TEST_KEY[:9] + "\x80" + TEST_KEY[9:]  # a raw byte, removed on the way to stderr
    server.script(paced(text_stream(["hi"]), {f"X-{TEST_KEY}": "1", "X-Echo": value}))
    result = run_mavera(["stream", "-v", "--base-url", server.base_url, "hi"])
    assert "< x-***: 1" in result.stderr and "< x-echo: ***" in result.stderr
    assert TEST_KEY.lower() not in result.stderr.lower()


# --- the key as it comes from the environment -------------------------------------------------


def echo_authorization(ex: Exchange, wire: Wire) -> None:
    wire.head()
    wire.send_chunks(text_stream(["you sent ", ex.headers["authorization"]]), pause=PAUSE)


@pytest.mark.parametrize("ending", ["\n", "\r\n", " \t\n"])
def test_a_key_from_a_secret_file_works_without_its_line_ending(server, ending: str) -> None:
    server.script(echo_authorization)
    result = run_mavera(
        ["stream", "-v", "--events", "--base-url", server.base_url, "hi"], key=TEST_KEY + ending
    )
    assert server.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    assert b'"delta":"Bearer ***"' in result.stdout
    assert len(server.requests) == 1
    assert_no_key(result.stdout, result.stderr)
    text = run_mavera(["stream", "--base-url", server.base_url, "hi"], key=TEST_KEY + ending)
    assert text.stdout == b"you sent Bearer ***\n"


@pytest.mark.parametrize(
    "bad_key",
    [
        TEST_KEY[:10] + "\x01" + TEST_KEY[10:],
        TEST_KEY[:10] + "\n" + TEST_KEY[10:],
        TEST_KEY[:10] + " " + TEST_KEY[10:],
        TEST_KEY[:10] + "é" + TEST_KEY[10:],
    ],
    ids=["control", "newline-inside", "space-inside", "non-ascii"],
)
@pytest.mark.parametrize("events", [False, True])
def test_a_key_that_is_no_header_value_is_refused_with_exit_3(server, bad_key, events) -> None:
    server.script(echo_authorization)
    args = ["stream", "-v", "--retries", "2", "--base-url", server.base_url, "hi"]
    if events:
        args.insert(1, "--events")
    result = run_mavera(args, key=bad_key, expect=3)
    line = one_line_error(result.stderr)
    assert "MAVERA_API_KEY" in line
    assert server.requests == []  # never sent, never retried
    for piece in (TEST_KEY[:10], TEST_KEY[11:], bad_key):
        assert piece not in result.stderr
        assert piece.encode() not in result.stdout
    if events:
        assert json.loads(result.stdout)["error"] == "auth"


def test_a_bad_key_in_the_config_file_names_the_file(server, tmp_path: Path) -> None:
    config = tmp_path / "config" / "mavera" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'api_key = "{TEST_KEY[:10]}\\u0007{TEST_KEY[10:]}"\n')
    config.chmod(0o600)
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], key=None, expect=3)
    line = one_line_error(result.stderr, str(config))
    assert TEST_KEY[:10] not in line and TEST_KEY[11:] not in line
    assert server.requests == []


# --- function-call arguments streamed on a terminal -------------------------------------------


def test_call_arguments_on_a_terminal_mask_the_key_split_at_every_position(
    server, tmp_path: Path
) -> None:
    calls = [
        (f"call_{cut}", "get_weather", ['{"city":"', TEST_KEY[:cut], TEST_KEY[cut:] + '"}'])
        for cut in SPLITS
    ]
    server.script(paced(call_stream(calls)))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    run = PtyRun(["tools", "--base-url", server.base_url, "--functions", functions, "hi"])
    code = run.finish(timeout=60)
    shown = strip_ansi(run.stderr)
    assert code == 0, shown
    progress = [line for line in shown.splitlines() if "waiting for" not in line]  # spinner
    assert progress == ['→ get_weather {"city":"***"}'] * len(SPLITS)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["arguments"] for line in lines] == [{"city": "***"}] * len(SPLITS)
    assert_no_key(run.stderr, run.stdout)


# --- --save-raw is written atomically ---------------------------------------------------------

OLD_CAPTURE = b"data: the old capture\n\n" * 100


def old_capture(tmp_path: Path) -> Path:
    capture = tmp_path / "raw.sse"
    capture.write_bytes(OLD_CAPTURE)
    capture.chmod(0o640)
    return capture


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_leaves_the_old_capture_whole(tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    run_mavera(
        ["stream", "--retries", "0", "--save-raw", str(capture), "--base-url", url, "hi"], expect=9
    )
    assert capture.read_bytes() == OLD_CAPTURE
    assert leftovers(tmp_path) == []


def test_a_401_leaves_the_old_capture_whole(server, tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    server.script(lambda ex, wire: wire.respond(401, {"error": {"message": "no"}}))
    run_mavera(
        ["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"], expect=3
    )
    assert capture.read_bytes() == OLD_CAPTURE
    assert leftovers(tmp_path) == []


def test_a_completed_stream_replaces_the_capture_keeping_its_mode(server, tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    events = text_stream(["new"])[:-1]  # up to response.completed: the client stops there
    server.script(paced(events))
    run_mavera(["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"])
    assert capture.read_bytes() == b"".join(events)
    assert capture.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_a_retried_request_keeps_the_attempt_that_rendered(server, tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    events = text_stream(["second"])[:-1]
    server.script(lambda ex, wire: wire.respond(500, "busy"), paced(events))
    result = run_mavera(["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"])
    assert result.stdout == b"second\n"
    assert capture.read_bytes() == b"".join(events)
    assert leftovers(tmp_path) == []


def start_stream_then_hold(server, capture: Path, release: threading.Event) -> subprocess.Popen:
    events = text_stream(["first ", "never"])

    def handler(ex: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send_chunks(events[:4], pause=PAUSE)
        release.wait(10)

    server.script(handler)
    return start_mavera(["stream", *save_raw(capture, server), "hi"])


def test_kill_9_mid_stream_leaves_the_old_capture_whole(server, tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    release = threading.Event()
    proc = start_stream_then_hold(server, capture, release)
    try:
        assert proc.stdout is not None
        assert read_pipe_until(proc.stdout.fileno(), b"first ") == b"first "
        temporaries = leftovers(tmp_path)
        assert len(temporaries) == 1 and temporaries[0].startswith(".raw.sse.mavera-")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert capture.read_bytes() == OLD_CAPTURE


def test_ctrl_c_mid_stream_keeps_what_arrived_and_cleans_up(server, tmp_path: Path) -> None:
    capture = old_capture(tmp_path)
    release = threading.Event()
    proc = start_stream_then_hold(server, capture, release)
    try:
        assert proc.stdout is not None
        read_pipe_until(proc.stdout.fileno(), b"first ")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert capture.read_bytes() == b"".join(text_stream(["first ", "never"])[:4])
    assert leftovers(tmp_path) == []


def test_a_capture_through_a_symlink_replaces_its_target(server, tmp_path: Path) -> None:
    target = old_capture(tmp_path)
    link = tmp_path / "link.sse"
    link.symlink_to(target)
    events = text_stream(["new"])[:-1]  # up to response.completed: the client stops there
    server.script(paced(events))
    run_mavera(["stream", "--save-raw", str(link), "--base-url", server.base_url, "hi"])
    assert link.is_symlink()
    assert target.read_bytes() == b"".join(events)


def test_a_capture_to_a_device_is_written_directly(server) -> None:
    server.script(paced(text_stream(["fine"])))
    result = run_mavera(["stream", "--save-raw", os.devnull, "--base-url", server.base_url, "x"])
    assert result.stdout == b"fine\n"
