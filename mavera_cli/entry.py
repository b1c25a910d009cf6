"""The process boundary: run the CLI, turn every failure into one stderr line and an exit code.

This is the only place in the package that catches broad exceptions.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from mavera_cli import __version__
from mavera_cli.errors import (
    ENDING_SIGNALS,
    ExitCode,
    MaveraError,
    OutputClosed,
    OutputFailedError,
    Terminated,
    cause_of,
)

if TYPE_CHECKING:
    from mavera_cli.reporting import Reporter

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a tool killed by SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run `mavera` with `argv` (default: sys.argv[1:]); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        # Answered before typer, httpx or rich are imported: start-up stays cheap.
        sys.stdout.write(f"mavera {__version__}\n")
        sys.stdout.flush()
        return 0
    _import_with_signals_held()
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    # Closing the terminal sends SIGHUP, Ctrl-\ SIGQUIT: ended as by SIGTERM (nothing left
    # behind, no core), unless ignored (`nohup`) or handled by someone else.
    ending = [sig for sig in ENDING_SIGNALS if signal.getsignal(sig) is signal.SIG_DFL]
    for sig in ending:
        signal.signal(sig, _terminate)
    try:
        try:
            return _run(args)
        except Terminated as stop:  # before _run could report it (its first imports)
            return stop.status
        except KeyboardInterrupt:
            return int(ExitCode.interrupted)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        for sig in ending:
            signal.signal(sig, signal.SIG_DFL)


def run() -> NoReturn:
    """The `mavera` program: main(), then leave without tearing the interpreter down."""
    code = main()
    # Every command has written and closed what it opened by now: what is left is freeing
    # every module and object one by one, about 25 ms after each command (on loopback, more
    # than a short `stream` spends on its answer). Skipped only when nothing can be lost:
    # the atexit handlers run, the standard streams flush, no other thread is at work, and
    # no profiler or coverage tool waits for the script to return to write its data.
    main_thread = threading.main_thread()
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # private; in every CPython 3
    if (
        run_exit_handlers is None
        or _watched()
        or any(not t.daemon for t in threading.enumerate() if t is not main_thread)
    ):
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let the interpreter's own exit report or swallow it, as before
    os._exit(code)


def _watched() -> bool:
    """Whether a profiler, debugger or coverage tool is running (`python -m cProfile -m
    mavera_cli`, `coverage run -m mavera_cli`): they write their data after the script."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring: Any = getattr(sys, "monitoring", None)  # Python 3.12+: coverage's sysmon core
    return monitoring is not None and any(monitoring.get_tool(i) is not None for i in range(6))


def _import_with_signals_held() -> None:
    """orjson's module initialisation does not survive an exception that a signal handler
    raises while it runs (Ctrl-C, or our SIGTERM's, 25–50 ms into a start: a segfault). It
    is imported first, with those signals held: one that came meanwhile is handled after."""
    if "orjson" in sys.modules:
        return
    held = {signal.SIGINT, signal.SIGTERM, *ENDING_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        import orjson  # noqa: F401  (for its side effect: loaded whole)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _run(args: list[str]) -> int:
    from mavera_cli.reporting import Reporter

    reporter = Reporter()
    try:
        import typer

        from mavera_cli import cli

        try:
            result = cli.app_for(args)(
                args=args, prog_name="mavera", standalone_mode=False, obj=reporter
            )
        except typer.TyperException as exc:  # Click's usage errors (bad flag, missing value)
            show = getattr(exc, "show", None)
            if show is not None:
                show()
            else:
                sys.stderr.write(f"Error: {exc.format_message()}\n")
            return int(getattr(exc, "exit_code", ExitCode.usage))
        except typer.Abort:
            raise KeyboardInterrupt from None
        _flush_stdout()
        return int(result) if isinstance(result, int) else 0
    except MaveraError as error:
        reporter.report(error)
        if isinstance(error, OutputFailedError):
            _discard_stdout()  # what could not be written must not fail again at exit
        else:
            _flush_stdout()
        return int(error.exit_code)
    except KeyboardInterrupt:
        _flush_stdout()
        return int(ExitCode.interrupted)
    except Terminated as stop:
        _flush_stdout()
        return stop.status
    except (BrokenPipeError, OutputClosed):
        return _broken_pipe()
    except MemoryError:  # the system's limit (ulimit -v, a container's), not a bug of ours
        return _out_of_memory(reporter)
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            return _internal_error(reporter, exc)
        return _out_of_memory(reporter)  # a thread's stack or a mapping refused
    except RuntimeError as exc:
        if "can't start new thread" not in str(exc):
            return _internal_error(reporter, exc)
        return _out_of_memory(reporter)
    except ImportError as exc:
        # A C extension the loader could not map in (ENOMEM, in the loader's words).
        if "failed to map segment" not in str(exc) and "allocate memory" not in str(exc):
            return _internal_error(reporter, exc)
        return _out_of_memory(reporter)
    except Exception as exc:  # the one broad catch: a bug must still end with one line
        return _internal_error(reporter, exc)


# Made before it is needed: telling it must not need memory the system just refused.
_OUT_OF_MEMORY = b"mavera: error: out of memory: the system refused mavera more (ulimit -v?)\n"


def _out_of_memory(reporter: Reporter) -> int:
    _flush_stdout()
    if not reporter.diagnostics.quiet:
        with contextlib.suppress(OSError):
            os.write(2, _OUT_OF_MEMORY)
    return int(ExitCode.internal)


def _internal_error(reporter: Reporter, exc: BaseException) -> int:
    _flush_stdout()
    stop = cause_of(exc, (Terminated, KeyboardInterrupt))
    if stop is not None:
        # Ctrl-C or SIGTERM while Python ran code whose exceptions it wraps (a class body's
        # __set_name__, as a module is imported at start-up): the signal, not a bug.
        return stop.status if isinstance(stop, Terminated) else int(ExitCode.interrupted)
    reporter.error(
        f"internal error ({type(exc).__name__}: {exc}); this is a bug in mavera "
        f"{__version__}, please report it with the command you ran"
    )
    return int(ExitCode.internal)


def _flush_stdout() -> None:
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _broken_pipe()
    except (OSError, ValueError):
        pass


def _broken_pipe() -> int:
    # The reader went away (`| head`): leave without a word, like other Unix tools.
    _discard_stdout()
    return SIGPIPE_EXIT


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
