"""The one streaming loop: chunks → capture → SSE → events → renderer, with retries and limits.

Every command that streams (stream, json, tools, replay) runs through `run_stream`. The core
never writes to the terminal itself and never decides exit codes: it raises errors. It calls
renderers only through `render.Renderer`, and keeps one `ResponseAccumulator` per attempt.
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
    InterruptedRun,
    MaveraError,
    MaxTimeExceededError,
    OutputClosed,
    PartialStreamError,
    RateLimitedError,
    ServerError,
    Terminated,
    TimedOutError,
)
from mavera_cli.events import TEXT_DELTA, ResponseAccumulator, parse_event
from mavera_cli.observe import StreamObserver, observed
from mavera_cli.render import Renderer
from mavera_cli.retry import backoff, come_back_after, should_retry, too_long_to_wait
from mavera_cli.sse import SSEDecoder

ChunkSource = Callable[[], AbstractContextManager[Iterator[bytes]]]
RetryReporter = Callable[[MaveraError, float, int], None]
# json mode: the completed output text → the checked value (see schema.check_final_json).
OutputParser = Callable[[str], Any]
T = TypeVar("T")


def run_stream(
    source: ChunkSource,
    renderer: Renderer,
    *,
    retries: int = 0,
    capture: CaptureWriter | None = None,
    on_retry: RetryReporter | None = None,
    on_first_chunk: Callable[[], None] | None = None,
    parse_output: OutputParser | None = None,
    sleep: Callable[[float], None] = time.sleep,
    observer: StreamObserver | None = None,
) -> ResponseAccumulator:
    """Stream one response through `renderer`; return the accumulator if it completed.

    Retries happen only while nothing can have been printed: before the first event, or, for
    a renderer that holds all output until the end (`json`), after a stream that broke or
    stalled mid-way. `parse_output` (json mode, whatever the renderer) turns the completed
    output text into `accumulator.parsed_output`, or raises InvalidOutputError: a failure like
    any other, reported by the renderer. `observer` (--trace, --timing) hears of every
    network read, and of events if it asks.
    """
    retrier = Retrier(retries, on_retry, sleep)
    if observer is not None:
        renderer = observed(renderer, observer)
    keep_text = renderer.needs_text or parse_output is not None
    while True:
        accumulator = ResponseAccumulator(keep_text=keep_text)
        try:
            try:
                _attempt(
                    source, renderer, accumulator, capture, on_first_chunk, parse_output, observer
                )
                renderer.finish(accumulator)
                return accumulator
            except MaveraError as error:
                if _nothing_shown(renderer, accumulator, error) and retrier.wait_before_retry(
                    error
                ):
                    continue
                renderer.flush()
                renderer.fail(error, accumulator)
                raise
        except (KeyboardInterrupt, Terminated) as stop:
            # Ctrl-C or SIGTERM (also during a retry's wait): what arrived is written, then
            # how it ended (the NDJSON line); the signal itself goes on to the boundary.
            renderer.flush()
            signum = stop.signum if isinstance(stop, Terminated) else None
            renderer.fail(InterruptedRun(signum), accumulator)
            raise
        except OutputClosed:
            raise  # nobody reads stdout any more: nothing to flush
        except MaveraError:
            raise  # reported above
        except BaseException:
            renderer.flush()  # a bug: what arrived is still written first
            raise


def _attempt(
    source: ChunkSource,
    renderer: Renderer,
    accumulator: ResponseAccumulator,
    capture: CaptureWriter | None,
    on_first_chunk: Callable[[], None] | None,
    parse_output: OutputParser | None,
    observer: StreamObserver | None,
) -> None:
    """One request: stream it into `accumulator`; raise why it did not complete."""
    renderer.start(accumulator)
    try:
        _pump(source, renderer, accumulator, capture, on_first_chunk, observer)
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
    if parse_output is not None:
        accumulator.parsed_output = parse_output(accumulator.output_text())


def _nothing_shown(
    renderer: Renderer, accumulator: ResponseAccumulator, error: MaveraError
) -> bool:
    """Whether a retry could print nothing twice: no event yet, or a renderer that holds its
    output until the end and a stream that broke or stalled (never a failed response)."""
    if accumulator.events_seen == 0:
        return True
    return renderer.holds_output and isinstance(error, (PartialStreamError, TimedOutError))


def _pump(
    source: ChunkSource,
    renderer: Renderer,
    accumulator: ResponseAccumulator,
    capture: CaptureWriter | None,
    on_first_chunk: Callable[[], None] | None,
    observer: StreamObserver | None,
) -> None:
    decoder = SSEDecoder(truncate=renderer.truncatable_events)
    feed = decoder.feed
    add = accumulator.add
    add_text_delta = accumulator.add_text_delta
    on_event = renderer.on_event
    flush = renderer.flush
    deltas = renderer.delta_sink  # the text fast path (see Renderer.delta_sink)
    if capture is not None:
        capture.start_attempt()
    with source() as chunks:
        for chunk in chunks:
            if on_first_chunk is not None:
                on_first_chunk()
                on_first_chunk = None
            if capture is not None:
                capture.write(chunk)
            if observer is not None:
                observer.on_read(chunk)
            ended = False
            for sse in feed(chunk):
                data = None
                if deltas is not None and not sse.truncated:
                    # The hot path: a text delta goes from JSON to the renderer's list with
                    # no event object in between.
                    try:
                        data = loads(sse.data)
                    except JSONDecodeError:
                        data = None  # [DONE] or malformed: parse_event says which
                    if data.__class__ is dict and data.get("type") == TEXT_DELTA:
                        delta = data.get("delta")
                        if delta.__class__ is str:
                            deltas.append(delta)
                            add_text_delta(delta)
                            continue
                event = parse_event(sse, data)
                if event is None:  # data: [DONE]
                    accumulator.done_marker = True
                    ended = True
                    break
                add(event)
                on_event(event)
                if accumulator.terminal is not None:
                    ended = True  # nothing after the terminal event is rendered
                    break
            flush()
            # The terminal event (or [DONE]) decides the outcome; don't wait on a lingering socket.
            if ended:
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
        retry_after = (
            error.retry_after if isinstance(error, (RateLimitedError, ServerError)) else None
        )
        if retry_after is not None and too_long_to_wait(retry_after):
            # Retrying sooner than asked is sure to be refused again: give up now, say when.
            error.message += f"; {come_back_after(retry_after)}"
            return False
        wait = backoff(self.taken, retry_after)
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
