"""The mock's listening side: loopback only, a thread per connection, and every open
connection known, so that closing the server can cut them (idle keep-alive, paced or stalled
streams) instead of waiting for them.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mavera_cli.errors import UsageError
from mavera_cli.mock.arrival import enable_arrival_stamps

_LOOPBACK_HINT = "the mock listens on loopback only (127.0.0.0/8, ::1 or localhost)"


def loopback_address(host: str) -> tuple[str, socket.AddressFamily]:
    """The address to bind for `host`, refusing anything that is not loopback."""
    name = host.strip()
    if name.lower() == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise UsageError(f"invalid --host {host!r}: {_LOOPBACK_HINT}") from None
    if not address.is_loopback:
        raise UsageError(f"refusing --host {host}: {_LOOPBACK_HINT}")
    return str(address), socket.AF_INET6 if address.version == 6 else socket.AF_INET


# How long the accept loop waits when the process has no file descriptor left.
_NO_DESCRIPTOR_WAIT_SECONDS = 0.05


class LoopbackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its open connections, so close() can cut them."""

    daemon_threads = True
    # A batch opens dozens of connections at once: with the default backlog of 5, the kernel
    # drops the rest's SYNs and they wait a whole second to retry.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        handler: type[BaseHTTPRequestHandler],
        owner: Any,
    ) -> None:
        self.address_family = family
        self.owner = owner  # the MockServer: its handlers' state, and `stopping`
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.stamps_arrivals = False  # the kernel stamps what connections receive (server_bind)
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # No descriptor for the connection: it stays queued, and the listening socket
                # stays readable. A short wait, or serve_forever would spin a CPU on it.
                self.owner.stopping.wait(_NO_DESCRIPTOR_WAIT_SECONDS)
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.stamps_arrivals = enable_arrival_stamps(self.socket)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        # Events are small writes; without TCP_NODELAY, Nagle may hold one back ~40 ms.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Wake every handler (idle keep-alive, paced or stalled) by shutting its socket."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # the client went away mid-answer: normal for a test server
        sys.stderr.write(f"mavera mock: internal error while answering: {error!r}\n")
