"""`chat`: a conversation, one turn per line, through the same connection, core and renderers.

On a terminal each line is read with `input()` after `import readline` (line editing, and a
history file in the state directory, written with the API key masked: a person may paste it
into the chat); bytes typed that are not UTF-8 become U+FFFD, as in piped chat; a failed
answer is told on stderr and the conversation goes on; Ctrl-C during an answer stops that
answer only (what arrived stays, the turn is not kept); Ctrl-C at the prompt clears the line;
Ctrl-D or `/exit` leaves. With stdin not a terminal, each line is one turn, the answers go to
stdout in order (each ends with a newline), and the first failure ends the chat with its exit
code, as a script expects.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import BinaryIO

from mavera_cli.conversation import Conversation
from mavera_cli.errors import MaveraError, UsageError
from mavera_cli.invocation import Connection, Invocation, invocation, standard_streams
from mavera_cli.options import RequestOptions
from mavera_cli.payload import build_payload
from mavera_cli.redact import Redactor
from mavera_cli.render import Renderer
from mavera_cli.render.choose import text_renderer
from mavera_cli.render.usage import UsageMeter
from mavera_cli.reporting import Reporter
from mavera_cli.sessions import state_dir, utf8_text

PROMPT = "> "
HISTORY_FILE = "chat_history"
HISTORY_LENGTH = 1000
COMMANDS_HELP = "/reset forgets the conversation, /exit (or Ctrl-D) leaves"


def run_chat(reporter: Reporter, opts: RequestOptions) -> None:
    """Hold a conversation: read a line, stream the answer, keep the completed turn."""
    if opts.files:
        raise UsageError("chat reads its prompts from the terminal or stdin: -f is not used")
    with invocation(reporter, opts) as inv:
        if inv.conversation is None:
            inv.conversation = Conversation.in_memory()
        inv.conversation.warn = inv.terminal.warn
        _, stdin, stdin_is_tty = standard_streams()
        if stdin is None:
            raise UsageError("chat needs its turns on stdin, and stdin is closed")
        with inv.connect() as api:
            if stdin_is_tty:
                _interactive(inv, api)
            else:
                _piped(inv, api, stdin)


def _piped(inv: Invocation, api: Connection, stdin: BinaryIO) -> None:
    for raw in stdin:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not _command(inv, line):
            return
        if line.strip() and not line.startswith("/"):
            _turn(inv, api, line)


def _interactive(inv: Invocation, api: Connection) -> None:
    inv.terminal.info(f"mavera chat: {COMMANDS_HELP}")
    with _line_history(inv):
        while True:
            try:
                line = utf8_text(_read_line(inv))
            except EOFError:
                _write_prompt_end(inv)
                return
            except KeyboardInterrupt:
                _write_prompt_end(inv)  # like a shell: a fresh prompt
                continue
            if not _command(inv, line):
                return
            if not line.strip() or line.startswith("/"):
                continue
            try:
                _turn(inv, api, line)
            except KeyboardInterrupt:
                inv.terminal.info("answer stopped; this turn is not kept")
            except MaveraError as error:
                # On a terminal the conversation goes on: the error is told, the turn dropped.
                inv.terminal.error(error.message)


def _command(inv: Invocation, line: str) -> bool:
    """Run a `/` command; False when the chat should end."""
    command = line.strip()
    if not command.startswith("/"):
        return True
    conversation = inv.conversation
    assert conversation is not None
    if command == "/exit":
        return False
    if command == "/reset":
        conversation.reset()
        inv.terminal.info("conversation reset")
    else:
        inv.terminal.warn(f"unknown command {command.split()[0]}: {COMMANDS_HELP}")
    return True


def _turn(inv: Invocation, api: Connection, prompt: str) -> None:
    """One turn: stream the answer; keep it only if the response completed."""
    conversation = inv.conversation
    assert conversation is not None
    renderer: Renderer = inv.show(
        text_renderer(
            inv.sink,
            inv.stdout,
            raw=inv.opts.raw,
            environ=inv.environ,
            no_color=inv.opts.no_color,
            secret=inv.settings.api_key,
        )
    )
    try:
        api.stream(build_payload(api.settings, prompt, stream=True), renderer)
    except BaseException:
        conversation.abandon()
        raise
    finally:
        inv.reporter.renderer = None  # the next turn has its own
    conversation.commit(api.settings)
    if inv.opts.usage:  # per turn, on stderr
        summary = inv.usage.summary()
        if summary is not None:
            inv.terminal.info(summary)
        inv.usage = UsageMeter()


def _read_line(inv: Invocation) -> str:
    if inv.stdout.isatty():
        return input(PROMPT)  # readline draws the prompt and edits the line
    # stdout is the product (a file, a pipe): the prompt goes to the terminal on stderr.
    if inv.terminal.decorative:
        sys.stderr.write(PROMPT)
        sys.stderr.flush()
    return input()


def _write_prompt_end(inv: Invocation) -> None:
    stream = sys.stdout if inv.stdout.isatty() else sys.stderr
    with contextlib.suppress(OSError, ValueError):
        stream.write("\n")
        stream.flush()


@contextlib.contextmanager
def _line_history(inv: Invocation) -> Iterator[None]:
    """readline's line editing, with the input history kept in the state directory (0600)."""
    try:
        import readline
    except ImportError:  # a Python without readline: plain input() still works
        yield
        return
    try:
        path = state_dir(inv.environ) / HISTORY_FILE
    except UsageError as error:  # no home for it: the chat goes on without a history file
        inv.terminal.warn(f"the input history is not kept: {error.message}")
        yield
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        _mask_history(readline, Redactor(inv.settings.api_key))
        with contextlib.suppress(OSError):
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            readline.write_history_file(path)


def _mask_history(readline: ModuleType, redactor: Redactor) -> None:
    """The key masked in every history line, those read from an older file included."""
    for index in range(readline.get_current_history_length()):
        line = readline.get_history_item(index + 1)  # 1-based, unlike replace_history_item
        if line is not None and (masked := redactor.text(line)) != line:
            readline.replace_history_item(index, masked)
