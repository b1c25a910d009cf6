"""`mavera tools`: function calls as NDJSON, and `--exec` local commands answering them in a loop.

Every test runs the real CLI against a local server scripted round by round, and where a tool
runs, it is a small Python script written to tmp_path.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chunking import bytewise, random_splits, to_crlf, whole
from tests.conftest import (
    TEST_KEY,
    mavera_env,
    needs_shared_fixtures,
    one_line_error,
    real_recordings,
    run_mavera,
    start_mavera,
)
from tests.pty_helpers import run_with_pty_stderr
from tests.scripted_server import DONE, ScriptedServer, sse_event, text_stream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {
    "type": "function",
    "name": "get_time",
    "description": "Local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PYTHON = shlex.quote(sys.executable)
CHUNKINGS = {
    "whole": whole,
    "bytewise": bytewise,
    "random": lambda data: random_splits(data, seed=11),
    "crlf-random": lambda data: random_splits(to_crlf(data), seed=5, max_size=9),
}

# A tool that reports everything it was given: stdin, argv and its environment.
ECHO_TOOL = """\
import json, os, sys
print(json.dumps({
    "stdin": sys.stdin.read(),
    "argv": sys.argv[1:],
    "name": os.environ.get("MAVERA_TOOL_NAME"),
    "call_id": os.environ.get("MAVERA_TOOL_CALL_ID"),
    "key": os.environ.get("MAVERA_API_KEY"),
}, sort_keys=True))
"""


# --- scripted streams -----------------------------------------------------------------------


def call_stream(calls: list[tuple[str, str, list[str]]], text: str | None = None) -> list[bytes]:
    """A function-call response: optional text first, then (call_id, name, argument deltas) per
    call, as real streams send them; `function_call_arguments.done` carries no `name`.
    """
    seq = itertools.count()
    response = {"id": "resp_t", "object": "response", "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": next(seq), "response": response}
    ]
    output: list[dict[str, Any]] = []
    if text is not None:
        for delta in re.findall(r"\s*\S+", text):
            events.append(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    "item_id": "msg_t",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": delta,
                }
            )
        output.append({"id": "msg_t", "type": "message", "role": "assistant", "content": []})
    for call_id, name, deltas in calls:
        index = len(output)
        item_id = f"fc_{index}"
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        where = {"item_id": item_id, "output_index": index}
        events.append(
            {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": index,
                "item": item,
            }
        )
        for delta in deltas:
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "sequence_number": next(seq),
                    **where,
                    "delta": delta,
                    "obfuscation": "pad",
                }
            )
        arguments = "".join(deltas)
        events.append(
            {
                "type": "response.function_call_arguments.done",
                "sequence_number": next(seq),
                **where,
                "arguments": arguments,
            }
        )
        final = {**item, "status": "completed", "arguments": arguments}
        output.append(final)
        events.append(
            {
                "type": "response.output_item.done",
                "sequence_number": next(seq),
                "output_index": index,
                "item": final,
            }
        )
    completed = {**response, "status": "completed", "output": output}
    events.append(
        {"type": "response.completed", "sequence_number": next(seq), "response": completed}
    )
    return [sse_event(event) for event in events] + [DONE]


def streaming(chunks: list[bytes], chunking: str = "whole"):
    data = b"".join(chunks)
    parts = CHUNKINGS[chunking](data)
    return lambda ex, wire: (wire.head(), wire.send_chunks(parts))


def write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def tool_command(tmp_path: Path, source: str, name: str = "tool.py", *args: str) -> str:
    script = tmp_path / name
    script.write_text(source)
    return shlex.join([sys.executable, str(script), *args])


def tools_args(server: ScriptedServer, functions: str) -> list[str]:
    return ["tools", "--base-url", server.base_url, "--retries", "0", "--functions", functions]


def ndjson(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# --- --functions, --tool-choice, --exec: checked before any request ---------------------------


@pytest.mark.parametrize(
    "document",
    [
        [WEATHER, TIME],
        {"model": "mavera-1", "tools": [WEATHER, TIME]},
        [
            {
                "type": "function",
                "function": {k: v for k, v in WEATHER.items() if k != "type"},
            },
            {"type": "function", "function": {k: v for k, v in TIME.items() if k != "type"}},
        ],
    ],
    ids=["flat-array", "object-with-tools", "nested-chat-completions"],
)
def test_functions_file_is_sent_in_the_flat_format(server, tmp_path, document) -> None:
    server.script(streaming(text_stream(["sunny"])))
    functions = write_json(tmp_path / "f.json", document)
    result = run_mavera([*tools_args(server, functions), "--tool-choice", "get_time", "weather?"])
    body = server.requests[0].json()
    assert body["tools"] == [WEATHER, TIME]
    assert body["tool_choice"] == {"type": "function", "name": "get_time"}
    assert body["input"] == "weather?" and body["stream"] is True
    assert ndjson(result.stdout) == [{"type": "text", "text": "sunny"}]
    assert result.stderr == ""


@pytest.mark.parametrize("mode", ["auto", "required", "none"])
def test_tool_choice_modes_are_sent_as_strings(server, tmp_path, mode) -> None:
    server.script(streaming(text_stream(["ok"])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    run_mavera([*tools_args(server, functions), "--tool-choice", mode, "hi"])
    assert server.requests[0].json()["tool_choice"] == mode


def test_a_tool_without_parameters_gets_an_empty_object_schema(server, tmp_path) -> None:
    server.script(streaming(text_stream(["ok"])))
    functions = write_json(tmp_path / "f.json", {"type": "function", "name": "ping"})
    run_mavera([*tools_args(server, functions), "hi"])
    assert server.requests[0].json()["tools"] == [
        {"type": "function", "name": "ping", "parameters": {"type": "object", "properties": {}}}
    ]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read"),
        ("[{", "not valid JSON"),
        ("42", "expected a JSON array"),
        ("[]", "defines no tools"),
        ('["get_weather"]', "expected an object"),
        ('[{"type": "function", "description": "no name"}]', "`name`"),
        ('[{"type": "function", "name": "has space"}]', "`name`"),
        ('[{"type": "web_search"}]', "only function tools"),
        ('[{"type": "function", "name": "f", "parameters": "object"}]', "`parameters`"),
        ('[{"type": "function", "name": "f", "strict": "yes"}]', "`strict`"),
        ('[{"type": "function", "function": "f"}]', "`function` must be an object"),
        ('[{"name": "f"}, {"name": "f"}]', "defined twice"),
    ],
)
def test_malformed_functions_file_exits_2_before_any_request(
    server, tmp_path, content, needle
) -> None:
    path = tmp_path / "functions.json"
    if content is not None:
        path.write_text(content)
    result = run_mavera([*tools_args(server, str(path)), "hi"], expect=2)
    one_line_error(result.stderr, "--functions", needle)
    assert server.requests == []
    # stdout is NDJSON: like `--events`, it ends with the line that says why.
    assert [(line["type"], line["exit_code"]) for line in ndjson(result.stdout)] == [
        ("mavera.error", 2)
    ]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--tool-choice", "get_tme"], "--tool-choice 'get_tme'"),
        (["--exec", f"get_tme={PYTHON}"], "no such function"),
        (["--exec", "get_weather"], "NAME=COMMAND"),
        (["--exec", "get_weather="], "command is empty"),
        (["--exec", "get_weather='unclosed"], "cannot split"),
        (["--exec", "get_weather=/no/such/tool --x"], "not found"),
        (["--exec", f"get_weather={PYTHON}", "--exec", f"get_weather={PYTHON}"], "twice"),
        (["--exec", f"get_weather={PYTHON}", "--tool-timeout", "0"], "--tool-timeout"),
    ],
)
def test_bad_tool_choice_or_exec_exits_2_before_any_request(
    server, tmp_path, extra, needle
) -> None:
    functions = write_json(tmp_path / "f.json", [WEATHER])
    result = run_mavera([*tools_args(server, functions), *extra, "hi"], expect=2)
    one_line_error(result.stderr, needle)
    assert server.requests == []


def test_functions_option_is_required() -> None:
    result = run_mavera(["tools", "hi"], expect=2)
    assert "--functions" in result.stderr


# --- without --exec: one NDJSON line per call ------------------------------------------------


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_parallel_calls_give_one_line_each_in_order(server, tmp_path, chunking) -> None:
    stream = call_stream(
        [
            ("call_a", "get_weather", ['{"ci', 'ty":"Par', 'is"}']),
            ("call_b", "get_time", ['{"city":', '"Tōkyō"}']),
        ]
    )
    server.script(streaming(stream, chunking))
    functions = write_json(tmp_path / "f.json", [WEATHER, TIME])
    result = run_mavera([*tools_args(server, functions), "weather and time?"])
    assert ndjson(result.stdout) == [
        {
            "type": "function_call",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": {"city": "Paris"},
        },
        {
            "type": "function_call",
            "call_id": "call_b",
            "name": "get_time",
            "arguments": {"city": "Tōkyō"},
        },
    ]
    assert result.stderr == ""  # not a terminal: nothing decorative


def test_text_next_to_a_call_comes_as_a_last_text_line(server, tmp_path) -> None:
    stream = call_stream([("call_a", "get_weather", ['{"city":"Oslo"}'])], text="Checking now.")
    server.script(streaming(stream))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    lines = ndjson(run_mavera([*tools_args(server, functions), "hi"]).stdout)
    assert [line["type"] for line in lines] == ["function_call", "text"]
    assert lines[1] == {"type": "text", "text": "Checking now."}


def test_a_call_line_is_on_the_pipe_before_the_response_completes(server, tmp_path) -> None:
    chunks = call_stream([("call_a", "get_weather", ['{"city":"Rome"}'])])
    release = threading.Event()

    def handler(ex, wire) -> None:
        wire.head()
        wire.send_chunks(chunks[:5])  # up to output_item.done
        release.wait(10)
        wire.send_chunks(chunks[5:])

    server.script(handler)
    functions = write_json(tmp_path / "f.json", [WEATHER])
    proc = start_mavera([*tools_args(server, functions), "hi"])
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no call line before the server finished the response"
        first = proc.stdout.readline()
        assert proc.poll() is None
        release.set()
        rest, _ = proc.communicate(timeout=10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert json.loads(first)["arguments"] == {"city": "Rome"}
    assert rest == b""
    assert proc.returncode == 0


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", "not json"])
def test_arguments_that_are_not_a_json_object_exit_11(server, tmp_path, arguments) -> None:
    stream = call_stream(
        [("call_ok", "get_time", ['{"city":"Lima"}']), ("call_bad", "get_weather", [arguments])]
    )
    server.script(streaming(stream))
    functions = write_json(tmp_path / "f.json", [WEATHER, TIME])
    result = run_mavera([*tools_args(server, functions), "hi"], expect=11)
    lines = ndjson(result.stdout)
    assert lines[0]["call_id"] == "call_ok"  # the good call was already out
    assert lines[-1]["type"] == "mavera.error" and lines[-1]["exit_code"] == 11
    assert len(lines) == 2
    one_line_error(result.stderr, "get_weather", "call_bad")


def test_events_mode_passes_every_event_and_still_checks_arguments(server, tmp_path) -> None:
    good = call_stream([("call_a", "get_weather", ['{"city":"Oslo"}'])])
    server.script(streaming(good), streaming(call_stream([("c", "get_weather", ["{oops"])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    lines = ndjson(run_mavera([*tools_args(server, functions), "--events", "hi"]).stdout)
    assert len(lines) == len(good) - 1  # every event but [DONE]
    assert lines[-1]["type"] == "response.completed"
    bad = run_mavera([*tools_args(server, functions), "--events", "hi"], expect=11)
    assert ndjson(bad.stdout)[-1]["error"] == "invalid_output"


def test_a_failed_response_ends_with_one_error_line(server, tmp_path) -> None:
    server.script(streaming(text_stream(["partial"], terminal="response.failed")))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    result = run_mavera([*tools_args(server, functions), "hi"], expect=10)
    assert ndjson(result.stdout) == [
        {"type": "text", "text": "partial"},
        {
            "type": "mavera.error",
            "exit_code": 10,
            "error": "not_completed",
            "message": ndjson(result.stdout)[-1]["message"],
        },
    ]


def test_a_terminal_shows_each_call_as_its_arguments_stream_in(server, tmp_path) -> None:
    stream = call_stream([("call_a", "get_weather", ['{"city":', '"Nice"}'])])
    server.script(streaming(stream, "bytewise"))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    code, stdout, shown = run_with_pty_stderr([*tools_args(server, functions), "--no-color", "hi"])
    assert code == 0
    assert '→ get_weather {"city":"Nice"}' in shown.decode()
    assert b"\xe2\x86\x92" not in stdout  # the preview never reaches the product
    assert ndjson(stdout)[0]["arguments"] == {"city": "Nice"}


# --- real recordings -------------------------------------------------------------------------

CALL_FIXTURES = [entry for entry in real_recordings() if entry["function_calls"]]


def expected_lines(entry: dict[str, Any]) -> list[dict[str, Any]]:
    lines = [
        {
            "type": "function_call",
            "call_id": call["call_id"],
            "name": call["name"],
            "arguments": json.loads(call["arguments"]),
        }
        for call in entry["function_calls"]
    ]
    if entry["final_text"]:
        lines.append({"type": "text", "text": entry["final_text"]})
    return lines


@needs_shared_fixtures
def test_real_function_call_recordings_are_present() -> None:
    names = {entry["file"] for entry in CALL_FIXTURES}
    assert {"function_call_parallel_02.sse", "reasoning_summary_01.sse"} <= names, names


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("entry", CALL_FIXTURES, ids=lambda e: e["file"].removesuffix(".sse"))
def test_real_function_call_streams_give_their_calls(server, tmp_path, entry, chunking) -> None:
    data = entry["path"].read_bytes()
    server.script(streaming([data + DONE], chunking))
    functions = write_json(
        tmp_path / "f.json", [{"name": call["name"]} for call in entry["function_calls"]]
    )
    result = run_mavera([*tools_args(server, functions), "hi"])
    assert ndjson(result.stdout) == expected_lines(entry)
    replayed = run_mavera(["replay", "--as", "tools", str(entry["path"])])
    assert replayed.stdout == result.stdout


@pytest.mark.parametrize("entry", CALL_FIXTURES, ids=lambda e: e["file"].removesuffix(".sse"))
def test_exec_answers_every_call_of_a_real_recording(server, tmp_path, entry) -> None:
    data = entry["path"].read_bytes()
    server.script(streaming([data]), streaming(text_stream(["all done"])))
    calls = entry["function_calls"]
    names = sorted({call["name"] for call in calls})
    functions = write_json(tmp_path / "f.json", [{"name": name} for name in names])
    command = tool_command(tmp_path, ECHO_TOOL)
    execs = [arg for name in names for arg in ("--exec", f"{name}={command}")]
    result = run_mavera([*tools_args(server, functions), *execs, "hi"])
    assert result.stdout == b"all done\n"
    second = server.requests[1].json()["input"]
    outputs = [item for item in second if item.get("type") == "function_call_output"]
    assert [item["call_id"] for item in outputs] == [call["call_id"] for call in calls]
    for call, item in zip(calls, outputs, strict=True):
        seen = json.loads(item["output"])
        assert seen["stdin"] == call["arguments"]
        assert (seen["name"], seen["call_id"]) == (call["name"], call["call_id"])


# --- --exec: the loop -------------------------------------------------------------------------


def test_exec_sends_the_call_and_the_commands_stdout_in_the_second_request(
    server, tmp_path
) -> None:
    arguments = '{"city":"Paris"}'
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":', '"Paris"}'])])),
        streaming(text_stream(["It is ", "sunny."])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, ECHO_TOOL, "tool.py", "--units", "metric")
    result = run_mavera(
        [*tools_args(server, functions), "-p", "clx_p", "--exec", f"get_weather={command}", "hi"]
    )
    assert result.stdout == b"It is sunny.\n"
    assert result.stderr == ""
    assert len(server.requests) == 2
    first, second = (request.json() for request in server.requests)
    assert first["input"] == "hi"
    seen = {
        "stdin": arguments,
        "argv": ["--units", "metric"],
        "name": "get_weather",
        "call_id": "call_1",
        "key": None,  # the API key is not passed on to tools
    }
    assert second["input"] == [
        {"role": "user", "content": "hi"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": arguments,
        },
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": json.dumps(seen, sort_keys=True) + "\n",
        },
    ]
    assert second["tools"] == [WEATHER]
    assert second["persona_id"] == "clx_p" and second["stream"] is True
    assert TEST_KEY not in json.dumps(second)


@pytest.mark.parametrize("chunking", ["whole", "bytewise", "crlf-random"])
def test_exec_runs_and_answers_all_parallel_calls(server, tmp_path, chunking) -> None:
    server.script(
        streaming(
            call_stream(
                [
                    ("call_w", "get_weather", ['{"city":"Oslo"}']),
                    ("call_t", "get_time", ['{"city":"Oslo"}']),
                    ("call_w2", "get_weather", ['{"city":"Bergen"}']),
                ],
                text="Let me check.",
            ),
            chunking,
        ),
        streaming(text_stream(["Cold ", "and late."]), chunking),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER, TIME])
    weather = tool_command(
        tmp_path, "import json,sys; print('W', json.load(sys.stdin)['city'], end='')", "w.py"
    )
    clock = tool_command(tmp_path, "print('23:59', end='')", "t.py")
    result = run_mavera(
        [
            *tools_args(server, functions),
            "--exec",
            f"get_weather={weather}",
            "--exec",
            f"get_time={clock}",
            "hi",
        ]
    )
    assert result.stdout == b"Let me check.\nCold and late.\n"
    items = server.requests[1].json()["input"]
    assert items[1] == {"role": "assistant", "content": "Let me check."}
    pairs = [(item["type"], item["call_id"], item.get("output")) for item in items[2:]]
    assert pairs == [
        ("function_call", "call_w", None),
        ("function_call_output", "call_w", "W Oslo"),
        ("function_call", "call_t", None),
        ("function_call_output", "call_t", "23:59"),
        ("function_call", "call_w2", None),
        ("function_call_output", "call_w2", "W Bergen"),
    ]


def test_exec_forced_tool_choice_applies_to_the_first_round_only(server, tmp_path) -> None:
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])),
        streaming(text_stream(["done"])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "print('ok')")
    run_mavera(
        [
            *tools_args(server, functions),
            "--tool-choice",
            "get_weather",
            "--exec",
            f"get_weather={command}",
            "hi",
        ]
    )
    choices = [request.json()["tool_choice"] for request in server.requests]
    assert choices == [{"type": "function", "name": "get_weather"}, "auto"]


def test_model_output_never_reaches_a_shell_or_argv(server, tmp_path) -> None:
    marker = tmp_path / "pwned"
    hostile = json.dumps({"city": f"$(touch {marker}); `touch {marker}` && touch {marker}"})
    server.script(
        streaming(call_stream([("call_1;touch x", "get_weather", [hostile])])),
        streaming(text_stream(["fine"])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, ECHO_TOOL, "tool.py", "fixed")
    run_mavera([*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"])
    output = json.loads(server.requests[1].json()["input"][2]["output"])
    assert output["argv"] == ["fixed"]
    assert output["stdin"] == hostile
    assert output["call_id"] == "call_1;touch x"
    assert not marker.exists()
    assert not (tmp_path / "x").exists()


def test_exec_command_exiting_nonzero_exits_12(server, tmp_path) -> None:
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])),
        streaming(text_stream(["never"])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(
        tmp_path, "import sys; print('tool says no', file=sys.stderr); sys.exit(3)"
    )
    result = run_mavera(
        [*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"],
        expect=12,
        process=True,  # the tool writes to the process's own stderr descriptor
    )
    assert len(server.requests) == 1
    assert result.stdout == b""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "tool says no"  # the tool's own stderr passes through
    one_line_error("\n".join(lines[1:]), "get_weather", "call_1", "exited with status 3")


def test_tool_errors_send_passes_the_failure_to_the_model(server, tmp_path) -> None:
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])),
        streaming(text_stream(["Sorry, ", "no weather."])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "import sys; sys.exit(4)")
    result = run_mavera(
        [
            *tools_args(server, functions),
            "--exec",
            f"get_weather={command}",
            "--tool-errors",
            "send",
            "hi",
        ]
    )
    assert result.stdout == b"Sorry, no weather.\n"
    output = server.requests[1].json()["input"][2]
    assert output["type"] == "function_call_output" and output["call_id"] == "call_1"
    assert output["output"] == "error: the tool exited with status 4"
    assert "warning" in result.stderr and "exited with status 4" in result.stderr


def test_exec_command_past_tool_timeout_is_killed_and_exits_12(server, tmp_path) -> None:
    server.script(streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "import time; time.sleep(30)")
    started = time.monotonic()
    result = run_mavera(
        [
            *tools_args(server, functions),
            "--exec",
            f"get_weather={command}",
            "--tool-timeout",
            "0.5",
            "hi",
        ],
        expect=12,
    )
    assert time.monotonic() - started < 15
    one_line_error(result.stderr, "--tool-timeout 0.5s")
    assert len(server.requests) == 1


def test_tool_timeout_with_send_tells_the_model(server, tmp_path) -> None:
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])),
        streaming(text_stream(["too slow"])),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "import time; time.sleep(30)")
    args = ["--exec", f"get_weather={command}", "--tool-timeout", "0.3", "--tool-errors", "send"]
    result = run_mavera([*tools_args(server, functions), *args, "hi"])
    assert result.stdout == b"too slow\n"
    assert "--tool-timeout" in server.requests[1].json()["input"][2]["output"]


def test_a_loop_past_max_rounds_exits_12(server, tmp_path) -> None:
    server.script(streaming(call_stream([("call_n", "get_weather", ['{"city":"Oslo"}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    log = tmp_path / "runs.log"
    command = tool_command(tmp_path, f"open({str(log)!r}, 'a').write('run\\n'); print('again')")
    result = run_mavera(
        [
            *tools_args(server, functions),
            "--exec",
            f"get_weather={command}",
            "--max-rounds",
            "2",
            "hi",
        ],
        expect=12,
    )
    assert len(server.requests) == 3
    assert log.read_text() == "run\nrun\n"  # the third response's call is not run
    one_line_error(result.stderr, "--max-rounds 2")
    third = server.requests[2].json()["input"]
    assert [item.get("type") for item in third] == [
        None,
        "function_call",
        "function_call_output",
        "function_call",
        "function_call_output",
    ]


def test_a_call_to_a_function_without_exec_exits_12(server, tmp_path) -> None:
    server.script(
        streaming(
            call_stream(
                [
                    ("call_w", "get_weather", ['{"city":"Oslo"}']),
                    ("call_t", "get_time", ['{"city":"Oslo"}']),
                ]
            )
        )
    )
    functions = write_json(tmp_path / "f.json", [WEATHER, TIME])
    log = tmp_path / "runs.log"
    command = tool_command(tmp_path, f"open({str(log)!r}, 'a').write('ran')")
    result = run_mavera(
        [*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"], expect=12
    )
    one_line_error(result.stderr, "'get_time'", "no --exec", "--exec get_time=COMMAND")
    assert not log.exists()  # nothing runs when one call of the response cannot be answered
    assert len(server.requests) == 1


def test_exec_with_unparseable_arguments_exits_11_without_running(server, tmp_path) -> None:
    server.script(streaming(call_stream([("call_1", "get_weather", ['{"city": Oslo}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    log = tmp_path / "runs.log"
    command = tool_command(tmp_path, f"open({str(log)!r}, 'a').write('ran')")
    result = run_mavera(
        [*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"], expect=11
    )
    one_line_error(result.stderr, "not valid JSON")
    assert not log.exists()


def test_exec_events_mode_writes_every_round(server, tmp_path) -> None:
    first = call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])
    second = text_stream(["fine"])
    server.script(streaming(first), streaming(second))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "print('cold')")
    result = run_mavera(
        [*tools_args(server, functions), "--events", "--exec", f"get_weather={command}", "hi"]
    )
    types = [line["type"] for line in ndjson(result.stdout)]
    assert len(types) == len(first) - 1 + len(second) - 1
    assert types.count("response.completed") == 2
    assert types[-2:] == ["response.output_item.done", "response.completed"]


def test_exec_failure_in_the_second_round_keeps_the_exit_code(server, tmp_path) -> None:
    server.script(
        streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])),
        lambda ex, wire: wire.respond(400, {"error": {"message": "bad input item"}}),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "print('cold')")
    result = run_mavera(
        [*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"], expect=4
    )
    one_line_error(result.stderr, "bad input item")


# --- end to end against the built-in fake server ----------------------------------------------


def _mock_ready() -> bool:
    try:
        from mavera_cli.mock import MockServer  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _mock_ready(), reason="mavera_cli.mock.MockServer is not there yet")
def test_end_to_end_against_the_mock(tmp_path) -> None:
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(
        tmp_path, "import json,sys; print('18C in', json.load(sys.stdin)['city'], end='')"
    )
    result = run_mavera(
        ["tools", "--mock", "--functions", functions, "--exec", f"get_weather={command}", "hi"],
        key=None,
    )
    text = result.text
    assert text.startswith("Tool get_weather returned: 18C in "), text
    assert text.endswith("\n") and text.count("\n") == 1
    calls = run_mavera(["tools", "--mock", "--functions", functions, "hi"], key=None)
    lines = ndjson(calls.stdout)
    assert [line["name"] for line in lines] == ["get_weather"]
    assert isinstance(lines[0]["arguments"]["city"], str)


def test_ctrl_c_while_a_tool_runs_ends_it_and_exits_130(server, tmp_path) -> None:
    server.script(streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    pid_file = tmp_path / "tool.pid"
    command = tool_command(
        tmp_path,
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mavera_cli",
            *tools_args(server, functions),
            "--exec",
            f"get_weather={command}",
            "hi",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mavera_env(),
    )
    try:
        deadline = time.monotonic() + 15
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        tool_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert b"Traceback" not in stderr
    deadline = time.monotonic() + 5
    while _alive(tool_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tool_pid), "the tool outlived mavera"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it only waits to be reaped by its parent.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")
