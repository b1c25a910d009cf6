"""Batch floor: asyncio + httpx + bytes-level SSE parsing, a semaphore of -j, sleep on 429.

    python batch_hand_tuned.py BASE_URL INPUT_LINES CONCURRENCY

One JSONL line per prompt on stdout ({"i", "text"}); prints the number of 429s on stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import orjson

DELTA = b'"response.output_text.delta"'


async def one(
    client: httpx.AsyncClient, url: str, prompt: str, gate: asyncio.Semaphore, counts: list[int]
) -> bytes:
    body = orjson.dumps({"model": "mavera-1", "input": prompt, "stream": True})
    while True:
        async with gate, client.stream("POST", url, content=body) as r:
            if r.status_code == 429:
                counts[0] += 1
                wait = float(r.headers.get("retry-after", "1"))
            else:
                r.raise_for_status()
                texts: list[str] = []
                pending = b""
                async for raw in r.aiter_raw():
                    raw = pending + raw
                    lines = raw.split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if line.startswith(b"data: {") and DELTA in line:
                            texts.append(orjson.loads(line[6:])["delta"])
                return orjson.dumps({"text": "".join(texts)})
        await asyncio.sleep(wait)  # outside the gate: another prompt may go meanwhile


async def main() -> int:
    base_url, path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, encoding="utf-8") as file:
        prompts = [line.rstrip("\n") for line in file if line.strip()]
    gate = asyncio.Semaphore(concurrency)
    counts = [0]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": "Bearer " + os.environ.get("MAVERA_API_KEY", "x")}
    out = sys.stdout.buffer
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:
        url = base_url + "/responses"
        for done in asyncio.as_completed([one(client, url, p, gate, counts) for p in prompts]):
            out.write(await done + b"\n")
    out.flush()
    sys.stderr.write(f"429s: {counts[0]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
