"""Offline use through the CLI: `mavera mock` with every fault, `--mock`, `personas`, `replay`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import mavera_env, run_mavera


@contextmanager
def mock_server(*args: str) -> Iterator[str]:
    """`mavera mock ARGS` as a real process; yields the base URL it printed first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", "mock", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mavera_env(key=None),
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/api/v1"), line
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


FAULT_EXIT_CODES = {
    "rate-limit": 5,
    "server-error": 8,
    "drop-after:5": 7,
    "stall-after:5": 6,
    "failed": 10,
    "incomplete": 10,
    "bad-json": 11,
}


@pytest.mark.parametrize(("fault", "code"), list(FAULT_EXIT_CODES.items()))
def test_every_fault_kind_gives_its_exit_code(fault: str, code: int) -> None:
    with mock_server("--fault", fault) as url:
        args = ["stream", "--base-url", url, "--retries", "0", "--timeout", "1", "fault test"]
        result = run_mavera(args, expect=code)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mavera: error: ")


def test_fail_first_is_recovered_by_retries() -> None:
    with mock_server("--fault", "server-error", "--fail-first", "1") as url:
        result = run_mavera(["stream", "--base-url", url, "hello again"])
    assert result.stdout == b"You said: hello again\n"
    assert "retry 1" in result.stderr


def test_non_loopback_host_is_refused() -> None:
    result = run_mavera(["mock", "--host", "0.0.0.0"], expect=2)
    assert "loopback" in result.stderr


def test_bad_fault_spec_is_a_usage_error() -> None:
    run_mavera(["mock", "--fault", "drop-after:x"], expect=2)


@pytest.mark.parametrize("command", ["stream", "ask"])
def test_mock_flag_needs_no_key_and_echoes(command: str) -> None:
    result = run_mavera([command, "--mock", "hello", "world"], key=None)
    assert result.stdout == b"You said: hello world\n"


def test_mock_events_are_a_full_ordered_sequence() -> None:
    result = run_mavera(["stream", "--mock", "--events", "hi"], key=None)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [event["type"] for event in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-1] == "response.completed"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert "credits_used" in events[-1]["response"]["usage"]


def test_personas_piped_are_json_lines() -> None:
    result = run_mavera(["personas", "--mock"], key=None)
    personas = [json.loads(line) for line in result.stdout.splitlines()]
    assert personas and all({"id", "name", "category"} <= set(p) for p in personas)


def test_personas_against_a_server(server) -> None:
    data = {"object": "list", "data": [{"id": "clx1", "name": "Gen Z", "category": "Generational"}]}
    server.script(lambda ex, wire: wire.respond(200, data))
    result = run_mavera(["personas", "--base-url", server.base_url])
    assert json.loads(result.stdout) == data["data"][0]
    assert server.requests[0].method == "GET" and server.requests[0].path == "/api/v1/personas"


def test_save_raw_from_mock_then_replay(tmp_path: Path) -> None:
    capture = tmp_path / "run.sse"
    streamed = run_mavera(["stream", "--mock", "--save-raw", str(capture), "replay me"], key=None)
    # Reading stops at the terminal event, so the capture ends with it.
    assert b"event: response.completed" in capture.read_bytes().split(b"\n\n")[-2]
    assert run_mavera(["replay", str(capture)]).stdout == streamed.stdout
    assert run_mavera(["replay", "-"], stdin=capture.read_bytes()).stdout == streamed.stdout


def test_replay_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_mavera(["replay", str(tmp_path / "nope.sse")], expect=2)
    assert "nope.sse" in result.stderr


def test_installed_entry_point_streams_offline_without_a_key() -> None:
    """What a newcomer runs after `pip install .`: the console script, no key, no network."""
    script = Path(sys.executable).with_name("mavera")
    if not script.exists():
        script = Path(shutil.which("mavera") or "mavera")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAVERA_")}
    env["HTTPS_PROXY"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # any real request would fail
    proc = subprocess.run(
        [str(script), "stream", "--mock", "hello"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"You said: hello\n"
