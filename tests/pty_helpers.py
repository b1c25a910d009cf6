"""Run the CLI with stderr on a pseudo-terminal and stdout on a pipe, as a person at a terminal
piping the product into another tool would: what is drawn on stderr can be read as it appears.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence

from tests.conftest import mavera_env

COLUMNS, LINES = 100, 30
# CSI sequences (colours, cursor moves, erase) and the bare cursor controls rich uses.
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[78]|\r")
SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"
ERASE_LINE = b"\x1b[2K"


def strip_ansi(data: bytes) -> str:
    """The text drawn, without escape sequences."""
    return _ANSI.sub(b"", data).decode("utf-8", "replace")


class PtyRun:
    """One `mavera` process: stderr is a pty (read through `master`), stdout a pipe."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        environ = {"TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mavera_cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=mavera_env({**environ, **(env or {})}),
        )
        os.close(slave)  # the child holds the only copy: EOF on the master when it exits
        self.stderr = b""
        self.stdout = b""

    def read_stderr_until(self, done: Callable[[bytes], bool], timeout: float = 15) -> bool:
        """Read the pty (and drain stdout) until `done(all stderr so far)`, EOF or timeout."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        open_fds = {self.master, out}
        while not done(self.stderr):
            left = deadline - time.monotonic()
            if left <= 0 or self.master not in open_fds:
                break
            ready, _, _ = select.select(list(open_fds), [], [], left)
            if not ready:
                break
            for fd in ready:
                try:
                    piece = os.read(fd, 65536)
                except OSError:  # EIO: the child exited and closed the pty
                    piece = b""
                if not piece:
                    open_fds.discard(fd)
                elif fd == out:
                    self.stdout += piece
                else:
                    self.stderr += piece
        return done(self.stderr)

    def stdout_is_empty_now(self, wait: float = 0.3) -> bool:
        """Nothing has been written to stdout so far (checked again after `wait` seconds)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout.fileno()], [], [], wait)
        return not self.stdout and not ready

    def finish(self, timeout: float = 15) -> int:
        """Read stderr to EOF and stdout to the end; return the exit code."""
        self.read_stderr_until(lambda _: False, timeout)
        assert self.proc.stdout is not None
        self.stdout += self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            os.close(self.master)


def run_on_a_pty(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    *,
    as_written: bool = False,
) -> tuple[bytes, str, int]:
    """`mavera ARGS` with stdout on a pseudo-terminal: what it drew, stderr, exit status
    (`as_written`: without the terminal's output processing, so LF stays LF)."""
    master, slave = pty.openpty()
    if as_written:
        attributes = termios.tcgetattr(slave)
        attributes[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attributes)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=mavera_env({"TERM": "xterm-256color", **(env or {})}),
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            piece = os.read(master, 65536)
        except OSError:  # EIO: the child exited
            break
        if not piece:
            break
        drawn += piece
    os.close(master)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    return drawn, stderr, proc.wait(timeout=timeout)


def run_with_pty_stderr(args: Sequence[str]) -> tuple[int, bytes, bytes]:
    """Run mavera with stderr on a pseudo-terminal: (exit code, stdout, what the pty got)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=mavera_env(),
    )
    os.close(follower)
    stdout, _ = proc.communicate(timeout=30)
    return proc.returncode, stdout, _drain(leader)


def _drain(leader: int) -> bytes:
    """What the pseudo-terminal got, until it goes quiet or its other end closes."""
    shown = b""
    while select.select([leader], [], [], 0.5)[0]:
        try:
            piece = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not piece:
            break
        shown += piece
    os.close(leader)
    return shown
