"""Ways to cut a byte stream into network writes: whole, byte by byte, at random, with CRLF."""

from __future__ import annotations

import random
from collections.abc import Iterator


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, seed: int, max_size: int = 97) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(data):
        size = rng.randint(1, max_size)
        chunks.append(data[i : i + size])
        i += size
    return chunks


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """Every way to cut `data` in two."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_cr(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
