"""`mavera batch` benchmark (issue 13): all clients side by side in one run, ratios printed.

    python bench/batch.py            # full sizes (a few minutes on 2 cores)
    python bench/batch.py --quick    # a quarter of the items: indicative only

The server is the built-in mock in this process (loopback, 50 ms think time, 20 deltas per
answer), fresh for every client run so its counts (requests per prompt, 429s) are that
client's. Scenarios:

- fanout: N prompts, concurrency 16, no rate limit; time per item against the floor (a
  hand-tuned asyncio + httpx client with bytes-level SSE parsing, bench/clients/), the
  official SDK with a semaphore, and `xargs -P 16 mavera stream` (on a subset: a process
  per prompt is slow);
- paced: 600 prompts, 100 requests per 1 s sliding window, concurrency 32, with
  X-RateLimit-Reset in whole seconds (as Mavera sends it) and exact; wall against the
  window floor ((ceil(600/100) - 1) × 1 s + one think time), and 429s;
- memory: peak RSS of `mavera batch` for 20,000 prompts against 2,000;
- resume: SIGKILL after about half, the same command again: prompts requested twice among
  those finished before the kill, results missing.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clientenv import client_environment
from mavera_cli.mock import MockServer

HERE = Path(__file__).resolve().parent
THINK_MS = 50
# "You said: " + 18 words: the mock streams 20 word deltas.
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho"


def prompts(count: int, path: Path) -> Path:
    path.write_text("".join(f"{WORDS} {n}\n" for n in range(count)))
    return path


@functools.cache
def _environment() -> tuple[dict[str, str], list[str]]:
    try:
        return client_environment(HERE / "results" / "pycache")
    except OSError:
        return client_environment(Path(tempfile.gettempdir()) / "mavera-bench-pycache")


def env() -> dict[str, str]:
    """A user's environment (bench/clientenv.py), with a dummy key."""
    return {**_environment()[0], "MAVERA_API_KEY": "bench-key", "MAVERA_RETRIES": "10"}


def warm_up(work: Path) -> None:
    """One untimed run of every client: bytecode caches, page cache."""
    source = prompts(4, work / "warm.txt")
    for name in CLIENTS:
        with MockServer() as server:
            timed(client_cmd(name, server.base_url, source, 4), work / "warm.out")


def mavera() -> list[str]:
    return [sys.executable, "-m", "mavera_cli"]


def timed(cmd: Sequence[str], out: Path, *, shell: bool = False) -> tuple[float, int, str]:
    """Wall seconds, exit code and stderr of one run (stdout to `out`)."""
    started = time.monotonic()
    with out.open("wb") as sink:
        proc = subprocess.run(
            cmd if not shell else " ".join(cmd),
            stdout=sink,
            stderr=subprocess.PIPE,
            env=env(),
            shell=shell,
            timeout=1800,
        )
    return time.monotonic() - started, proc.returncode, proc.stderr.decode(errors="replace")


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def client_cmd(name: str, url: str, source: Path, j: int) -> list[str]:
    if name == "mavera batch":
        return [*mavera(), "batch", "--lines", str(source), "-j", str(j), "--base-url", url, "-q"]
    script = {"floor (asyncio+httpx)": "batch_hand_tuned.py", "openai SDK": "batch_openai_sdk.py"}
    return [sys.executable, str(HERE / "clients" / script[name]), url, str(source), str(j)]


CLIENTS = ("floor (asyncio+httpx)", "mavera batch", "openai SDK")


def fanout(work: Path, count: int, xargs_count: int) -> list[str]:
    source = prompts(count, work / "fanout.txt")
    rows = []
    per_item: dict[str, float] = {}
    for name in CLIENTS:
        with MockServer(think_ms=THINK_MS) as server:
            wall, code, err = timed(client_cmd(name, server.base_url, source, 16), work / "out")
            ok = code in (0,) and lines(work / "out") == count
            per_item[name] = wall / count
            rows.append((name, count, wall, per_item[name], server.requests_seen, ok, err))
    small = prompts(xargs_count, work / "xargs.txt")
    if shutil.which("xargs"):
        with MockServer(think_ms=THINK_MS) as server:
            cmd = [
                "xargs",
                "-P",
                "16",
                "-d",
                "'\\n'",
                "-I{}",
                *mavera(),
                "stream",
                "-q",
                "--base-url",
                server.base_url,
                "'{}'",
                "<",
                str(small),
            ]
            wall, code, err = timed(cmd, work / "out", shell=True)
            ok = code == 0 and lines(work / "out") == xargs_count
            per_item["xargs -P 16 mavera stream"] = wall / xargs_count
            rows.append(
                (
                    "xargs -P 16 mavera stream",
                    xargs_count,
                    wall,
                    wall / xargs_count,
                    server.requests_seen,
                    ok,
                    err,
                )
            )
    floor = per_item[CLIENTS[0]]
    out = [
        "## fanout: concurrency 16, no limit, 50 ms think, 20 deltas",
        "| client | items | wall s | ms/item | vs floor | requests | output |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, n, wall, each, requests, ok, err in rows:
        status = "ok" if ok else f"FAILED {err.strip()[-120:]!r}"
        out.append(
            f"| {name} | {n} | {wall:.2f} | {each * 1000:.2f} | {each / floor:.2f}× | "
            f"{requests} | {status} |"
        )
    out.append(f"target: mavera ≤ 1.3× floor → {per_item['mavera batch'] / floor:.2f}×")
    return out


def paced(work: Path, count: int) -> list[str]:
    source = prompts(count, work / "paced.txt")
    limit, seconds = 100, 1.0
    floor = (math.ceil(count / limit) - 1) * seconds + THINK_MS / 1000
    out = [
        f"## paced: {count} items, {limit} per {seconds:g} s sliding window, concurrency 32",
        f"window floor: {floor:.2f} s",
        "| client | reset | wall s | vs window floor | requests | 429s | 429 % | output |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for exact in (False, True):
        for name in CLIENTS:
            with MockServer(think_ms=THINK_MS, rate_limit=f"{limit}/{seconds:g}") as server:
                assert server.window is not None
                server.window.fractional_reset = exact
                wall, code, err = timed(client_cmd(name, server.base_url, source, 32), work / "o")
                ok = code == 0 and lines(work / "o") == count
                requests, refused = server.requests_seen, server.rate_limited
            status = "ok" if ok else f"FAILED {err.strip()[-120:]!r}"
            out.append(
                f"| {name} | {'exact' if exact else 'whole s'} | {wall:.2f} | "
                f"{wall / floor:.2f}× | {requests} | {refused} | "
                f"{100 * refused / max(1, requests):.1f} | {status} |"
            )
    out.append("target: mavera ≤ 1.10× the window floor with 429s ≤ 1 % of requests")
    return out


def memory(work: Path, small: int, large: int) -> list[str]:
    out = ["## memory: peak RSS of mavera batch (no think time, -j 16)"]
    rss: dict[int, float] = {}
    for count in (small, large):
        source = prompts(count, work / f"mem{count}.txt")
        with MockServer() as server:
            report = work / "time.txt"
            cmd = ["/usr/bin/time", "-f", "%M", "-o", str(report)]
            cmd += client_cmd("mavera batch", server.base_url, source, 16)
            wall, code, err = timed(cmd, work / "m")
            assert code == 0 and lines(work / "m") == count, err
            rss[count] = int(report.read_text().split()[-1]) / 1024
        out.append(f"- {count} items: {rss[count]:.1f} MiB peak RSS ({wall:.1f} s)")
    out.append(f"target: ≤ 1.2× → {rss[large] / rss[small]:.2f}×")
    return out


def resume(work: Path, count: int) -> list[str]:
    source = prompts(count, work / "resume.txt")
    results = work / "resume.jsonl"
    with MockServer(think_ms=20) as server:
        cmd = client_cmd("mavera batch", server.base_url, source, 16)
        cmd = [*cmd, "-o", str(results)]
        proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.DEVNULL)
        while not results.exists() or lines(results) < count // 2:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {
            json.loads(raw)["id"]
            for raw in results.read_bytes().splitlines(keepends=True)
            if raw.endswith(b"\n")
        }
        subprocess.run(cmd, env=env(), check=True, stderr=subprocess.DEVNULL)
        seen = dict(server.inputs_seen)
    final = {json.loads(raw)["id"] for raw in results.read_bytes().splitlines()}
    twice = sum(1 for i in before if seen.get(f"{WORDS} {int(i) - 1}", 0) > 1)
    missing = count - len(final)
    return [
        f"## resume: {count} items, SIGKILL after {len(before)} results, then the same command",
        f"finished before the kill and requested again: {twice} (target 0); "
        f"missing: {missing} (target 0)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the items")
    parser.add_argument(
        "--only", default="fanout,paced,memory,resume", help="scenarios, comma-separated"
    )
    args = parser.parse_args(argv)
    scale = 4 if args.quick else 1
    only = set(args.only.split(","))
    report: list[str] = [f"# mavera batch bench ({'quick' if args.quick else 'full'})"]
    cleared = _environment()[1]
    if cleared:
        report.append(f"cleared for the clients: {', '.join(cleared)}")
    with tempfile.TemporaryDirectory(prefix="mavera-bench-batch-") as tmp:
        work = Path(tmp)
        warm_up(work)
        if "fanout" in only:
            report += fanout(work, 2000 // scale, 200 // scale)
        if "paced" in only:
            report += paced(work, 600 // (2 if args.quick else 1))
        if "memory" in only:
            report += memory(work, 2000 // scale, 20000 // scale)
        if "resume" in only:
            report += resume(work, 1000 // scale)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
