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

from orjson import JSONDecodeError, loads

from mavera_cli.capture import CaptureWriter
from mavera_cli.errors import (
    MaveraError,
    MaxTimeExceededError,
    PartialStreamError,
    TimedOutError,
)
from mavera_cli.events import TEXT_DELTA, ResponseAccumulator, parse_event
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
    retrier = Retrier(retries, on_retry, sleep)
    while True:
        accumulator = ResponseAccumulator()
        try:
            try:
                _pump(source, renderer, accumulator, capture, on_first_chunk)
            except (PartialStreamError, TimedOutError) as error:
                if accumulator.events_seen:
                    error.message += f" ({accumulator.progress()})"
                raise
            finally:
                if capture is not None:
                    capture.close()
            outcome = accumulator.outcome_error()
            if outcome is not None:
                raise outcome
        except MaveraError as error:
            if accumulator.events_seen == 0 and retrier.wait_before_retry(error):
                continue
            renderer.flush()
            renderer.fail(error, accumulator)
            error.reported = True
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
    decoder = SSEDecoder(truncate=getattr(renderer, "truncatable_events", ()))
    feed = decoder.feed
    add = accumulator.add
    on_event = renderer.on_event
    flush = renderer.flush
    # A renderer that only wants the text of deltas gets them appended to this list
    # (see Renderer.delta_sink).
    deltas: list[str] | None = getattr(renderer, "delta_sink", None)
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
                data = None
                if deltas is not None and not sse.truncated:
                    # The hot path: a text delta goes from JSON to the renderer's list with
                    # no event object and no calls in between.
                    try:
                        data = loads(sse.data)
                    except JSONDecodeError:
                        data = None  # [DONE] or malformed: parse_event says which
                    if data.__class__ is dict and data.get("type") == TEXT_DELTA:
                        delta = data.get("delta")
                        if delta.__class__ is str:
                            deltas.append(delta)
                            accumulator.events_seen += 1
                            accumulator.text_chars += len(delta)
                            continue
                event = parse_event(sse, data)
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


class Retrier:
    """Counts retries and sleeps between them; the policy itself lives in `retry`."""

    def __init__(
        self,
        retries: int,
        on_retry: RetryReporter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retries = retries
        self._on_retry = on_retry
        self._sleep = sleep
        self.taken = 0

    def wait_before_retry(self, error: MaveraError) -> bool:
        """Sleep and return True if `error` deserves another try; False if it is final."""
        if self.taken >= self._retries or not should_retry(error):
            return False
        wait = backoff(self.taken, getattr(error, "retry_after", None))
        self.taken += 1
        if self._on_retry is not None:
            self._on_retry(error, wait, self.taken)
        self._sleep(wait)
        return True


def call_with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    on_retry: RetryReporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a non-streaming request, retrying 429, 5xx, connection failures and timeouts."""
    retrier = Retrier(retries, on_retry, sleep)
    while True:
        try:
            return call()
        except MaveraError as error:
            if not retrier.wait_before_retry(error):
                raise


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
