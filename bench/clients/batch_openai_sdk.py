"""Batch baseline: the official SDK, `AsyncOpenAI` + a semaphore, its own 429 retries.

python batch_openai_sdk.py BASE_URL INPUT_LINES CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from openai import AsyncOpenAI


async def main() -> int:
    base_url, path, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, encoding="utf-8") as file:
        prompts = [line.rstrip("\n") for line in file if line.strip()]
    client = AsyncOpenAI(
        api_key=os.environ.get("MAVERA_API_KEY", "x"), base_url=base_url, max_retries=10
    )
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str:
        async with gate:
            stream = await client.responses.create(model="mavera-1", input=prompt, stream=True)
            texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            return json.dumps({"text": "".join(texts)})

    for done in asyncio.as_completed([one(p) for p in prompts]):
        sys.stdout.write(await done + "\n")
    sys.stdout.flush()
    await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
