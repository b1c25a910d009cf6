"""`core.run_stream`, in process: chunks from memory through the real decoder, accumulator and
renderers into bytes. Stream semantics (issue 11: 10, 13–17) and retries, at any chunking."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest

from mavera_cli import retry
from mavera_cli.core import Retrier, call_with_retries, run_stream
from mavera_cli.errors import (
    InterruptedRun,
    InvalidOutputError,
    MaveraError,
    MaxTimeExceededError,
    NotCompletedError,
    PartialStreamError,
    RateLimitedError,
    RefusalError,
    ServerError,
    Terminated,
    TimedOutError,
)
from mavera_cli.render.ndjson import NdjsonRenderer
from mavera_cli.render.preview import JsonRenderer
from mavera_cli.render.text import TextRenderer
from mavera_cli.schema import json_output_parser
from tests.chunking import bytewise, every_split
from tests.inprocess import Output, Source, completed, delta, event, run
from tests.scripted_server import DONE, text_stream

STREAM = b"".join(text_stream(["Hello", ", ", "world"]))


def text_run(*scripts, **options) -> tuple[Output, object]:
    out = Output()
    renderer = TextRenderer(out.sink)
    try:
        run(renderer, *scripts, **options)
    except MaveraError as error:
        return out, error
    return out, None


def test_text_at_every_split_point_and_byte_by_byte() -> None:
    for chunks in [*every_split(STREAM), bytewise(STREAM)]:
        out, error = text_run(chunks)
        assert error is None
        assert out.bytes == b"Hello, world\n"


def test_the_fast_path_counts_deltas_in_the_one_accumulator() -> None:
    accumulator, _ = run(TextRenderer(Output().sink), [STREAM])
    assert accumulator.completed
    assert accumulator.text_chars == 12
    assert accumulator.text_parts is None  # text mode keeps no text: memory stays flat


# --- 13: nothing after the terminal event -------------------------------------------------


def test_nothing_after_the_terminal_event_is_rendered_even_in_the_same_read() -> None:
    events = text_stream(["Hello"])
    late = delta(" (late)") + event("response.output_text.delta", delta="!")
    tail = events[-2] + late + DONE  # response.completed, then more text, in one read
    for chunks in [[b"".join(events[:-2]), tail], [b"".join(events[:-2]) + tail]]:
        out, error = text_run(chunks)
        assert error is None
        assert out.bytes == b"Hello\n"
        ndjson = Output()
        run(NdjsonRenderer(ndjson.sink), chunks)
        assert json.loads(ndjson.lines()[-1])["type"] == "response.completed"


# --- 14, 15: refusals and Chat-style error chunks -----------------------------------------


REFUSAL = [
    event("response.created", response={"status": "in_progress"}),
    event("response.refusal.delta", item_id="msg_1", output_index=0, delta="I can't "),
    event("response.refusal.delta", item_id="msg_1", output_index=0, delta="help."),
    event("response.refusal.done", item_id="msg_1", output_index=0, refusal="I can't help."),
    completed(),
    DONE,
]


def test_a_refusal_is_exit_10_with_its_text_and_nothing_on_stdout() -> None:
    out, error = text_run([b"".join(REFUSAL)])
    assert isinstance(error, RefusalError)
    assert error.message == "I can't help." and int(error.exit_code) == 10
    assert out.bytes == b""


def test_a_refusal_in_json_mode_is_10_not_11() -> None:
    out = Output()
    with pytest.raises(RefusalError):
        run(JsonRenderer(out.sink), [b"".join(REFUSAL)], parse_output=json_output_parser())
    assert out.bytes == b""


def test_a_chat_style_error_chunk_mid_stream_is_exit_10_with_the_servers_message() -> None:
    chunk = b'data: {"error":{"message":"upstream model crashed","type":"server_error"}}\n\n'
    events = text_stream(["Hello"])
    for chunks in [[*events[:4], chunk], [b"".join(events[:4]) + chunk + DONE]]:
        out, error = text_run(chunks)
        assert isinstance(error, NotCompletedError), error
        assert "upstream model crashed" in error.message
        assert out.bytes == b"Hello\n"


# --- 17: retrying a broken stream when nothing was printed yet ------------------------------

OBJECT = b'{"name": "Ada", "tags": ["math"]}'
JSON_STREAM = text_stream([OBJECT[:10].decode(), OBJECT[10:].decode()])


@pytest.mark.parametrize(
    "failure",
    [PartialStreamError("connection broke"), TimedOutError("no data for 1s")],
    ids=["broken", "stalled"],
)
def test_json_retries_a_stream_that_breaks_mid_way(failure: MaveraError) -> None:
    out = Output()
    retries: list[tuple[str, int]] = []
    accumulator, source = run(
        JsonRenderer(out.sink),
        [*JSON_STREAM[:4], failure],
        JSON_STREAM,
        retries=2,
        parse_output=json_output_parser(),
        on_retry=lambda error, wait, n: retries.append((error.message, n)),
    )
    assert source.attempts == 2
    assert out.bytes == b'{"name":"Ada","tags":["math"]}\n'
    assert accumulator.parsed_output == {"name": "Ada", "tags": ["math"]}
    assert [n for _, n in retries] == [1]  # one note on stderr
    assert "received 4 events" in retries[0][0]


@pytest.mark.parametrize(
    "renderer",
    [
        lambda out: TextRenderer(out.sink),
        lambda out: NdjsonRenderer(out.sink),
        lambda out: JsonRenderer(out.sink, partial=True),
    ],
    ids=["text", "ndjson", "json-partial"],
)
def test_modes_that_print_as_they_go_never_retry_once_an_event_arrived(renderer) -> None:
    out = Output()
    source = Source([*JSON_STREAM[:4], PartialStreamError("broke")], JSON_STREAM)
    with pytest.raises(PartialStreamError):
        run_stream(source, renderer(out), retries=2, sleep=lambda s: None)
    assert source.attempts == 1


def test_only_breaks_and_stalls_are_retried_mid_way_never_max_time_or_bad_data() -> None:
    for failure in [MaxTimeExceededError("--max-time 1s passed"), InvalidOutputError("bad")]:
        out = Output()
        holder = JsonRenderer(out.sink)
        with pytest.raises(type(failure)):
            run(holder, [*JSON_STREAM[:4], failure], JSON_STREAM, retries=2)
        assert out.bytes == b""


def test_ask_retries_a_body_that_breaks_mid_way() -> None:
    calls = iter([PartialStreamError("connection broke during the response"), {"ok": True}])
    notes: list[int] = []

    def call() -> dict:
        result = next(calls)
        if isinstance(result, BaseException):
            raise result
        return result

    answer = call_with_retries(
        call, retries=1, on_retry=lambda e, w, n: notes.append(n), sleep=lambda s: None
    )
    assert answer == {"ok": True} and notes == [1]


# --- 12: json --events validates too ------------------------------------------------------


def test_json_events_mode_checks_the_final_text_and_ends_with_the_error_line() -> None:
    out = Output()
    chunks = text_stream(['{"name": ', "oops"])
    with pytest.raises(InvalidOutputError, match="not valid JSON"):
        run(NdjsonRenderer(out.sink), chunks, parse_output=json_output_parser())
    lines = [json.loads(line) for line in out.lines()]
    assert lines[-2]["type"] == "response.completed"
    assert lines[-1]["type"] == "mavera.error" and lines[-1]["exit_code"] == 11


def test_json_events_mode_checks_the_schema() -> None:
    out = Output()
    parse = json_output_parser({"type": "object", "required": ["age"]})
    with pytest.raises(InvalidOutputError, match="'age' is a required property"):
        run(NdjsonRenderer(out.sink), JSON_STREAM, parse_output=parse)
    assert json.loads(out.lines()[-1])["exit_code"] == 11


# --- 10: Ctrl-C and SIGTERM ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "status", "message"),
    [(KeyboardInterrupt(), 130, "interrupted"), (Terminated(), 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupt_ends_ndjson_with_the_interrupted_line(stop, status, message) -> None:
    out = Output()
    with pytest.raises(type(stop)):
        run(NdjsonRenderer(out.sink), [*JSON_STREAM[:4], stop])
    lines = [json.loads(line) for line in out.lines()]
    assert len(lines) == 5  # the four events, then why it ended
    assert lines[-1] == {
        "type": "mavera.error",
        "exit_code": status,
        "error": "interrupted",
        "message": message,
    }


def test_an_interrupt_ends_the_partial_text_with_a_newline() -> None:
    out = Output()
    renderer = TextRenderer(out.sink)
    with pytest.raises(KeyboardInterrupt):
        run(renderer, [*text_stream(["Hello"])[:4], KeyboardInterrupt()])
    assert out.bytes == b"Hello\n"
    assert isinstance(renderer.failure, InterruptedRun)


def test_an_interrupt_during_a_retry_wait_is_still_reported() -> None:
    out = Output()

    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(NdjsonRenderer(out.sink), [ServerError("503")], retries=2, sleep=interrupted_sleep)
    assert json.loads(out.lines()[-1])["exit_code"] == 130


# --- 16: Retry-After beyond the cap -------------------------------------------------------


def test_a_retry_after_beyond_the_cap_gives_up_at_once_saying_when() -> None:
    slept: list[float] = []
    retrier = Retrier(5, sleep=slept.append)
    error = RateLimitedError("HTTP 429: slow down", retry_after=120)
    assert not retrier.wait_before_retry(error)
    assert slept == []  # not retried early: sure to be refused again
    assert "the server asks to wait 120s (until " in error.message
    assert error.message.rstrip().endswith("try again then")
    assert " UTC)" in error.message
    at_cap = RateLimitedError("HTTP 429", retry_after=retry.MAX_RETRY_AFTER)
    assert retrier.wait_before_retry(at_cap) and slept == [retry.MAX_RETRY_AFTER]


def test_a_long_retry_after_on_a_503_is_not_retried_either() -> None:
    out = Output()
    source = Source([ServerError("HTTP 503", retry_after=90)])
    with pytest.raises(ServerError) as caught:
        run_stream(source, TextRenderer(out.sink), retries=3, sleep=lambda s: None)
    assert "asks to wait 90s" in caught.value.message
    assert source.attempts == 1


def test_an_http_date_retry_after_is_a_whole_number_of_seconds() -> None:
    now = 1_700_000_000.25
    header = formatdate(1_700_000_090, usegmt=True)
    wait = retry.parse_retry_after({"Retry-After": header}, now=lambda: now)
    assert wait == 90 and float(wait).is_integer()
    assert retry.come_back_after(90, now=lambda: 0) == (
        "the server asks to wait 90s (until 00:01:30 UTC), longer than mavera waits (60s): "
        "not retried, try again then"
    )


def test_the_core_never_sleeps_for_real_in_these_tests() -> None:
    started = time.monotonic()
    with pytest.raises(ServerError):
        run(TextRenderer(Output().sink), [ServerError("HTTP 503", retry_after=30)], retries=2)
    assert time.monotonic() - started < 5
