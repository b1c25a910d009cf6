"""Markdown on a terminal and conversations (issue 14): rendered vs `--raw`, side by side.

    python bench/markdown.py [--quick] [--repeat N]

Each client runs as its own process with stdout on a real pseudo-terminal (ROWS x COLS,
drained by a thread that notes when the first byte arrives) and stderr on /dev/null,
against the bench's loopback server (`bench/server.py`, its own process). Runs alternate
rendered / raw so drift hits both alike. Scenarios and the issue's targets:

- `realistic`: ~20 KB of mixed markdown (headings, lists, tables, fenced code) in 5,000
  deltas, unpaced: rendered wall time <= raw + 0.5 s; first byte on screen within 100 ms
  of raw's.
- `pathological`: one 1.6 MB paragraph in 200,000 deltas: rendered <= 5x raw.
- `session`: `stream --session S` with a 50-turn session (stdout a pipe) against the same
  command without a session: the session adds < 20 ms (difference of medians).

`--raw` output is checked byte for byte (the text and one newline); rendered runs must exit 0.
Exit status: 0 when every run was right (targets are reported, not enforced), 1 otherwise.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import API_KEY, ROOT, Server
from bench.streams import Spec, build

ROWS, COLS = 40, 120


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def med(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def _environment(state: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAVERA_", "PYTHON")) and "proxy" not in key.lower()
    }
    env.update(
        MAVERA_API_KEY=API_KEY,
        TERM="xterm-256color",
        XDG_STATE_HOME=str(state),
        PYTHONPYCACHEPREFIX=str(ROOT / "bench" / "results" / "pycache"),
    )
    return env


def _mavera() -> list[str]:
    exe = Path(sys.executable).parent / "mavera"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mavera_cli"]


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[float, float, bytes, int]:
    """Run with stdout on a pty: (wall s, first byte s, bytes drawn, exit code)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # bytes as written, for the byte check
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    chunks: list[bytes] = []
    first: list[float] = []

    def drain() -> None:
        while True:
            try:
                piece = os.read(master, 1 << 20)
            except OSError:
                return
            if not piece:
                return
            if not first:
                first.append(time.perf_counter())
            chunks.append(piece)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*_mavera(), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    code = proc.wait(300)
    wall = time.perf_counter() - start
    reader.join(30)
    os.close(master)
    return wall, (first[0] - start) if first else float("nan"), b"".join(chunks), code


def in_pipe(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*_mavera(), *args], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120
    )
    return time.perf_counter() - start, proc.returncode


def render_vs_raw(
    server: Server, route: str, text: str, repeat: int, env: dict[str, str]
) -> dict[str, Runs]:
    runs = {"rendered": Runs(), "raw": Runs()}
    base = ["stream", "--base-url", server.base_url(route), "benchmark"]
    expected = (text if text.endswith("\n") else text + "\n").encode()
    for _ in range(repeat):
        for name, extra in (("rendered", []), ("raw", ["--raw"])):
            wall, first, drawn, code = on_terminal([*base, *extra], env)
            result = runs[name]
            result.wall.append(wall)
            result.first.append(first)
            if code != 0:
                result.wrong.append(f"exit {code}")
            elif name == "raw" and drawn != expected:
                result.wrong.append(f"raw output differs ({len(drawn)} of {len(expected)} bytes)")
    return runs


def session_start(server: Server, route: str, repeat: int, state: Path) -> dict[str, Runs]:
    from mavera_cli.sessions import Session, Turn, save_session, session_path

    env = _environment(state)
    environ = {"XDG_STATE_HOME": str(state)}
    answer = "word " * 200
    session = Session("bench", session_path("bench", environ))
    for n in range(50):
        items = [
            {"role": "user", "content": f"question {n}"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": answer, "annotations": []}],
            },
        ]
        session.turns.append(Turn(items, f"resp_{n}", 1.0))
    save_session(session, None, environ)
    pristine = session.path.read_bytes()
    runs = {"with session": Runs(), "without": Runs()}
    base = ["stream", "--base-url", server.base_url(route)]
    for _ in range(repeat):
        for name, extra in (("with session", ["--session", "bench"]), ("without", [])):
            session.path.write_bytes(pristine)  # always 50 turns before the run
            wall, code = in_pipe([*base, *extra, "benchmark"], env)
            runs[name].wall.append(wall)
            if code != 0:
                runs[name].wrong.append(f"exit {code}")
    return runs


def table(title: str, runs: dict[str, Runs], with_first: bool) -> str:
    lines = [title, f"{'client':<14}{'median s':>10}{'min s':>9}{'max s':>9}"]
    if with_first:
        lines[-1] += f"{'first byte s':>14}"
    lines[-1] += "  output"
    for name, result in runs.items():
        row = (
            f"{name:<14}{result.med(result.wall):>10.3f}{min(result.wall):>9.3f}"
            f"{max(result.wall):>9.3f}"
        )
        if with_first:
            row += f"{result.med(result.first):>14.3f}"
        row += "  " + ("; ".join(result.wrong) if result.wrong else f"ok x{len(result.wall)}")
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller streams")
    parser.add_argument("--repeat", type=int, default=None, help="runs per client")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    paragraph_deltas = 50_000 if args.quick else 200_000
    specs = {
        "realistic": Spec(kind="markdown", n=5000, size=20_000),
        "pathological": Spec(kind="paragraph", n=paragraph_deltas, size=8),
        "tiny": Spec(kind="text", n=20, size=8),
    }
    texts = {name: build(spec).text for name, spec in specs.items()}
    state = Path(tempfile.mkdtemp(prefix="mavera-bench-"))
    env = _environment(state)
    report: list[str] = []
    targets: list[tuple[str, str, bool]] = []
    wrong = False
    try:
        with Server(specs) as server:
            on_terminal(["stream", "--base-url", server.base_url("tiny"), "warm"], env)
            real = render_vs_raw(server, "realistic", texts["realistic"], repeat, env)
            report.append(table("realistic: 20 KB mixed markdown, 5,000 deltas", real, True))
            extra = real["rendered"].med(real["rendered"].wall) - real["raw"].med(real["raw"].wall)
            first = real["rendered"].med(real["rendered"].first) - real["raw"].med(
                real["raw"].first
            )
            targets.append(
                ("realistic: rendered - raw wall <= 0.5 s", f"{extra:+.3f} s", extra <= 0.5)
            )
            targets.append(
                (
                    "realistic: first byte within 100 ms of raw",
                    f"{first * 1000:+.0f} ms",
                    first <= 0.1,
                )
            )
            path = render_vs_raw(server, "pathological", texts["pathological"], repeat, env)
            size = f"{len(texts['pathological']) / 1e6:.1f} MB"
            report.append(table(f"pathological: one {size} paragraph", path, True))
            ratio = path["rendered"].med(path["rendered"].wall) / path["raw"].med(path["raw"].wall)
            targets.append(("pathological: rendered <= 5x raw", f"{ratio:.2f}x", ratio <= 5))
            sess = session_start(server, "tiny", max(repeat * 3, 9), state)
            report.append(table("session: 50-turn session vs none (stdout a pipe)", sess, False))
            added = sess["with session"].med(sess["with session"].wall) - sess["without"].med(
                sess["without"].wall
            )
            targets.append(
                ("session: 50 turns add < 20 ms", f"{added * 1000:+.1f} ms", added < 0.02)
            )
            wrong = any(r.wrong for group in (real, path, sess) for r in group.values())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    width = max(len(name) for name, _, _ in targets)
    report.append(
        "targets\n"
        + "\n".join(
            f"{name:<{width}}  {value:>10}  {'PASS' if ok else 'FAIL'}"
            for name, value, ok in targets
        )
    )
    text = "\n\n".join(report)
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "markdown-latest.txt").write_text(text + "\n")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
