"""The process boundary tells the truth: honest exit codes for ordinary situations, one line on
stderr, never a traceback; and --max-time bounds a whole command, tool runs included."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import mavera_env, one_line_error, run_mavera
from tests.scripted_server import ScriptedServer, text_stream
from tests.test_tools import WEATHER, call_stream


def functions_file(tmp_path: Path) -> str:
    path = tmp_path / "functions.json"
    path.write_text(json.dumps([WEATHER]))
    return str(path)


def test_max_time_bounds_a_slow_tool(tmp_path: Path) -> None:
    """A 30 s tool under --max-time 1 ends in about a second with exit 6, the tool killed."""
    marker = tmp_path / "tool-finished"
    tool = tmp_path / "slow.py"
    tool.write_text(
        f"import time, pathlib\ntime.sleep(30)\npathlib.Path({str(marker)!r}).touch()\n"
    )
    started = time.monotonic()
    result = run_mavera(
        [
            "tools",
            "--mock",
            "--functions",
            functions_file(tmp_path),
            "--exec",
            f"get_weather={sys.executable} {tool}",
            "--max-time",
            "1",
            "weather in Paris?",
        ],
        expect=6,
        process=True,  # a SIGALRM timer: in its own process, not in pytest's
    )
    assert time.monotonic() - started < 15  # generous: a busy machine, never the tool's 30 s
    one_line_error(result.stderr, "--max-time")
    time.sleep(0.2)
    assert not marker.exists()  # the tool was killed, not left running


def test_max_time_bounds_a_model_that_keeps_calling_tools(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """Every round is quick, but the rounds never end: --max-time still ends the command."""

    def always_call(ex, wire) -> None:  # type: ignore[no-untyped-def]
        wire.head()
        wire.send_chunks(call_stream([("call_1", "get_weather", ['{"city":"Paris"}'])]))

    server.script(always_call)
    tool = tmp_path / "fast.py"
    tool.write_text("import time\ntime.sleep(0.05)\nprint('sunny')\n")
    started = time.monotonic()
    result = run_mavera(
        [
            "tools",
            "--base-url",
            server.base_url,
            "--functions",
            functions_file(tmp_path),
            "--exec",
            f"get_weather={sys.executable} {tool}",
            "--max-rounds",
            "100000",
            "--max-time",
            "2",
            "weather?",
        ],
        expect=6,
        timeout=60,
        process=True,  # a SIGALRM timer: in its own process, not in pytest's
    )
    assert time.monotonic() - started < 20
    assert len(server.requests) >= 2  # it did loop, and was stopped by the clock
    one_line_error(result.stderr, "--max-time")


def test_non_utf8_prompt_word_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", "stream", "--mock", b"caf\xe9"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=mavera_env(),
        timeout=30,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    one_line_error(stderr, "not UTF-8")
    assert proc.stdout == b""


def test_no_key_and_no_prompt_reports_the_missing_prompt_first() -> None:
    result = run_mavera(["stream"], key=None, expect=2)
    assert "no prompt" in result.stderr
    assert "API key" not in result.stderr


def test_stderr_closed_keeps_the_exit_code(server: ScriptedServer) -> None:
    """With stderr closed the message cannot be told, but the exit code still is (3, not 1)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", "stream", "--base-url", server.base_url, "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**mavera_env(key=None)},
        timeout=30,
        # `2>&-`: the child starts with fd 2 closed
        preexec_fn=lambda: __import__("os").close(2),
    )
    assert proc.returncode == 3
    assert proc.stdout == b""


def test_stdout_closed_is_one_line_and_an_io_error(server: ScriptedServer) -> None:
    """`>&-`: nothing can be written; one line on stderr, exit 74 (EX_IOERR), no traceback."""
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["hi"]))))
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", "stream", "--base-url", server.base_url, "hi"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=mavera_env(),
        timeout=30,
        preexec_fn=lambda: __import__("os").close(1),
    )
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    assert proc.returncode == 74, stderr
    one_line_error(stderr, "standard output")


def test_stdout_on_a_full_device_is_an_io_error(server: ScriptedServer) -> None:
    """`> /dev/full`: every write fails with ENOSPC; one line, exit 74, nothing at exit."""
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["hi", " there"]))))
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "mavera_cli", "stream", "--base-url", server.base_url, "hi"],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            env=mavera_env(),
            timeout=30,
        )
    stderr = proc.stderr.decode()
    assert proc.returncode == 74, stderr
    one_line_error(stderr, "standard output", "No space left on device")


def test_save_raw_on_a_full_disk_is_an_io_error_and_keeps_the_old_capture(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """The capture's disk fills up mid-stream (a file-size limit: EFBIG, like ENOSPC): exit
    74, the text that arrived is on stdout, and the previous capture is still whole."""
    import resource

    server.script(
        lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["x" * 3000] * 4), pause=0.01))
    )
    capture = tmp_path / "run.sse"
    capture.write_bytes(b"old capture\n")

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    args = ["stream", "--save-raw", str(capture), "--base-url", server.base_url, "hi"]
    proc = subprocess.run(
        [sys.executable, "-m", "mavera_cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=mavera_env(),
        timeout=30,
        preexec_fn=limit_file_size,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 74, stderr
    one_line_error(stderr, str(capture))
    assert capture.read_bytes() == b"old capture\n"
    assert proc.stdout.startswith(b"x" * 3000)


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ALL_PROXY", "socks5://user:secretpw@127.0.0.1:9", "httpx[socks]"),
        ("HTTPS_PROXY", "http://user:secretpw@[::1", "invalid proxy setting (HTTPS_PROXY)"),
        ("HTTPS_PROXY", "ftp://proxy.invalid", "invalid proxy setting (HTTPS_PROXY)"),
        # A scheme httpx cannot parse: its message quotes the URL as given, password and all.
        ("HTTPS_PROXY", "ht!tp://user:secretpw@proxy.invalid", "ht!tp://***@proxy.invalid"),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem", "SSL_CERT_FILE=/nonexistent/ca.pem"),
    ],
)
def test_a_broken_environment_is_a_usage_error(variable: str, value: str, needle: str) -> None:
    """Environment the HTTP layer cannot use: exit 2 naming it, never 1 (a bug) or 9."""
    result = run_mavera(
        ["stream", "--base-url", "https://api.example.invalid/v1", "hi"],
        env={variable: value},
        expect=2,
    )
    one_line_error(result.stderr, needle)
    assert "secretpw" not in result.stderr  # a proxy URL's password is never repeated


def test_a_proxy_host_the_resolver_refuses_is_a_connection_failure() -> None:
    """Python's resolver raises UnicodeError (not OSError) for a name with an empty label:
    that was an internal error (exit 1)."""
    result = run_mavera(
        ["stream", "--retries", "0", "--base-url", "https://api.example.invalid/v1", "hi"],
        env={"HTTPS_PROXY": "http://proxy..example:8080"},
        expect=9,
    )
    one_line_error(result.stderr, "cannot reach", "a host name on the way is not valid")


def big_json_capture(path: Path) -> bytes:
    """A capture whose answer is a 500 KB JSON object: far more than a pipe holds."""
    text = json.dumps({"items": ["x" * 100 for _ in range(5000)]})
    events = [{"type": "response.created", "response": {"status": "in_progress"}}]
    events += [
        {"type": "response.output_text.delta", "delta": text[i : i + 1000]}
        for i in range(0, len(text), 1000)
    ]
    events.append({"type": "response.completed", "response": {"status": "completed"}})
    data = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    path.write_bytes(data)
    return text.encode()


@pytest.mark.parametrize(
    "args",
    [["replay", "--as", "json"], ["replay", "--as", "tools"], ["replay"], ["replay", "--events"]],
)
def test_a_reader_that_leaves_early_ends_every_mode_quietly_with_141(
    tmp_path: Path, args: list[str]
) -> None:
    """`| head -c 10` on a big answer: the reader goes while a write is under way. The write
    comes back short instead of failing; the rest must still be written (and so fail)."""
    capture = tmp_path / "big.sse"
    big_json_capture(capture)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args, str(capture)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # stdout buffered as a user's is (PYTHONUNBUFFERED, set or not, changes the write path)
        env={k: v for k, v in mavera_env().items() if k != "PYTHONUNBUFFERED"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    # Like `head -c 10`: take ten bytes once the big write is under way, then go.
    assert len(os.read(proc.stdout.fileno(), 10)) == 10
    time.sleep(0.2)  # the writer is blocked in its write again
    proc.stdout.close()
    rc = proc.wait(timeout=30)
    assert rc == 141
    assert proc.stderr.read() == b""


def test_the_whole_big_answer_arrives_when_the_reader_stays(tmp_path: Path) -> None:
    capture = tmp_path / "big.sse"
    text = big_json_capture(capture)
    result = run_mavera(["replay", "--as", "json", str(capture)], process=True)
    assert result.stdout.endswith(b"}\n")
    assert json.loads(result.stdout) == json.loads(text)


class ShortWritingPipe(io.RawIOBase):
    """What a buffered stdout does when its reader leaves during a write: the first write
    comes back short (no error), the next one fails."""

    def __init__(self) -> None:
        self.received = b""
        self.calls = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.calls += 1
        if self.calls > 1:
            raise BrokenPipeError(32, "Broken pipe")
        self.received += bytes(data[:100])
        return 100


def test_a_short_write_is_not_taken_for_a_whole_one() -> None:
    from mavera_cli.errors import OutputClosed
    from mavera_cli.render import OutputSink

    pipe = ShortWritingPipe()
    sink = OutputSink(pipe)  # type: ignore[arg-type]
    with pytest.raises(OutputClosed):
        sink.write(b"x" * 1000)
    assert pipe.received == b"x" * 100
    assert pipe.calls == 2  # the rest was written, and that is what failed


def test_server_text_in_an_error_line_has_no_escape_sequences(server: ScriptedServer) -> None:
    """A hostile error body cannot recolour or retitle the terminal through our message."""
    hostile = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m\nsecond line\x07"
    server.script(lambda ex, wire: wire.respond(400, {"error": {"message": hostile}}))
    result = run_mavera(["stream", "--base-url", server.base_url, "hi"], expect=4)
    line = one_line_error(result.stderr, "red", "second line")
    assert "\x1b" not in line and "\x07" not in line


class InterruptedAfterWriting(io.RawIOBase):
    """Ctrl-C landing just after a write went out (the signal arrives inside `write`)."""

    def __init__(self) -> None:
        self.received = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.received += bytes(data)
        if len(self.received) == len(bytes(data)):  # the first write only
            raise KeyboardInterrupt
        return len(data)


def test_a_signal_inside_the_write_still_ends_the_text_with_a_newline() -> None:
    from mavera_cli.errors import InterruptedRun
    from mavera_cli.render import OutputSink
    from mavera_cli.render.text import TextRenderer

    stream = InterruptedAfterWriting()
    renderer = TextRenderer(OutputSink(stream))  # type: ignore[arg-type]
    assert renderer.delta_sink is not None
    renderer.delta_sink.append("received ")
    with pytest.raises(KeyboardInterrupt):
        renderer.flush()
    renderer.fail(InterruptedRun(), None)
    assert stream.received == b"received \n"


def _run_program(tmp_path: Path, before: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`mavera ARGS` through the program's own entry point (`entry.run`, as the installed
    script and `python -m mavera_cli` call it), after `before` ran in the same process."""
    script = tmp_path / "program.py"
    script.write_text(
        f"import sys\n{before}\nsys.argv = ['mavera', *{args!r}]\n"
        "from mavera_cli.entry import run\nrun()\n"
    )
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        # Not PYTHONUNBUFFERED (mavera_env's "0" still means unbuffered): stdout is buffered.
        env={k: v for k, v in mavera_env().items() if k != "PYTHONUNBUFFERED"},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_the_program_leaving_early_still_runs_atexit_and_flushes(tmp_path: Path) -> None:
    """run() skips the interpreter's teardown: what atexit and the buffers hold still goes."""
    before = "import atexit\natexit.register(lambda: print('atexit ran'))\nprint('buffered')"
    result = _run_program(tmp_path, before, ["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "buffered"
    assert result.stdout.splitlines()[-1] == "atexit ran"
    assert "mavera " in result.stdout


def test_the_program_waits_for_a_thread_still_at_work(tmp_path: Path) -> None:
    before = (
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True)))"
        ".start()"
    )
    result = _run_program(tmp_path, before, ["--version"])
    assert result.returncode == 0, result.stderr
    assert "thread done" in result.stdout


def test_a_signal_that_python_wraps_in_another_error_is_still_that_signal(
    tmp_path: Path,
) -> None:
    """A SIGTERM 56 ms into a start landed in a class body's __set_name__ (ipaddress, being
    imported), which Python 3.11 wraps in a RuntimeError: it was told as a bug in mavera."""
    before = (
        "import os, signal\n"
        "import mavera_cli.cli as cli\n"
        "app_for = cli.app_for\n"
        "class Probe:\n"
        "    def __set_name__(self, owner, name):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        for _ in range(1000): pass  # the handler runs here\n"
        "def probed(args):\n"
        "    type('Owner', (), {'probe': Probe()})\n"
        "    return app_for(args)\n"
        "cli.app_for = probed\n"
    )
    result = _run_program(tmp_path, before, ["stream", "--mock", "hi"])
    assert result.returncode == 143, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_the_program_exits_with_the_command_s_code(tmp_path: Path) -> None:
    result = _run_program(tmp_path, "", ["json", "--mock", "--schema", str(tmp_path / "none")])
    assert result.returncode == 2
    one_line_error(result.stderr, "none")


def test_a_profiler_still_gets_its_data_at_exit(tmp_path: Path) -> None:
    """`python -m cProfile -m mavera_cli`: the program leaves the normal way, the profile is
    written."""
    profile = tmp_path / "run.prof"
    result = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "mavera_cli", "--version"],
        capture_output=True,
        text=True,
        env=mavera_env(),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert profile.stat().st_size > 0


def test_a_byte_order_mark_opening_a_users_file_is_not_part_of_it(tmp_path: Path) -> None:
    """Windows Notepad starts a UTF-8 file with one. Before: a config file was 'not valid
    TOML', a schema file 'not valid JSON'."""
    bom = "\ufeff".encode()
    config = tmp_path / "config" / "mavera" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_bytes(bom + b'instructions = "be brief"\n')
    config.chmod(0o600)
    schema = tmp_path / "n.json"
    schema.write_bytes(bom + b'{"type": "object", "properties": {"n": {"type": "integer"}}}')
    functions = tmp_path / "f.json"
    functions.write_bytes(bom + json.dumps([WEATHER]).encode())
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = run_mavera(["json", "--mock", "--schema", str(schema), "give n"], env=env)
    assert json.loads(result.stdout) == {"n": 1}
    result = run_mavera(["tools", "--mock", "--functions", str(functions), "weather?"], env=env)
    assert json.loads(result.stdout.splitlines()[0])["name"] == WEATHER["name"]
    result = run_mavera(["config", "show"], env=env)
    assert "be brief" in result.stdout.decode()


def test_running_out_of_memory_is_one_line_not_a_bug_report() -> None:
    """An endless prompt on stdin under an 800 MB address-space limit. Before: "internal
    error (MemoryError: ); this is a bug in mavera"."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (800 * 2**20, 800 * 2**20))

    with open("/dev/zero", "rb") as zeros:
        proc = subprocess.run(
            [sys.executable, "-m", "mavera_cli", "stream", "--mock"],
            stdin=zeros,
            capture_output=True,
            env=mavera_env(),
            preexec_fn=limited,
            timeout=60,
        )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    one_line_error(stderr, "out of memory")
    assert "bug" not in stderr and "Traceback" not in stderr


def test_a_file_name_that_is_not_utf8_is_told_not_crashed_on(tmp_path: Path) -> None:
    """Such a name is a lone surrogate in Python: orjson refuses it, so the NDJSON error line
    (and inspect's report) ended in an internal error instead of the one-line usage error."""
    missing = os.fsdecode(bytes(tmp_path) + b"/nonexist\xe9.txt")
    result = run_mavera(["stream", "--mock", "--events", "-f", missing, "hi"], expect=2)
    assert json.loads(result.stdout)["exit_code"] == 2
    one_line_error(result.stderr, "cannot read")
    capture = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.sse")
    run_mavera(["stream", "--mock", "--save-raw", capture, "hi"])
    report = json.loads(run_mavera(["inspect", capture]).stdout)
    assert report["outcome"]["exit_code"] == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["stream", "--mock", "--save-raw", "r.sse", "hi"], 2, "cannot write r.sse"),
        (["stream", "--mock", "--session", "./talk", "hi"], 74, "cannot write session ./talk"),
    ],
)
def test_a_removed_current_directory_is_one_line(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    """A relative path there cannot be resolved (os.getcwd fails): that was an internal error."""
    gone = tmp_path / "gone"
    gone.mkdir()
    command = " ".join(["cd gone && rmdir ../gone && exec", sys.executable, "-m", "mavera_cli"])
    proc = subprocess.run(
        ["/bin/sh", "-c", f"{command} {' '.join(args)}"],
        cwd=tmp_path,
        capture_output=True,
        env=mavera_env(),
        timeout=30,
    )
    assert proc.returncode == code, proc.stderr
    one_line_error(proc.stderr.decode(), needle)


def test_the_mock_out_of_file_descriptors_waits_instead_of_spinning() -> None:
    """With no descriptor left, the listening socket stays readable and accept fails: the
    accept loop spun a CPU (1.8 s of CPU in a 2 s --timeout) until the client gave up."""

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (5, 5))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mavera_cli",
            "stream",
            "--mock",
            "--timeout",
            "2",
            "--retries",
            "0",
            "hi",
        ],
        capture_output=True,
        env=mavera_env(),
        preexec_fn=few_descriptors,
        timeout=60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 6, proc.stderr
    one_line_error(proc.stderr.decode(), "no answer for 2s")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert used < 1.2, f"{used:.2f} s of CPU"
