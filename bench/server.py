"""Loopback SSE server for the benchmark: serves pre-generated Responses-API streams.

Run by ``bench/run.py`` as a subprocess (so it never competes with the harness for the GIL)::

    python bench/server.py --routes '{"tp": {"kind": "text", "n": 200000, "size": 8}}'

It binds 127.0.0.1 on an ephemeral port, builds every stream once, prints
``http://127.0.0.1:PORT`` on stdout when ready and serves until killed:

- ``POST /ROUTE/api/v1/responses`` (so a client's base URL is
  ``http://127.0.0.1:PORT/ROUTE/api/v1``): ``200 text/event-stream``, chunked. Unpaced
  streams go out as 64 KiB chunks with large writes; paced streams (``pace_ms`` > 0) send
  the opening events at once, then one chunk per delta every ``pace_ms``, and record the
  ``time.monotonic_ns()`` taken just before each delta's ``send`` call (CLOCK_MONOTONIC is
  system-wide on Linux, so the harness can subtract it from its own receive times).
- ``GET /ROUTE/_log``: JSON ``{"delta_write_ns": [...], "served": K, "body_bytes": N}``:
  the delta write times of the last paced request on ROUTE, how many paced requests have
  sent all their deltas, and the size of the SSE body.

The request body is read completely (so closing never resets the connection) and ignored.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.streams import Spec, Stream, build

CHUNK = 64 * 1024
HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"x-request-id: req_bench\r\n"
    b"openai-processing-ms: 1\r\n"
    b"Connection: close\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def frame(body: bytes, size: int = CHUNK) -> bytes:
    """HTTP/1.1 chunked framing of a whole body, ``size`` bytes per chunk."""
    mv = memoryview(body)
    parts = [chunk(bytes(mv[i : i + size])) for i in range(0, len(body), size)]
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


class Route:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.pace_ns = int(stream.spec.pace_ms * 1_000_000)
        body = stream.body
        self.body_bytes = len(body)
        self.framed = b"" if self.pace_ns else HEADERS + frame(body)
        del body
        self.delta_write_ns: list[int] = []
        self.served = 0  # paced streams whose deltas have all been sent
        self.lock = threading.Lock()


def read_request(conn: socket.socket) -> tuple[str, str] | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
        if len(buf) > 1 << 20:
            return None
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    need = int(headers.get("content-length", "0") or 0) - len(rest)
    while need > 0:
        data = conn.recv(min(need, 65536))
        if not data:
            break
        need -= len(data)
    return method, path


def send_paced(conn: socket.socket, route: Route) -> None:
    times: list[int] = []
    ev = route.stream.events
    first_delta = next(i for i, e in enumerate(ev) if e[0])
    conn.sendall(HEADERS + chunk(b"".join(e[1] for e in ev[:first_delta])))
    t0 = time.monotonic_ns()
    k = 0
    i = first_delta
    while i < len(ev) and ev[i][0]:
        k += 1
        wait = t0 + k * route.pace_ns - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        payload = chunk(ev[i][1])
        times.append(time.monotonic_ns())
        conn.sendall(payload)
        i += 1
    # Publish the times before the client can see the end of the stream and exit.
    with route.lock:
        route.delta_write_ns = times
        route.served += 1
    time.sleep(route.pace_ns / 1e9)
    conn.sendall(chunk(b"".join(e[1] for e in ev[i:]) + route.stream.done) + b"0\r\n\r\n")


def respond(conn: socket.socket, status: str, body: bytes, ctype: str) -> None:
    conn.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )


def handle(conn: socket.socket, routes: dict[str, Route]) -> None:
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = read_request(conn)
        if req is None:
            return
        method, path = req
        parts = path.split("?", 1)[0].strip("/").split("/")
        route = routes.get(parts[0]) if parts else None
        rest = "/".join(parts[1:])
        if route is None:
            respond(
                conn, "404 Not Found", b'{"error":{"message":"no such route"}}', "application/json"
            )
        elif method == "POST" and rest.endswith("responses"):
            if route.pace_ns:
                send_paced(conn, route)
            else:
                conn.sendall(route.framed)
        elif method == "GET" and rest == "_log":
            with route.lock:
                info = {
                    "delta_write_ns": route.delta_write_ns,
                    "body_bytes": route.body_bytes,
                    "served": route.served,
                }
            body = json.dumps(info).encode()
            respond(conn, "200 OK", body, "application/json")
        else:
            respond(conn, "404 Not Found", b'{"error":{"message":"not found"}}', "application/json")
        conn.shutdown(socket.SHUT_WR)
        # Drain until the client closes, so our close never turns into a reset.
        conn.settimeout(5)
        while conn.recv(65536):
            pass
    except OSError:
        pass  # the client went away (SIGPIPE tests, timeouts): not the server's problem
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", required=True, help="JSON object: route name -> stream spec")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    specs = json.loads(args.routes)
    routes = {name: Route(build(Spec.from_dict(d))) for name, d in specs.items()}

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(64)
    print(f"http://127.0.0.1:{srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, routes), daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
