"""When each request reached the mock: the kernel's receive time of its first byte.

A gateway counts a request in its rate-limit window as it arrives. The mock's handler threads
get to a request later, each by its own wait for the interpreter (tens of milliseconds when
dozens of streams are being written), and not in the order the requests came; counting them
then would give the window a jitter of the mock's own, which a client pacing to the limit
would have to leave room for. On Linux the kernel stamps each received packet, and a socket
with SO_TIMESTAMPNS hands the stamp to every read; elsewhere a read is stamped when it returns.
"""

from __future__ import annotations

import io
import platform
import socket
import struct
import sys
import time

# SO_TIMESTAMPNS (the socket module does not name it). Its number, and its `struct timespec`
# of two native longs, are those of the architectures listed (others number it differently).
_SO_TIMESTAMPNS = 35
_STAMPING_MACHINES = frozenset(
    {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "armv8l", "riscv64"}
)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def enable_arrival_stamps(listener: socket.socket) -> bool:
    """Ask the kernel to stamp what the connections accepted on `listener` receive (they
    inherit the option); whether it will."""
    if sys.platform != "linux" or platform.machine().lower() not in _STAMPING_MACHINES:
        return False
    try:
        listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class ArrivalStampedReader(io.RawIOBase):
    """A connection's bytes (for a BufferedReader), noting when the request being read
    arrived: call `mark()` before reading a request, then read `arrived_at`."""

    def __init__(self, connection: socket.socket, *, kernel_stamps: bool) -> None:
        super().__init__()
        self._connection = connection
        self._kernel_stamps = kernel_stamps and _ANCILLARY_SPACE > 0
        self._last_read_at = time.time()
        self._marked = False
        self.arrived_at = self._last_read_at

    def readable(self) -> bool:
        return True

    def mark(self) -> None:
        """A new request is about to be read: it arrived with the next read, or with the
        last one if its bytes are buffered already (a client that sent it early)."""
        self._marked = True
        self.arrived_at = self._last_read_at

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._kernel_stamps:
            size, ancillary, _flags, _address = self._connection.recvmsg_into(
                [buffer], _ANCILLARY_SPACE
            )
            stamp = _kernel_stamp(ancillary)
        else:
            size, stamp = self._connection.recv_into(buffer), None
        self._last_read_at = time.time() if stamp is None else stamp
        if self._marked:
            self._marked = False
            self.arrived_at = self._last_read_at
        return size


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds) + float(nanoseconds) / 1e9
    return None  # bytes received before the stamping began
