"""The one streaming loop: chunks → capture → SSE → events → renderer, with retries and limits.

Every command that streams (stream, json, tools, replay) runs through `run_stream`. The core
never writes to the terminal itself and never decides exit codes: it raises errors.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from mavera_cli.capture import CaptureWriter
from mavera_cli.errors import MaveraError, MaxTimeExceededError
from mavera_cli.events import ResponseAccumulator, parse_event
from mavera_cli.render import Renderer
from mavera_cli.retry import backoff, should_retry
from mavera_cli.sse import SSEDecoder

ChunkSource = Callable[[], AbstractContextManager[Iterator[bytes]]]
RetryReporter = Callable[[MaveraError, float, int], None]
T = TypeVar("T")


def run_stream(
    source: ChunkSource,
    renderer: Renderer,
    *,
    retries: int = 0,
    capture: CaptureWriter | None = None,
    on_retry: RetryReporter | None = None,
    on_first_chunk: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ResponseAccumulator:
    """Stream one response through `renderer`; return the accumulator if it completed.

    Retries happen only while no event has been received, so nothing is ever printed twice.
    """
    retries_taken = 0
    while True:
        accumulator = ResponseAccumulator()
        try:
            try:
                _pump(source, renderer, accumulator, capture, on_first_chunk)
            finally:
                if capture is not None:
                    capture.close()
            error = accumulator.outcome_error()
            if error is not None:
                raise error
        except MaveraError as error:
            if accumulator.events_seen == 0 and retries_taken < retries and should_retry(error):
                wait = backoff(retries_taken, getattr(error, "retry_after", None))
                retries_taken += 1
                if on_retry is not None:
                    on_retry(error, wait, retries_taken)
                sleep(wait)
                continue
            renderer.flush()
            renderer.fail(error, accumulator)
            raise
        except BaseException:
            renderer.flush()  # Ctrl-C or a closed pipe: what arrived is written first
            raise
        renderer.finish(accumulator)
        return accumulator


def _pump(
    source: ChunkSource,
    renderer: Renderer,
    accumulator: ResponseAccumulator,
    capture: CaptureWriter | None,
    on_first_chunk: Callable[[], None] | None,
) -> None:
    decoder = SSEDecoder()
    feed = decoder.feed
    add = accumulator.add
    on_event = renderer.on_event
    flush = renderer.flush
    if capture is not None:
        capture.start_attempt()
    with source() as chunks:
        for chunk in chunks:
            if on_first_chunk is not None:
                on_first_chunk()
                on_first_chunk = None
            if capture is not None:
                capture.write(chunk)
            for sse in feed(chunk):
                event = parse_event(sse)
                if event is None:  # data: [DONE]
                    accumulator.done_marker = True
                    break
                add(event)
                on_event(event)
            flush()
            # The terminal event (or [DONE]) decides the outcome; don't wait on a lingering socket.
            if accumulator.done_marker or accumulator.terminal is not None:
                break
    decoder.flush()


def call_with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    on_retry: RetryReporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a non-streaming request, retrying 429, 5xx, connection failures and timeouts."""
    retries_taken = 0
    while True:
        try:
            return call()
        except MaveraError as error:
            if retries_taken >= retries or not should_retry(error):
                raise
            wait = backoff(retries_taken, getattr(error, "retry_after", None))
            retries_taken += 1
            if on_retry is not None:
                on_retry(error, wait, retries_taken)
            sleep(wait)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Bound everything inside (connect, retries, the stream) to `seconds`, like curl -m.

    A timer signal interrupts even a blocked socket read; it needs the main thread, so
    elsewhere the limit is not enforced (the idle timeout still is).
    """
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise MaxTimeExceededError(f"--max-time {seconds:g}s passed")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
