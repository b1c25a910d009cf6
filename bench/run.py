"""Benchmark harness for issue #8: mavera against the tools people compare it with.

    python bench/run.py [--quick] [--repeat N] [--only SCENARIO[,SCENARIO...]]
    python -m bench      (same options)

Starts a loopback SSE server (``bench/server.py``) per scenario, runs ``mavera`` and the
installed baselines (``bench/clients/``, ``curl | sed | jq``) against it, checks every
client's stdout byte for byte, and prints one table per scenario (medians of N runs, ratio
to the scenario's baseline) and a final table of the issue's targets. The tables are also
saved as Markdown, with the raw numbers as JSON, under ``bench/results/``.

Exit status: 0 when every output was right (whether or not the targets pass: it is a
report), 1 when any client printed wrong output or failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import importlib.util
import json
import marshal
import math
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clientenv import client_environment
from bench.streams import Spec, build, json_document, make_deltas

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLIENTS = BENCH / "clients"
PROMPT = "benchmark"
API_KEY = "bench-not-a-real-key"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
BUSY_WARN = 0.10  # fraction of all CPUs busy with other work before a scenario
SCENARIOS = (
    "throughput",
    "big",
    "utf8",
    "events",
    "json",
    "cold",
    "latency",
    "memory",
    "trace",
    "inspect",
)


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    throughput: int = 200_000  # deltas of 8 B
    big: int = 20_000  # deltas of 2 KiB
    utf8: int = 100_000  # deltas of 4 code points
    json_bytes: int = 1 << 20  # the JSON object the deltas spell, 8 B per delta
    latency: int = 50  # paced deltas per run (pooled over the runs)
    pace_ms: float = 20.0
    mem_small: int = 10_000
    mem_large: int = 1_000_000
    cold_factor: int = 3  # cold start and first delta: this many × --repeat runs (≥ 5)


FULL = Sizes()
QUICK = Sizes(
    throughput=40_000,
    big=4_000,
    utf8=20_000,
    json_bytes=256 << 10,
    latency=20,
    mem_small=10_000,
    mem_large=250_000,
    cold_factor=2,
)


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system, summed over the pipeline's processes
    rss_kib: int  # peak RSS of the largest process of the pipeline (os.wait4 per child)
    first_byte_s: float | None  # spawn -> first byte on the stdout pipe
    out: bytes
    codes: list[int]
    stderr: str
    reads: list[tuple[int, int]]  # (monotonic ns, bytes so far), timing mode only
    t0_ns: int = 0  # spawn time, time.monotonic_ns()
    timed_out: bool = False


class PipeReader(threading.Thread):
    """Drains the client's stdout pipe.

    Bulk mode reads up to 1 MiB at a time and, after a small read, sleeps 0.5 ms so that the
    harness costs ~1000 wake-ups/s instead of one per client write (the pipe is 1 MiB, so
    the client never blocks on it). Timing mode reads as soon as data arrives and records
    the time of every read.
    """

    def __init__(self, fd: int, timing: bool) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.timing = timing
        self.chunks: list[bytes] = []
        self.first_ns: int | None = None
        self.reads: list[tuple[int, int]] = []

    def run(self) -> None:
        total = 0
        try:
            while True:
                b = os.read(self.fd, 1 << 20)
                t = time.monotonic_ns()
                if not b:
                    break
                if self.first_ns is None:
                    self.first_ns = t
                self.chunks.append(b)
                total += len(b)
                if self.timing:
                    self.reads.append((t, total))
                elif len(b) < 65536:
                    time.sleep(0.0005)
        finally:
            os.close(self.fd)


class Spawner:
    """``bench/spawner.py``: a small process that starts and reaps the clients (see there)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(BENCH / "spawner.py"), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        theirs.close()

    def run(self, cmds: list[list[str]], fds: list[int], timeout: float) -> dict[str, Any]:
        msg = marshal.dumps({"cmds": cmds, "timeout": timeout})
        socket.send_fds(self.sock, [msg], fds)
        reply = self.sock.recv(1 << 16)
        if not reply:
            raise RuntimeError("bench spawner died")
        return dict(marshal.loads(reply))

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_pipeline(
    spawner: Spawner, cmds: list[list[str]], *, timing: bool = False, timeout: float = 300
) -> Run:
    """Run ``cmds`` as a pipeline (stdin /dev/null, stdout a pipe we drain) and wait for it."""
    r, w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    reader = PipeReader(r, timing)
    reader.start()
    with contextlib.ExitStack() as stack:
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in cmds]
        try:
            res = spawner.run(cmds, [w, *(f.fileno() for f in errs)], timeout)
        finally:
            os.close(w)
        reader.join(60)
        stderr = []
        for f in errs:
            f.seek(0)
            stderr.append(f.read().decode("utf-8", "replace"))
    t0 = int(res["t0_ns"])
    return Run(
        wall_s=(int(res["t1_ns"]) - t0) / 1e9,
        cpu_s=float(res["cpu_s"]),
        rss_kib=int(res["rss_kib"]),
        first_byte_s=None if reader.first_ns is None else (reader.first_ns - t0) / 1e9,
        out=b"".join(reader.chunks),
        codes=list(res["codes"]),
        stderr="".join(stderr),
        reads=reader.reads,
        t0_ns=t0,
        timed_out=bool(res["timed_out"]),
    )


class Server:
    """``bench/server.py`` in a subprocess, serving ``routes`` (name -> Spec)."""

    def __init__(self, routes: dict[str, Spec]) -> None:
        self.routes = routes
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Server:
        arg = json.dumps({k: v.to_dict() for k, v in self.routes.items()})
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "server.py"), "--routes", arg],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.proc.kill()
            raise RuntimeError(f"bench server did not start (got {line!r})")
        self.url = line
        return self

    def base_url(self, route: str) -> str:
        return f"{self.url}/{route}/api/v1"

    def log(self, route: str) -> dict[str, Any]:
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", f"/{route}/_log")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()

    def write_log(self, route: str) -> list[int]:
        return list(self.log(route)["delta_write_ns"])

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()


# --------------------------------------------------------------------------- clients


@dataclass
class Client:
    key: str
    skip: str | None  # why it can't run here, or None


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.repeat: int = args.repeat or (3 if args.quick else 5)
        self.cold_runs = max(5, self.sizes.cold_factor * self.repeat)
        self.tmp = Path(tempfile.mkdtemp(prefix="mavera-bench-"))
        cache = args.out / "pycache"
        try:
            self.env, self.cleared = client_environment(cache)
        except OSError:
            self.env, self.cleared = client_environment(self.tmp / "pycache")
        self.env.update(MAVERA_API_KEY=API_KEY, OPENAI_API_KEY=API_KEY, NO_COLOR="1")
        # First, while this process is still small: see bench/spawner.py.
        self.spawner = Spawner(self.env)
        self.mavera, self.mavera_how = self._find_mavera(args.mavera)
        self.mavera_version = ""
        self.clients = self._probe()
        self.results: dict[str, Any] = {}
        self.markdown: list[str] = []
        self.busy_before: float | None = None

    @staticmethod
    def _find_mavera(override: str | None) -> tuple[list[str], str]:
        if override:
            return shlex.split(override), override
        exe = Path(sys.executable).parent / "mavera"
        if exe.exists():
            return [str(exe)], str(exe)
        return [sys.executable, "-m", "mavera_cli"], f"{sys.executable} -m mavera_cli"

    def _probe(self) -> dict[str, Client]:
        c: dict[str, Client] = {}
        try:
            p = subprocess.run(
                [*self.mavera, "--version"],
                env=self.env,
                cwd=ROOT,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=60,
            )
            ok = p.returncode == 0 and p.stdout.strip()
            self.mavera_version = p.stdout.decode(errors="replace").strip()
            why = (p.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            c["mavera"] = Client("mavera", None if ok else f"mavera not runnable: {why[:80]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            c["mavera"] = Client("mavera", f"mavera not runnable: {e}")
        c["hand"] = Client("hand", None if _has_module("httpx", "orjson") else "httpx/orjson")
        c["sse"] = Client("sse", None if _has_module("httpx", "httpx_sse", "orjson") else "")
        c["openai"] = Client("openai", None if _has_module("openai") else "openai not installed")
        missing = [t for t in ("curl", "sed", "jq") if shutil.which(t) is None]
        c["curl"] = Client("curl", f"{', '.join(missing)} not installed" if missing else None)
        for k in ("hand", "sse"):
            if c[k].skip == "" or c[k].skip == "httpx/orjson":
                c[k].skip = "httpx, httpx-sse or orjson not installed"
        return c

    def schema_file(self, schema: dict[str, object]) -> Path:
        path = self.tmp / "schema.json"
        path.write_text(json.dumps(schema, indent=2))
        return path


def _has_module(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


LABELS = {
    ("mavera", "text"): "mavera stream",
    ("mavera", "events"): "mavera stream --events",
    ("mavera", "json"): "mavera json --schema",
    ("hand", "text"): "hand-tuned (httpx iter_raw + orjson)",
    ("hand", "events"): "hand-tuned (httpx iter_raw + orjson)",
    ("hand", "json"): "hand-tuned (accumulate + orjson)",
    ("sse", "text"): "httpx + httpx-sse + orjson",
    ("sse", "events"): "httpx + httpx-sse + orjson",
    ("sse", "json"): "httpx + httpx-sse + orjson",
    ("openai", "text"): "openai SDK responses.create loop",
    ("openai", "events"): "openai SDK responses.create loop",
    ("curl", "text"): "curl | sed | jq -rj",
    ("curl", "events"): "curl | sed | jq -c",
}


def label(key: str, mode: str, live: bool = False) -> str:
    if key == "curl" and live:
        return "curl | sed -u | jq --unbuffered -rj"
    return LABELS[(key, mode)]


def commands(
    ctx: Context, key: str, mode: str, url: str, *, live: bool = False, schema: Path | None = None
) -> list[list[str]]:
    py = sys.executable
    if key == "mavera":
        if mode == "json":
            assert schema is not None
            return [[*ctx.mavera, "json", "--schema", str(schema), "--base-url", url, PROMPT]]
        extra = ["--events"] if mode == "events" else []
        return [[*ctx.mavera, "stream", *extra, "--base-url", url, PROMPT]]
    script = {"hand": "hand_tuned.py", "sse": "httpx_sse_loop.py", "openai": "openai_sdk.py"}
    if key in script:
        return [[py, str(CLIENTS / script[key]), mode, url, PROMPT]]
    assert key == "curl"
    body = json.dumps({"model": "mavera-1", "input": PROMPT, "stream": True})
    curl = [
        "curl", "-sS", "-N", "-X", "POST", url + "/responses",
        "-H", "Content-Type: application/json",
        "-H", "Accept: text/event-stream",
        "-H", f"Authorization: Bearer {API_KEY}",
        "--data-binary", body,
    ]  # fmt: skip
    sed = [
        "sed",
        *(["-u"] if live else []),
        "-n",
        "-e",
        r"/^data: \[DONE\]/d",
        "-e",
        "s/^data: //p",
    ]
    jq_filter = ["-c", "."] if mode == "events" else ["-rj", _JQ_TEXT]
    jq = ["jq", *(["--unbuffered"] if live else []), *jq_filter]
    return [curl, sed, jq]


SHORT = {
    "mavera": "mavera",
    "hand": "hand-tuned",
    "curl": "curl|sed|jq",
    "openai": "openai SDK",
    "sse": "httpx-sse",
}
_JQ_TEXT = 'select(.type=="response.output_text.delta") | .delta'


# --------------------------------------------------------------------------- checking


@dataclass
class Row:
    label: str
    key: str
    runs: list[Run] = field(default_factory=list)
    status: str = "ok"
    bad: bool = False  # a wrong output or a failed run (makes the exit status 1)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return bool(self.runs) and self.status.startswith("ok")

    def med(self, attr: str) -> float:
        vals = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(vals) if vals else math.nan


def first_diff(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on equal prefixes: fast for 100 MB outputs
        mid = (lo + hi) // 2
        if a[lo : mid + 1] == b[lo : mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def check(
    ctx: Context,
    scenario: str,
    row: Row,
    run: Run,
    expected: bytes,
    *,
    json_equal: bool = False,
) -> bool:
    """Record ``run`` on ``row`` if its exit status and output are right; else mark the row."""
    if run.timed_out or any(c != 0 for c in run.codes):
        tail = last_line(run.stderr)
        if row.key == "mavera" and scenario == "json" and run.codes[-1] == 2 and not run.out:
            row.status = f"n/a (not yet implemented? exit 2: {tail[:60]})"
            return False
        what = "timed out" if run.timed_out else f"exit {run.codes}"
        row.status = f"FAILED ({what})"
        row.bad = True
        print(f"!! {scenario}: {row.label}: {what}; stderr: {tail}", file=sys.stderr)
        return False
    if run.out == expected:
        row.runs.append(run)
        return True
    if json_equal:
        with contextlib.suppress(ValueError):
            if json.loads(run.out) == json.loads(expected):
                row.runs.append(run)
                row.status = "ok (same JSON, other formatting)"
                return True
    at = first_diff(run.out, expected)
    row.status = f"WRONG (byte {at} of {len(expected)})"
    row.bad = True
    dump = ctx.args.out / f"wrong-{scenario}-{row.key}.out"
    with contextlib.suppress(OSError):
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_bytes(run.out)
    print(
        f"!! {scenario}: {row.label}: WRONG OUTPUT: {len(run.out)} bytes, expected "
        f"{len(expected)}; first difference at byte {at}:\n"
        f"   got      {run.out[max(0, at - 40) : at + 40]!r}\n"
        f"   expected {expected[max(0, at - 40) : at + 40]!r}\n"
        f"   (whole output saved to {dump})",
        file=sys.stderr,
    )
    return False


def last_line(text: str) -> str:
    """The last meaningful stderr line (without rich's box drawing)."""
    lines = [ln.strip(" \t│╭╮╰╯─|") for ln in text.splitlines()]
    return next((ln for ln in reversed(lines) if ln), "")[:300]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_rows(
    ctx: Context,
    scenario: str,
    rows: list[Row],
    make: Callable[[Row], list[list[str]]],
    expected: Callable[[Row], bytes],
    repeat: int,
    *,
    timing: bool = False,
    json_equal: bool = False,
    after: Callable[[Row, Run], None] | None = None,
) -> None:
    """Run every runnable row ``repeat`` times, round-robin (so drift hits all alike)."""
    for i in range(repeat):
        for row in rows:
            if row.status != "ok" and not row.status.startswith("ok ("):
                continue
            run = run_pipeline(ctx.spawner, make(row), timing=timing)
            good = check(ctx, scenario, row, run, expected(row), json_equal=json_equal)
            if good and after is not None:
                after(row, run)
            run.out = b""  # checked; don't hold hundreds of MB
            run.reads = []
            progress(
                f"  {scenario:<10} {row.label:<40} run {i + 1}/{repeat}  {run.wall_s:7.3f} s"
                f"  {run.rss_kib / 1024:6.1f} MiB  {'ok' if good else row.status}"
            )


def skipped_rows(ctx: Context, keys: list[str], mode: str, live: bool = False) -> list[Row]:
    rows = []
    for k in keys:
        row = Row(label(k, mode, live), k)
        skip = ctx.clients[k].skip
        if skip is not None:
            row.status = f"n/a ({skip})" if k == "mavera" else f"skipped ({skip})"
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- output


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    right: set[int]

    def _widths(self, cells: list[list[str]]) -> list[int]:
        return [max(len(r[i]) for r in cells) for i in range(len(self.headers))]

    def plain(self) -> str:
        cells = [self.headers, *self.rows]
        widths = self._widths(cells)

        def line(r: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in self.right else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()

        return "\n".join(
            [line(self.headers), "  ".join("-" * w for w in widths), *map(line, self.rows[0:])]
        )

    def markdown(self) -> str:
        cells = [[c.replace("|", "\\|") for c in r] for r in [self.headers, *self.rows]]
        widths = self._widths(cells)

        def line(r: list[str]) -> str:
            return (
                "| "
                + " | ".join(
                    c.rjust(w) if i in self.right else c.ljust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
                + " |"
            )

        sep = "|" + "|".join(
            "-" * (w + 1) + ":" if i in self.right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        return "\n".join([line(cells[0]), sep + "|", *map(line, cells[1:])])


def fmt_table(headers: list[str], rows: list[list[str]], right: set[int]) -> Table:
    return Table(headers, rows, right)


def emit(ctx: Context, title: str, table: Table, note: str = "") -> None:
    busy = ctx.busy_before
    if busy is not None and busy > BUSY_WARN:
        note = (note + "\n\n" if note else "") + (
            f"WARNING: {busy:.0%} of the CPUs were busy with other work just before this "
            "scenario; its numbers are noisy."
        )
    print(f"\n== {title}\n\n{table.plain()}\n" + (f"\n{note}\n" if note else ""), flush=True)
    ctx.markdown.append(f"\n### {title}\n\n{table.markdown()}\n" + (f"\n{note}\n" if note else ""))


def num(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def ratio(a: float, b: float) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def mib(kib: float) -> str:
    return "–" if math.isnan(kib) else f"{kib / 1024:.1f}"


def status_cell(row: Row) -> str:
    if row.usable:
        return f"{row.status} ×{len(row.runs)}"
    return row.status


def throughput_table(
    ctx: Context, scenario: str, rows: list[Row], base: Row, base_name: str
) -> Table:
    out = []
    for r in rows:
        walls = [x.wall_s for x in r.runs]
        out.append(
            [
                r.label,
                num(r.med("wall_s")),
                num(min(walls)) if walls else "–",
                num(max(walls)) if walls else "–",
                ratio(r.med("wall_s"), base.med("wall_s")) if r.usable else "–",
                num(r.med("cpu_s"), 2),
                mib(r.med("rss_kib")),
                status_cell(r),
            ]
        )
    ctx.results.setdefault(scenario, {})["rows"] = [row_json(r) for r in rows]
    return fmt_table(
        [
            "client",
            "median s",
            "min s",
            "max s",
            f"vs {base_name}",
            "CPU s",
            "peak RSS MiB",
            "output",
        ],
        out,
        {1, 2, 3, 4, 5, 6},
    )


def row_json(r: Row) -> dict[str, Any]:
    return {
        "label": r.label,
        "status": r.status,
        "runs": [
            {
                "wall_s": x.wall_s,
                "cpu_s": x.cpu_s,
                "rss_kib": x.rss_kib,
                "first_byte_s": x.first_byte_s,
            }
            for x in r.runs
        ],
        **r.extra,
    }


def find(rows: list[Row], key: str) -> Row:
    return next(r for r in rows if r.key == key)


# --------------------------------------------------------------------------- scenarios


def stream_scenario(
    ctx: Context,
    scenario: str,
    title: str,
    spec: Spec,
    mode: str,
    keys: list[str],
    base_key: str,
    notes: str = "",
    skip: dict[str, str] | None = None,
) -> list[Row]:
    progress(f"[{scenario}] building streams …")
    if mode == "events":
        stream = build(spec)
        ndjson = stream.ndjson()
        del stream
        expected_by_key = {k: ndjson for k in keys}
    else:
        text = "".join(make_deltas(spec)).encode()
        expected_by_key = {k: text if k == "curl" else text + b"\n" for k in keys}
    rows = skipped_rows(ctx, keys, mode)
    for r in rows:
        if skip and r.key in skip and r.status == "ok":
            r.status = f"skipped ({skip[r.key]})"
    schema = None
    if mode == "json":
        _, sch = json_document(spec.size, spec.seed)
        schema = ctx.schema_file(sch)
    with Server({scenario: spec}) as srv:
        url = srv.base_url(scenario)
        sse_bytes = int(srv.log(scenario)["body_bytes"])
        run_rows(
            ctx,
            scenario,
            rows,
            lambda r: commands(ctx, r.key, mode, url, schema=schema),
            lambda r: expected_by_key[r.key],
            ctx.repeat,
            json_equal=(mode == "json"),
        )
    base = find(rows, base_key)
    out_len = len(next(iter(expected_by_key.values())))
    head = (
        f"{title}: {sse_bytes / 1e6:.1f} MB of SSE, {out_len / 1e6:.2f} MB on stdout; "
        f"median of {ctx.repeat} runs, whole process"
    )
    if mode == "json":
        head = (
            f"{title}: {len(make_deltas(spec)):,} deltas of {spec.n} B spelling a "
            f"{spec.size / 1e6:.2f} MB JSON object, {sse_bytes / 1e6:.1f} MB of SSE; "
            f"median of {ctx.repeat} runs"
        )
    ctx.results.setdefault(scenario, {})["title"] = head
    base_name = SHORT[base_key] + (" -c" if mode == "events" and base_key == "curl" else "")
    emit(ctx, head, throughput_table(ctx, scenario, rows, base, base_name), notes)
    return rows


def scenario_throughput(ctx: Context) -> None:
    s = ctx.sizes
    rows = stream_scenario(
        ctx,
        "throughput",
        f"throughput: {s.throughput:,} deltas × 8 B",
        Spec("text", s.throughput, 8),
        "text",
        ["mavera", "hand", "curl", "sse", "openai"],
        "hand",
    )
    ctx.results["throughput"]["_rows"] = rows


def scenario_big(ctx: Context) -> None:
    s = ctx.sizes
    rows = stream_scenario(
        ctx,
        "big",
        f"big deltas: {s.big:,} × 2 KiB",
        Spec("text", s.big, 2048),
        "text",
        ["mavera", "openai", "hand", "curl", "sse"],
        "openai",
        notes="The closing events repeat the whole text four times (realistic), so most "
        "of the bytes are in four very long lines.",
    )
    ctx.results["big"]["_rows"] = rows


def scenario_utf8(ctx: Context) -> None:
    s = ctx.sizes
    stream_scenario(
        ctx,
        "utf8",
        f"multi-byte UTF-8: {s.utf8:,} deltas × 4 code points",
        Spec("utf8", s.utf8, 4),
        "text",
        ["mavera", "hand", "curl", "sse", "openai"],
        "hand",
        notes="2-, 3- and 4-byte sequences, ZWJ emoji, flags, combining marks; every 4th "
        "delta event uses \\uXXXX escapes (surrogate pairs for emoji). Network reads split "
        "characters; every client must still print the exact bytes.",
    )


def scenario_events(ctx: Context) -> None:
    s = ctx.sizes
    rows = stream_scenario(
        ctx,
        "events",
        f"--events NDJSON: {s.throughput:,} deltas × 8 B",
        Spec("text", s.throughput, 8),
        "events",
        ["mavera", "curl", "hand", "sse", "openai"],
        "curl",
        notes="Expected output: every event's data JSON exactly as received, one per line "
        "(`jq -c` reproduces it byte for byte: the stream has no floats or \\u escapes). "
        "The openai SDK is left out: it re-serializes events (other field order, 1 → 1.0), "
        "so its output cannot match byte for byte.",
        skip={"openai": "re-serializes events, see below"},
    )
    ctx.results["events"]["_rows"] = rows


def scenario_json(ctx: Context) -> None:
    s = ctx.sizes
    stream_scenario(
        ctx,
        "json",
        "json",
        Spec("json", 8, s.json_bytes),
        "json",
        ["mavera", "hand", "sse"],
        "hand",
        notes="stderr is not a TTY, so mavera's live preview is off. mavera's output passes "
        "when it is the model's text plus a newline, or the same JSON value formatted "
        "differently (the contract does not fix the formatting).",
    )


def mavera_rows(ctx: Context, labels: dict[str, str]) -> list[Row]:
    """Rows that all run mavera (in different ways), keyed by `labels`' keys."""
    skip = ctx.clients["mavera"].skip
    rows = [Row(text, key) for key, text in labels.items()]
    for row in rows:
        if skip is not None:
            row.status = f"n/a ({skip})"
    return rows


def scenario_trace(ctx: Context) -> None:
    """Issue 15: `--trace` writes a line per network read; what does that cost?"""
    s = ctx.sizes
    spec = Spec("text", s.throughput, 8)
    progress("[trace] building streams …")
    expected = "".join(make_deltas(spec)).encode() + b"\n"
    traces = ctx.tmp / "traces"
    traces.mkdir(exist_ok=True)
    runs = iter(range(1_000_000))
    rows = mavera_rows(ctx, {"plain": "mavera stream", "traced": "mavera stream --trace FILE"})
    with Server({"trace": spec}) as srv:
        url = srv.base_url("trace")
        sse_bytes = int(srv.log("trace")["body_bytes"])

        def make(row: Row) -> list[list[str]]:
            if row.key != "traced":
                return [[*ctx.mavera, "stream", "--base-url", url, PROMPT]]
            # A new file each run: replacing the last run's 66 MB file costs the file system
            # ~25 ms (freeing its blocks), which is not the trace's cost. Removed here,
            # before the run starts, by the harness.
            for old in traces.iterdir():
                old.unlink()
            trace = traces / f"run-{next(runs)}.trace"
            return [[*ctx.mavera, "stream", "--trace", str(trace), "--base-url", url, PROMPT]]

        run_rows(ctx, "trace", rows, make, lambda row: expected, ctx.repeat)
    size = max((path.stat().st_size for path in traces.iterdir()), default=0)
    head = (
        f"--trace overhead: {s.throughput:,} deltas × 8 B, {sse_bytes / 1e6:.1f} MB of SSE "
        f"(trace file {size / 1e6:.1f} MB); median of {ctx.repeat} runs, whole process"
    )
    ctx.results.setdefault("trace", {})["title"] = head
    note = (
        "The trace goes to a new file in the bench's temporary folder each run (one line per "
        "network read); the previous run's file is deleted before the run, outside the timing."
    )
    emit(ctx, head, throughput_table(ctx, "trace", rows, rows[0], "untraced"), note)
    ctx.results["trace"]["_rows"] = rows


def scenario_inspect(ctx: Context) -> None:
    """Issue 15: `inspect` of a big capture against `replay --events > /dev/null` on it."""
    s = ctx.sizes
    progress("[inspect] building the capture …")
    capture = ctx.tmp / "inspect.sse"
    capture.write_bytes(build(Spec("text", s.throughput, 8)).body)
    mavera = shlex.join(ctx.mavera)
    commands = {
        "replay": f"{mavera} replay --events {shlex.quote(str(capture))} > /dev/null",
        "inspect": f"{mavera} inspect --json {shlex.quote(str(capture))} > /dev/null",
    }
    rows = mavera_rows(
        ctx, {"replay": "replay --events > /dev/null", "inspect": "inspect --json > /dev/null"}
    )
    run_rows(
        ctx,
        "inspect",
        rows,
        lambda row: [["sh", "-c", commands[row.key]]],
        lambda r: b"",
        ctx.repeat,
    )
    head = (
        f"inspect: a {capture.stat().st_size / 1e6:.1f} MB capture ({s.throughput:,} deltas); "
        f"median of {ctx.repeat} runs, whole process (both through `sh -c`)"
    )
    ctx.results.setdefault("inspect", {})["title"] = head
    emit(ctx, head, throughput_table(ctx, "inspect", rows, rows[0], "replay --events"))
    ctx.results["inspect"]["_rows"] = rows


def scenario_cold(ctx: Context) -> None:
    n = ctx.cold_runs
    py = sys.executable
    rows: list[Row] = []
    cmds: dict[str, list[list[str]]] = {}
    for key, lab, cmd in [
        ("m-version", "mavera --version", [*ctx.mavera, "--version"]),
        ("m-help", "mavera --help", [*ctx.mavera, "--help"]),
        ("py-pass", 'python -c "pass"', [py, "-c", "pass"]),
        ("py-httpx", 'python -c "import httpx"', [py, "-c", "import httpx"]),
        (
            "py-all",
            'python -c "import typer, rich, httpx, orjson"',
            [py, "-c", "import typer, rich, httpx, orjson"],
        ),
    ]:
        row = Row(lab, key)
        if key.startswith("m-") and ctx.clients["mavera"].skip:
            row.status = f"n/a ({ctx.clients['mavera'].skip})"
        rows.append(row)
        cmds[key] = [cmd]
    # One untimed warm-up each (bytecode caches, page cache).
    for r in rows:
        if r.status == "ok":
            run_pipeline(ctx.spawner, cmds[r.key])
    for i in range(n):
        for r in rows:
            if r.status != "ok":
                continue
            run = run_pipeline(ctx.spawner, cmds[r.key])
            if run.codes != [0] or (r.key.startswith("m-") and not run.out.strip()):
                r.status = f"FAILED (exit {run.codes}, {len(run.out)} bytes on stdout)"
                r.bad = True
                progress(f"!! cold: {r.label}: {r.status}: {last_line(run.stderr)}")
                continue
            r.runs.append(run)
        progress(f"  cold       run {i + 1}/{n}")
    base = find(rows, "py-httpx")
    table = fmt_table(
        ["command", "median ms", "min ms", "vs import httpx", "peak RSS MiB", "output"],
        [
            [
                r.label,
                num(r.med("wall_s") * 1e3, 1),
                num(min((x.wall_s for x in r.runs), default=math.nan) * 1e3, 1),
                ratio(r.med("wall_s"), base.med("wall_s")) if r.usable else "–",
                mib(r.med("rss_kib")),
                status_cell(r),
            ]
            for r in rows
        ],
        {1, 2, 3, 4},
    )
    ctx.results["cold"] = {"rows": [row_json(r) for r in rows], "_rows": rows}
    emit(ctx, f"cold start: median of {n} runs (after one warm-up)", table)

    # Time to first delta: spawn -> first byte on the stdout pipe.
    spec = Spec("text", 20, 8)
    text = "".join(make_deltas(spec)).encode()
    keys = ["mavera", "hand", "sse", "openai", "curl"]
    trows = skipped_rows(ctx, keys, "text", live=True)
    with Server({"ttfd": spec}) as srv:
        url = srv.base_url("ttfd")
        for r in trows:  # warm-up
            if r.status == "ok":
                run_pipeline(ctx.spawner, commands(ctx, r.key, "text", url, live=True))
        run_rows(
            ctx,
            "ttfd",
            trows,
            lambda r: commands(ctx, r.key, "text", url, live=True),
            lambda r: text if r.key == "curl" else text + b"\n",
            n,
        )
    base_all = find(rows, "py-all")
    table = fmt_table(
        [
            "client",
            "first delta ms",
            "min ms",
            "vs import typer,rich,httpx,orjson",
            "exit ms",
            "output",
        ],
        [
            [
                r.label,
                num(r.med("first_byte_s") * 1e3, 1),
                num(min((x.first_byte_s or math.nan for x in r.runs), default=math.nan) * 1e3, 1),
                ratio(r.med("first_byte_s"), base_all.med("wall_s")) if r.usable else "–",
                num(r.med("wall_s") * 1e3, 1),
                status_cell(r),
            ]
            for r in trows
        ],
        {1, 2, 3, 4},
    )
    ctx.results["ttfd"] = {"rows": [row_json(r) for r in trows], "_rows": trows}
    emit(
        ctx,
        f"time to first delta: spawn → first byte on the stdout pipe; server answers at once; "
        f"median of {n} runs",
        table,
        f'Reference: python -c "import typer, rich, httpx, orjson" = '
        f"{num(base_all.med('wall_s') * 1e3, 1)} ms (whole process).",
    )


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    k = max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)
    return sorted_vals[k]


def scenario_latency(ctx: Context) -> None:
    s = ctx.sizes
    spec = Spec("text", s.latency, 8, pace_ms=s.pace_ms)
    deltas = make_deltas(spec)
    text = "".join(deltas).encode()
    ends = []
    pos = 0
    for d in deltas:
        pos += len(d.encode())
        ends.append(pos)
    keys = ["mavera", "hand", "sse", "openai", "curl"]
    rows = skipped_rows(ctx, keys, "text", live=True)
    for r in rows:
        r.extra["latency_ms"] = []  # steady state: every delta but the first of a run
        r.extra["first_delta_ms"] = []

    with Server({"lat": spec}) as srv:
        url = srv.base_url("lat")

        def after(row: Row, run: Run) -> None:
            writes = srv.write_log("lat")
            if len(writes) != len(ends) or writes[0] < run.t0_ns:
                raise RuntimeError("the server's write log does not belong to this run")
            j = 0
            for i, end in enumerate(ends):
                while run.reads[j][1] < end:
                    j += 1
                ms = (run.reads[j][0] - writes[i]) / 1e6
                row.extra["first_delta_ms" if i == 0 else "latency_ms"].append(ms)

        run_rows(
            ctx,
            "latency",
            rows,
            lambda r: commands(ctx, r.key, "text", url, live=True),
            lambda r: text if r.key == "curl" else text + b"\n",
            ctx.repeat,
            timing=True,
            after=after,
        )
    out = []
    for r in rows:
        lat = sorted(r.extra["latency_ms"])
        r.extra["p50_ms"] = percentile(lat, 50)
        r.extra["p99_ms"] = percentile(lat, 99)
        r.extra["max_ms"] = lat[-1] if lat else math.nan
        first = r.extra["first_delta_ms"]
        out.append(
            [
                r.label,
                num(r.extra["p50_ms"]),
                num(r.extra["p99_ms"]),
                num(r.extra["max_ms"]),
                str(len(lat)),
                num(statistics.median(first) if first else math.nan),
                status_cell(r),
            ]
        )
    table = fmt_table(
        ["client", "p50 ms", "p99 ms", "max ms", "deltas", "1st delta ms", "output"],
        out,
        {1, 2, 3, 4, 5},
    )
    ctx.results["latency"] = {"rows": [row_json(r) for r in rows], "_rows": rows}
    emit(
        ctx,
        f"delta-to-pipe latency: {s.latency} deltas {s.pace_ms:g} ms apart × {ctx.repeat} runs, "
        "pooled",
        table,
        "Latency = time the harness's read() of the client's stdout pipe returned the delta's "
        "last byte − time just before the server's send() of that delta (CLOCK_MONOTONIC, "
        "same machine); it includes the harness's own wake-up (tens of µs), alike for all. "
        "p50/p99/max are over the steady state (every delta but the first of each run); "
        "`1st delta ms` is the median for the first delta, which also pays one-time costs "
        "(lazy imports, jq still starting).",
    )


def scenario_memory(ctx: Context) -> None:
    s = ctx.sizes
    small, large = Spec("text", s.mem_small, 8), Spec("text", s.mem_large, 8)
    repeat = min(ctx.repeat, 3)
    progress("[memory] building streams …")
    texts = {
        "small": "".join(make_deltas(small)).encode() + b"\n",
        "large": "".join(make_deltas(large)).encode() + b"\n",
    }
    keys = ["mavera", "hand", "sse"]
    rows = {size: skipped_rows(ctx, keys, "text") for size in ("small", "large")}
    with Server({"small": small, "large": large}) as srv:
        mb = {k: int(srv.log(k)["body_bytes"]) / 1e6 for k in ("small", "large")}
        for size in ("small", "large"):
            url = srv.base_url(size)
            run_rows(
                ctx,
                f"memory-{size}",
                rows[size],
                lambda r, url=url: commands(ctx, r.key, "text", url),
                lambda r, size=size: texts[size],
                repeat,
            )
    out = []
    for a, b in zip(rows["small"], rows["large"], strict=True):
        ok = a.usable and b.usable
        out.append(
            [
                a.label,
                mib(a.med("rss_kib")),
                mib(b.med("rss_kib")),
                ratio(b.med("rss_kib"), a.med("rss_kib")) if ok else "–",
                num(a.med("wall_s")),
                num(b.med("wall_s")),
                status_cell(a) if not a.usable else status_cell(b),
            ]
        )
    table = fmt_table(
        [
            "client",
            f"{s.mem_small // 1000}k RSS MiB",
            f"{_k(s.mem_large)} RSS MiB",
            "ratio",
            f"{s.mem_small // 1000}k s",
            f"{_k(s.mem_large)} s",
            "output",
        ],
        out,
        {1, 2, 3, 4, 5},
    )
    ctx.results["memory"] = {
        "small": [row_json(r) for r in rows["small"]],
        "large": [row_json(r) for r in rows["large"]],
        "_rows": rows,
    }
    emit(
        ctx,
        f"peak memory: {s.mem_small:,} vs {s.mem_large:,} deltas of 8 B "
        f"({mb['small']:.1f} vs {mb['large']:.1f} MB of SSE), text mode, median of {repeat} runs",
        table,
        "Peak RSS of the client process (os.wait4 per child). The closing events repeat the "
        "whole text four times, so a client that holds or parses them grows with the answer.",
    )


def _k(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


# --------------------------------------------------------------------------- targets


def targets(ctx: Context) -> None:
    res = ctx.results
    out: list[list[str]] = []

    def rows_of(scenario: str) -> list[Row] | None:
        return res.get(scenario, {}).get("_rows")

    def add(
        name: str, scen: str, value: Callable[[], tuple[float, str]], limit: float, le: bool
    ) -> None:
        if rows_of(scen) is None:
            out.append([name, "not run", _lim(limit, le), "–"])
            return
        try:
            v, shown = value()
        except _NA as e:
            out.append([name, str(e), _lim(limit, le), "FAIL" if e.bad else "n/a"])
            return
        ok = v <= limit if le else v < limit
        out.append([name, shown, _lim(limit, le), "PASS" if ok else "FAIL"])

    def med(rows: list[Row], key: str, attr: str = "wall_s") -> float:
        r = find(rows, key)
        if not r.usable:
            raise _NA(r)
        return r.med(attr)

    def rat(scen: str, a: str, b: str, attr: str = "wall_s") -> Callable[[], tuple[float, str]]:
        def f() -> tuple[float, str]:
            rows = rows_of(scen)
            assert rows is not None
            x, y = med(rows, a, attr), med(rows, b, attr)
            return x / y, f"{x / y:.2f}× ({x:.3f} s / {y:.3f} s)"

        return f

    add(
        "stream throughput ≤ 1.3× hand-tuned",
        "throughput",
        rat("throughput", "mavera", "hand"),
        1.3,
        True,
    )
    add(
        "stream throughput < curl | sed | jq",
        "throughput",
        rat("throughput", "mavera", "curl"),
        1.0,
        False,
    )
    add(
        "stream --events < curl | sed | jq -c",
        "events",
        rat("events", "mavera", "curl"),
        1.0,
        False,
    )

    def version() -> tuple[float, str]:
        rows = rows_of("cold")
        assert rows is not None
        x, y = med(rows, "m-version"), med(rows, "py-httpx")
        return x / y, f"{x / y:.2f}× ({x * 1e3:.1f} ms / {y * 1e3:.1f} ms)"

    add('mavera --version ≤ 0.6× python -c "import httpx"', "cold", version, 0.6, True)

    def ttfd() -> tuple[float, str]:
        rows, cold = rows_of("ttfd"), rows_of("cold")
        assert rows is not None and cold is not None
        x, y = med(rows, "mavera", "first_byte_s"), med(cold, "py-all")
        return x / y, f"{x / y:.2f}× ({x * 1e3:.1f} ms / {y * 1e3:.1f} ms)"

    add("time to first delta ≤ 1.2× import typer,rich,httpx,orjson", "cold", ttfd, 1.2, True)

    def lat() -> tuple[float, str]:
        rows = rows_of("latency")
        assert rows is not None
        r = find(rows, "mavera")
        if not r.usable:
            raise _NA(r)
        return r.extra["p99_ms"], f"p99 {r.extra['p99_ms']:.3f} ms (p50 {r.extra['p50_ms']:.3f})"

    add("latency p99 ≤ 1 ms over the server's write", "latency", lat, 1.0, True)

    def mem() -> tuple[float, str]:
        rows = res["memory"]["_rows"]
        a, b = med(rows["small"], "mavera", "rss_kib"), med(rows["large"], "mavera", "rss_kib")
        return b / a, f"{b / a:.2f}× ({b / 1024:.1f} MiB / {a / 1024:.1f} MiB)"

    s = ctx.sizes
    add(f"peak memory {_k(s.mem_large)} ≤ 1.2× {_k(s.mem_small)} deltas", "memory", mem, 1.2, True)
    add("big deltas ≤ 0.5× openai SDK", "big", rat("big", "mavera", "openai"), 0.5, True)
    add("--trace ≤ 1.15× untraced (issue 15)", "trace", rat("trace", "traced", "plain"), 1.15, True)
    add(
        "inspect ≤ 1.5× replay --events (issue 15)",
        "inspect",
        rat("inspect", "inspect", "replay"),
        1.5,
        True,
    )
    table = fmt_table(["target (issues #8, #15)", "measured", "limit", "result"], out, set())
    ctx.results["targets"] = [
        dict(zip(["target", "measured", "limit", "result"], r, strict=True)) for r in out
    ]
    note = "Ratios are medians from this run, on this machine." + (
        " --quick: smaller streams, fewer runs; indicative only." if ctx.args.quick else ""
    )
    emit(ctx, "targets", table, note)


class _NA(Exception):
    def __init__(self, row: Row) -> None:
        super().__init__(f"{row.label}: {row.status}")
        self.bad = row.bad  # wrong output or failed run: the target is not met


def _lim(limit: float, le: bool) -> str:
    if limit == 1.0 and not le:
        return "< 1.00×"
    return f"≤ {limit:g}" + (" ms" if limit == 1.0 else "×")


# --------------------------------------------------------------------------- main


def cpu_busy(seconds: float) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (while the harness itself is idle)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        return sum(vals[:8]), vals[3] + vals[4]

    try:
        t1, i1 = snap()
        time.sleep(seconds)
        t2, i2 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i2 - i1) / (t2 - t1) if t2 > t1 else None


def warm_up(ctx: Context) -> None:
    """Run every client once on a tiny stream: bytecode caches, page cache, DNS-free paths."""
    progress("[warm-up] one run of every client …")
    _, schema = json_document(2000, 8)
    path = ctx.schema_file(schema)
    routes = {"t": Spec("text", 20, 8), "j": Spec("json", 8, 2000)}
    py = sys.executable
    with Server(routes) as srv:
        cmds: list[list[list[str]]] = [
            [[*ctx.mavera, "--version"]],
            [[*ctx.mavera, "--help"]],
            [[py, "-c", "import typer, rich, httpx, orjson"]],
        ]
        for key, c in ctx.clients.items():
            if c.skip is not None:
                continue
            cmds.append(commands(ctx, key, "text", srv.base_url("t")))
            if key != "openai":
                cmds.append(commands(ctx, key, "events", srv.base_url("t")))
            if key in ("mavera", "hand", "sse"):
                cmds.append(commands(ctx, key, "json", srv.base_url("j"), schema=path))
        for cmd in cmds:
            run_pipeline(ctx.spawner, cmd, timeout=120)


def tool_version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "not installed"


def pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def header(ctx: Context) -> str:
    m = ctx.clients["mavera"]
    lines = [
        f"# mavera benchmark ({'quick' if ctx.args.quick else 'full'}), "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}",
        f"- mavera: `{ctx.mavera_how}` → {ctx.mavera_version or m.skip}",
        f"- baselines: httpx {pkg_version('httpx')}, httpx-sse {pkg_version('httpx-sse')}, "
        f"orjson {pkg_version('orjson')}, openai {pkg_version('openai')}; "
        f"{' '.join(tool_version(['curl', '--version']).split()[:2])}, "
        f"{tool_version(['jq', '--version'])}",
        f"- runs per client: {ctx.repeat} (cold start: {ctx.cold_runs}); stdout is a "
        "pipe drained by the harness; times are spawn → exit of the whole process",
    ]
    if ctx.cleared:
        lines.append(f"- cleared for the clients: {', '.join(ctx.cleared)}")
    busy = cpu_busy(0.5)
    if busy is not None:
        lines.append(
            f"- CPU busy with other work before the run: {busy:.0%}"
            + (
                " (WARNING: numbers will be noisy; run on an idle machine)"
                if busy > BUSY_WARN
                else ""
            )
        )
    skipped = [f"{k}: {c.skip}" for k, c in ctx.clients.items() if c.skip]
    if skipped:
        lines.append("- not available here: " + "; ".join(skipped))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark mavera against curl|sed|jq, httpx-sse, the openai SDK "
        "and a hand-tuned loop (issue #8).",
    )
    ap.add_argument("--quick", action="store_true", help="smaller streams and 3 runs (~1 min)")
    ap.add_argument(
        "--repeat", type=int, default=0, metavar="N", help="runs per client (default 5, quick 3)"
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these scenarios (repeatable or comma-separated): {', '.join(SCENARIOS)}",
    )
    ap.add_argument(
        "--mavera",
        metavar="CMD",
        help="command to run mavera (default: the "
        "`mavera` script next to this Python, else `python -m mavera_cli`)",
    )
    ap.add_argument(
        "--out", type=Path, default=BENCH / "results", metavar="DIR", help="where to save results"
    )
    ap.add_argument("--no-save", action="store_true", help="don't write bench/results/")
    args = ap.parse_args(argv)
    only = [s.strip() for o in args.only for s in o.split(",") if s.strip()]
    bad = [s for s in only if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(SCENARIOS)}")
    if args.repeat < 0:
        ap.error("--repeat must be positive")
    args.only = only or list(SCENARIOS)
    return args


RUNNERS: dict[str, Callable[[Context], None]] = {
    "throughput": scenario_throughput,
    "big": scenario_big,
    "utf8": scenario_utf8,
    "events": scenario_events,
    "json": scenario_json,
    "cold": scenario_cold,
    "latency": scenario_latency,
    "memory": scenario_memory,
    "trace": scenario_trace,
    "inspect": scenario_inspect,
}


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    ctx = Context(args)
    head = header(ctx)
    print(head, flush=True)
    ctx.markdown.append(head + "\n")
    try:
        t = time.monotonic()
        warm_up(ctx)
        progress(f"[warm-up] {time.monotonic() - t:.1f} s")
        for name in SCENARIOS:
            if name in args.only:
                ctx.busy_before = cpu_busy(0.3)
                t = time.monotonic()
                RUNNERS[name](ctx)
                progress(f"[{name}] {time.monotonic() - t:.1f} s")
        ctx.busy_before = None
        targets(ctx)
    finally:
        ctx.spawner.close()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    bad = [f"{scen}: {r.label}: {r.status}" for scen, r in _all_rows(ctx.results) if r.bad]
    took = time.monotonic() - started
    tail = f"\n{'FAILED: ' + '; '.join(bad) if bad else 'All outputs checked byte for byte: ok.'}"
    tail += f" ({took:.0f} s)"
    print(tail)
    ctx.markdown.append(tail + "\n")
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.md").write_text("".join(ctx.markdown))
        (args.out / "latest.json").write_text(
            json.dumps(_clean({"argv": sys.argv, "seconds": took, **ctx.results}), indent=1)
        )
        progress(f"saved {args.out / 'latest.md'} and latest.json")
    return 1 if bad else 0


def _all_rows(results: dict[str, Any]) -> Iterator[tuple[str, Row]]:
    for scen, val in results.items():
        if not isinstance(val, dict) or "_rows" not in val:
            continue
        rows = val["_rows"]
        if isinstance(rows, dict):
            for rs in rows.values():
                for r in rs:
                    yield scen, r
        else:
            for r in rows:
                yield scen, r


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
