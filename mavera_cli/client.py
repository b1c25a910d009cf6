"""HTTP only: talks to the Mavera API with httpx and maps every transport failure to our errors.

Knows nothing of SSE, rendering or retries; the key lives only in the Authorization header.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from mavera_cli import __version__
from mavera_cli.config import Settings, is_loopback
from mavera_cli.errors import (
    ConnectionFailedError,
    InvalidOutputError,
    MaveraError,
    NotCompletedError,
    PartialStreamError,
    TimedOutError,
    UsageError,
    error_for_status,
    redirect_error,
    server_message,
)
from mavera_cli.observe import StreamObserver
from mavera_cli.redact import Redactor, mask_url_credentials
from mavera_cli.retry import parse_retry_after

MAX_ERROR_BODY = 64 * 1024  # enough for any error message; an HTML page is cut short
DebugSink = Callable[[str], None]


@dataclass(frozen=True)
class RateLimitHeaders:
    """What one response said of the key's window (protocol.md §4.3); None where not sent.

    `reset` is a Unix time in seconds, as Mavera documents it; a fractional value is kept.
    A server that sends milliseconds, or seconds from now (as the IETF RateLimit-Reset draft
    does), has its value read as such, not as a time centuries away or decades past.
    """

    limit: int | None
    remaining: int | None
    reset: float | None
    retry_after: float | None = None  # a 429's Retry-After
    date: float | None = None  # the response's Date: the server's clock, in whole seconds

    @classmethod
    def from_response(cls, response: httpx.Response) -> RateLimitHeaders:
        """The three headers of a response (each None when not sent, or not a number)."""
        headers = response.headers
        limit, remaining, reset = (_number(headers.get(name)) for name in _RATE_LIMIT_HEADERS)
        return cls(
            None if limit is None else int(limit),
            None if remaining is None else int(remaining),
            None if reset is None else _unix_time(reset),
            parse_retry_after(headers) if response.status_code == 429 else None,
            _http_date(headers.get("date")),
        )


RateLimitSink = Callable[[RateLimitHeaders], None]
_RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


# Unix times in seconds run from 1e9 (2001) to 1e11 (year 5138): below, seconds from now;
# above, milliseconds.
_UNIX_SECONDS = (1e9, 1e11)


def _unix_time(reset: float) -> float:
    if reset < _UNIX_SECONDS[0]:
        return time.time() + reset
    if reset >= _UNIX_SECONDS[1]:
        return reset / 1000
    return reset


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 and number != float("inf") else None


class MaveraClient:
    """One connection pool to the API, closed with the client."""

    def __init__(
        self,
        settings: Settings,
        debug: DebugSink | None = None,
        *,
        on_rate_limit: RateLimitSink | None = None,
        max_connections: int | None = None,
    ) -> None:
        """`on_rate_limit` hears the rate-limit headers of every response (`batch` paces by
        them); `max_connections` sizes the pool for that many requests at once."""
        self._settings = settings
        self._debug = debug
        self._on_rate_limit = on_rate_limit
        # A server may echo the key in an error body: masked before a message is made from
        # it, since the message is then cut short and a cut key no longer matches the mask.
        self._redactor = Redactor(settings.api_key)
        headers = {
            "Accept": "application/json, text/event-stream",
            "User-Agent": f"mavera-cli/{__version__}",
        }
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        try:
            host = httpx.URL(settings.base_url).host
        except (httpx.InvalidURL, UnicodeError) as exc:  # what settings' check let through
            raise UsageError(
                f"invalid base URL {mask_url_credentials(settings.base_url)!r} (from "
                f"{settings.base_url_source()}): {mask_url_credentials(str(exc))}"
            ) from exc
        timeout = httpx.Timeout(settings.timeout)
        # Loading the CA bundle costs tens of ms at start-up; a plain-http URL never uses it.
        verify = not settings.base_url.startswith("http://")
        try:
            self._http = httpx.Client(
                base_url=settings.base_url + "/",
                headers=headers,
                timeout=timeout,
                verify=verify,
                follow_redirects=False,
                # A proxy from the environment must not capture requests to this machine (--mock).
                trust_env=not is_loopback(host),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                )
                if max_connections
                else httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        except ImportError as exc:  # httpx's optional SOCKS support is missing
            raise UsageError(
                f"a SOCKS proxy is set ({_proxy_variables()}), but SOCKS support is not "
                "installed: pip install 'httpx[socks]', or unset the variable"
            ) from exc
        except (httpx.InvalidURL, ValueError) as exc:
            # httpx quotes the proxy's URL, password and all.
            message = mask_url_credentials(str(exc))
            raise UsageError(f"invalid proxy setting ({_proxy_variables()}): {message}") from exc
        except OSError as exc:  # SSL_CERT_FILE / SSL_CERT_DIR naming what is not there
            raise UsageError(
                f"cannot load the TLS certificates ({_certificate_variables()}): "
                f"{exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MaveraClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def open_stream(
        self, payload: dict[str, Any], observer: StreamObserver | None = None
    ) -> Iterator[Iterator[bytes]]:
        """POST a streaming request; yield an iterator over the raw body chunks as they arrive.
        `observer` hears of the request and the response head (the core tells it the reads)."""
        request = self._http.build_request(
            "POST",
            "responses",
            content=orjson.dumps(payload),
            # Compressed SSE would hold deltas back in the decompressor's buffer.
            headers={
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            },
        )
        response = self._send(request, observer)
        try:
            self._check_status(response)
            self._check_stream_type(response)
            yield _raw_chunks(response, self._settings)
        finally:
            response.close()

    def create_response(
        self,
        payload: dict[str, Any],
        on_body: Callable[[bytes], None] | None = None,
        observer: StreamObserver | None = None,
    ) -> dict[str, Any]:
        """POST a non-streaming request; the Response object. `on_body` gets the body bytes,
        `observer` the request, the response head and the body as one read."""
        data = self._request_json("POST", "responses", payload, on_body, observer)
        if not isinstance(data, dict):
            raise InvalidOutputError("the server's response is not a JSON object")
        return data

    def list_personas(self) -> list[dict[str, Any]]:
        """The personas the key can use."""
        data = self._request_json("GET", "personas", None)
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InvalidOutputError("the server's persona list has no `data` array")
        return [item for item in items if isinstance(item, dict)]

    def get_usage(self) -> dict[str, Any]:
        """`GET /usage`: the account's credits, billing period and rate limit, as sent."""
        data = self._request_json("GET", "usage", None)
        if not isinstance(data, dict):
            raise InvalidOutputError("the server's usage report is not a JSON object")
        return data

    def _request_json(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        on_body: Callable[[bytes], None] | None = None,
        observer: StreamObserver | None = None,
    ) -> Any:
        request = self._http.build_request(
            method,
            path,
            content=None if payload is None else orjson.dumps(payload),
            headers={"Content-Type": "application/json"} if payload is not None else None,
        )
        response = self._send(request, observer)
        try:
            self._check_status(response)
            try:
                body = response.read()
            except httpx.HTTPError as exc:
                raise _body_error(exc, self._settings) from exc
        finally:
            response.close()
        if observer is not None:
            observer.on_read(body)
        if on_body is not None:
            on_body(body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidOutputError(
                f"the server's response is not JSON: {self._message(body)}"
            ) from exc

    def _send(
        self, request: httpx.Request, observer: StreamObserver | None = None
    ) -> httpx.Response:
        """Send and return once the status line and headers are in; the body is not read."""
        self._log_request(request)
        if observer is not None:
            observer.on_request(request.method, str(request.url), len(request.content))
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _request_error(exc, self._settings) from exc
        except UnicodeError as exc:  # the resolver's: a proxy's host name (ours is checked)
            raise ConnectionFailedError(
                f"cannot reach {self._settings.base_url}: a host name on the way is not valid "
                f"({_describe(exc, self._settings)})"
            ) from exc
        self._log_response(response)
        if observer is not None:
            observer.on_response(response.status_code, response.headers.multi_items())
        if self._on_rate_limit is not None:
            # Every response, with the headers or without: a caller learns either way.
            self._on_rate_limit(RateLimitHeaders.from_response(response))
        return response

    def _check_status(self, response: httpx.Response) -> None:
        if 300 <= response.status_code < 400:
            location = response.headers.get("location")
            try:
                target = str(response.url.join(location)) if location else None
            except httpx.InvalidURL:
                target = location  # shown as sent: it is only named, never requested
            raise redirect_error(response.status_code, target, str(response.url))
        if response.status_code < 400:
            return
        body = self._redactor.data(_read_limited(response))
        retry_after = parse_retry_after(response.headers)
        raise self._masked(error_for_status(response.status_code, body, retry_after))

    def _check_stream_type(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in ("", "text/event-stream", "text/plain", "application/octet-stream"):
            return
        body = _read_limited(response)
        message = self._message(body)
        if content_type == "application/json":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and data.get("error"):
                raise NotCompletedError(f"the server answered with an error: {message}")
        raise InvalidOutputError(f"expected an event stream, got {content_type}: {message}")

    def _message(self, body: bytes) -> str:
        """The server's message from `body`, the key masked before it is cut short."""
        return self._redactor.text(server_message(self._redactor.data(body)))

    def _masked(self, error: MaveraError) -> MaveraError:
        # The body's JSON may spell the key with escapes (`\u006d…`): masked once decoded.
        error.message = self._redactor.text(error.message)
        return error

    def _log_request(self, request: httpx.Request) -> None:
        if self._debug is None:
            return
        self._debug(f"> {request.method} {request.url}")
        for name, value in request.headers.items():
            shown = "Bearer ***" if name.lower() == "authorization" else value
            self._debug(f"> {name}: {shown}")

    def _log_response(self, response: httpx.Response) -> None:
        if self._debug is None:
            return
        self._debug(f"< {response.http_version} {response.status_code} {response.reason_phrase}")
        for name, value in response.headers.items():
            self._debug(f"< {name}: {value}")


def _raw_chunks(response: httpx.Response, settings: Settings) -> Iterator[bytes]:
    """The body exactly as received, one item per network read."""
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    try:
        yield from response.iter_bytes() if encoded else response.iter_raw()
    except httpx.HTTPError as exc:
        raise _body_error(exc, settings) from exc


def _read_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass  # the status already says what happened; the body is only decoration
    return b"".join(chunks)[:MAX_ERROR_BODY]


def _request_error(exc: httpx.HTTPError, settings: Settings) -> MaveraError:
    """A failure before any response: connect, TLS, DNS, or the server never answered."""
    if isinstance(exc, httpx.TimeoutException):
        stage = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for a response"
        return TimedOutError(
            f"no answer for {settings.timeout:g}s while {stage} ({_describe(exc, settings)})"
        )
    return ConnectionFailedError(f"cannot reach {settings.base_url}: {_describe(exc, settings)}")


def _body_error(exc: httpx.HTTPError, settings: Settings) -> MaveraError:
    """A failure while the body was arriving: the response is cut short."""
    if isinstance(exc, httpx.TimeoutException):
        return TimedOutError(f"no data for {settings.timeout:g}s during the response")
    return PartialStreamError(f"connection broke during the response: {_describe(exc, settings)}")


def _describe(exc: BaseException, settings: Settings) -> str:
    """An httpx error as one line, the key masked: its text may quote request headers."""
    text = str(exc) or type(exc).__name__
    return " ".join(Redactor(settings.api_key).text(text).split())


_PROXY_VARIABLES = ("ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY")


# httpx itself reads these from the environment (trust_env); only a failure names them.
def _proxy_variables() -> str:
    """Which proxy variables are set, by name only: their values may hold a password."""
    names = [
        name
        for upper in _PROXY_VARIABLES
        for name in (upper, upper.lower())
        if os.environ.get(name)
    ]
    return ", ".join(names) or "proxy environment variables"


def _certificate_variables() -> str:
    names = [name for name in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(name)]
    return ", ".join(f"{name}={os.environ[name]}" for name in names) or "the system CA bundle"
