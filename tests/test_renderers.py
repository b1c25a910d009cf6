"""Each renderer, in process: events in, bytes out, through the `Renderer` contract."""

from __future__ import annotations

import io
import json
import time

import pytest

from mavera_cli.errors import InternalError, InvalidOutputError, NotCompletedError
from mavera_cli.events import ResponseAccumulator
from mavera_cli.render import OutputSink, Renderer
from mavera_cli.render.calls import CallsRenderer, ToolRoundRenderer
from mavera_cli.render.ndjson import NdjsonRenderer
from mavera_cli.render.preview import JsonRenderer
from mavera_cli.render.text import TextRenderer
from mavera_cli.render.usage import UsageMeter, UsageTap
from mavera_cli.schema import json_output_parser
from tests.inprocess import Output, completed, event, run
from tests.scripted_server import DONE, text_stream

RENDERERS = {
    "text": lambda out: TextRenderer(out.sink),
    "ndjson": lambda out: NdjsonRenderer(out.sink),
    "json": lambda out: JsonRenderer(out.sink),
    "json-partial": lambda out: JsonRenderer(out.sink, partial=True),
    "calls": lambda out: CallsRenderer(out.sink),
    "tool-round": lambda out: ToolRoundRenderer(NdjsonRenderer(out.sink)),
    "usage-tap": lambda out: UsageTap(NdjsonRenderer(out.sink), UsageMeter()),
}


@pytest.mark.parametrize("name", list(RENDERERS))
def test_fail_twice_reports_once(name: str) -> None:
    # The core reports a failure; the command boundary may report it again (before the stream
    # it is the only one to): the second call must do nothing.
    out = Output()
    renderer = RENDERERS[name](out)
    assert isinstance(renderer, Renderer)
    accumulator = ResponseAccumulator(keep_text=True)
    renderer.start(accumulator)
    error = NotCompletedError("the model fell over")
    renderer.fail(error, accumulator)
    once = out.bytes
    renderer.fail(error, accumulator)
    renderer.fail(InvalidOutputError("another"), None)
    assert out.bytes == once
    assert renderer.failure is error
    if name not in ("text", "json"):  # NDJSON modes: the last line says why
        assert json.loads(once.splitlines()[-1])["message"] == "the model fell over"


def test_usage_is_counted_once_however_often_fail_is_called() -> None:
    meter = UsageMeter()
    tap = UsageTap(TextRenderer(Output().sink), meter)
    accumulator, _ = run(NdjsonRenderer(Output().sink), [completed(usage={"total_tokens": 7})])
    tap.fail(NotCompletedError("x"), accumulator)
    tap.fail(NotCompletedError("x"), accumulator)
    assert meter.responses == 1 and meter.totals == {"total_tokens": 7}
    assert tap.truncatable_events.isdisjoint({"response.completed"})
    assert tap.delta_sink is not None  # the text fast path goes through the tap


def test_text_fast_path_and_events_give_the_same_bytes() -> None:
    chunks = text_stream(["a", "é", "\n"])
    fast, slow = Output(), Output()
    run(TextRenderer(fast.sink), chunks)
    renderer = TextRenderer(slow.sink)
    renderer.delta_sink = None  # every delta as an event
    run(renderer, chunks)
    assert fast.bytes == slow.bytes == "aé\n".encode()


def test_json_renderer_writes_only_the_checked_value() -> None:
    out = Output()
    run(JsonRenderer(out.sink, pretty=True), text_stream(['{"a": [1', ", 2]}"]),
        parse_output=json_output_parser())  # fmt: skip
    assert out.bytes == b'{\n  "a": [\n    1,\n    2\n  ]\n}\n'


def test_json_renderer_refuses_to_finish_without_a_parsed_value() -> None:
    # A command that forgets parse_output is a bug: it must not print unchecked JSON.
    out = Output()
    with pytest.raises(InternalError):
        run(JsonRenderer(out.sink), text_stream(['{"a": 1}']))
    assert out.bytes == b""


def test_partial_line_is_written_while_the_next_read_is_still_awaited() -> None:
    # Issue 11 item 18: the object received so far is written when it changes, not when the
    # next network read arrives (which may take long).
    out = Output()
    events = text_stream(['{"name": "Ada', ' Lovelace"}'])
    seen: list[bytes] = []

    def server_pause() -> None:  # runs between two reads, on the reading thread
        deadline = time.monotonic() + 10
        while not out.bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(out.bytes)  # what a reader had while the stream was quiet

    run(
        JsonRenderer(out.sink, partial=True),
        [b"".join(events[:4]), server_pause, b"".join(events[4:])],
        parse_output=json_output_parser(),
    )
    assert seen == [b'{"name":"Ada"}\n']
    assert out.lines() == [b'{"name":"Ada"}', b'{"name":"Ada Lovelace"}']


def test_calls_come_from_the_one_accumulator_of_the_stream() -> None:
    out = Output()
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather"}
    chunks = [
        event("response.output_item.added", output_index=0, item={**item, "arguments": ""}),
        event("response.function_call_arguments.delta", item_id="fc_1", delta='{"city":'),
        event("response.function_call_arguments.delta", item_id="fc_1", delta='"Paris"}'),
        event(
            "response.output_item.done",
            output_index=0,
            item={**item, "arguments": '{"city":"Paris"}'},
        ),
        event("response.output_text.delta", item_id="msg_1", delta="Checking."),
        completed(),
        DONE,
    ]
    accumulator, _ = run(CallsRenderer(out.sink), chunks)
    assert [json.loads(line) for line in out.lines()] == [
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": {"city": "Paris"},
        },
        {"type": "text", "text": "Checking."},
    ]
    (call,) = accumulator.calls.values()
    assert call.arguments_text == '{"city":"Paris"}'  # folded once, not twice


def test_a_call_with_bad_arguments_is_invalid_output_with_the_error_line() -> None:
    out = Output()
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
    chunks = [
        event("response.output_item.added", output_index=0, item={**item, "arguments": ""}),
        event("response.output_item.done", output_index=0, item={**item, "arguments": "{x"}),
        completed(),
    ]
    with pytest.raises(InvalidOutputError):
        run(CallsRenderer(out.sink), chunks)
    assert json.loads(out.lines()[-1])["exit_code"] == 11


def test_the_tool_round_text_is_the_rounds_own() -> None:
    rounds = ToolRoundRenderer(TextRenderer(Output().sink))
    run(rounds, text_stream(["first"]))
    assert rounds.take_text() == "first"
    run(rounds, text_stream(["second"]))
    assert rounds.take_text() == "second"


class _InterruptedOnce(io.BytesIO):
    """stdout where Ctrl-C lands just after the first write went out (a real race)."""

    interrupted = False

    def flush(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", ["text", "ndjson", "calls"])
def test_ctrl_c_landing_in_a_write_never_writes_a_line_twice(name: str) -> None:
    stdout = _InterruptedOnce()
    out = Output()
    out.buffer, out.sink = stdout, OutputSink(stdout)
    renderer = RENDERERS[name](out)
    item = {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"}
    first = [*text_stream(["Hello"])[:4], event("response.output_item.done", item=item)]
    with pytest.raises(KeyboardInterrupt):
        run(renderer, [b"".join(first), KeyboardInterrupt()])
    lines = out.lines()
    assert len(lines) == len(set(lines)), lines
    assert b"" not in lines
