"""HTTP only: talks to the Mavera API with httpx and maps every transport failure to our errors.

Knows nothing of SSE, rendering or retries; the key lives only in the Authorization header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h11
import httpx
import orjson

from mavera_cli import __version__
from mavera_cli.bodies import MAX_RESPONSE_BODY, check_encoding, exact_json, read_error_body
from mavera_cli.config import Settings, is_loopback
from mavera_cli.errors import (
    EVENT_STREAM_TYPES,
    ConnectionFailedError,
    InvalidOutputError,
    MaveraError,
    PartialStreamError,
    TimedOutError,
    UsageError,
    cause_of,
    error_for_status,
    error_reply,
    not_a_response,
    not_a_stream,
    redirect_error,
    server_message,
)
from mavera_cli.jsonout import json_line
from mavera_cli.observe import StreamObserver
from mavera_cli.ratelimit import RateLimitHeaders
from mavera_cli.redact import Redactor, header_name_redactor, mask_url_credentials
from mavera_cli.retry import parse_retry_after

DebugSink = Callable[[str], None]
RateLimitSink = Callable[[RateLimitHeaders], None]


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
        self._name_redactor = header_name_redactor(settings.api_key)
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
        self._urls: dict[str, httpx.URL] = {}
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
                event_hooks={"response": [_stop_at_redirect]},
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                )
                if max_connections
                else httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        except ImportError as exc:  # httpx's optional SOCKS support is missing
            if not _socks_proxy_set():
                raise  # not that (an import that failed for want of memory, say)
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

    def _url(self, path: str) -> httpx.URL:
        """`path` under the base URL, worked out once: parsing the two and merging them again
        for every request is a measurable share of a `batch` item's CPU time."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._http.build_request("GET", path).url
        return url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MaveraClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def open_stream(
        self,
        payload: dict[str, Any],
        observer: StreamObserver | None = None,
        *,
        on_written: Callable[[], None] | None = None,
    ) -> Iterator[Iterator[bytes]]:
        """POST a streaming request; yield an iterator over the raw body chunks as they arrive.
        `observer` hears of the request and the response head (the core tells it the reads);
        `on_written` is called once the request's head has been written to the connection
        (`batch` paces by that moment), before the response is awaited."""
        request = self._http.build_request(
            "POST",
            self._url("responses"),
            content=_request_body(payload),
            # Compressed SSE would hold deltas back in the decompressor's buffer.
            headers={
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            },
            extensions=None if on_written is None else {"trace": _when_written(on_written)},
        )
        response = self._send(request, observer)
        try:
            self._check_status(response, observer)
            self._check_stream_type(response, observer)
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
        body = self._request("POST", "responses", payload, on_body, observer)
        data = self._json(body)
        problem = not_a_response(data, self._message(body))
        if problem is not None:
            raise problem
        return data  # type: ignore[no-any-return]  # the caller judges its status

    def list_personas(self) -> list[dict[str, Any]]:
        """The personas the key can use."""
        body = self._request("GET", "personas", None)
        data = self._json(body)
        self._check_error_reply(data, body)
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InvalidOutputError("the server's persona list has no `data` array")
        return [item for item in items if isinstance(item, dict)]

    def get_usage(self) -> tuple[dict[str, Any], bytes]:
        """`GET /usage`: the account's credits, billing period and rate limit; the report
        parsed, and its body as received (one JSON object, checked) for a pipe."""
        body = self._request("GET", "usage", None)
        data = exact_json(body)
        self._check_error_reply(data, body)
        if not isinstance(data, dict):
            raise InvalidOutputError(
                f"the server's usage report is not a JSON object: {self._message(body)}"
            )
        return data, body

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        on_body: Callable[[bytes], None] | None = None,
        observer: StreamObserver | None = None,
    ) -> bytes:
        """A whole (not streamed) 2xx body; `observer` hears it as one read."""
        request = self._http.build_request(
            method,
            self._url(path),
            content=None if payload is None else _request_body(payload),
            headers={"Content-Type": "application/json"} if payload is not None else None,
        )
        response = self._send(request, observer)
        try:
            self._check_status(response, observer)
            check_encoding(response)
            body = _read_body(response, observer, self._settings)
        finally:
            response.close()
        if on_body is not None:
            on_body(body)
        return body

    def _json(self, body: bytes) -> Any:
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
        except _Redirected as redirect:
            response = redirect.response  # closed: only its head is needed
        except httpx.HTTPError as exc:
            raise _request_error(exc, self._settings) from exc
        except UnicodeError as exc:  # the resolver's: a proxy's host name (ours is checked)
            raise ConnectionFailedError(
                f"cannot reach {self._settings.base_url}: a host name on the way is not valid "
                f"({_describe(exc, self._settings)})"
            ) from exc
        except LookupError as exc:  # the resolver's codec could not be loaded (no descriptor)
            raise ConnectionFailedError(
                f"cannot reach {self._settings.base_url}: the host name could not be "
                f"looked up ({_describe(exc, self._settings)}; too many open files?)"
            ) from exc
        self._log_response(response)
        if observer is not None:
            observer.on_response(response.status_code, response.headers.multi_items())
        if self._on_rate_limit is not None:
            # Every response, with the headers or without: a caller learns either way.
            self._on_rate_limit(RateLimitHeaders.from_response(response))
        return response

    def _check_status(
        self, response: httpx.Response, observer: StreamObserver | None = None
    ) -> None:
        if 300 <= response.status_code < 400:
            location = response.headers.get("location")
            try:
                target = str(response.url.join(location)) if location else None
            except httpx.InvalidURL:
                target = location  # shown as sent: it is only named, never requested
            raise redirect_error(response.status_code, target, str(response.url))
        if response.status_code < 400:
            return
        body = self._redactor.data(read_error_body(response, observer))
        retry_after = parse_retry_after(response.headers)
        raise self._masked(error_for_status(response.status_code, body, retry_after))

    def _check_stream_type(
        self, response: httpx.Response, observer: StreamObserver | None = None
    ) -> None:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in EVENT_STREAM_TYPES:
            check_encoding(response)
            return
        body = read_error_body(response, observer)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        raise not_a_stream(content_type, data, self._message(body))

    def _check_error_reply(self, data: Any, body: bytes) -> None:
        error = error_reply(data, self._message(body))
        if error is not None:
            raise error

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
            # httpx lower-cases names: the key in one, lower-cased too, is masked as well.
            self._debug(f"< {self._name_redactor.text(name)}: {value}")


class _Redirected(Exception):
    """A 3xx, handed out of httpx before it builds the request it would redirect to (which
    fails on a malformed Location, although that request is never sent)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _stop_at_redirect(response: httpx.Response) -> None:
    """A response hook: redirects are never followed, so httpx need not look at them."""
    if 300 <= response.status_code < 400:
        raise _Redirected(response)


# httpcore's `trace` extension (documented by httpx) names each step of a request; this one
# ends once the request line and headers are on the connection (a proxy's CONNECT, first,
# names it too: the last one is the request's own).
_HEAD_WRITTEN = "http11.send_request_headers.complete"


def _when_written(callback: Callable[[], None]) -> Callable[[str, dict[str, Any]], None]:
    def trace(step: str, info: dict[str, Any]) -> None:
        if step == _HEAD_WRITTEN:
            callback()

    return trace


def _request_body(payload: dict[str, Any]) -> bytes:
    """The request as JSON. What it carries comes from the user (a prompt, a schema, a batch
    item, --functions) and may be nested deeper than orjson writes; the standard library goes
    further, and past that it is the user's input that cannot be sent."""
    try:
        return json_line(payload)[:-1]
    except InvalidOutputError as exc:
        raise UsageError(f"the request cannot be written as JSON: {exc.message}") from exc


def _raw_chunks(response: httpx.Response, settings: Settings) -> Iterator[bytes]:
    """The body exactly as received, one item per network read."""
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    try:
        yield from response.iter_bytes() if encoded else response.iter_raw()
    except httpx.HTTPError as exc:
        raise _body_error(exc, settings) from exc


def _read_body(
    response: httpx.Response, observer: StreamObserver | None, settings: Settings
) -> bytes:
    """The whole body, decoded, up to MAX_RESPONSE_BODY; `observer` hears it as one read,
    also the part of a body that broke off (the trace keeps a failed attempt's bytes too)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():  # (a network read decodes to 66 MB at most)
            size += len(chunk)
            if size > MAX_RESPONSE_BODY:
                raise InvalidOutputError(
                    f"the server's response is over {MAX_RESPONSE_BODY // 2**20} MiB "
                    "(decoded); mavera stopped reading it"
                )
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise _body_error(exc, settings) from exc
    finally:
        if observer is not None and chunks:
            observer.on_read(b"".join(chunks))
    return b"".join(chunks)


def _request_error(exc: httpx.HTTPError, settings: Settings) -> MaveraError:
    """A failure before any response: connect, TLS, DNS, or the server never answered."""
    if isinstance(exc, httpx.TimeoutException):
        stage = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for a response"
        return TimedOutError(
            f"no answer for {settings.timeout:g}s while {stage} ({_describe(exc, settings)})"
        )
    if _not_http(exc):
        # It did answer: not a connection failure, and the same answer would come again.
        return InvalidOutputError(
            f"{settings.base_url} answered, but not in valid HTTP/1.1: {_describe(exc, settings)}"
        )
    return ConnectionFailedError(f"cannot reach {settings.base_url}: {_describe(exc, settings)}")


def _not_http(exc: BaseException) -> bool:
    """Whether h11 (httpx's HTTP/1.1 parser) refused what the server sent, as opposed to a
    connection that failed or closed before any answer (httpx raises from httpcore, which
    raises during h11's)."""
    return cause_of(exc, (h11.RemoteProtocolError,)) is not None


def _body_error(exc: httpx.HTTPError, settings: Settings) -> MaveraError:
    """A failure while the body was arriving: the response is cut short."""
    if isinstance(exc, httpx.TimeoutException):
        return TimedOutError(f"no data for {settings.timeout:g}s during the response")
    if isinstance(exc, httpx.DecodingError):  # bytes that arrived, but not in their coding
        return InvalidOutputError(
            f"the server's response could not be decoded: {_describe(exc, settings)}"
        )
    return PartialStreamError(f"connection broke during the response: {_describe(exc, settings)}")


# h11 quotes what it refused as `bytearray(b'…')`.
_BYTES_REPR = re.compile(r"""bytearray\(b('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)""")
_MAX_QUOTED = 80


def _describe(exc: BaseException, settings: Settings) -> str:
    """An httpx error as one line, the key masked: its text may quote request headers."""
    text = _BYTES_REPR.sub(_quoted_bytes, str(exc) or type(exc).__name__)
    return " ".join(Redactor(settings.api_key).text(text).split())


def _quoted_bytes(match: re.Match[str]) -> str:
    quoted = match.group(1)  # repr has escaped every control character already
    return quoted if len(quoted) <= _MAX_QUOTED else quoted[: _MAX_QUOTED - 1] + "…"


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


def _socks_proxy_set() -> bool:
    return any(
        os.environ.get(name, "").lower().startswith("socks")
        for upper in _PROXY_VARIABLES
        for name in (upper, upper.lower())
    )


def _certificate_variables() -> str:
    names = [name for name in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(name)]
    return ", ".join(f"{name}={os.environ[name]}" for name in names) or "the system CA bundle"
