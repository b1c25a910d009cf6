"""`--exec`: what is read from a tool's stdout is capped (MAX_TOOL_OUTPUT); a tool that writes
more is killed and the run exits 12, or with --tool-errors send the model is told (issue 11
item 22). Memory stays bounded however much the tool writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mavera_cli.errors import ToolFailedError
from mavera_cli.tools import MAX_TOOL_OUTPUT, run_command
from tests.conftest import REPO, mavera_env, one_line_error, run_mavera
from tests.scripted_server import text_stream
from tests.test_tools import WEATHER, call_stream, streaming, tool_command, tools_args, write_json

CALL = call_stream([("call_1", "get_weather", ['{"city":"Oslo"}'])])
# Writes `size` bytes (or forever for -1) in pieces, as a runaway tool would.
WRITER = """\
import sys
size = int(sys.argv[1])
piece = b"x" * 65536
while size < 0 or size > 0:
    chunk = piece if size < 0 else piece[:size]
    sys.stdout.buffer.write(chunk)
    size -= len(chunk) if size > 0 else 0
sys.stdout.buffer.flush()
"""


def exec_args(tmp_path: Path, size: int) -> list[str]:
    return ["--exec", f"get_weather={tool_command(tmp_path, WRITER, 'writer.py', str(size))}"]


def test_a_tool_writing_forever_is_killed_at_the_limit_and_exits_12(server, tmp_path) -> None:
    server.script(streaming(CALL))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    started = time.monotonic()
    result = run_mavera(
        [*tools_args(server, functions), *exec_args(tmp_path, -1), "hi"], expect=12, timeout=60
    )
    assert time.monotonic() - started < 20  # not the 60 s --tool-timeout
    one_line_error(
        result.stderr, "--exec get_weather (call_1)", "wrote more than 1 MiB to stdout", "killed"
    )
    assert len(server.requests) == 1 and result.stdout == b""


def test_output_of_exactly_the_limit_is_sent_to_the_model(server, tmp_path) -> None:
    server.script(streaming(CALL), streaming(text_stream(["ok"])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    result = run_mavera(
        [*tools_args(server, functions), *exec_args(tmp_path, MAX_TOOL_OUTPUT), "hi"]
    )
    assert result.stdout == b"ok\n"
    output = server.requests[1].json()["input"][2]["output"]
    assert output == "x" * MAX_TOOL_OUTPUT


def test_with_tool_errors_send_the_model_is_told_of_the_limit(server, tmp_path) -> None:
    server.script(streaming(CALL), streaming(text_stream(["too much"])))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    args = [*exec_args(tmp_path, MAX_TOOL_OUTPUT + 1), "--tool-errors", "send"]
    result = run_mavera([*tools_args(server, functions), *args, "hi"])
    assert result.stdout == b"too much\n"
    output = server.requests[1].json()["input"][2]["output"]
    assert output.startswith("error: the tool wrote more than 1 MiB to stdout")
    assert "warning" in result.stderr


def test_memory_stays_bounded_when_a_tool_writes_200_mb(server, tmp_path) -> None:
    """Measured from a parent of its own, whose only child is this one `mavera` run."""
    server.script(streaming(CALL))
    functions = write_json(tmp_path / "f.json", [WEATHER])
    args = [*tools_args(server, functions), "--exec", "get_weather=head -c 200000000 /dev/zero"]
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, capture_output=True)"
        ".returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "mavera_cli", *args, "hi"],
        capture_output=True,
        text=True,
        env=mavera_env(),
        timeout=60,
    )
    code, peak_kib = map(int, done.stdout.split())
    assert code == 12
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib // 1024} MiB"


def test_arguments_larger_than_a_pipe_reach_a_tool_that_writes_first(tmp_path) -> None:
    """stdin is fed while stdout is read, so neither side can block the other."""
    script = tmp_path / "t.py"
    script.write_text(
        "import sys\nsys.stdout.write('y' * 200000); sys.stdout.flush()\n"
        "print(len(sys.stdin.read()))\n"
    )
    out = run_command([sys.executable, str(script)], b"a" * 500_000, {}, timeout=20)
    assert out == b"y" * 200000 + b"500000\n"


def test_run_command_limit_is_a_tool_failure(tmp_path) -> None:
    with pytest.raises(ToolFailedError, match="wrote more than 64 KiB"):
        run_command(["head", "-c", "70000", "/dev/zero"], b"", {}, 20, max_output=65536)
    assert run_command(["head", "-c", "65536", "/dev/zero"], b"", {}, 20, 65536) == bytes(65536)


def test_the_limit_is_documented_in_the_help_and_readme() -> None:
    assert MAX_TOOL_OUTPUT == 1024 * 1024  # the text below spells it out
    help_text = " ".join(run_mavera(["tools", "--help"]).text.split())
    assert "its stdout (at most 1 MiB, or it is killed)" in help_text
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "A command that writes more than 1 MiB to stdout is killed" in readme
