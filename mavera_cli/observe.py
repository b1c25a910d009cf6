"""The hook `--trace` and `--timing` hang on: what one run's wire watcher is told, and when.

The client tells it of each request and response head, the core of each network read and (for
a watcher that asks, `watches_events`) of each event. Nothing here runs unless a watcher was
asked for: without one the core's loop is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from mavera_cli.errors import MaveraError
from mavera_cli.events import ResponseAccumulator, ResponseEvent
from mavera_cli.render import Renderer


class StreamObserver:
    """A watcher of one command's requests; every method does nothing unless overridden."""

    # Whether `on_event`/`on_read_done` are wanted (they need a renderer tap; see `observed`).
    watches_events: bool = False

    def on_request(self, method: str, url: str, body_bytes: int) -> None:
        """An attempt starts: the request is about to be sent."""

    def on_response(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        """The status line and headers arrived."""

    def on_read(self, chunk: bytes) -> None:
        """One network read of the body, exactly as received."""

    def on_event(self, type: str, index: int) -> None:
        """An event that did not take the core's text fast path; `index` counts from 1."""

    def on_read_done(self, events_seen: int, text_chars: int) -> None:
        """A read is decoded: the attempt has seen this many events and characters so far."""

    def on_end(self, error: BaseException | None) -> None:
        """The command is over: `error` is why it failed (None when it succeeded)."""


class ObserverGroup(StreamObserver):
    """Several watchers (a trace and a timing), told the same things in order."""

    def __init__(self, observers: Sequence[StreamObserver]) -> None:
        self._observers = list(observers)
        self.watches_events = any(observer.watches_events for observer in observers)

    def on_request(self, method: str, url: str, body_bytes: int) -> None:
        for observer in self._observers:
            observer.on_request(method, url, body_bytes)

    def on_response(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        for observer in self._observers:
            observer.on_response(status, headers)

    def on_read(self, chunk: bytes) -> None:
        for observer in self._observers:
            observer.on_read(chunk)

    def on_event(self, type: str, index: int) -> None:
        for observer in self._observers:
            observer.on_event(type, index)

    def on_read_done(self, events_seen: int, text_chars: int) -> None:
        for observer in self._observers:
            observer.on_read_done(events_seen, text_chars)

    def on_end(self, error: BaseException | None) -> None:
        for observer in self._observers:
            observer.on_end(error)


def observed(renderer: Renderer, observer: StreamObserver) -> Renderer:
    """`renderer`, tapped so that `observer` hears of events and finished reads if it asks."""
    return _ObservedRenderer(renderer, observer) if observer.watches_events else renderer


class _ObservedRenderer(Renderer):
    """Passes every call through; tells the observer of slow-path events and of each read's end.

    The core's text fast path never reaches `on_event`: the observer counts those deltas from
    the accumulator at the end of the read, so the fast path stays as it is.
    """

    def __init__(self, renderer: Renderer, observer: StreamObserver) -> None:
        self._renderer = renderer
        self._observer = observer
        self._accumulator: ResponseAccumulator | None = None
        self.truncatable_events = renderer.truncatable_events
        self.delta_sink = renderer.delta_sink
        self.needs_text = renderer.needs_text
        self.holds_output = renderer.holds_output

    def start(self, accumulator: ResponseAccumulator) -> None:
        self._accumulator = accumulator
        self._renderer.start(accumulator)

    def on_event(self, event: ResponseEvent) -> None:
        assert self._accumulator is not None
        self._observer.on_event(event.type, self._accumulator.events_seen)
        self._renderer.on_event(event)

    def flush(self) -> None:
        self._renderer.flush()
        accumulator = self._accumulator
        if accumulator is not None:
            self._observer.on_read_done(accumulator.events_seen, accumulator.text_chars)

    def finish(self, accumulator: ResponseAccumulator) -> None:
        self._renderer.finish(accumulator)

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        self._renderer.fail(error, accumulator)

    def close(self) -> None:
        self._renderer.close()
