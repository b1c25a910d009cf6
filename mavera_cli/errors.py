"""Every way a request can end, as exception classes that carry their exit code.

    MaveraError                      (exit_code, kind)
    ├── UsageError                   2  usage
    ├── AuthError                    3  auth
    ├── RejectedError                4  rejected
    ├── RateLimitedError             5  rate_limited   (retry_after)
    ├── TimedOutError                6  timeout
    │   └── MaxTimeExceededError        (--max-time: never retried)
    ├── PartialStreamError           7  partial_stream
    ├── ServerError                  8  server_error
    ├── ConnectionFailedError        9  connection
    ├── NotCompletedError           10  not_completed
    │   └── RefusalError                (the model refused: the refusal text is the message)
    ├── InvalidOutputError          11  invalid_output
    ├── ToolFailedError             12  tool_failed
    ├── BatchIncompleteError        13  batch_incomplete  (`batch`: an item failed or never started)
    ├── OutputFailedError           74  io_error       (stdout or a file could not be written)
    ├── InternalError                1  internal
    └── InterruptedRun             130  interrupted    (143 after SIGTERM: `status`)

    Terminated (a BaseException)        SIGTERM, raised by entry's signal handler

Only the standard library is imported here: every layer may raise these.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Mapping
from enum import IntEnum

from mavera_cli.printable import terminal_safe


class ExitCode(IntEnum):
    """The contract's exit codes; the member names are the contract's names."""

    ok = 0
    internal = 1
    usage = 2
    auth = 3
    rejected = 4
    rate_limited = 5
    timeout = 6
    partial_stream = 7
    server_error = 8
    connection = 9
    not_completed = 10
    invalid_output = 11
    tool_failed = 12
    batch_incomplete = 13
    io_error = 74  # not in the contract's table: sysexits' EX_IOERR, for output that fails
    interrupted = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.ok: "the response completed",
    ExitCode.internal: "an unexpected error (a bug; please report it)",
    ExitCode.usage: "bad flags or arguments, no prompt, unreadable input or schema file",
    ExitCode.auth: "no API key, 401, 403",
    ExitCode.rejected: "any other 4xx (400, 402, 404, 409, 413, 422 ...), or a 3xx redirect "
    "(not followed)",
    ExitCode.rate_limited: "429 after the retries were used up",
    ExitCode.timeout: "--timeout or --max-time passed, before or during the stream",
    ExitCode.partial_stream: "the stream broke or ended before response.completed",
    ExitCode.server_error: "5xx after the retries were used up",
    ExitCode.connection: "DNS, refused, reset before any response, TLS failure",
    ExitCode.not_completed: "response.failed or .incomplete, an error event or Chat-style "
    "error chunk, a refusal",
    ExitCode.invalid_output: "output is not valid JSON or fails the schema; malformed event data",
    ExitCode.tool_failed: "tools --exec: a local command failed or the round limit was reached",
    ExitCode.batch_incomplete: "batch: one or more items did not complete or were not started",
    ExitCode.io_error: "output could not be written: stdout closed, disk full, --save-raw",
    ExitCode.interrupted: "interrupted (Ctrl-C)",
}


# A message is one line on stderr and in the NDJSON `mavera.error` line. Server text (an error
# body's message, a response.failed reason, a refusal) can be megabytes: this much is kept.
MAX_MESSAGE = 4096
# The word a cut falls in is dropped whole, up to this long: a key the server echoed must not
# be left half there (a cut key no longer matches the mask that is applied when it is shown).
_CUT_WORD = re.compile(r"[\w\-+/=.~]{1,256}\Z")


def cut_message(message: str) -> str:
    """`message`, cut to MAX_MESSAGE characters with a note saying so if it is longer."""
    if len(message) <= MAX_MESSAGE:
        return message
    kept = message[:MAX_MESSAGE]
    word = _CUT_WORD.search(kept)
    if word is not None:
        kept = kept[: word.start()]
    return f"{kept}… [cut: {len(message) - len(kept)} more characters]"


class MaveraError(Exception):
    """Base of every failure the tool reports; `exit_code` decides how the process ends."""

    exit_code: ExitCode = ExitCode.internal

    def __init__(self, message: str) -> None:
        message = cut_message(message)  # every message built from server text passes here
        super().__init__(message)
        self.message = message

    @property
    def kind(self) -> str:
        return self.exit_code.name


class UsageError(MaveraError):
    exit_code = ExitCode.usage


class AuthError(MaveraError):
    exit_code = ExitCode.auth


class RejectedError(MaveraError):
    exit_code = ExitCode.rejected


class RateLimitedError(MaveraError):
    exit_code = ExitCode.rate_limited

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TimedOutError(MaveraError):
    exit_code = ExitCode.timeout


class MaxTimeExceededError(TimedOutError):
    """`--max-time` passed: the whole budget is spent, so this one is never retried."""


class PartialStreamError(MaveraError):
    exit_code = ExitCode.partial_stream


class ServerError(MaveraError):
    exit_code = ExitCode.server_error

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # a 503 may say when to come back


class ConnectionFailedError(MaveraError):
    exit_code = ExitCode.connection


class NotCompletedError(MaveraError):
    exit_code = ExitCode.not_completed


class RefusalError(NotCompletedError):
    """The model refused; its refusal text, on one line, is the whole message."""

    def __init__(self, refusal: str) -> None:
        super().__init__(" ".join(refusal.split()))
        self.refusal = refusal


class InvalidOutputError(MaveraError):
    exit_code = ExitCode.invalid_output


class ToolFailedError(MaveraError):
    exit_code = ExitCode.tool_failed


class BatchIncompleteError(MaveraError):
    exit_code = ExitCode.batch_incomplete


class OutputFailedError(MaveraError):
    """stdout or an output file could not be written (closed, disk full, no permission)."""

    exit_code = ExitCode.io_error


class InternalError(MaveraError):
    exit_code = ExitCode.internal


class InterruptedRun(MaveraError):
    """A run stopped by Ctrl-C (exit 130) or by the signal `signum` (`status` 128 + it), for
    the renderer to report (the NDJSON `mavera.error` line); the KeyboardInterrupt or
    Terminated itself goes on to the boundary, which ends the process."""

    exit_code = ExitCode.interrupted

    def __init__(self, signum: int | None = None) -> None:
        super().__init__("interrupted" if signum is None else "terminated")
        self.status = int(ExitCode.interrupted) if signum is None else 128 + signum


# Signals whose default action ends the process at once; entry ends them as SIGTERM, when
# that default is in place: SIGHUP (the terminal closed) and SIGQUIT (Ctrl-\\).
ENDING_SIGNALS = (signal.SIGHUP, signal.SIGQUIT)


class Terminated(BaseException):
    """SIGTERM (or one of ENDING_SIGNALS), raised in the main thread by entry's handler so that
    output is flushed and reported on the way out, and nothing is left behind (a temporary
    file, a tool's process group). A BaseException, like KeyboardInterrupt: no layer may
    catch it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)
        # The process exit status, as a shell reports it: 143 for SIGTERM, 129 for SIGHUP,
        # 131 for SIGQUIT (not ExitCodes: they have no row of their own in the table).
        self.status = 128 + self.signum


def cause_of(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The exception of one of `kinds` that `exc` is, or was raised from or while handling."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kinds):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


class OutputClosed(BaseException):
    """The reader of stdout went away (`| head`). A BaseException so that no layer in
    between (Typer turns a BrokenPipeError into exit 1) can swallow it."""


# Bodies can be whole HTML pages; a one-line message keeps only this much of them.
_MAX_QUOTED_BODY = 200


def server_message(body: bytes) -> str:
    """The server's own error message from a response body, as one short line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        parsed = None
    if isinstance(parsed, Mapping):
        inner = parsed.get("error", parsed)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            code = inner.get("code")
            message = str(inner["message"])
            return f"{message} ({code})" if isinstance(code, str) and code else message
        if isinstance(inner, str):
            return inner
    if text.lstrip().startswith("<"):
        return _html_title(text) or "an HTML page"
    line = " ".join(text.split())
    if len(line) > _MAX_QUOTED_BODY:
        line = line[:_MAX_QUOTED_BODY] + "…"
    return line or "no message"


def _html_title(html: str) -> str:
    lower = html.lower()
    start = lower.find("<title>")
    end = lower.find("</title>", start)
    if start == -1 or end == -1:
        return ""
    return " ".join(html[start + len("<title>") : end].split())[:_MAX_QUOTED_BODY]


# The content types of a 2xx read as an event stream (a server may leave it unlabelled).
EVENT_STREAM_TYPES = frozenset({"", "text/event-stream", "text/plain", "application/octet-stream"})


def error_reply(data: object, message: str) -> NotCompletedError | None:
    """A JSON reply that is an `{"error": …}` object where an answer was expected: the
    server's error, as `stream` reports a Chat-style error chunk. `message`: from the body."""
    if isinstance(data, Mapping) and data.get("error"):
        return NotCompletedError(f"the server answered with an error: {message}")
    return None


def not_a_stream(content_type: str, data: object, message: str) -> MaveraError:
    """A 2xx to a streaming request that is no event stream; `data`: its body as JSON, if
    it is (else None)."""
    if content_type == "application/json":
        error = error_reply(data, message)
        if error is not None:
            return error
    return InvalidOutputError(f"expected an event stream, got {content_type}: {message}")


def not_a_response(data: object, message: str) -> MaveraError | None:
    """What is wrong with a non-streamed reply before its status is judged: that it is no
    Response object (an error envelope, or no status at all)."""
    if isinstance(data, Mapping) and "status" in data:
        return None
    return error_reply(data, message) or InvalidOutputError(
        f"the server's response is not a Response object (no status): {message}"
    )


def redirect_error(status: int, location: str | None, requested: str) -> RejectedError:
    """A 3xx: never followed, since the key would go wherever it points; the message names
    the target (resolved against `requested`, the URL asked for) and the --base-url to try."""
    if not location:
        return RejectedError(f"HTTP {status}: a redirect without a Location; not followed")
    location = terminal_safe(location)
    advice = "use that URL as --base-url if you trust it"
    # The same endpoint somewhere else: the base URL to try is the target without it.
    endpoint = "/" + requested.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    target = location.split("?", 1)[0].rstrip("/")
    if target.endswith(endpoint) and len(target) > len(endpoint):
        advice = f"if you trust it, use --base-url {target.removesuffix(endpoint)}"
    return RejectedError(
        f"HTTP {status}: the server redirected to {location}; not followed ({advice})"
    )


def error_for_status(status: int, body: bytes, retry_after: float | None = None) -> MaveraError:
    """The error class for an HTTP error status, quoting the server's message."""
    message = f"HTTP {status}: {server_message(body)}"
    if status in (401, 403):
        return AuthError(message)
    if status == 429:
        if retry_after is not None:
            message += f" (server's Retry-After: {retry_after:g}s)"
        return RateLimitedError(message, retry_after)
    if 400 <= status < 500:
        return RejectedError(message)
    if status >= 500:
        return ServerError(message, retry_after)
    return InternalError(f"unexpected HTTP status {status}: {server_message(body)}")
