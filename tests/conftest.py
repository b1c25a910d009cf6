"""Shared fixtures: an isolated environment, the CLI as a subprocess, a scripted local server."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
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
) -> Result:
    """Run the CLI like CI does (no TTY, stdin closed unless given) and check it ended well."""
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        env=mavera_env(env, key),
        timeout=timeout,
    )
    result = Result(proc.stdout, proc.stderr.decode("utf-8", "replace"), proc.returncode)
    assert "Traceback" not in result.stderr, result.stderr
    if expect is not None:
        assert result.code == expect, f"exit {result.code}, stderr: {result.stderr}"
    return result


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
