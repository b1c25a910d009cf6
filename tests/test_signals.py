"""Signals and closed pipes end the process the way Unix tools do, keeping what was received."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import mavera_env
from tests.scripted_server import text_stream


def start(server, *args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args, "--base-url", server.base_url, "hi"],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=mavera_env(),
    )


def wait_for_output(proc: subprocess.Popen, expected: bytes, timeout: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while expected not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            data += proc.stdout.read1(65536)
    assert expected in data, data
    return data


def serve_part_then_hold(server) -> threading.Event:
    """Stream "received " and then hold the connection until the returned event is set."""
    events = text_stream(["received ", "never"])
    release = threading.Event()

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(events[:4])
        release.wait(10)

    server.script(handler)
    return release


def test_head_closing_the_pipe_ends_quietly(server) -> None:
    # Far more output than `head -c 20` reads, paced so the pipe closes mid-stream.
    events = text_stream(["0123456789"] * 5000)

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(events, pause=0.0005)

    server.script(handler)
    pipeline = subprocess.run(
        f"{sys.executable} -m mavera_cli stream --base-url {server.base_url} hi | head -c 20; "
        'echo "status=${PIPESTATUS[0]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        env=mavera_env(),
        timeout=30,
    )
    assert pipeline.stdout == b"01234567890123456789"
    stderr = pipeline.stderr.decode()
    assert "Traceback" not in stderr
    assert stderr.strip() in ("status=141", "status=0"), stderr  # 0: finished before head closed


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGQUIT, 131)],
)
def test_signal_mid_stream_keeps_received_text(server, sig: signal.Signals, code: int) -> None:
    release = serve_part_then_hold(server)
    proc = start(server, "stream")
    try:
        early = wait_for_output(proc, b"received ")
        proc.send_signal(sig)
        rest, stderr = proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    # The partial text ends with a newline (issue 11 item 10), so the prompt does not land on it.
    assert early + rest == b"received \n", stderr
    assert proc.returncode == code
    assert b"Traceback" not in stderr


def test_sigint_while_waiting_for_the_server(server) -> None:
    release = threading.Event()
    server.script(lambda ex, wire: release.wait(10))
    proc = start(server, "stream", "--events")
    try:
        time.sleep(0.8)
        proc.send_signal(signal.SIGINT)
        out, stderr = proc.communicate(timeout=10)
    finally:
        release.set()
    assert proc.returncode == 130
    # An NDJSON reader learns how it ended, even before the first event (issue 11 item 10).
    assert json.loads(out) == {
        "type": "mavera.error",
        "exit_code": 130,
        "error": "interrupted",
        "message": "interrupted",
    }
    assert b"Traceback" not in stderr


RACE = """
import os, random, signal, sys, time
from mavera_cli import tools

class Alarm(Exception):
    pass

def ring(signum, frame):
    raise Alarm()

signal.signal(signal.SIGALRM, ring)
random.seed(7)
interrupted = 0
for _ in range(500):
    try:  # (the timer may ring before the call: inside the try too)
        signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0002, 0.004))
        tools.run_command(["/bin/sh", "-c", "sleep 0.005; echo x"], b"", dict(os.environ), 5)
    except Alarm:
        interrupted += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
time.sleep(0.1)
left = 0
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    left += 1
    if pid == 0:
        break
print(interrupted, left)
"""


def test_a_tool_interrupted_while_it_starts_is_not_left_running() -> None:
    """A signal (here a timer, as --max-time's) that came while Popen was starting a tool
    left it running, unknown to us: it wrote on our stderr after our last line (seen in CI
    as a BrokenPipeError report). 500 starts, each interrupted at a random moment within
    4 ms: before, 4 to 8 commands were left behind; now none."""
    proc = subprocess.run(
        [sys.executable, "-c", RACE], capture_output=True, env=mavera_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    interrupted, left = map(int, proc.stdout.split())
    assert interrupted > 400  # the timer did land mostly while the tool was being started
    assert left == 0


def test_a_closed_terminal_leaves_no_temporary_file_and_ends_the_trace(
    server, tmp_path: Path
) -> None:
    """SIGHUP (the terminal closed) ended the process by its default action: a capture's
    temporary file stayed, the trace had no end line."""
    release = serve_part_then_hold(server)
    capture, trace = tmp_path / "run.sse", tmp_path / "run.trace"
    proc = start(server, "stream", "--save-raw", str(capture), "--trace", str(trace))
    try:
        wait_for_output(proc, b"received ")
        proc.send_signal(signal.SIGHUP)
        _, stderr = proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129, stderr
    assert not [path for path in tmp_path.iterdir() if ".tmp" in path.name]
    last = json.loads(trace.read_text().splitlines()[-1])
    assert last["type"] == "mavera.end" and last["exit_code"] == 129


def test_sigterm_at_any_moment_of_start_up_ends_quietly(server) -> None:
    """The handler was in place before the code that reports it was imported: a SIGTERM in
    that window (25–50 ms in) gave a traceback and exit 1, or, inside orjson's module
    initialisation, a segfault."""
    release = threading.Event()
    server.script(*[lambda ex, wire: release.wait(10)] * 30)
    try:
        for step in range(30):
            proc = start(server, "stream")
            time.sleep(step * 0.004)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
            assert b"Traceback" not in stderr and b"internal error" not in stderr, step
            assert proc.returncode in (143, -signal.SIGTERM), (step, stderr)
    finally:
        release.set()
