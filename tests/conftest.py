"""Shared fixtures: an isolated environment, the CLI run in-process or as a subprocess, and a
scripted local server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.scripted_server import ScriptedServer

REPO = Path(__file__).resolve().parent.parent
# The shared corpus of real recordings: beside the checkout (as CI clones it), or where
# MAVERA_FIXTURES points. A fresh clone may have neither; then the bundled copies of four of
# them (tests/data/real) are what the real-recording tests run on.
FIXTURES = REPO.parent / "shared" / "fixtures" / "real"
if not FIXTURES.is_dir():
    FIXTURES = Path(os.environ.get("MAVERA_FIXTURES", FIXTURES))
BUNDLED_FIXTURES = REPO / "tests" / "data" / "real"
HAVE_SHARED_FIXTURES = (FIXTURES / "manifest.json").is_file()
needs_shared_fixtures = pytest.mark.skipif(
    not HAVE_SHARED_FIXTURES,
    reason=f"the shared recordings are not at {FIXTURES} (clone shared/ beside the checkout "
    "or set MAVERA_FIXTURES); the bundled ones in tests/data/real were tested instead",
)
TEST_KEY = "mvra_live_SENTINELkey0123456789abcdefXYZ"


def real_recordings() -> list[dict[str, Any]]:
    """Manifest entries of the real recordings to test, each with its file as `path`: the
    whole shared corpus when it is there, else the bundled copies."""
    directory = FIXTURES if HAVE_SHARED_FIXTURES else BUNDLED_FIXTURES
    entries = json.loads((directory / "manifest.json").read_text())
    return [{**entry, "path": directory / entry["file"]} for entry in entries]


@dataclass
class Result:
    stdout: bytes
    stderr: str
    code: int

    @property
    def text(self) -> str:
        return self.stdout.decode()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config, key or proxy leaks into a test."""
    for name in list(os.environ):
        if (
            name.startswith("MAVERA_")
            or name in ("NO_COLOR", "FORCE_COLOR")
            or "proxy" in name.lower()
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def mavera_env(
    extra: Mapping[str, str] | None = None, key: str | None = TEST_KEY
) -> dict[str, str]:
    env = dict(os.environ)
    if key is not None:
        env["MAVERA_API_KEY"] = key
    env["PYTHONUNBUFFERED"] = "0"
    env.update(extra or {})
    return env


def run_mavera(
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    key: str | None = TEST_KEY,
    expect: int | None = 0,
    timeout: float = 30,
    process: bool = False,
) -> Result:
    """Run the CLI like CI does (no TTY, stdin empty unless given) and check it ended well.

    In this process by default (the real `entry.main`, real sockets, real servers: only the
    interpreter start is saved); `process=True` starts `python -m mavera_cli` instead, for what
    needs a process of its own (signals, closed descriptors, imports at start-up).
    """
    runner = _run_process if process else _run_in_process
    result = runner(list(args), stdin, mavera_env(env, key), timeout)
    assert "Traceback" not in result.stderr, result.stderr
    if expect is not None:
        assert result.code == expect, f"exit {result.code}, stderr: {result.stderr}"
    return result


def start_mavera(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    key: str | None = TEST_KEY,
    start_new_session: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m mavera_cli ARGS` running on its own, stdout and stderr as pipes, stdin
    closed: for tests that read output while it streams, or signal and kill the process
    (`start_new_session` for a process group of its own, `preexec_fn` for limits)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mavera_env(env, key),
        start_new_session=start_new_session,
        preexec_fn=preexec_fn,
    )


def _run_process(
    args: list[str], stdin: bytes | None, env: dict[str, str], timeout: float
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    return Result(proc.stdout, proc.stderr.decode("utf-8", "replace"), proc.returncode)


def _run_in_process(
    args: list[str], stdin: bytes | None, env: dict[str, str], timeout: float
) -> Result:
    from mavera_cli.entry import main

    streams = {
        name: io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
        for name, data in (("stdin", stdin or b""), ("stdout", b""), ("stderr", b""))
    }
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_environ = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    # A hung run is interrupted like Ctrl-C would (exit 130), so the test fails instead of
    # hanging; a real signal, so that a blocked socket read wakes up too.
    watchdog = threading.Timer(timeout, os.kill, (os.getpid(), signal.SIGINT))
    watchdog.daemon = True
    sys.stdin, sys.stdout, sys.stderr = streams["stdin"], streams["stdout"], streams["stderr"]
    try:
        watchdog.start()
        code = main(args)
    finally:
        watchdog.cancel()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.environ.clear()
        os.environ.update(saved_environ)
    out, err = streams["stdout"], streams["stderr"]
    with contextlib.suppress(ValueError):
        out.flush()
        err.flush()
    stdout = out.buffer.getvalue()  # type: ignore[attr-defined]
    stderr = err.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]
    return Result(stdout, stderr, code)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def one_line_error(stderr: str, *needles: str) -> str:
    """The error is one `mavera: error:` line naming every needle; that line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mavera: error: "), stderr
    for needle in needles:
        assert needle in lines[0], stderr
    return lines[0]


def read_pipe_until(fd: int, wanted: bytes, timeout: float = 15) -> bytes:
    """Read `fd` until `wanted` has arrived, EOF, or `timeout` seconds of nothing new."""
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        piece = os.read(fd, 65536)
        if not piece:
            break
        data += piece
    return data


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1 (not `localhost`, which may be ::1), any free port."""
    return ("127.0.0.1", 0)
