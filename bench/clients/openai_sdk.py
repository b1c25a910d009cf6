"""Baseline: the official openai SDK, ``client.responses.create(stream=True)`` in a loop.

Writes and flushes each delta as it arrives; in ``events`` mode prints each event as the
SDK gives it back (``event.to_json(indent=None)``).

    python openai_sdk.py {text,events} BASE_URL PROMPT
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI


def main() -> int:
    mode, base_url, prompt = sys.argv[1:4]
    client = OpenAI(api_key=os.environ.get("MAVERA_API_KEY", "x"), base_url=base_url, max_retries=0)
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    out = sys.stdout
    stream = client.responses.create(model="mavera-1", input=prompt, stream=True)
    for event in stream:
        if mode == "events":
            out.write(event.to_json(indent=None) + "\n")
            out.flush()
        elif event.type == "response.output_text.delta":
            out.write(event.delta)
            out.flush()
    if mode == "text":
        out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
