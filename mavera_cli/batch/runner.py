"""`batch`: run every item through the one streaming core, -j at a time, and write each result.

Worker threads share one HTTP client (a pool of -j connections), one `pacing.Limiter` and one
`results.ResultsWriter`. Each item is one `core.run_stream` with a renderer that holds
everything until the item ends (so a stream that breaks mid-way is retried within
--retries, like `json`), the same decoder, accumulator, exit-code classes and retry policy as
`stream`/`json`/`tools`. The main thread only waits, so Ctrl-C reaches it at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from mavera_cli import tools as tooling
from mavera_cli.batch.items import BatchItem, InputFormat, check_input, open_input, read_items
from mavera_cli.batch.pacing import Limiter, Stopped
from mavera_cli.batch.results import ResultsWriter, finished_keys
from mavera_cli.client import MaveraClient
from mavera_cli.config import Settings
from mavera_cli.core import OutputParser, run_stream
from mavera_cli.errors import (
    AuthError,
    BatchIncompleteError,
    ConnectionFailedError,
    InterruptedRun,
    MaveraError,
    MaxTimeExceededError,
    TimedOutError,
    UsageError,
)
from mavera_cli.events import FunctionCall, ResponseAccumulator
from mavera_cli.invocation import Invocation, invocation
from mavera_cli.options import RequestOptions
from mavera_cli.payload import build_payload
from mavera_cli.render import Renderer
from mavera_cli.render.progress import BatchProgress
from mavera_cli.reporting import Reporter
from mavera_cli.retry import wait_until
from mavera_cli.schema import JSON_OBJECT_FORMAT, Schema, json_output_parser, load_schema

# After Ctrl-C, how long in-flight items get to notice before the process ends anyway.
_STOP_GRACE_SECONDS = 5.0


class ItemMode(StrEnum):
    """What each item asks for, and what its result line holds."""

    text = "text"
    json = "json"
    tools = "tools"


RESULT_FIELD = {ItemMode.text: "text", ItemMode.json: "parsed", ItemMode.tools: "calls"}


@dataclass(frozen=True)
class BatchRequest:
    """The flags only `batch` has."""

    input: str | None = None
    lines: bool = False
    personas: tuple[str, ...] = ()
    concurrency: int = 4
    mode: ItemMode = ItemMode.text
    schema: str | None = None
    functions: str | None = None
    output: str | None = None
    overwrite: bool = False
    rpm: int | None = None
    max_credits: int | None = None

    def check(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"-j/--concurrency must be 1 or more (got {self.concurrency})")
        if self.rpm is not None and self.rpm < 1:
            raise UsageError(f"--rpm must be 1 or more (got {self.rpm})")
        if self.max_credits is not None and self.max_credits < 0:
            raise UsageError(f"--max-credits must be 0 or more (got {self.max_credits})")
        if self.schema is not None and self.mode is not ItemMode.json:
            raise UsageError("--schema needs --as json")
        if self.functions is not None and self.mode is not ItemMode.tools:
            raise UsageError("--functions needs --as tools")
        if self.mode is ItemMode.tools and self.functions is None:
            raise UsageError("--as tools needs --functions FILE")
        if self.overwrite and self.output is None:
            raise UsageError("--overwrite needs -o FILE")


def run_batch(reporter: Reporter, opts: RequestOptions, request: BatchRequest) -> None:
    """Check all the input, then run what is not finished yet; exit 13 if anything is left."""
    with invocation(reporter, opts) as inv:
        request.check()
        schema = load_schema(request.schema) if request.schema else None
        functions = tooling.load_functions(request.functions) if request.functions else None
        form = InputFormat(lines=request.lines, personas=request.personas)
        output = Path(request.output) if request.output else None
        with open_input(request.input) as path:
            if output is not None and _same_file(path, output):
                raise UsageError(
                    f"-o {request.output} is the input file: results would be written among "
                    "the items; give another file"
                )
            keys = check_input(path, form)
            done = finished_keys(output) if output and not request.overwrite else set()
            todo = len(keys - done)
            del keys
            writer = ResultsWriter(
                output, inv.sink, inv.settings.api_key, overwrite=request.overwrite
            )
            try:
                run = BatchRun(inv, request, schema, functions, writer, todo)
                with _connect(inv, run.limiter, request.concurrency) as (client, settings):
                    run.start(client, settings)
                    items = (item for item in read_items(path, form) if item.key not in done)
                    run.wait(items)
            finally:
                writer.close()
        run.finish(skipped=len(done))


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:  # the output does not exist yet, or cannot be looked at (said later)
        return False


@contextmanager
def _connect(
    inv: Invocation, limiter: Limiter, concurrency: int
) -> Iterator[tuple[MaveraClient, Settings]]:
    """One client for every worker: the built-in server for --mock, a pool of -j connections,
    and every response's rate-limit headers going to the limiter."""
    with ExitStack() as stack:
        # --max-time bounds each item, not the batch (see BatchRun._run_item).
        settings = replace(inv.server_settings(stack), max_time=None)
        debug = inv.terminal.debug if inv.terminal.verbose else None
        client = stack.enter_context(
            MaveraClient(
                settings, debug, on_rate_limit=limiter.observe, max_connections=concurrency
            )
        )
        yield client, settings


class ItemRenderer(Renderer):
    """Collects one item's response; writes nothing itself (the result line is written once
    the item ends), so a stream that breaks mid-way may be retried."""

    holds_output = True
    needs_text = True

    def __init__(self, interrupted: threading.Event, deadline: float | None = None) -> None:
        self._interrupted = interrupted
        self.deadline = deadline
        self.accumulator: ResponseAccumulator | None = None
        self.attempts = 0
        self.retried: MaveraError | None = None  # the failure the pending retry is for
        self.sent = False  # a request went out: the item was started, it gets its line
        # The core's text fast path (the accumulator keeps the text): emptied at each read.
        self._deltas: list[str] = []
        self.delta_sink = self._deltas

    def start(self, accumulator: ResponseAccumulator) -> None:
        self.accumulator = accumulator
        self.attempts += 1

    def flush(self) -> None:
        self._deltas.clear()
        if self._interrupted.is_set():
            raise InterruptedRun()  # Ctrl-C: leave this stream now, it will be run again
        self.check_deadline()

    def check_deadline(self) -> None:
        """--max-time for this item (a signal timer only works in the main thread, so it is
        checked at each network read and before each attempt)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise MaxTimeExceededError("--max-time passed for this item")

    def _fail(self, error: MaveraError, accumulator: ResponseAccumulator | None) -> None:
        if accumulator is not None:
            self.accumulator = accumulator


class BatchRun:
    """The shared state of one batch: workers, counts, the limiter and the writer."""

    def __init__(
        self,
        inv: Invocation,
        request: BatchRequest,
        schema: Schema | None,
        functions: list[dict[str, Any]] | None,
        writer: ResultsWriter,
        todo: int,
    ) -> None:
        self.inv = inv
        self.request = request
        self.schema = schema
        self.functions = functions
        self.writer = writer
        self.todo = todo
        self.limiter = Limiter(rpm=request.rpm)
        self.interrupted = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.credits = 0
        self.in_flight = 0
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._items: Iterator[BatchItem] = iter(())
        self._threads: list[threading.Thread] = []
        self._started_at = time.monotonic()
        self._progress = BatchProgress(inv.terminal, todo)
        self._client: MaveraClient | None = None
        self._settings: Settings | None = None

    # -- the main thread ---------------------------------------------------------------

    def start(self, client: MaveraClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def wait(self, items: Iterator[BatchItem]) -> None:
        """Run every item on -j workers; return when all ended (or re-raise Ctrl-C)."""
        self._items = items
        self._threads = [
            threading.Thread(target=self._work, name=f"mavera-batch-{n}", daemon=True)
            for n in range(min(self.request.concurrency, max(1, self.todo)))
        ]
        with self._progress:
            self._start_workers()
            try:
                for thread in self._threads:
                    while thread.is_alive():
                        thread.join(0.1)
                        self._progress.update(self)
            except BaseException:
                # Ctrl-C or SIGTERM: start nothing more, cut the streams at their next read.
                self.interrupted.set()
                self.limiter.stop()
                deadline = time.monotonic() + _STOP_GRACE_SECONDS
                for thread in self._threads:
                    thread.join(max(0.0, deadline - time.monotonic()))
                raise

    def _start_workers(self) -> None:
        """Start the workers; fewer than -j if the system allows no more threads."""
        for started, thread in enumerate(self._threads):
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": ulimit -u, memory
                if started == 0:
                    raise UsageError(
                        f"-j {self.request.concurrency}: cannot start a worker thread ({exc})"
                    ) from exc
                self.inv.terminal.warn(
                    f"-j {self.request.concurrency}: only {started} workers could start "
                    "(the system's thread limit); going on with those"
                )
                del self._threads[started:]
                return

    def finish(self, *, skipped: int) -> None:
        """The summary line, then how the batch ends: 0, 3, 13 or a bug.

        A batch that fails says its summary in its one error line.
        """
        elapsed = time.monotonic() - self._started_at
        finished = sum(self.outcomes.values())
        not_started = self.todo - finished
        failed = finished - self.outcomes["ok"]
        summary = f"batch: {self.todo} to run: {self.outcomes['ok']} ok"
        if failed:
            kinds = sorted((name, n) for name, n in self.outcomes.items() if name != "ok")
            summary += f", {failed} failed ({', '.join(f'{n} {name}' for name, n in kinds)})"
        if not_started:
            summary += f", {not_started} not started"
            if self.limiter.gave_up_wait is not None:
                summary += f" (the server asks to wait {wait_until(self.limiter.gave_up_wait)})"
        if skipped:
            summary += f"; {skipped} already done"
        summary += f"; {self.credits} credits; {elapsed:.1f}s"
        if isinstance(self.fatal, MaveraError):
            # A 401/403 (or output that cannot be written) stopped the batch: one line says both.
            self.fatal.message += f"; the batch stopped ({summary})"
            raise self.fatal
        if self.fatal is not None:
            self.inv.terminal.info(summary)
            raise self.fatal
        if failed or not_started:
            where = f"in {self.writer.path}" if self.writer.path else "on stdout"
            raise BatchIncompleteError(
                f"{summary} (each item's exit code is in its result line {where}; "
                "run again to retry)"
            )
        self.inv.terminal.info(summary)

    # -- the workers ---------------------------------------------------------------------

    def _next_item(self) -> BatchItem | None:
        with self._lock:
            if self.limiter.stopped:
                return None
            limit = self.request.max_credits
            if limit is not None and self.credits >= limit:
                return None
            item = next(self._items, None)
            if item is not None:
                self.in_flight += 1
            return item

    def _work(self) -> None:
        try:
            while (item := self._next_item()) is not None:
                try:
                    result = self._run_item(item)
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if result is not None:
                    self.writer.write(result)
                    with self._lock:
                        self.outcomes[result["error"] or "ok"] += 1
        except BaseException as exc:  # a bug, or the output failing: end the batch with it
            with self._lock:
                if self.fatal is None:
                    self.fatal = exc
            self.limiter.stop()

    def _run_item(self, item: BatchItem) -> dict[str, Any] | None:
        """One item through the core; its result line, or None if it was cut short."""
        assert self._client is not None and self._settings is not None
        client, settings = self._client, self._settings
        started = time.monotonic()
        max_time = self.inv.settings.max_time
        renderer = ItemRenderer(self.interrupted, None if max_time is None else started + max_time)
        payload, parse_output = self._payload(item, settings)
        error: MaveraError | None = None
        try:
            accumulator = run_stream(
                lambda: self._open(client, payload, renderer),
                renderer,
                retries=settings.retries,
                on_retry=lambda error, wait, attempt: self._on_retry(
                    renderer, error, wait, attempt
                ),
                parse_output=parse_output,
                sleep=self.limiter.sleep,
            )
            if self.request.mode is ItemMode.tools:
                tooling.check_arguments(accumulator.calls.values())
        except (InterruptedRun, Stopped):
            if self.interrupted.is_set():
                if not renderer.sent:
                    return None  # never sent: not started, a re-run runs it
                # Started, then cut by Ctrl-C: its line says so (exit 130), a re-run runs it.
                error = InterruptedRun()
            elif renderer.retried is None:
                return None  # stopped before it was sent: a re-run runs it
            else:
                # A 401 stopped the batch while this item waited to retry: it was started,
                # so it gets its line, with the failure it was waiting on.
                error = renderer.retried
        except AuthError as exc:
            error = exc
            with self._lock:
                if self.fatal is None:
                    self.fatal = exc  # no item can succeed: stop the batch, exit 3
            self.limiter.stop()
        except MaveraError as exc:
            error = exc
        return self._result(item, renderer, error, time.monotonic() - started)

    def _payload(
        self, item: BatchItem, settings: Settings
    ) -> tuple[dict[str, Any], OutputParser | None]:
        item_settings = replace(
            settings,
            persona=item.persona_id or settings.persona,
            model=item.model or settings.model,
            instructions=item.instructions or settings.instructions,
        )
        if self.request.mode is ItemMode.json:
            schema = item.schema or self.schema
            text_format = schema.text_format() if schema else dict(JSON_OBJECT_FORMAT)
            parser = json_output_parser(schema.document if schema else None)
            return build_payload(
                item_settings, item.input, stream=True, text_format=text_format
            ), parser
        return build_payload(item_settings, item.input, stream=True, tools=self.functions), None

    @contextmanager
    def _open(
        self, client: MaveraClient, payload: dict[str, Any], renderer: ItemRenderer
    ) -> Iterator[Iterator[bytes]]:
        """One attempt's stream, started only when the limiter lets it."""
        self.limiter.acquire()
        renderer.check_deadline()
        with ExitStack() as stack:
            try:
                renderer.sent = True
                chunks = stack.enter_context(
                    client.open_stream(payload, on_written=self.limiter.written)
                )
            except (ConnectionFailedError, TimedOutError):
                self.limiter.forget()  # no response, so no headers will tell of this one
                raise
            yield chunks

    def _on_retry(
        self, renderer: ItemRenderer, error: MaveraError, wait: float, attempt: int
    ) -> None:
        renderer.retried = error
        # (A 429 has already paused every worker: the limiter heard its Retry-After.)
        if self.inv.terminal.verbose:
            self.inv.terminal.info(f"{error.message}; retry {attempt} in {wait:.1f}s")

    def _result(
        self, item: BatchItem, renderer: ItemRenderer, error: MaveraError | None, elapsed: float
    ) -> dict[str, Any]:
        accumulator = renderer.accumulator
        response = accumulator.response if accumulator is not None else {}
        usage = response.get("usage") if isinstance(response, dict) else None
        with self._lock:
            self.inv.usage.add(response)
            credits = usage.get("credits_used") if isinstance(usage, dict) else None
            if isinstance(credits, int) and not isinstance(credits, bool):
                self.credits += credits
        value: Any = None
        if error is None and accumulator is not None:
            if self.request.mode is ItemMode.json:
                value = accumulator.parsed_output
            elif self.request.mode is ItemMode.tools:
                value = [_call(call) for call in accumulator.calls.values()]
            else:
                value = accumulator.output_text()
        return {
            "id": item.id,
            "index": item.index,
            "persona_id": item.persona_id,
            "exit_code": 0 if error is None else int(error.exit_code),
            "error": None if error is None else error.kind,
            "message": None if error is None else error.message,
            "status": response.get("status") if response else None,
            RESULT_FIELD[self.request.mode]: value,
            "response_id": response.get("id") if response else None,
            "usage": usage,
            "attempts": renderer.attempts,
            "elapsed_s": round(elapsed, 3),
        }


def _call(call: FunctionCall) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.parsed_arguments(),
    }
