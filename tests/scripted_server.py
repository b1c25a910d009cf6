"""A loopback HTTP server whose answers are scripted byte by byte, for real-wire tests.

Each request is answered by a handler `(Exchange, Wire) -> None` that writes raw bytes: any
status, any chunking, pauses, an abrupt close or a reset — the faults a real network makes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exchange:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """The server side of one connection."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self._sock = sock
        self._stop = stop

    def head(
        self,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} Status", f"Content-Type: {content_type}", "Connection: close"]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def send_chunks(self, chunks: Iterable[bytes], pause: float = 0.0) -> None:
        for chunk in chunks:
            self.send(chunk)
            if pause:
                time.sleep(pause)

    def respond(
        self, status: int, body: bytes | str | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """A whole response with a Content-Length (JSON for dicts)."""
        content_type = "text/plain"
        if isinstance(body, dict):
            body, content_type = json.dumps(body), "application/json"
        data = body.encode() if isinstance(body, str) else body
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", content_type)
        self.head(status, content_type, headers, length=len(data))
        self.send(data)

    def reset(self) -> None:
        """Close with a TCP RST instead of a clean FIN."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()

    def hold(self, seconds: float = 30.0) -> None:
        """Keep the connection open and silent (until the test ends)."""
        self._stop.wait(seconds)


Handler = Callable[[Exchange, Wire], None]


@dataclass
class ScriptedServer:
    """Answers request N with handlers[N] (the last handler answers the rest)."""

    handlers: list[Handler] = field(default_factory=list)
    requests: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def script(self, *handlers: Handler) -> ScriptedServer:
        self.handlers = list(handlers)
        return self

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            exchange = _read_request(conn)
            if exchange is None:
                return
            with self._lock:
                index = len(self.requests)
                self.requests.append(exchange)
                handler = self.handlers[min(index, len(self.handlers) - 1)]
            handler(exchange, Wire(conn, self._stop))
        except OSError:
            pass  # the client went away: that is what many tests are about
        finally:
            with contextlib.suppress(OSError):
                conn.close()


def _read_request(conn: socket.socket) -> Exchange | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return Exchange(method, path, headers, body)


# --- building SSE bodies --------------------------------------------------------------------


def sse_event(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One framed event; the event name defaults to the data's `type`."""
    if isinstance(data, dict):
        event = event or data.get("type")
        data = json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


DONE = b"data: [DONE]\n\n"


def text_stream(deltas: Iterable[str], *, terminal: str = "response.completed") -> list[bytes]:
    """A realistic Responses stream, one bytes object per event, ending with [DONE]."""
    deltas = list(deltas)
    text = "".join(deltas)
    seq = itertools.count()
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    events = [
        {"type": "response.created", "sequence_number": next(seq), "response": response},
        {"type": "response.in_progress", "sequence_number": next(seq), "response": response},
        {
            "type": "response.output_item.added",
            "sequence_number": next(seq),
            "output_index": 0,
            "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
        },
    ]
    for delta in deltas:
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": next(seq),
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": delta,
                "obfuscation": "xYz",
            }
        )
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    events.append(
        {
            "type": "response.output_item.done",
            "sequence_number": next(seq),
            "output_index": 0,
            "item": message,
        }
    )
    status = {"response.completed": "completed", "response.failed": "failed"}.get(
        terminal, "incomplete"
    )
    final = {**response, "status": status, "output": [message], "usage": {"total_tokens": 3}}
    if terminal == "response.failed":
        final["error"] = {"code": "server_error", "message": "the model fell over"}
    if terminal == "response.incomplete":
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    events.append({"type": terminal, "sequence_number": next(seq), "response": final})
    return [sse_event(event) for event in events] + [DONE]


def completed_response(text: str, status: str = "completed") -> dict[str, Any]:
    """A non-streamed Response object."""
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "output": [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3, "credits_used": 1},
    }
