"""Per-invocation wiring: flags and environment → settings → terminal and stdout → client → core.

Each thing is built once, after the facts it needs: settings (and so the key) first, then the
terminal and the stdout sink that mask it, then, once the prompt is read, the connection
(the built-in fake server for --mock, the --max-time budget, the HTTP client). Commands in
`cli.py` only name what they want; nothing here parses flags or catches errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from mavera_cli.capture import CaptureWriter
from mavera_cli.client import MaveraClient
from mavera_cli.config import Settings, resolve_settings
from mavera_cli.core import OutputParser, call_with_retries, run_stream, time_limit
from mavera_cli.errors import MaveraError, OutputFailedError
from mavera_cli.events import ResponseAccumulator, response_outcome_error
from mavera_cli.observe import ObserverGroup, StreamObserver
from mavera_cli.options import DiagnosticOptions, RequestOptions
from mavera_cli.render import OutputSink, Renderer
from mavera_cli.render.usage import UsageMeter, UsageTap
from mavera_cli.reporting import Reporter
from mavera_cli.terminal import Terminal

if TYPE_CHECKING:
    from mavera_cli.conversation import Conversation
    from mavera_cli.timing import TimingRecorder

T = TypeVar("T")


def standard_streams() -> tuple[BinaryIO, BinaryIO | None, bool]:
    """Binary stdout, binary stdin (None when closed) and whether stdin is a terminal."""
    if sys.stdout is None:  # started with `>&-`: there is nowhere to put the product
        raise OutputFailedError("standard output is closed: nothing can be written")
    stdin = sys.stdin
    try:
        stdin_is_tty = stdin is not None and stdin.isatty()
    except ValueError:
        stdin_is_tty = False
    return sys.stdout.buffer, (stdin.buffer if stdin is not None else None), stdin_is_tty


@dataclass
class Invocation:
    """One command's resolved world: settings, the terminal (stderr) and the stdout sink."""

    settings: Settings
    terminal: Terminal
    sink: OutputSink
    stdout: BinaryIO
    reporter: Reporter
    opts: RequestOptions = field(default_factory=RequestOptions)
    environ: dict[str, str] = field(default_factory=dict)
    usage: UsageMeter = field(default_factory=UsageMeter)
    # --trace / --timing: told of every request, read and event (None: nothing to tell).
    observer: StreamObserver | None = None
    timing: TimingRecorder | None = None
    # --session / -c: the history requests continue, told of each completed response.
    conversation: Conversation | None = None

    def show(self, renderer: Renderer) -> Renderer:
        """Make `renderer` the product's; the boundary tells it of any failure from now on."""
        self.reporter.renderer = renderer
        return renderer

    def read_prompt(self, words: Sequence[str]) -> str:
        """The prompt from piped stdin, -f files and words (a usage error when there is none)."""
        from mavera_cli.prompt import assemble_prompt

        _, stdin, stdin_is_tty = standard_streams()
        return assemble_prompt(words, self.opts.files, stdin, stdin_is_tty)

    def server_settings(self, stack: ExitStack) -> Settings:
        """The settings to send with: for --mock, the built-in server (started on `stack`,
        no key); otherwise a key is required and the transport must be fit to carry it."""
        if self.opts.mock:
            from mavera_cli.mock import MockServer

            server = stack.enter_context(MockServer())
            return replace(self.settings, base_url=server.base_url, api_key=None)
        self.settings.require_key()
        self.settings.check_transport()
        return self.settings

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """The API to talk to, for the rest of the command: --max-time bounds all of it."""
        with ExitStack() as stack:
            settings = self.server_settings(stack)
            stack.enter_context(time_limit(settings.max_time))
            debug = self.terminal.debug if self.terminal.verbose else None
            client = stack.enter_context(MaveraClient(settings, debug))
            if self.timing is not None:
                stack.callback(self.timing.stop)  # before the client and any fake server close
            yield Connection(self, settings, client)

    def close(self, error: BaseException | None = None) -> None:
        """The command ended (with `error`, if it failed): end the trace, tell the totals."""
        if self.observer is not None:
            self.observer.on_end(error)
        # Also after a failure: a failed or incomplete response may still have cost credits.
        summary = self.usage.summary() if self.opts.usage else None
        if summary is not None:
            self.terminal.info(summary)
        if self.timing is not None:
            from mavera_cli.timing import timing_line

            self.terminal.info(timing_line(self.timing.figures))


@dataclass
class Connection:
    """Requests through one client, each with the spinner, retries and --usage wired in."""

    invocation: Invocation
    settings: Settings
    client: MaveraClient

    def stream(
        self,
        payload: dict[str, Any],
        renderer: Renderer,
        parse_output: OutputParser | None = None,
    ) -> ResponseAccumulator:
        """Stream one response through `renderer` (the one streaming core); `parse_output`
        checks a `json` answer whatever the renderer."""
        inv = self.invocation
        capture = self._capture()
        conversation = inv.conversation
        payload = self._continued(payload)
        tapped: Renderer = renderer
        if inv.opts.usage or conversation is not None:
            # The tap keeps the final event whole: its usage, and its output items.
            tapped = UsageTap(renderer, inv.usage)
        if conversation is not None:
            tapped.needs_text = True  # for a server whose final event lists no output
        # The spinner runs until the first byte arrives, and never outlives this call.
        with self.spinner() as spinner:
            try:
                accumulator = run_stream(
                    lambda: self.client.open_stream(payload, inv.observer),
                    tapped,
                    retries=self.settings.retries,
                    capture=capture,
                    on_retry=announce_retry(inv.terminal),
                    on_first_chunk=spinner.stop,
                    parse_output=parse_output,
                    observer=inv.observer,
                )
            finally:
                renderer.close()  # also for Ctrl-C or a closed pipe: no preview outlives it
        if conversation is not None:
            conversation.completed(accumulator.response, accumulator)
        return accumulator

    def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed response (`ask`), counted for --usage; --save-raw keeps its body."""
        capture = self._capture()
        observer = self.invocation.observer
        conversation = self.invocation.conversation
        payload = self._continued(payload)

        def attempt() -> dict[str, Any]:
            if capture is None:
                return self.client.create_response(payload, observer=observer)
            capture.start_attempt()  # a retry's body replaces the failed attempt's
            try:
                return self.client.create_response(
                    payload, on_body=capture.write, observer=observer
                )
            finally:
                capture.close()

        response = self.call(attempt)
        self.invocation.usage.add(response)
        if conversation is not None and response_outcome_error(response) is None:
            conversation.completed(response, None)
        return response

    def _continued(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The body with the session's history (--session, -c) or --previous-response-id."""
        conversation = self.invocation.conversation
        if conversation is not None:
            return conversation.prepare(payload)
        previous = self.invocation.opts.previous_response_id
        return {**payload, "previous_response_id": previous} if previous else payload

    def _capture(self) -> CaptureWriter | None:
        save_raw = self.invocation.opts.save_raw
        return CaptureWriter(save_raw, self.invocation.settings.api_key) if save_raw else None

    def call(self, request: Callable[[], T]) -> T:
        """A non-streaming request, retried like any other, with the spinner while it waits."""
        with self.spinner():
            return call_with_retries(
                request,
                retries=self.settings.retries,
                on_retry=announce_retry(self.invocation.terminal),
            )

    def spinner(self) -> Any:
        host = urlsplit(self.settings.base_url).hostname or self.settings.base_url
        return self.invocation.terminal.spinner(f"waiting for {host}…")


def announce_retry(terminal: Terminal) -> Callable[[MaveraError, float, int], None]:
    def announce(error: MaveraError, wait: float, attempt: int) -> None:
        terminal.info(f"{error.message}; retry {attempt} in {wait:.1f}s")

    return announce


@contextmanager
def invocation(
    reporter: Reporter, opts: RequestOptions, *, ndjson: bool = False
) -> Iterator[Invocation]:
    """Resolve settings, then build the terminal and the stdout sink once, with the key known.

    `ndjson`: the command writes NDJSON, so a failure before its renderer exists still ends
    stdout with a `mavera.error` line.
    """
    stdout, _, _ = standard_streams()
    reporter.use(opts)
    if ndjson:
        reporter.ndjson_stdout = stdout
    environ = dict(os.environ)
    conversation = open_conversation(opts, environ)
    flags = opts.setting_flags()
    if conversation is None:
        settings = resolve_settings(flags, environ)
    else:
        settings = conversation.resolved(
            resolve_settings(conversation.setting_flags(flags), environ), flags
        )
    terminal = open_terminal(reporter, opts, settings.api_key)
    for warning in settings.warnings:
        terminal.warn(warning)
    inv = Invocation(
        settings, terminal, OutputSink(stdout, settings.api_key), stdout, reporter, opts, environ
    )
    inv.observer, inv.timing = watchers(opts, settings.api_key)
    inv.conversation = conversation
    if conversation is not None:
        conversation.warn = terminal.warn  # (which knows -q)
    # Leaving the sink writes what it held back (a tail that might have begun the key).
    with inv.sink:
        try:
            yield inv
        except BaseException as error:
            try:
                if inv.conversation is not None:
                    inv.conversation.abandon()  # a failed turn never changes the history
            finally:
                inv.close(error)  # the trace's last line says how it ended; the error goes on
            raise
        try:
            if inv.conversation is not None:
                inv.conversation.commit(inv.settings)
        except BaseException as error:
            inv.close(error)
            raise
        inv.close()


def watchers(
    opts: RequestOptions, secret: str | None
) -> tuple[StreamObserver | None, TimingRecorder | None]:
    """The --trace writer and the --timing clock asked for, as one observer (or None)."""
    observers: list[StreamObserver] = []
    if opts.trace:
        from mavera_cli.trace import TraceWriter

        observers.append(TraceWriter(opts.trace, secret))
    timing = None
    if opts.timing:
        from mavera_cli.timing import TimingRecorder  # only then: its import costs ~1 ms

        timing = TimingRecorder()
        observers.append(timing)
    if not observers:
        return None, None
    return (observers[0] if len(observers) == 1 else ObserverGroup(observers)), timing


def open_conversation(opts: RequestOptions, environ: dict[str, str]) -> Conversation | None:
    """The session `--session NAME` or `-c` continues, or None (no session files are read)."""
    if opts.session is None and not opts.continue_last:
        return None
    from mavera_cli.conversation import Conversation

    return Conversation.open(opts.session, opts.continue_last, environ, opts.previous_response_id)


def open_terminal(reporter: Reporter, diag: DiagnosticOptions, secret: str | None) -> Terminal:
    """The stderr terminal for this command, also the one its failure is reported on."""
    reporter.use(diag)
    terminal = Terminal(
        quiet=diag.quiet, verbose=diag.verbose, no_color=diag.no_color, secret=secret
    )
    reporter.terminal = terminal
    return terminal
