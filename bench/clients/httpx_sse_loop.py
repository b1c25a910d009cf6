"""Baseline: the loop a script author writes with httpx + httpx-sse + orjson.

Writes and flushes each delta (each event in ``events`` mode) as it arrives.

    python httpx_sse_loop.py {text,events,json} BASE_URL PROMPT
"""

from __future__ import annotations

import os
import sys

import httpx
import orjson
from httpx_sse import connect_sse


def main() -> int:
    mode, base_url, prompt = sys.argv[1:4]
    headers = {"Authorization": "Bearer " + os.environ.get("MAVERA_API_KEY", "")}
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    out = sys.stdout
    collected: list[str] = []
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(
            client,
            "POST",
            base_url + "/responses",
            json={"model": "mavera-1", "input": prompt, "stream": True},
            headers=headers,
        ) as source,
    ):
        source.response.raise_for_status()
        for sse in source.iter_sse():
            if sse.data == "[DONE]":
                break
            ev = orjson.loads(sse.data)
            if mode == "events":
                out.write(sse.data + "\n")
                out.flush()
            elif ev["type"] == "response.output_text.delta":
                if mode == "json":
                    collected.append(ev["delta"])
                else:
                    out.write(ev["delta"])
                    out.flush()
    if mode == "text":
        out.write("\n")
    elif mode == "json":
        text = "".join(collected)
        orjson.loads(text)
        out.write(text + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
