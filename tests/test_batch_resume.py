"""`batch` killed with SIGKILL mid-run, then the same command again: nothing finished is lost
or requested twice (counted at the server), and nothing is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from mavera_cli.mock import MockServer
from tests.conftest import mavera_env, run_mavera


def _finished(path: Path) -> dict[str, int]:
    """id -> latest exit code, over the whole lines of a results file."""
    latest: dict[str, int] = {}
    for raw in path.read_bytes().splitlines(keepends=True):
        if raw.endswith(b"\n"):
            line = json.loads(raw)
            latest[line["id"]] = line["exit_code"]
    return latest


def test_kill_9_mid_run_then_the_same_command_resumes(tmp_path: Path) -> None:
    count = 60
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"prompt {n}\n" for n in range(count)))
    out = tmp_path / "results.jsonl"
    with MockServer(think_ms=40, pace_ms=5) as server:
        args = ["batch", "--lines", str(source), "-j", "4", "-o", str(out)]
        env = mavera_env({"MAVERA_BASE_URL": server.base_url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "mavera_cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                if out.exists() and out.read_bytes().count(b"\n") >= 20:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the batch ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stderr is not None
            proc.stderr.close()
        before = _finished(out)
        assert 20 <= len(before) < count
        assert set(before.values()) == {0}
        # Whatever the kill cut short (a torn last line too) is run again; only that.
        result = run_mavera(args, env={"MAVERA_BASE_URL": server.base_url})
        seen = dict(server.inputs_seen)
    after = _finished(out)
    assert after == {str(n): 0 for n in range(1, count + 1)}, "a result is missing"
    twice = {text for text, n in seen.items() if n > 1}
    finished_first = {f"prompt {int(i) - 1}" for i in before}
    assert not twice & finished_first, "a finished item was requested again"
    assert len(twice) <= 4, "only items in flight at the kill may run twice"
    assert set(seen) == {f"prompt {n}" for n in range(count)}
    assert f"{len(before)} already done" in result.stderr


def test_ctrl_c_exits_130_with_every_finished_line_written(tmp_path: Path) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"prompt {n}\n" for n in range(200)))
    out = tmp_path / "results.jsonl"
    with MockServer(think_ms=40) as server:
        args = ["batch", "--lines", str(source), "-j", "4", "-o", str(out)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "mavera_cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=mavera_env({"MAVERA_BASE_URL": server.base_url}),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            out.exists() and out.read_bytes().count(b"\n") >= 8
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        asked = server.requests_seen
    assert "Traceback" not in stderr
    data = out.read_bytes()
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.splitlines()]
    finished = [line for line in lines if line["exit_code"] == 0]
    cut = [line for line in lines if line["exit_code"] != 0]
    assert 8 <= len(finished) < 200
    # Every started item has its line: those cut by Ctrl-C say so, and a re-run runs them.
    assert all(line["exit_code"] == 130 and line["error"] == "interrupted" for line in cut)
    assert len(cut) <= 4
    assert asked - len(lines) <= 4, "nothing new starts after Ctrl-C"
