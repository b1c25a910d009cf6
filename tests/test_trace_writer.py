"""The trace's writer process (`tracelog`): what it hands over arrives whole and in order,
and Ctrl-C, SIGKILL, a file that stops taking writes and a system without fork each leave
the trace the contract promises. Against real loopback servers and real processes."""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mavera_cli import tracelog
from mavera_cli.trace import read_trace
from tests.conftest import TEST_KEY, run_mavera, start_mavera
from tests.scripted_server import text_stream
from tests.test_trace import paused_handler, read_bytes, trace_lines


def _stall_after(events: list[bytes]) -> Callable[..., None]:
    def handler(exchange, wire) -> None:
        wire.head()
        for event in events:
            wire.send(event)
            time.sleep(0.05)
        wire.hold()

    return handler


def _wait_for(trace: Path, text: bytes, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if trace.exists() and text in trace.read_bytes():
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never reached {trace}")


def _holders(path: Path) -> list[int]:
    """The processes that have `path` open."""
    target = str(path)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if target in links:
            pids.append(int(entry.name))
    return pids


def test_the_log_hands_over_any_reads_whole_and_in_order(tmp_path: Path) -> None:
    """Straight through `open_log`: reads of every size (a byte, a few KiB, more than the
    ring holds at once), many times round the ring, a key split across two of them, and a
    retry's request line in between; the file reads back as exactly the bytes, in order."""
    secret = "mvra-" + "k" * 40
    sizes = [1, 7, 4096, 33_000, tracelog._PIPED_ABOVE + 1, 65_536, 3] * 12
    reads = [bytes([65 + n % 26]) * size for n, size in enumerate(sizes)]
    reads[5] = reads[5][:-10] + secret.encode()[:10]
    reads[6] = secret.encode()[10:] + reads[6]
    path = tmp_path / "log.trace"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    first = b'{"type":"mavera.request","t":0,"method":"POST","url":"u","body_bytes":1}\n'
    os.write(fd, first)
    log = tracelog.open_log(fd, secret, time.monotonic)
    assert isinstance(log, tracelog.ForkedLog)
    log.line(0.1, b'{"type":"mavera.response","t":0.1,"status":200,"headers":{}}\n')
    half = len(reads) // 2
    for n, data in enumerate(reads[:half]):
        log.read(0.2 + n, data)
    log.attempt(50.0, first.replace(b'"t":0', b'"t":50'))
    for n, data in enumerate(reads[half:]):
        log.read(51.0 + n, data)
    assert log.failure() is None
    assert log.close(99.0, b'{"type":"mavera.end","t":99,"exit_code":0,"error":null}\n') is None
    with path.open("rb") as stream:
        trace = read_trace(stream, str(path))
    assert trace.end is not None and trace.end["exit_code"] == 0
    assert len(trace.attempts) == 2
    masked = b"".join(reads).replace(secret.encode(), b"***")
    got = b"".join(data for attempt in trace.attempts for _, data in attempt.reads)
    assert got == masked
    assert secret.encode() not in path.read_bytes()
    times = [t for attempt in trace.attempts for t, _ in attempt.reads]
    assert times == sorted(times)


def test_ctrl_c_to_the_whole_process_group_still_ends_the_trace(server, tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the job, the writer too: the trace
    still gets every read and the end line with exit 130."""
    events = text_stream(["one ", "two ", "three"])
    server.script(_stall_after(events[:5]))
    trace = tmp_path / "interrupted.trace"
    proc = start_mavera(
        ["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"],
        start_new_session=True,
    )
    try:
        _wait_for(trace, b"two ")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert out == b"one two \n"
    lines = trace_lines(trace)
    assert read_bytes(lines) == b"".join(events[:5])
    assert lines[-1]["type"] == "mavera.end" and lines[-1]["exit_code"] == 130


def test_a_killed_run_leaves_no_writer_behind(server, tmp_path: Path) -> None:
    """SIGKILL of the command: its writer writes what it was handed, then exits (it does
    not keep the file, the connection or stdout open)."""
    events = text_stream(["alpha ", "beta ", "gamma"])
    server.script(_stall_after(events[:5]))
    trace = tmp_path / "killed.trace"
    proc = start_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    try:
        _wait_for(trace, b"beta ")
        assert _holders(trace), "the writer has the trace open while the run goes on"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        assert proc.stdout.read() == b"alpha beta "  # EOF: nobody else holds stdout
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _holders(trace) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _holders(trace) == []
    lines = trace_lines(trace)
    assert read_bytes(lines) == b"".join(events[:5])
    assert lines[-1]["type"] == "mavera.read"


def _file_size_limit(limit: int) -> Callable[[], None]:
    def limit_writes() -> None:
        # (Python ignores SIGXFSZ: a write past the limit fails with EFBIG.)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def test_a_trace_that_stops_taking_writes_mid_run_ends_with_74(server, tmp_path: Path) -> None:
    """The first lines fit, the reads do not (a file size limit, as a full disk would): the
    writer's error reaches the command, which ends with 74 and says why in one line."""
    words = [f"word{n:04d} " for n in range(400)]
    server.script(paused_handler([b"".join(text_stream(words))]))
    trace = tmp_path / "limited.trace"
    proc = start_mavera(
        ["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"],
        preexec_fn=_file_size_limit(2000),
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 74, err
    message = err.decode().strip()
    assert message == f"mavera: error: cannot write {trace}: File too large"
    assert "".join(words).startswith(out.decode().rstrip("\n"))
    assert trace.stat().st_size <= 2000
    assert TEST_KEY.encode() not in trace.read_bytes()


def test_without_fork_the_trace_is_written_in_process(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the OS cannot fork (or the fork fails), the same lines are written in-process."""

    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(tracelog.os, "fork", no_fork)
    chunks = [b"".join(text_stream(["in ", "process"]))]
    server.script(paused_handler(chunks))
    trace = tmp_path / "inline.trace"
    result = run_mavera(["stream", "--trace", str(trace), "--base-url", server.base_url, "hi"])
    assert result.stdout == b"in process\n"
    lines = trace_lines(trace)
    assert [line["type"] for line in lines][:2] == ["mavera.request", "mavera.response"]
    assert read_bytes(lines) == chunks[0]
    assert lines[-1]["type"] == "mavera.end" and lines[-1]["exit_code"] == 0
