"""Hand-tuned baseline: httpx ``iter_raw`` + bytes-level line split + orjson.

One ``write`` + ``flush`` per network read: what one read delivered is on stdout before the
next read waits (the contract's rule for ``mavera stream``).

    python hand_tuned.py {text,events,json} BASE_URL PROMPT
"""

from __future__ import annotations

import os
import sys

import httpx
import orjson

DELTA = "response.output_text.delta"


def main() -> int:
    mode, base_url, prompt = sys.argv[1:4]
    body = orjson.dumps({"model": "mavera-1", "input": prompt, "stream": True})
    headers = {
        "Authorization": "Bearer " + os.environ.get("MAVERA_API_KEY", ""),
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }
    out = sys.stdout.buffer
    loads = orjson.loads
    pending: list[bytes] = []  # the unfinished last line, in pieces (no quadratic joins)
    collected: list[str] = []  # json mode: the whole answer
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", base_url + "/responses", content=body, headers=headers) as r,
    ):
        r.raise_for_status()
        for raw in r.iter_raw():
            if b"\n" not in raw:
                pending.append(raw)
                continue
            if pending:
                pending.append(raw)
                raw = b"".join(pending)
                pending = []
            lines = raw.split(b"\n")
            tail = lines.pop()
            if tail:
                pending.append(tail)
            parts: list[bytes] = []
            texts: list[str] = []
            for line in lines:
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                data = line[6:]
                ev = loads(data)
                if mode == "events":
                    parts.append(data + b"\n")
                elif ev.get("type") == DELTA:
                    texts.append(ev["delta"])
            if mode == "text" and texts:
                out.write("".join(texts).encode())
                out.flush()
            elif mode == "events" and parts:
                out.write(b"".join(parts))
                out.flush()
            elif mode == "json":
                collected.extend(texts)
    if mode == "text":
        out.write(b"\n")
    elif mode == "json":
        text = "".join(collected)
        loads(text)  # complete and valid, or raise
        out.write(text.encode() + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
