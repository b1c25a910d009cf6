"""The in-process test layer: `core.run_stream` fed from memory, renderers writing to bytes.

No subprocess and no socket: a chunk source is a context manager yielding byte chunks (any
chunking), and a step of a script may also raise (a broken connection) or block (a pause
between network reads) to reproduce what the wire does.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mavera_cli.core import run_stream
from mavera_cli.events import ResponseAccumulator
from mavera_cli.render import OutputSink, Renderer
from tests.scripted_server import sse_event

# One step of a scripted attempt: bytes to deliver as one read, an exception to raise from
# the read, or a callable run before the next read (to block, or to look at the output).
Step = bytes | BaseException | Callable[[], None]


class Output:
    """A renderer's stdout: an OutputSink over bytes in memory."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.sink = OutputSink(self.buffer)

    @property
    def bytes(self) -> bytes:
        return self.buffer.getvalue()

    def lines(self) -> list[bytes]:
        return self.bytes.splitlines()


class Source:
    """A chunk source for `run_stream`: attempt N plays scripts[N] (the last one repeats)."""

    def __init__(self, *scripts: Sequence[Step]) -> None:
        self.scripts = [list(script) for script in scripts]
        self.attempts = 0

    def __call__(self) -> AbstractContextManager[Iterator[bytes]]:
        script = self.scripts[min(self.attempts, len(self.scripts) - 1)]
        self.attempts += 1
        return self._open(script)

    @contextmanager
    def _open(self, script: list[Step]) -> Iterator[Iterator[bytes]]:
        yield self._reads(script)

    @staticmethod
    def _reads(script: list[Step]) -> Iterator[bytes]:
        for step in script:
            if isinstance(step, BaseException):
                raise step
            if callable(step):
                step()
                continue
            yield step


def run(
    renderer: Renderer, *scripts: Sequence[Step], **options: Any
) -> tuple[ResponseAccumulator, Source]:
    """Stream the scripts through `renderer` (no sleeping between retries)."""
    source = Source(*scripts)
    options.setdefault("sleep", lambda seconds: None)
    return run_stream(source, renderer, **options), source


def event(kind: str, **fields: Any) -> bytes:
    return sse_event({"type": kind, **fields})


def delta(text: str) -> bytes:
    return event("response.output_text.delta", item_id="msg_1", output_index=0, delta=text)


def completed(text: str = "", **response: Any) -> bytes:
    output = [
        {
            "type": "message",
            "id": "msg_1",
            "content": [{"type": "output_text", "text": text}] if text else [],
        }
    ]
    final = {"id": "resp_1", "status": "completed", "output": output, **response}
    return event("response.completed", response=final)
