"""`batch`'s progress bar: drawn on a TTY stderr (a real pty), never into stdout, and
nothing decorative when stderr is a pipe."""

from __future__ import annotations

import json
from pathlib import Path

from mavera_cli.mock import MockServer
from tests.conftest import run_mavera
from tests.pty_helpers import SHOW_CURSOR, PtyRun, strip_ansi


def test_progress_bar_on_a_tty_then_the_summary(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"p{n}\n" for n in range(16)))
    with MockServer(think_ms=120) as server:
        run = PtyRun(["batch", "--lines", str(source), "-j", "2", "--base-url", server.base_url])
        try:
            drawn = run.read_stderr_until(lambda data: b"in flight" in data, timeout=15)
            code = run.finish()
        finally:
            run.close()
    assert drawn, run.stderr
    assert code == 0
    text = strip_ansi(run.stderr)
    assert "2 in flight" in text and "credits" in text and "/16" in text
    assert SHOW_CURSOR in run.stderr, "the bar gives the cursor back"
    assert "batch: 16 to run: 16 ok" in text
    lines = run.stdout.decode().splitlines()
    assert len(lines) == 16 and all(json.loads(line)["exit_code"] == 0 for line in lines)
    assert b"\x1b" not in run.stdout


def test_no_bar_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    with MockServer(think_ms=50) as server:
        result = run_mavera(
            ["batch", "--lines", "-", "-j", "2"],
            stdin=b"a\nb\nc\nd\n",
            env={"MAVERA_BASE_URL": server.base_url},
        )
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mavera: batch: 4 to run")
    assert "\x1b" not in result.stderr
