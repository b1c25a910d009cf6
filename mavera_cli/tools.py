"""Function calling: `--functions` files, `--exec NAME=COMMAND` subprocesses, and the tool loop.

Model output never reaches a shell or an argv: a call's arguments travel only on the command's
stdin. HTTP and rendering stay outside; the loop is handed a callable that streams one round.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mavera_cli.config import seconds
from mavera_cli.errors import ENDING_SIGNALS, InvalidOutputError, ToolFailedError, UsageError
from mavera_cli.events import FunctionCall
from mavera_cli.redact import Redactor
from mavera_cli.schema import check_depth, read_document

DEFAULT_TOOL_TIMEOUT = 60.0
DEFAULT_MAX_ROUNDS = 10
TOOL_CHOICE_MODES = ("auto", "required", "none")
# What OpenAI accepts as a function name; Mavera documents snake_case names.
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
# The key of the person running `mavera` is not the tool's business.
_WITHHELD_FROM_TOOLS = ("MAVERA_API_KEY",)
# After a kill, how long to wait for the command to be reaped before leaving it to the kernel.
_REAP_SECONDS = 2.0
# The most a tool may write to stdout; past it the tool is killed (exit 12, or with
# --tool-errors send the model is told). The output goes back to the model as one input item,
# and a model's whole context is about this size. Documented in --exec's help and the README.
MAX_TOOL_OUTPUT = 1024 * 1024
# What is read or written per system call: the size of a Linux pipe buffer.
_PIPE_CHUNK = 64 * 1024

ToolChoice = str | dict[str, Any]
Item = dict[str, Any]


# --- --functions ------------------------------------------------------------------------------


def load_functions(path: str) -> list[dict[str, Any]]:
    """Read `--functions FILE`: tools in the flat Responses format, ready for the payload.

    The file holds a JSON array of tools, an object with a `tools` array (a saved request
    body works), or a single tool. Each tool is flat (`{type, name, description, parameters,
    strict}`) or nested as in Chat Completions (`{type, function: {...}}`, converted here).
    """
    data = read_document(path, f"--functions {path}")
    try:
        text = data.decode("utf-8-sig")  # a byte order mark is not JSON
    except UnicodeDecodeError as exc:
        raise UsageError(f"--functions {path} is not UTF-8 text") from exc
    too_deep = f"--functions {path} is nested too deeply to be a list of tools"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--functions {path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(too_deep) from exc
    check_depth(document, too_deep)
    if isinstance(document, dict) and "tools" in document:
        document = document["tools"]
    elif isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise UsageError(
            f"--functions {path}: expected a JSON array of tools or an object with a `tools` array"
        )
    if not document:
        raise UsageError(f"--functions {path} defines no tools")
    functions = [
        _flat_function(tool, f"--functions {path}: tool {n}") for n, tool in enumerate(document, 1)
    ]
    seen: set[str] = set()
    for function in functions:
        if function["name"] in seen:
            raise UsageError(f"--functions {path}: function {function['name']!r} is defined twice")
        seen.add(function["name"])
    return functions


def _flat_function(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise UsageError(f"{where}: expected an object, got {type(tool).__name__}")
    kind = tool.get("type", "function")
    if kind != "function":
        raise UsageError(f"{where}: only function tools are supported, not type {kind!r}")
    nested = tool.get("function")
    if nested is not None:
        if not isinstance(nested, dict):
            raise UsageError(f"{where}: `function` must be an object")
        tool = nested
    flat: dict[str, Any] = {**tool, "type": "function"}
    flat.pop("function", None)
    name = flat.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise UsageError(f"{where}: `name` must be 1-64 letters, digits, _ or -, got {name!r}")
    where = f"{where} ({name})"
    if "description" in flat and not isinstance(flat["description"], str):
        raise UsageError(f"{where}: `description` must be a string")
    parameters = flat.get("parameters")
    if parameters is None:
        flat["parameters"] = dict(_EMPTY_PARAMETERS)
    elif not isinstance(parameters, dict):
        raise UsageError(f"{where}: `parameters` must be a JSON Schema object")
    if "strict" in flat and not isinstance(flat["strict"], bool):
        raise UsageError(f"{where}: `strict` must be true or false")
    return flat


def function_names(functions: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names of loaded function tools, in file order."""
    return [str(function["name"]) for function in functions]


def parse_tool_choice(value: str | None, names: Sequence[str]) -> ToolChoice | None:
    """`--tool-choice`: auto, required, none, or a function NAME (sent as an object)."""
    if value is None:
        return None
    if value in TOOL_CHOICE_MODES:
        return value
    if value in names:
        return {"type": "function", "name": value}
    raise UsageError(
        f"--tool-choice {value!r}: expected auto, required, none or one of the functions "
        f"({', '.join(names)})"
    )


def later_tool_choice(choice: ToolChoice | None) -> ToolChoice | None:
    """The choice for rounds after the first: a forced call would otherwise loop forever."""
    if choice == "required" or isinstance(choice, dict):
        return "auto"
    return choice


# --- --exec -----------------------------------------------------------------------------------


def parse_exec(
    specs: Sequence[str], names: Sequence[str], search_path: str | None
) -> dict[str, list[str]]:
    """`--exec NAME=COMMAND` flags → argv per function name; COMMAND is split like a shell would."""
    commands: dict[str, list[str]] = {}
    for spec in specs:
        name, equals, command = spec.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UsageError(f"--exec {spec!r}: expected NAME=COMMAND")
        if name not in names:
            raise UsageError(f"--exec {name}: no such function in --functions ({', '.join(names)})")
        if name in commands:
            raise UsageError(f"--exec {name} is given twice")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"--exec {name}: cannot split the command: {exc}") from exc
        if not argv:
            raise UsageError(f"--exec {name}: the command is empty")
        if shutil.which(argv[0], path=search_path) is None:
            raise UsageError(f"--exec {name}: command not found or not executable: {argv[0]}")
        commands[name] = argv
    return commands


def parse_arguments(call: FunctionCall) -> dict[str, Any]:
    """A call's arguments as a JSON object (see FunctionCall.parsed_arguments), else exit 11."""
    return call.parsed_arguments()


def check_arguments(calls: Iterable[FunctionCall]) -> None:
    """Raise InvalidOutputError (exit 11) if any call's arguments are not a JSON object."""
    for call in calls:
        parse_arguments(call)


def tool_environment(
    environ: Mapping[str, str], name: str, call_id: str, secret: str | None = None
) -> dict[str, str]:
    """The command's environment: ours without the API key, plus the call's name and id
    (the server's text: the key masked in it, wherever the server echoed it)."""
    env = {key: value for key, value in environ.items() if key not in _WITHHELD_FROM_TOOLS}
    redactor = Redactor(secret)
    env["MAVERA_TOOL_NAME"] = redactor.text(name)
    env["MAVERA_TOOL_CALL_ID"] = redactor.text(call_id)
    return env


def run_command(
    argv: Sequence[str],
    arguments: bytes,
    env: Mapping[str, str],
    timeout: float,
    max_output: int = MAX_TOOL_OUTPUT,
) -> bytes:
    """Run one command without a shell, `arguments` on its stdin; return its stdout.

    Its stderr is ours: passed straight through, never read into memory. It gets its own
    process group, so a timeout or Ctrl-C ends everything it started. Failing to start, a
    non-zero exit, the timeout, or more than `max_output` bytes on stdout (it is killed then:
    the output goes to the model, and nothing useful is that long) raise ToolFailedError.
    """
    with _signals_held() as release:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolFailedError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            release()  # a Ctrl-C, SIGTERM or --max-time that came meanwhile: handled here
            return _finish(proc, arguments, timeout, max_output)
        except ToolFailedError:
            raise  # the command ended, or _finish killed it
        except BaseException:
            _kill(proc)  # Ctrl-C, SIGTERM, SIGHUP, SIGQUIT: leave nothing running behind us
            raise


# The signals whose Python handlers raise (Ctrl-C, SIGTERM and the others entry ends as it,
# --max-time's timer).
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, *ENDING_SIGNALS)


@contextlib.contextmanager
def _signals_held() -> Iterator[Callable[[], None]]:
    """Hold the interrupting signals until `release()`: one that came while Popen was
    starting the command would leave it running, unknown to us (Popen does not stop a
    child it has started when interrupted), to write on our stderr after our last line."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None  # (signal handlers run in the main thread only)
        return
    held: list[int] = []
    previous: dict[int, Any] = {}
    for signum in _INTERRUPTS:
        if callable(signal.getsignal(signum)):
            previous[signum] = signal.signal(signum, lambda signum, frame: held.append(signum))

    def release() -> None:
        while previous:
            signum, handler = previous.popitem()
            signal.signal(signum, handler)
        pending = list(dict.fromkeys(held))
        held.clear()
        for signum in pending:
            signal.raise_signal(signum)  # its own handler runs now (and may raise)

    try:
        yield release
    finally:
        release()


def _finish(
    proc: subprocess.Popen[bytes], arguments: bytes, timeout: float, max_output: int
) -> bytes:
    """Give the started command its arguments, collect its stdout, and wait for it."""
    try:
        deadline = time.monotonic() + timeout
        stdout = _exchange(proc, arguments, deadline, max_output)
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except _OutputTooLarge as exc:
        _kill(proc)
        raise ToolFailedError(
            f"wrote more than {_size(max_output)} to stdout (the limit for a tool's output) "
            "and was killed"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        _kill(proc)
        raise ToolFailedError(f"ran past --tool-timeout {timeout:g}s and was killed") from exc
    if proc.returncode < 0:
        raise ToolFailedError(f"was killed by {_signal_name(-proc.returncode)}")
    if proc.returncode != 0:
        raise ToolFailedError(f"exited with status {proc.returncode}")
    return stdout


class _OutputTooLarge(Exception):
    """The command wrote more to stdout than a tool's output may be."""


def _exchange(
    proc: subprocess.Popen[bytes], arguments: bytes, deadline: float, max_output: int
) -> bytes:
    """Feed `arguments` to the command's stdin while reading its stdout, until stdout closes.

    Both at once, as `communicate` does (a command may write before it has read everything),
    but reading stops as soon as the output passes `max_output`: memory stays bounded.
    """
    assert proc.stdin is not None and proc.stdout is not None
    pending = memoryview(arguments)
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, remaining)
            for key, _ in selector.select(remaining):
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(key.fd, pending[:_PIPE_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]  # it stopped reading: its exit status speaks
                    if not pending:
                        selector.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                data = os.read(key.fd, _PIPE_CHUNK)
                if not data:
                    selector.unregister(proc.stdout)
                    continue
                size += len(data)
                if size > max_output:
                    raise _OutputTooLarge()
                chunks.append(data)
    return b"".join(chunks)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    # Its output is not wanted any more: closing our ends (rather than draining them) also
    # stops anything outside the group that still writes to the pipe.
    # (Nothing is buffered in them: `_exchange` writes and reads the descriptors directly.)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    # A process stuck in uninterruptible I/O dies when that ends; the kernel reaps it then.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_REAP_SECONDS)


def _size(count: int) -> str:
    """A byte count as limits are spelled in the help: 1 MiB, 64 KiB."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class ToolExecutor:
    """Answers function calls by running their `--exec` commands, one after another."""

    commands: Mapping[str, Sequence[str]]
    environ: Mapping[str, str]
    timeout: float = DEFAULT_TOOL_TIMEOUT
    send_errors: bool = False
    warn: Callable[[str], None] = lambda message: None
    debug: Callable[[str], None] = lambda message: None
    secret: str | None = None  # the API key, masked in what the command is told

    def __post_init__(self) -> None:
        seconds("--tool-timeout", self.timeout)  # a UsageError unless 0 < timeout <= the cap

    def check(self, calls: Sequence[FunctionCall]) -> None:
        """Before anything runs: every call is valid and has a command to answer it."""
        check_arguments(calls)
        for call in calls:
            if call.name not in self.commands:
                name = call.short_name if call.name else "(no name)"
                raise ToolFailedError(
                    f"the model called {name!r}, which has no --exec command (add --exec "
                    f"{name if call.name else 'NAME'}=COMMAND)"
                )
            if "\0" in call.call_id:
                raise InvalidOutputError(f"function call {call.short_name}: call_id contains a NUL")

    def answer(self, call: FunctionCall) -> str:
        """Run the call's command; its stdout (or, with --tool-errors send, the failure)."""
        argv = self.commands[call.name]
        env = tool_environment(self.environ, call.name, call.call_id, self.secret)
        # No arguments at all ("", as some servers send for a function without parameters)
        # are the empty object the call is shown with: the command gets JSON on its stdin.
        arguments = call.arguments_text if call.arguments_text.strip() else "{}"
        started = time.monotonic()
        try:
            stdout = run_command(argv, arguments.encode(), env, self.timeout)
        except ToolFailedError as error:
            message = f"--exec {call.label}: {shlex.join(argv)} {error.message}"
            if not self.send_errors:
                raise ToolFailedError(message) from error
            self.warn(f"{message}; the failure is sent to the model")
            return f"error: the tool {error.message}"
        self.debug(
            f"--exec {call.label}: exit 0 after "
            f"{time.monotonic() - started:.2f}s, {len(stdout)} bytes of output"
        )
        return stdout.decode("utf-8", "replace")


# --- the loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    """What one streamed response gave: its function calls and any text the model wrote."""

    calls: list[FunctionCall]
    text: str = ""


SendRound = Callable[[str | list[Item], ToolChoice | None], RoundResult]


@dataclass
class Conversation:
    """The input items so far: the user's prompt, then each round's calls and their outputs."""

    prompt: str
    items: list[Item] = field(default_factory=list)

    @property
    def input(self) -> str | list[Item]:
        """The first request sends the prompt as `stream` does; later ones the whole history."""
        if not self.items:
            return self.prompt
        return [{"role": "user", "content": self.prompt}, *self.items]

    def add_round(self, text: str, answered: Sequence[tuple[FunctionCall, str]]) -> None:
        if text:
            self.items.append({"role": "assistant", "content": text})
        for call, output in answered:
            self.items.append(call.as_item())
            self.items.append(
                {"type": "function_call_output", "call_id": call.call_id, "output": output}
            )


def run_tool_loop(
    prompt: str,
    send: SendRound,
    executor: ToolExecutor,
    *,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    tool_choice: ToolChoice | None = None,
) -> Conversation:
    """Stream, run every call of the response, send the outputs back; until the model answers.

    `max_rounds` bounds how many times tools run; a response that still calls tools after
    that many rounds ends the loop with ToolFailedError (exit 12), before anything else runs.
    """
    if max_rounds < 1:
        raise UsageError(f"--max-rounds must be at least 1, got {max_rounds}")
    conversation = Conversation(prompt)
    choice = tool_choice
    rounds = 0
    while True:
        result = send(conversation.input, choice)
        if not result.calls:
            return conversation
        if rounds == max_rounds:
            raise ToolFailedError(
                f"the model still called tools after {rounds} round{'s' * (rounds != 1)} "
                f"(--max-rounds {max_rounds})"
            )
        executor.check(result.calls)
        answered = [(call, executor.answer(call)) for call in result.calls]
        conversation.add_round(result.text, answered)
        rounds += 1
        choice = later_tool_choice(choice)
