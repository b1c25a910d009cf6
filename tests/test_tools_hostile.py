"""`tools` and `json` against hostile or odd servers and inputs: calls without ids, calls only
in the final response, escape sequences in the live call progress, files too deep or endless,
a SIGHUP while a tool runs, and schemas whose `$ref`s cannot work.

Every test runs the real CLI against a real loopback server sending SSE bytes.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY, Result, one_line_error, run_mavera, start_mavera
from tests.pty_helpers import run_on_a_pty, run_with_pty_stderr
from tests.scripted_server import DONE, ScriptedServer, sse_event, text_stream
from tests.test_tools import (
    ECHO_TOOL,
    WEATHER,
    call_stream,
    ndjson,
    streaming,
    tool_command,
    tools_args,
    write_json,
)

CREATED = {"type": "response.created", "response": {"id": "r", "status": "in_progress"}}


def completed(output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response = {"id": "r", "status": "completed", "output": output or []}
    return {"type": "response.completed", "response": response}


def events_stream(*events: dict[str, Any]) -> list[bytes]:
    return [sse_event(event) for event in (CREATED, *events)] + [DONE]


def answered() -> list[bytes]:
    """A second round: the model answers in text."""
    return text_stream(["the weather is fine"])


def tool_counting_runs(tmp_path: Path) -> tuple[str, Path]:
    """A tool that appends its stdin as one line to a log per run, and answers `{}`."""
    log = tmp_path / "runs.log"
    source = (
        "import sys\n"
        f"open({str(log)!r}, 'a').write(repr(sys.stdin.read()) + '\\n')\n"
        "print('{}')\n"
    )
    return tool_command(tmp_path, source, "count.py"), log


def run_with_pty_stdout(args: list[str]) -> tuple[int, bytes, str]:
    """Run mavera with stdout on a pseudo-terminal: (exit code, what the pty got, stderr)."""
    shown, stderr, code = run_on_a_pty(args, as_written=True)
    return code, shown, stderr


# --- which events are about one call ---------------------------------------------------------

NO_ID_CALL = events_stream(
    {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {"type": "function_call", "name": "get_weather", "arguments": ""},
    },
    {
        "type": "response.function_call_arguments.delta",
        "output_index": 0,
        "delta": '{"city":"Paris"}',
    },
    {
        "type": "response.output_item.done",
        "output_index": 0,
        "item": {"type": "function_call", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    },
    completed(),
)


def test_a_call_without_any_id_is_one_call(server: ScriptedServer, tmp_path: Path) -> None:
    """Without `id` and `call_id` the added and done events gave two calls (keys "0", "1")."""
    server.script(streaming(NO_ID_CALL))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    lines = ndjson(run_mavera([*tools_args(server, functions), "hi"]).stdout)
    assert [(line["name"], line["arguments"]) for line in lines] == [
        ("get_weather", {"city": "Paris"})
    ]


def run_counted(
    server: ScriptedServer, tmp_path: Path, stream: list[bytes]
) -> tuple[Result, list[str]]:
    """`tools --exec` on `stream` (then a text answer): the run, and the stdin of each time
    the command ran."""
    server.script(streaming(stream), streaming(answered()))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command, log = tool_counting_runs(tmp_path)
    result = run_mavera([*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"])
    return result, log.read_text().splitlines()


def test_a_call_without_any_id_runs_its_command_once(
    server: ScriptedServer, tmp_path: Path
) -> None:
    _, runs = run_counted(server, tmp_path, NO_ID_CALL)
    assert runs == [repr('{"city":"Paris"}')]


def test_two_calls_sharing_one_item_id_are_both_kept(
    server: ScriptedServer, tmp_path: Path
) -> None:
    events = []
    for index, (call_id, city) in enumerate([("call_a", "Oslo"), ("call_b", "Rome")]):
        item = {"type": "function_call", "id": "fc_same", "call_id": call_id, "name": "get_weather"}
        arguments = json.dumps({"city": city})
        where = {"item_id": "fc_same", "output_index": index}
        events += [
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "arguments": ""},
            },
            {"type": "response.function_call_arguments.delta", **where, "delta": arguments},
            {
                "type": "response.output_item.done",
                "output_index": index,
                "item": {**item, "arguments": arguments},
            },
        ]
    server.script(streaming(events_stream(*events, completed())))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    lines = ndjson(run_mavera([*tools_args(server, functions), "hi"]).stdout)
    assert [(line["call_id"], line["arguments"]["city"]) for line in lines] == [
        ("call_a", "Oslo"),
        ("call_b", "Rome"),
    ]


FINAL_ONLY = events_stream(
    completed(
        [
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Lima"}',
                "status": "completed",
            }
        ]
    )
)


def test_a_call_only_in_the_final_response_is_printed(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.script(streaming(FINAL_ONLY))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    lines = ndjson(run_mavera([*tools_args(server, functions), "hi"]).stdout)
    assert lines == [
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": {"city": "Lima"},
        }
    ]


def test_a_call_only_in_the_final_response_runs_its_command(
    server: ScriptedServer, tmp_path: Path
) -> None:
    result, runs = run_counted(server, tmp_path, FINAL_ONLY)
    assert runs == [repr('{"city":"Lima"}')]
    assert result.stdout == b"the weather is fine\n"
    sent = server.requests[1].json()["input"]
    assert {"type": "function_call_output", "call_id": "call_1", "output": "{}\n"} in sent


def test_a_call_with_empty_arguments_gives_its_command_an_empty_object(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """`""` is shown as `{}`; the command got an empty stdin, which is no JSON."""
    server.script(streaming(call_stream([("call_1", "get_weather", [])])), streaming(answered()))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command, log = tool_counting_runs(tmp_path)
    run_mavera([*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"])
    assert log.read_text().splitlines() == [repr("{}")]


# --- what a tool is told ---------------------------------------------------------------------


def test_the_key_in_a_call_id_is_masked_in_the_tools_environment(
    server: ScriptedServer, tmp_path: Path
) -> None:
    call_id = f"call-{TEST_KEY}"
    server.script(
        streaming(call_stream([(call_id, "get_weather", ['{"city":"Oslo"}'])])),
        streaming(answered()),
    )
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, ECHO_TOOL)
    run_mavera([*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"])
    told = server.requests[1].json()["input"][-1]["output"]
    assert TEST_KEY not in told
    assert json.loads(told)["call_id"].startswith("call-")


def test_a_huge_call_id_does_not_hide_why_the_tool_failed(
    server: ScriptedServer, tmp_path: Path
) -> None:
    call_id = "call_" + "x" * 100_000  # (past 128 KiB no environment can hold it)
    server.script(streaming(call_stream([(call_id, "get_weather", ['{"city":"Oslo"}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    command = tool_command(tmp_path, "import sys; sys.stdin.read(); sys.exit(3)")
    args = [*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"]
    result = run_mavera(args, expect=12)
    line = one_line_error(result.stderr, "exited with status 3")
    assert len(line) < 1000


# --- the live call progress on a terminal ----------------------------------------------------


def test_escape_sequences_from_the_server_never_reach_the_terminal(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """The name, and arguments whose escape sequences are cut between deltas."""
    deltas = ['{"city":"\x1b]0;PW', "NED\x07\x1b[", '2J\x1b[31mRED\x9b5m"}']
    stream = call_stream([("call_1", "get_weather\x1b[5mBLINK", deltas)])
    server.script(streaming(stream))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    code, _, shown = run_with_pty_stderr([*tools_args(server, functions), "--no-color", "hi"])
    # (Raw controls in a JSON string make the arguments invalid: exit 11, after the progress.)
    assert code == 11
    assert "→ get_weatherBLINK" in shown.decode("utf-8", "replace")
    assert '{"city":"' in shown.decode("utf-8", "replace")
    for raw in (b"\x1b]", b"\x07", b"\x1b[5m", b"\x1b[2J", b"\x1b[31m", b"\xc2\x9b"):
        assert raw not in shown, (raw, shown)


# --- files too deep, too large, or endless ---------------------------------------------------

DEEP_ARRAYS = "[" * 100_000 + "]" * 100_000
DEEP_PROPERTIES = '{"properties":' * 5000 + "{}" + "}" * 5000


@pytest.mark.parametrize("text", [DEEP_ARRAYS, DEEP_PROPERTIES], ids=["arrays", "properties"])
@pytest.mark.parametrize(
    ("command", "flag", "ndjson_mode"),
    [
        ("tools", "--functions", True),  # without --exec, tools writes NDJSON
        ("json", "--schema", False),
        ("json --partial", "--schema", True),
    ],
    ids=["tools", "json", "json-partial"],
)
def test_deeply_nested_files_are_usage_errors(
    server: ScriptedServer, tmp_path: Path, text: str, command: str, flag: str, ndjson_mode: bool
) -> None:
    path = tmp_path / "deep.json"
    path.write_text(text)
    args = [*command.split(), "--base-url", server.base_url, flag, str(path), "hi"]
    result = run_mavera(args, expect=2, process=True)
    one_line_error(result.stderr, "nested too deeply")
    if ndjson_mode:
        assert json.loads(result.stdout)["exit_code"] == 2
    else:
        assert result.stdout == b""
    assert server.requests == []


@pytest.mark.parametrize("flag", ["--functions", "--schema"])
def test_a_device_is_not_a_functions_or_schema_file(server: ScriptedServer, flag: str) -> None:
    """`/dev/zero` was read until the memory ran out (here: a limit of 1 GiB)."""
    command = "tools" if flag == "--functions" else "json"
    args = [command, "--base-url", server.base_url, flag, "/dev/zero", "hi"]
    proc = start_mavera(args, preexec_fn=_limit_memory)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr
    one_line_error(stderr.decode(), "a device, not a file or a pipe")
    assert server.requests == []


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("flag", ["--functions", "--schema"])
def test_a_file_over_16_mib_is_not_a_functions_or_schema_file(
    server: ScriptedServer, tmp_path: Path, flag: str
) -> None:
    path = tmp_path / "huge.json"
    path.write_text('{"description": "' + "x" * (16 * 1024 * 1024) + '"}')
    command = "tools" if flag == "--functions" else "json"
    args = [command, "--base-url", server.base_url, flag, str(path), "hi"]
    result = run_mavera(args, expect=2)
    one_line_error(result.stderr, "larger than 16 MiB")
    assert server.requests == []


# --- SIGHUP while a tool runs ----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT])
def test_a_hang_up_or_quit_while_a_tool_runs_ends_its_process_group(
    server: ScriptedServer, tmp_path: Path, sig: signal.Signals
) -> None:
    """The tool has a session of its own: mavera hung up (or quit by Ctrl-\\) ended without
    it, leaving it (and what it started) running."""
    server.script(streaming(call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    pid_file = tmp_path / "tool.pid"
    command = tool_command(
        tmp_path,
        "import os, subprocess, sys, time\n"
        "sys.stdin.read()\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        "time.sleep(60)\n",
    )
    proc = start_mavera([*tools_args(server, functions), "--exec", f"get_weather={command}", "hi"])
    group = None
    try:
        deadline = time.monotonic() + 15
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        group = int(pid_file.read_text())
        assert _group_members(group), "the tool is not running"
        os.kill(proc.pid, sig)
        # (wait, not communicate: a tool left running would hold mavera's stderr open)
        proc.wait(timeout=15)
        # Ended as by SIGTERM (128 + the signal, what a shell reports), the group killed.
        assert proc.returncode == 128 + sig
        deadline = time.monotonic() + 5
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_members(group), "the tool's process group outlived mavera"
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        if group is not None and _group_members(group):
            os.killpg(group, signal.SIGKILL)
        proc.communicate()


def _group_members(group: int) -> list[int]:
    """The live (not zombie) processes of process group `group`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members


# --- `json` on a terminal ---------------------------------------------------------------------

HOSTILE_OBJECT = {"a": "\u009b31mred", "b": "\u202egnp.exe", "c": "café"}


def hostile_json(server: ScriptedServer) -> None:
    text = json.dumps(HOSTILE_OBJECT, ensure_ascii=False)
    server.script(streaming(text_stream([text[:9], text[9:]])))


def test_json_on_a_terminal_escapes_c1_and_bidi_controls(server: ScriptedServer) -> None:
    hostile_json(server)
    code, shown, stderr = run_with_pty_stdout(["json", "--base-url", server.base_url, "hi"])
    assert code == 0, stderr
    assert b"\xc2\x9b" not in shown and "\u202e".encode() not in shown
    assert json.loads(shown) == HOSTILE_OBJECT  # the same value, as valid JSON
    assert "café".encode() in shown  # other characters stay as they are
    # In a pipe the bytes stay exactly as they were.
    hostile_json(server)
    piped = run_mavera(["json", "--base-url", server.base_url, "hi"]).stdout
    assert (
        piped
        == json.dumps(HOSTILE_OBJECT, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    )


def test_tools_on_a_terminal_escapes_c1_and_bidi_controls(
    server: ScriptedServer, tmp_path: Path
) -> None:
    arguments = json.dumps({"city": "\u009b2J\u202eolsO"})
    server.script(streaming(call_stream([("call_1", "get_weather", [arguments])])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    code, shown, stderr = run_with_pty_stdout([*tools_args(server, functions), "hi"])
    assert code == 0, stderr
    assert b"\xc2\x9b" not in shown and "\u202e".encode() not in shown
    assert json.loads(shown)["arguments"] == json.loads(arguments)


# --- schemas whose $refs cannot work: found before any request ---------------------------------


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"$ref": "#"}, "refers back to itself"),
        (
            {
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                "$ref": "#/$defs/a",
            },
            "refers back to itself",
        ),
        ({"allOf": [{"$ref": "#"}]}, "refers back to itself"),
        ({"type": "object", "properties": {"x": {"$ref": "#/nope"}}}, "cannot be resolved"),
        ({"$ref": "https://example.com/schema.json"}, "cannot be resolved"),
    ],
    ids=["self", "defs-loop", "allof-loop", "missing-pointer", "remote"],
)
def test_schemas_whose_refs_cannot_work_exit_2_before_any_request(
    server: ScriptedServer, tmp_path: Path, schema: dict[str, Any], needle: str
) -> None:
    server.script(streaming(text_stream(["{}"])))
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    result = run_mavera(
        ["json", "--base-url", server.base_url, "--schema", str(path), "hi"], expect=2
    )
    one_line_error(result.stderr, needle)
    assert server.requests == []


def test_a_tree_schema_stays_allowed_where_a_bare_self_reference_is_not(
    server: ScriptedServer, tmp_path: Path
) -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    value = {"name": "root", "children": [{"name": "leaf", "children": []}]}
    server.script(streaming(text_stream([json.dumps(value)])))
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    result = run_mavera(["json", "--base-url", server.base_url, "--schema", str(path), "hi"])
    assert json.loads(result.stdout) == value
    path.write_text(json.dumps({**tree, "$defs": {"node": {"$ref": "#"}}}))
    args = ["json", "--base-url", server.base_url, "--schema", str(path), "hi"]
    one_line_error(run_mavera(args, expect=2).stderr, "refers back to itself")
    assert len(server.requests) == 1
