"""The built-in fake server, run for real: the openai SDK and plain httpx against it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from openai import OpenAI

from mavera_cli.errors import UsageError
from mavera_cli.mock import MockServer, parse_fault
from mavera_cli.mock.answers import answer, split_words, user_text
from mavera_cli.mock.faults import Fault, FaultKind, FaultPlan
from mavera_cli.mock.instances import instance_of

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a place",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "days", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {"type": "number"},
        "recommended": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "kind": {"const": "review"},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "score", "ratio", "recommended", "tags", "kind", "author"],
    "additionalProperties": False,
}


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with MockServer() as server:
        yield server


def sdk(server: MockServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=10)


def read_stream(
    server: MockServer, body: dict[str, Any], read_timeout: float = 5.0
) -> tuple[bytes, httpx.HTTPError | None]:
    """Every byte of a streamed answer, and the transport error that ended it, if any."""
    received: list[bytes] = []
    error: httpx.HTTPError | None = None
    timeout = httpx.Timeout(5.0, read=read_timeout)
    with httpx.Client(timeout=timeout) as client:
        try:
            with client.stream(
                "POST", f"{server.base_url}/responses", json={**body, "stream": True}
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                received.extend(response.iter_raw())
        except httpx.HTTPError as exc:
            error = exc
    return b"".join(received), error


def frames(raw: bytes) -> list[str]:
    return [frame for frame in raw.decode().split("\n\n") if frame]


def events(raw: bytes) -> list[dict[str, Any]]:
    """The parsed `data:` JSON of every event (not `[DONE]`), checking `event:` matches."""
    parsed = []
    for frame in frames(raw):
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        if fields["data"] == "[DONE]":
            continue
        data = json.loads(fields["data"])
        assert fields["event"] == data["type"]
        parsed.append(data)
    return parsed


def post(server: MockServer, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.base_url}/responses", content=content, timeout=5, **kwargs)


# -- the openai SDK --------------------------------------------------------------------------


def test_sdk_streams_with_create_stream_true(mock: MockServer) -> None:
    deltas = [
        event.delta
        for event in sdk(mock).responses.create(model="mavera-1", input="hello there", stream=True)
        if event.type == "response.output_text.delta"
    ]
    assert "".join(deltas) == "You said: hello there"
    assert len(deltas) > 2


def test_sdk_stream_helper_gets_the_final_response(mock: MockServer) -> None:
    with sdk(mock).responses.stream(model="mavera-1", input="stream me") as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "You said: stream me"
    assert final.id.startswith("resp_")
    assert final.usage is not None and final.usage.total_tokens > 0


def test_sdk_non_streamed_response(mock: MockServer) -> None:
    response = sdk(mock).responses.create(
        model="mavera-1", input="plain please", extra_body={"persona_id": "clx1"}
    )
    assert response.output_text == "You said: plain please"
    assert response.model == "mavera-1"
    dumped = response.model_dump()
    assert dumped["persona_id"] == "clx1"
    assert dumped["usage"]["credits_used"] == 1


def test_sdk_json_schema_output_is_an_instance(mock: MockServer) -> None:
    text_format = {"format": {"type": "json_schema", "name": "review", "schema": REVIEW_SCHEMA}}
    with sdk(mock).responses.stream(
        model="mavera-1", input="rate this movie", text=text_format
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    value = json.loads(final.output_text)
    jsonschema.validate(value, REVIEW_SCHEMA)
    assert value["title"] == "rate this movie"
    assert len(deltas) > 3 and "".join(deltas) == final.output_text


def test_sdk_tools_get_a_fitting_function_call(mock: MockServer) -> None:
    with sdk(mock).responses.stream(
        model="mavera-1", input="weather in Paris?", tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call"
    assert (call.name, call.call_id) == ("get_weather", "call_1")
    jsonschema.validate(json.loads(call.arguments), WEATHER_TOOL["parameters"])


def test_sdk_tool_results_get_a_text_answer(mock: MockServer) -> None:
    history: list[Any] = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
    ]
    with sdk(mock).responses.stream(
        model="mavera-1", input=history, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == "Tool get_weather returned: sunny, 21 C"


# -- the wire --------------------------------------------------------------------------------


def test_stream_events_are_complete_numbered_and_end_with_done(mock: MockServer) -> None:
    raw, error = read_stream(mock, {"input": "one two"})
    assert error is None
    assert frames(raw)[-1] == "data: [DONE]"
    parsed = events(raw)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    types = [e["type"] for e in parsed]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in parsed if e["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "You said: one two"
    assert all(d["logprobs"] == [] and d["content_index"] == 0 for d in deltas)
    assert parsed[0]["response"]["status"] == "in_progress"
    final = parsed[-1]["response"]
    assert final["status"] == "completed"
    assert set(final["usage"]) == {"input_tokens", "output_tokens", "total_tokens", "credits_used"}


def test_function_call_events(mock: MockServer) -> None:
    # The nested Chat Completions tool shape is tolerated too.
    nested = {
        "type": "function",
        "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"},
    }
    parsed = events(read_stream(mock, {"input": "Rome", "tools": [nested]})[0])
    types = [e["type"] for e in parsed]
    assert types.count("response.function_call_arguments.delta") > 1
    added = parsed[types.index("response.output_item.added")]["item"]
    assert added["arguments"] == "" and added["name"] == "get_weather"
    done = parsed[types.index("response.function_call_arguments.done")]
    deltas = [e["delta"] for e in parsed if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == done["arguments"]
    assert json.loads(done["arguments"])["location"] == "Rome"


def test_json_object_format_echoes(mock: MockServer) -> None:
    body = post(mock, {"input": "hi", "text": {"format": {"type": "json_object"}}}).json()
    assert json.loads(body["output"][0]["content"][0]["text"]) == {"echo": "hi"}


def test_non_streamed_response_is_json(mock: MockServer) -> None:
    response = post(mock, {"input": "x", "model": "other-model"})
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["object"], body["status"], body["model"]) == (
        "response",
        "completed",
        "other-model",
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        ({"model": "mavera-1"}, "missing_field"),
        ([1], "invalid_json"),
    ],
)
def test_bad_requests_get_400_in_the_envelope(mock: MockServer, body: Any, code: str) -> None:
    response = post(mock, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"message", "type", "code", "param"}


def test_unknown_path_is_404(mock: MockServer) -> None:
    response = httpx.get(mock.base_url + "/nothing", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_not_found"


def test_personas(mock: MockServer) -> None:
    body = httpx.get(mock.base_url + "/personas", timeout=5).json()
    assert body["object"] == "list"
    assert 3 <= len(body["data"]) <= 4
    for persona in body["data"]:
        assert persona["object"] == "persona"
        assert len(persona["id"]) == 25 and persona["id"].startswith("c")
        assert set(persona) == {
            "id",
            "object",
            "name",
            "category",
            "description",
            "is_custom",
            "is_expert",
            "created_at",
        }


def test_requests_seen_counts_every_request(mock: MockServer) -> None:
    post(mock, {"input": "a"})
    httpx.get(mock.base_url + "/personas", timeout=5)
    httpx.get(mock.base_url + "/missing", timeout=5)
    assert mock.requests_seen == 3


# -- faults ----------------------------------------------------------------------------------


def test_rate_limit() -> None:
    with MockServer(fault="rate-limit") as server:
        response = post(server, {"input": "x", "stream": True})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_server_error() -> None:
    with MockServer(fault="server-error") as server:
        response = post(server, {"input": "x"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


def test_drop_after_closes_without_done() -> None:
    with MockServer(fault="drop-after:3") as server:
        raw, error = read_stream(server, {"input": "a b c d e"})
    assert isinstance(error, httpx.RemoteProtocolError)  # the chunked body never ended
    assert len(events(raw)) == 3
    assert "[DONE]" not in raw.decode() and "response.completed" not in raw.decode()


def test_stall_after_times_out_the_reader() -> None:
    with MockServer(fault="stall-after:2") as server:
        raw, error = read_stream(server, {"input": "a b c"}, read_timeout=0.3)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(events(raw)) == 2


def test_failed_ends_with_response_failed() -> None:
    with MockServer(fault="failed") as server:
        parsed = events(read_stream(server, {"input": "x"})[0])
        body = post(server, {"input": "x"}).json()
    final = parsed[-1]
    assert final["type"] == "response.failed"
    assert final["response"]["status"] == "failed"
    assert final["response"]["error"]["code"] == "server_error"
    assert (body["status"], body["error"]["code"]) == ("failed", "server_error")


def test_incomplete_ends_with_response_incomplete() -> None:
    with MockServer(fault="incomplete") as server:
        parsed = events(read_stream(server, {"input": "one two three four"})[0])
        body = post(server, {"input": "x"}).json()
    final = parsed[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["status"] == "incomplete"
    # Half the answer arrived before the stop.
    text = "".join(e["delta"] for e in parsed if e["type"] == "response.output_text.delta")
    assert "You said: one two three four".startswith(text) and text


def test_bad_json_sends_one_malformed_data_line() -> None:
    with MockServer(fault="bad-json") as server:
        raw, error = read_stream(server, {"input": "x y"})
    assert error is None
    data = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    broken = []
    for payload in data[:-1]:
        try:
            json.loads(payload)
        except ValueError:
            broken.append(payload)
    assert broken == ['{"type":"response.output_text.delta","delta": ']
    assert data[-1] == "[DONE]"


def test_fail_first_applies_the_fault_to_the_first_requests_only() -> None:
    with MockServer(fault="server-error", fail_first=1) as server:
        first = post(server, {"input": "x"})
        second = post(server, {"input": "x"})
        assert server.requests_seen == 2
    assert (first.status_code, second.status_code) == (500, 200)


def test_fault_plan_counts_across_threads() -> None:
    plan = FaultPlan(Fault(FaultKind.FAILED), fail_first=5)
    results: list[Fault | None] = []
    threads = [threading.Thread(target=lambda: results.append(plan.take())) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 5
    assert plan.taken == 20


def test_pace_spaces_the_events() -> None:
    arrivals: list[float] = []
    with (
        MockServer(pace_ms=25) as server,
        httpx.stream(
            "POST", f"{server.base_url}/responses", json={"input": "hi", "stream": True}, timeout=5
        ) as response,
    ):
        for _ in response.iter_raw():
            arrivals.append(time.monotonic())
    # 12 frames (11 events and [DONE]): 11 gaps of 25 ms; allow for chunks read together.
    assert arrivals[-1] - arrivals[0] >= 0.2
    assert len(arrivals) >= 6


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rate-limit", Fault(FaultKind.RATE_LIMIT)),
        ("drop-after:3", Fault(FaultKind.DROP_AFTER, 3)),
        (" Stall-After:0 ", Fault(FaultKind.STALL_AFTER, 0)),
        ("bad-json", Fault(FaultKind.BAD_JSON)),
    ],
)
def test_parse_fault(spec: str, expected: Fault) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    "spec", ["nope", "drop-after", "drop-after:x", "failed:2", "stall-after:-1"]
)
def test_bad_fault_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_fault(spec)
    assert "\n" not in caught.value.message


# -- binding and lifecycle -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(UsageError):
        MockServer(host=host)


def test_bad_options_are_usage_errors() -> None:
    for kwargs in ({"fault": "boom"}, {"pace_ms": -1}, {"fail_first": -2}, {"port": 70000}):
        with pytest.raises(UsageError):
            MockServer(**kwargs)


def test_localhost_binds_ipv4_loopback() -> None:
    with MockServer(host="localhost") as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/api/v1")
        assert post(server, {"input": "x"}).status_code == 200


def test_ipv6_loopback() -> None:
    try:
        server = MockServer(host="::1")
    except UsageError:
        pytest.skip("no IPv6 loopback here")
    with server:
        assert server.base_url.startswith("http://[::1]:")
        assert post(server, {"input": "x"}).json()["status"] == "completed"


def test_close_is_quick_with_a_stalled_stream_open() -> None:
    server = MockServer(fault="stall-after:1").start()
    outcome: list[BaseException | None] = []

    def reader() -> None:
        outcome.append(read_stream(server, {"input": "x"}, read_timeout=30)[1])

    thread = threading.Thread(target=reader)
    thread.start()
    deadline = time.monotonic() + 5
    while server.requests_seen == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
    thread.join(timeout=5)
    assert isinstance(outcome[0], httpx.RemoteProtocolError)


def test_serve_forever_runs_in_the_calling_thread_until_closed() -> None:
    server = MockServer()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    assert post(server, {"input": "x"}).status_code == 200
    server.close()
    thread.join(timeout=2)
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        post(server, {"input": "x"})


def test_client_going_away_mid_stream_is_silent(capfd: pytest.CaptureFixture[str]) -> None:
    with MockServer(pace_ms=20) as server:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", urlsplit(server.base_url).port or 0))
            body = b'{"input": "a b c d e f", "stream": true}'
            sock.sendall(
                b"POST /api/v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer mvra_live_secret\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            sock.close()
        time.sleep(0.3)  # the server writes into the closed sockets meanwhile
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# -- answers and schema instances (pure) -----------------------------------------------------


def test_user_text_reads_the_last_user_message() -> None:
    request = {
        "input": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ]
    }
    assert user_text(request) == "second"
    assert answer(request) == answer(request)  # deterministic
    assert "".join(split_words("  a  b\nc ")) == "  a  b\nc "


def test_a_new_user_turn_after_tool_results_calls_the_tool_again() -> None:
    request = {
        "tools": [WEATHER_TOOL],
        "input": [
            {"role": "user", "content": "Paris"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "user", "content": "and Rome?"},
        ],
    }
    reply = answer(request)
    assert getattr(reply, "call_id", None) == "call_2"


@pytest.mark.parametrize(
    "schema",
    [
        REVIEW_SCHEMA,
        {"type": "array", "items": {"type": "number", "exclusiveMinimum": 3}, "maxItems": 2},
        {"type": "string", "format": "email"},
        {"type": "integer", "exclusiveMaximum": 0, "multipleOf": 5},
        {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 80}]},
        {"allOf": [{"properties": {"a": {"type": "string"}}}, {"required": ["a"]}]},
        {
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node",
        },
    ],
)
def test_instances_fit_their_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(instance_of(schema, "some prompt words"), schema)
