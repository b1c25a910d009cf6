"""The built-in fake Mavera server: loopback only, threaded, streaming event by event.

Routes `POST …/responses` (streamed as chunked SSE, or one JSON object), `GET …/personas` and
`GET …/usage` under `/api/v1`, `/v1` or the root. Fault injection comes from `faults.FaultPlan`
(or a prompt's own `mock-fault:KIND`); `--rate-limit` is a real sliding window (`ratelimit`).
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import orjson

from mavera_cli import __version__
from mavera_cli.errors import UsageError
from mavera_cli.jsonout import json_line
from mavera_cli.mock.answers import CallAnswer, answer
from mavera_cli.mock.arrival import ArrivalStampedReader
from mavera_cli.mock.faults import (
    Delivery,
    Fault,
    FaultKind,
    FaultPlan,
    http_error,
    outcome_for,
    parse_fault,
    plan_body,
    plan_stream,
    requested_fault,
)
from mavera_cli.mock.listener import LoopbackHTTPServer, loopback_address
from mavera_cli.mock.ratelimit import SlidingWindow, WindowState, parse_rate_limit
from mavera_cli.mock.responses import (
    CREDITS_PER_RESPONSE,
    ResponseIds,
    error_body,
    final_response,
    invalid_request,
    personas_list,
    request_problem,
    response_events,
)

API_PREFIXES = ("/api/v1", "/v1", "")
_ROUTES = {
    f"{prefix}/{name}": name
    for prefix in API_PREFIXES
    for name in ("responses", "personas", "usage")
}
MAX_BODY_BYTES = 16 * 1024 * 1024
# How often serve_forever and stalled streams look for shutdown: bounds how long close() takes.
_POLL_SECONDS = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"mavera-mock/{__version__}"
    sys_version = ""
    server: LoopbackHTTPServer
    _started = False  # whether this request's status line went out
    _number = 0  # this request's number on the server, for x-request-id
    _window_state: WindowState | None = None  # this request's place in --rate-limit's window
    _arrivals: ArrivalStampedReader

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default access log would write every request to stderr."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, on the same clock as X-RateLimit-Reset."""
        window = self.server.owner.window
        if timestamp is None and window is not None:
            timestamp = window.now()
        return super().date_time_string(timestamp)

    def setup(self) -> None:
        super().setup()
        # Reads that note when each request arrived, for --rate-limit's window (arrival.py).
        self.rfile.close()
        self._arrivals = ArrivalStampedReader(
            self.connection, kernel_stamps=self.server.stamps_arrivals
        )
        self.rfile = io.BufferedReader(self._arrivals)

    def handle(self) -> None:
        # Reset, broken pipe, or close() cutting the socket: nothing to report.
        with contextlib.suppress(OSError):
            super().handle()

    def handle_one_request(self) -> None:
        self._arrivals.mark()
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_PATCH = do_DELETE = do_GET

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._started = False  # one handler serves every request of a keep-alive connection
        self._window_state = None
        self._number = self.server.owner._count_request()
        body = self._read_body()
        if body is None:
            self._send_json(
                413, invalid_request(f"Request body over {MAX_BODY_BYTES} bytes.", "invalid_field")
            )
            return
        path = urlsplit(self.path).path.rstrip("/")
        route = _ROUTES.get(path)
        if route is None:
            self._send_json(
                404,
                invalid_request(
                    f"No route for {self.command} {path or '/'}.", "resource_not_found"
                ),
            )
            return
        method = "POST" if route == "responses" else "GET"
        owner = self.server.owner
        window = owner.window
        if window is not None:
            self._window_state = window.take(age=time.time() - self._arrivals.arrived_at)
            if not self._window_state.admitted:
                owner._count_rate_limited()
                retry_after = str(self._window_state.retry_after)
                self._send_fault(Fault(FaultKind.RATE_LIMIT), {"Retry-After": retry_after})
                return
        if self.command != method:
            message = f"Method {self.command} not allowed on {path}; use {method}."
            self._send_json(405, invalid_request(message, "method_not_allowed"), {"Allow": method})
            return
        try:
            if route == "responses":
                # Think time: the server works before the status line, as a real model does.
                # A request counts as in flight until then: a client cannot have seen its
                # answer and sent the next one before the count went down.
                with owner._in_flight():
                    if owner.think_seconds > 0 and owner.stopping.wait(owner.think_seconds):
                        return
                self._responses(body)
            elif route == "usage":
                self._usage()
            else:
                self._personas()
        except OSError:
            raise
        except Exception as exc:
            # A bug in the fake: answer 500 if nothing was sent yet, then let handle_error tell.
            if not self._started:
                self._send_json(
                    500, error_body(f"mock server bug: {exc!r}", "api_error", "internal_error")
                )
            raise

    def _personas(self) -> None:
        plan = self.server.owner.plan
        # Only HTTP-level faults make sense here, and only they use up a --fail-first turn.
        fault = plan.take() if plan.fault is not None and plan.fault.is_http_error else None
        if fault is not None:
            self._send_fault(fault)
            return
        self._send_json(200, orjson.dumps(personas_list()))

    def _usage(self) -> None:
        plan = self.server.owner.plan
        fault = plan.take() if plan.fault is not None and plan.fault.is_http_error else None
        if fault is not None:
            self._send_fault(fault)
            return
        self._send_json(200, orjson.dumps(self.server.owner.usage_report()))

    def _responses(self, body: bytes) -> None:
        owner = self.server.owner
        fault = owner.plan.take()
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        # A prompt may name its own fault (`mock-fault:KIND`): one batch sees every outcome.
        fault = requested_fault(request) or fault
        if isinstance(request, dict):
            owner._record_input(request)
        if fault is not None and fault.is_http_error:
            self._send_fault(fault)
            return
        if request is None:
            self._send_json(
                400, invalid_request("The request body is not valid JSON.", "invalid_json")
            )
            return
        problem = request_problem(request)
        if problem is not None:
            self._send_json(400, problem)
            return
        reply = answer(request)
        ids = ResponseIds.for_request(
            owner._next_response_number(), int(time.time()), call=isinstance(reply, CallAnswer)
        )
        outcome = outcome_for(fault)
        if request.get("stream") is True:
            events = response_events(request, reply, ids, outcome)
            self._send_stream(plan_stream(events, fault))
        else:
            payload = json_line(final_response(request, reply, ids, outcome))[:-1]
            self._send_body(plan_body(payload, fault))

    # -- reading -------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when it is too large."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    length = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    self.close_connection = True  # framing is lost; the body reads as not JSON
                    return b""
                if length == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return b"".join(parts)
                size += length
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    return None
                parts.append(self.rfile.read(length))
                self.rfile.readline(8)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would be taken for the next request
            return None
        return self.rfile.read(length) if length > 0 else b""

    # -- writing -------------------------------------------------------------------------

    def _common_headers(self) -> None:
        self._started = True
        self.send_header("x-request-id", f"req_mock{self._number:08d}")
        state = self._window_state
        if state is None:
            return  # no --rate-limit: no window, so no headers that would claim one
        # The window this request was counted in: Reset in whole seconds, rounded up, as
        # Mavera sends it (or exact, for the bench).
        window = self.server.owner.window
        exact = window is not None and window.fractional_reset
        self.send_header("X-RateLimit-Limit", str(state.limit))
        self.send_header("X-RateLimit-Remaining", str(state.remaining))
        self.send_header(
            "X-RateLimit-Reset", f"{state.reset:.3f}" if exact else str(math.ceil(state.reset))
        )

    def _send_json(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_fault(self, fault: Fault, headers: dict[str, str] | None = None) -> None:
        error = http_error(fault)
        self._send_json(error.status, error.body, {**error.headers, **(headers or {})})

    def _send_stream(self, delivery: Delivery) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        pace = self.server.owner.plan.pace_seconds
        stopping = self.server.owner.stopping
        for index, frame in enumerate(delivery.chunks):
            if index and pace and stopping.wait(pace):
                return  # the server is closing: leave the stream cut off
            # One chunk per event, one write per chunk: each event leaves at once.
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self._end(delivery, b"0\r\n\r\n")

    def _send_body(self, delivery: Delivery) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(delivery.length))
        if delivery.end != "done":
            self.send_header("Connection", "close")
        self.end_headers()
        for chunk in delivery.chunks:
            self.wfile.write(chunk)
        self._end(delivery, b"")

    def _end(self, delivery: Delivery, terminator: bytes) -> None:
        if delivery.end == "done":
            if terminator:
                self.wfile.write(terminator)
            return
        self.close_connection = True
        if delivery.end == "stall":
            self._stall()
        # drop (and a stall that ended): close without finishing the body; the client sees
        # an incomplete chunked read or a short Content-Length body.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stall(self) -> None:
        """Send nothing more until the client goes away or the server closes."""
        connection = self.connection
        stopping = self.server.owner.stopping
        # A short receive timeout doubles as the poll interval for `stopping`.
        connection.settimeout(_POLL_SECONDS)
        while not stopping.is_set():
            try:
                if not connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed its side
            except TimeoutError:
                continue
            except OSError:
                return
            stopping.wait(_POLL_SECONDS)  # the client sent more bytes: wait, don't spin


class MockServer:
    """A fake Mavera API on a loopback port; bound at construction, so `base_url` is known."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        fault: str | None = None,
        fail_first: int | None = None,
        pace_ms: int = 0,
        rate_limit: str | None = None,
        think_ms: int = 0,
    ) -> None:
        address, family = loopback_address(host)
        if think_ms < 0:
            raise UsageError(f"--think-ms must be 0 or more (got {think_ms})")
        self.window: SlidingWindow | None = parse_rate_limit(rate_limit) if rate_limit else None
        self.think_seconds = think_ms / 1000
        # What tests and `batch` demos count: inputs asked for, 429s sent, the most requests
        # thinking at once (a client's concurrency, given a think time).
        self.inputs_seen: Counter[str] = Counter()
        self.rate_limited = 0
        self.in_flight = 0
        self.in_flight_peak = 0
        if not 0 <= port <= 65535:
            raise UsageError(f"invalid --port {port}: use 0 (any free port) to 65535")
        self.plan = FaultPlan(parse_fault(fault) if fault else None, fail_first, pace_ms)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests = 0
        self._responses = 0
        self._serving = False
        self._closed = False
        self._thread: threading.Thread | None = None
        try:
            self._httpd = LoopbackHTTPServer((address, port), family, _Handler, self)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from exc

    @property
    def base_url(self) -> str:
        """Where clients point: `http://127.0.0.1:PORT/api/v1`."""
        host, port = str(self._httpd.server_address[0]), self._httpd.server_address[1]
        shown = f"[{host}]" if self._httpd.address_family == socket.AF_INET6 else host
        return f"http://{shown}:{port}/api/v1"

    @property
    def requests_seen(self) -> int:
        """HTTP requests received so far, on any route."""
        with self._lock:
            return self._requests

    def start(self) -> MockServer:
        """Serve in a daemon thread; returns self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the mock server is closed")
            if self._serving:
                return self
            self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="mavera-mock",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until close() (from another thread) or Ctrl-C."""
        with self._lock:
            if self._closed or self._serving:
                raise RuntimeError("the mock server is closed or already serving")
            self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=_POLL_SECONDS)
        finally:
            # KeyboardInterrupt propagates to the caller, after the sockets are closed.
            self.close()

    def close(self) -> None:
        """Stop serving and cut open connections (stalled streams too); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        self.stopping.set()
        if serving:
            # Returns once the serve loop has seen the request (within one poll interval);
            # at once when the loop has already ended.
            self._httpd.shutdown()
        self._httpd.cut_connections()
        self._httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _count_request(self) -> int:
        with self._lock:
            self._requests += 1
            return self._requests

    def _count_rate_limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def _record_input(self, request: dict[str, Any]) -> None:
        text = request.get("input")
        key = text if isinstance(text, str) else json_line(text)[:-1].decode()
        with self._lock:
            self.inputs_seen[key] += 1

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def usage_report(self) -> dict[str, Any]:
        """`GET /usage`: the account as Mavera's example shows it, from what was served."""
        with self._lock:
            used = self._responses * CREDITS_PER_RESPONSE
            requests = self._responses
        included = 10000
        start = time.strftime("%Y-%m-01T00:00:00Z", time.gmtime())
        limit = self.window.per_minute if self.window is not None else None
        return {
            "credits": {
                "used": used,
                "included": included,
                "remaining": max(0, included - used),
                "percentage_used": round(100 * used / included, 2),
            },
            "billing_period": {"start": start, "end": None},
            "api_requests": {"total_requests": requests, "credits_used": used, "error_count": 0},
            "rate_limit": {"requests_per_minute": limit},
        }

    def _next_response_number(self) -> int:
        with self._lock:
            self._responses += 1
            return self._responses
