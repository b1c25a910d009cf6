"""`events`, in process: SSE events become Responses events, and one accumulator folds them."""

from __future__ import annotations

import pytest

from mavera_cli.errors import (
    InvalidOutputError,
    NotCompletedError,
    PartialStreamError,
    RefusalError,
)
from mavera_cli.events import (
    ERROR,
    FunctionCall,
    ResponseAccumulator,
    parse_event,
    response_outcome_error,
)
from mavera_cli.sse import SSEEvent


def fold(*payloads: bytes, keep_text: bool = False) -> ResponseAccumulator:
    accumulator = ResponseAccumulator(keep_text=keep_text)
    for payload in payloads:
        event = parse_event(SSEEvent("message", payload, None, None))
        assert event is not None
        accumulator.add(event)
    return accumulator


COMPLETED = b'{"type":"response.completed","response":{"status":"completed","output":[]}}'


def test_a_chat_style_error_chunk_is_an_error_event() -> None:
    # protocol.md §8: `data: {"error": {...}}` with no type, as Chat Completions sends it.
    payload = b'{"error":{"message":"the model is overloaded","code":"overloaded"}}'
    event = parse_event(SSEEvent("message", payload, None, None))
    assert event is not None and event.type == ERROR
    assert event.raw == payload  # NDJSON still passes it through as received
    outcome = fold(b'{"type":"response.output_text.delta","delta":"Hi"}', payload).outcome_error()
    assert isinstance(outcome, NotCompletedError)
    assert "the model is overloaded (overloaded)" in outcome.message


def test_an_object_without_type_or_error_keeps_the_sse_event_name() -> None:
    event = parse_event(SSEEvent("response.in_progress", b'{"sequence_number":1}', None, None))
    assert event is not None and event.type == "response.in_progress"


@pytest.mark.parametrize(
    "payloads",
    [
        [b'{"type":"response.refusal.delta","delta":"I can\'t "}',
         b'{"type":"response.refusal.delta","delta":"help with that."}'],
        [b'{"type":"response.refusal.delta","delta":"I can"}',
         b'{"type":"response.refusal.done","refusal":"I can\'t help with that."}'],
    ],
    ids=["deltas", "done-replaces-deltas"],
)  # fmt: skip
def test_a_refusal_is_not_completed_with_the_refusal_as_the_message(payloads) -> None:
    outcome = fold(*payloads, COMPLETED).outcome_error()
    assert isinstance(outcome, RefusalError) and isinstance(outcome, NotCompletedError)
    assert outcome.message == "I can't help with that."
    assert int(outcome.exit_code) == 10


def test_a_refusal_in_the_final_response_counts_too() -> None:
    final = (
        b'{"type":"response.completed","response":{"status":"completed","output":[{"type":'
        b'"message","content":[{"type":"refusal","refusal":"No.\\nSorry."}]}]}}'
    )
    outcome = fold(final).outcome_error()
    assert isinstance(outcome, RefusalError) and outcome.message == "No. Sorry."


def test_a_non_streamed_refusal_is_not_completed() -> None:
    response = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}],
    }
    outcome = response_outcome_error(response)
    assert isinstance(outcome, RefusalError) and outcome.message == "No."
    assert response_outcome_error({"status": "completed", "output": []}) is None


def test_text_deltas_are_counted_and_kept_only_when_asked() -> None:
    counted = ResponseAccumulator()
    kept = ResponseAccumulator(keep_text=True)
    for accumulator in (counted, kept):
        accumulator.add_text_delta("Hello, ")
        accumulator.add_text_delta("world")
    assert counted.events_seen == kept.events_seen == 2
    assert counted.text_chars == kept.text_chars == 12
    assert counted.text_parts is None
    assert kept.output_text() == "Hello, world"


def test_output_text_falls_back_to_the_final_response() -> None:
    final = (
        b'{"type":"response.completed","response":{"status":"completed","output":[{"type":'
        b'"message","content":[{"type":"output_text","text":"{\\"a\\":1}"}]}]}}'
    )
    assert fold(final, keep_text=True).output_text() == '{"a":1}'


def test_a_delta_event_and_the_fast_path_fold_the_same() -> None:
    slow = fold(b'{"type":"response.output_text.delta","delta":"abc"}', keep_text=True)
    fast = ResponseAccumulator(keep_text=True)
    fast.add_text_delta("abc")
    assert (slow.events_seen, slow.text_chars, slow.output_text()) == (1, 3, "abc")
    assert (fast.events_seen, fast.text_chars, fast.output_text()) == (1, 3, "abc")


def test_no_terminal_event_is_a_partial_stream() -> None:
    outcome = fold(b'{"type":"response.output_text.delta","delta":"abc"}').outcome_error()
    assert isinstance(outcome, PartialStreamError)
    assert "received 1 events, 3 characters" in outcome.message


def call(arguments: str) -> FunctionCall:
    made = FunctionCall("fc_1", "call_1", "get_weather", 0)
    made.arguments = [arguments]
    return made


def test_function_call_arguments_are_parsed_with_the_call() -> None:
    assert call('{"city": "Paris"}').parsed_arguments() == {"city": "Paris"}
    assert call("  ").parsed_arguments() == {}  # no parameters: some servers send ""


@pytest.mark.parametrize(
    ("arguments", "needle"), [("{oops", "not valid JSON"), ("[1, 2]", "not a JSON object")]
)
def test_bad_function_call_arguments_are_invalid_output(arguments: str, needle: str) -> None:
    with pytest.raises(InvalidOutputError, match=needle) as caught:
        call(arguments).parsed_arguments()
    assert "get_weather (call_1)" in caught.value.message


def test_calls_are_folded_from_their_events() -> None:
    accumulator = fold(
        b'{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call",'
        b'"id":"fc_1","call_id":"call_1","name":"get_weather","arguments":""}}',
        b'{"type":"response.function_call_arguments.delta","item_id":"fc_1","delta":"{\\"city"}',
        b'{"type":"response.function_call_arguments.delta","output_index":0,"delta":"\\":1}"}',
    )
    (made,) = accumulator.calls.values()
    assert made.arguments_text == '{"city":1}' and not made.done
    assert accumulator.call_for({"item_id": "fc_1"}) is made
