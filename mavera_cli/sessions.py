"""The session store: one JSON file per conversation under `$XDG_STATE_HOME/mavera/sessions/`.

A file is only ever replaced whole (a temp file in the same directory, fsync, rename), so a
crash or `kill -9` at any moment leaves either the old file or the new one, never half of
either. Files are created 0600 in a 0700 directory. The API key is masked in every string
before anything is written (a server may echo it back inside an answer).

A NAME without `/` names a file in the sessions directory; a NAME with `/` is a path. A
session file that is a symlink is written through: the new file replaces the link's target
(beside it, so still atomically), and the link stays. The most recently used session (for
`-c`) is recorded in a small pointer file beside the directory, also replaced atomically;
failing to write it does not fail the turn (the caller is given a warning to tell).

A file is read as a session only if it is a regular file (a FIFO would block) holding UTF-8
JSON that orjson can write back exactly, as every later request and `sessions show --json`
must: no lone surrogate, no integer beyond 64 bits, no NaN or infinity, no deep nesting.
Anything else is "not a mavera session file" (mavera never writes such a file), never a
value silently changed.

Two commands may continue one session at once (two terminals, a script in the background):
every write is a read-modify-write of the file as stored *then*, under a lock on its
directory (`update_session`), so a turn another command added meanwhile is kept, never
overwritten by a copy loaded earlier.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mavera_cli.config import xdg_dir
from mavera_cli.errors import OutputFailedError, UsageError
from mavera_cli.jsonin import strict_loads
from mavera_cli.redact import Redactor

FORMAT_VERSION = 1
# The settings a session remembers from the turn that started it.
REMEMBERED_SETTINGS = ("persona", "model", "instructions")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SUFFIX = ".json"
# A stored time is a Unix time a calendar can show (time.localtime): up to 9999-12-31.
_LATEST_TIME = 253_402_300_799
# What a file may fail with when read as a session: it is not one. (RecursionError: JSON
# nested deeper than Python's parser goes.)
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, RecursionError)
# The integers orjson writes: signed 64-bit up to unsigned 64-bit.
_INTEGERS = range(-(2**63), 2**64)

Item = dict[str, Any]


def state_dir(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/mavera`, default `~/.local/state/mavera` (see config.xdg_dir)."""
    return (
        xdg_dir(environ, "XDG_STATE_HOME", ".local/state", "mavera's state (sessions)") / "mavera"
    )


def sessions_dir(environ: Mapping[str, str]) -> Path:
    return state_dir(environ) / "sessions"


def utf8_text(text: str) -> str:
    """`text` as UTF-8 can hold it: bytes that were not UTF-8, which Python keeps as lone
    surrogates (PEP 383: argv, file names, `input()`), become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no undecodable byte makes
        return text.encode("utf-8", "replace").decode("utf-8")


def session_path(name: str, environ: Mapping[str, str]) -> Path:
    """Where session NAME lives: a path if it holds `/`, else a file in the sessions dir."""
    if "/" in name:
        return Path(name).expanduser()
    if not _PLAIN_NAME.fullmatch(name):
        raise UsageError(
            f"invalid session name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit), or a path containing '/'"
        )
    return sessions_dir(environ) / (name + _SUFFIX)


@dataclass
class Turn:
    """One completed exchange: the user's message, then every item the turn added (the
    response's output items, function calls and their outputs, later rounds' outputs)."""

    items: list[Item]
    response_id: str | None = None
    at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"items": self.items, "response_id": self.response_id, "at": self.at}


@dataclass
class Session:
    """A conversation as stored: its remembered settings and its completed turns."""

    name: str
    path: Path
    settings: dict[str, str] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    created: float = 0.0
    last_used: float = 0.0
    exists: bool = False

    def history(self) -> list[Item]:
        """Every earlier item, in order: what goes into `input` before the new prompt."""
        return [item for turn in self.turns for item in turn.items]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "name": utf8_text(self.name),  # a path's name may hold bytes that are not UTF-8
            "created": self.created,
            "last_used": self.last_used,
            "settings": self.settings,
            "turns": [turn.as_json() for turn in self.turns],
        }


class NotASessionFile(Exception):
    """The file is there, but it is not a session mavera could have written."""

    def __init__(self, name: str, path: Path, why: str = "") -> None:
        super().__init__(
            f"session {name} ({path}) is not a mavera session file" + (f" ({why})" if why else "")
        )


def load_session(name: str, environ: Mapping[str, str]) -> Session:
    """Session NAME as stored, or a new empty one (not yet written) if there is none."""
    path = session_path(name, environ)
    try:
        return _read_stored(name, path) or Session(name, path)
    except OSError as exc:
        raise UsageError(f"cannot read session {name} ({path}): {exc.strerror or exc}") from exc
    except NotASessionFile as exc:
        raise UsageError(str(exc)) from exc


def _read_stored(name: str, path: Path) -> Session | None:
    """The session stored at `path`, None if there is no file; OSError if it cannot be read,
    NotASessionFile if it is not a session."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; its type is checked next.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotASessionFile(name, path, "not a regular file")
        data = file.read()
    try:
        document = strict_loads(data.decode("utf-8"), parse_int=_integer, parse_float=_finite)
        orjson.dumps(document)  # a lone surrogate, or nesting deeper than orjson writes
        return _session_from(name, path, document)
    except _MALFORMED as exc:
        raise NotASessionFile(name, path) from exc


def _integer(text: str) -> int:
    value = int(text)
    if value not in _INTEGERS:
        raise ValueError("an integer beyond 64 bits")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number beyond a double")
    return value


def _session_from(name: str, path: Path, data: Any) -> Session:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError("not a session")
    if not isinstance(data["turns"], list):
        raise ValueError("bad turns")
    turns = []
    for turn in data["turns"]:
        items = turn["items"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("bad turn")
        response_id = turn.get("response_id")
        turns.append(
            Turn(
                items,
                response_id if isinstance(response_id, str) else None,
                _time(turn.get("at")),
            )
        )
    settings = {
        key: value
        for key, value in dict(data.get("settings") or {}).items()
        if key in REMEMBERED_SETTINGS and isinstance(value, str)
    }
    stored_name = data.get("name")
    return Session(
        stored_name if isinstance(stored_name, str) and stored_name else name,
        path,
        settings,
        turns,
        _time(data.get("created")),
        _time(data.get("last_used")),
        exists=True,
    )


def _time(value: Any) -> float:
    """A stored Unix time (0 when there is none); ValueError unless a calendar can show it."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a time is a number")
    if not (math.isfinite(value) and 0 <= value <= _LATEST_TIME):
        raise ValueError("a time out of range")
    return float(value)


def save_session(session: Session, secret: str | None, environ: Mapping[str, str]) -> str | None:
    """Write the whole session atomically (0600), the key masked, and mark it most recent.

    Returns a warning to tell when the session was written but could not be marked (-c will
    not find it): the turn itself was kept, so that is no failure of the command.
    """
    now = time.time()
    session.created = session.created or now
    session.last_used = now
    data = _masked(session.as_json(), Redactor(secret))
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    try:
        write_atomically(_stored_at(session.path), text.encode("utf-8"))
    except OSError as exc:  # output that cannot be written, like a full disk for --save-raw
        raise OutputFailedError(
            f"cannot write session {session.name} ({session.path}): {exc.strerror or exc}"
        ) from exc
    session.exists = True
    unmarked = f"session {session.name} was saved, but -c will not find it"
    try:
        pointer = _last_pointer(environ)
    except UsageError as exc:
        return f"{unmarked}: {exc.message}"
    # JSON (\u escapes): any path round-trips, trailing spaces and undecodable bytes too.
    try:
        marker = json.dumps({"path": str(session.path.resolve())}).encode()
        write_atomically(pointer, marker)
    except OSError as exc:  # (resolve: the current directory may have been removed)
        return f"{unmarked}: cannot write {exc.filename or pointer}: {exc.strerror or exc}"
    return None


def _stored_at(path: Path) -> Path:
    """Where the file of the session at `path` really is: a symlink's final target, so that
    a write replaces the target (the link stays a link) and locks the target's directory."""
    try:
        return Path(os.path.realpath(path))
    except OSError:  # the current directory was removed: writing there fails, and says so
        return path


def update_session(
    session: Session,
    change: Callable[[Session], None],
    secret: str | None,
    environ: Mapping[str, str],
) -> str | None:
    """Apply `change` to the session as stored now, write it, and make `session` that;
    returns `save_session`'s warning, if any.

    Another command may have added turns since `session` was loaded: they stay. The lock
    on the directory holds off such a command's own read-modify-write meanwhile.
    """
    with _directory_locked(_stored_at(session.path).parent):
        current = _stored_now(session)
        change(current)
        warning = save_session(current, secret, environ)
    session.settings, session.turns = current.settings, current.turns
    session.created, session.last_used = current.created, current.last_used
    session.exists = current.exists
    return warning


def _stored_now(session: Session) -> Session:
    """The session as its file holds it now; `session` itself if there is no file (yet, or
    any more: `sessions rm` while a turn ran)."""
    try:
        return _read_stored(session.name, session.path) or session
    except OSError as exc:
        raise OutputFailedError(
            f"cannot read session {session.name} ({session.path}) to update it: "
            f"{exc.strerror or exc}"
        ) from exc
    except NotASessionFile as exc:
        raise OutputFailedError(
            f"session {session.name} ({session.path}) is no longer a mavera session file; "
            "it was left as it is"
        ) from exc


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on `directory` while the block runs. Best effort: where the system
    cannot lock (no `fcntl`, a file system without locks), the write goes ahead unlocked."""
    try:
        import fcntl

        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file beside it (0600), fsync, rename, fsync the dir."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _masked(value: Any, redactor: Redactor) -> Any:
    """`value` with the key masked in every string (keys of objects included)."""
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, list):
        return [_masked(item, redactor) for item in value]
    if isinstance(value, dict):
        return {redactor.text(key): _masked(item, redactor) for key, item in value.items()}
    return value


def _last_pointer(environ: Mapping[str, str]) -> Path:
    return state_dir(environ) / "last-session"


def most_recent_session(environ: Mapping[str, str]) -> str:
    """The path of the most recently used session, for `-c/--continue`."""
    try:
        text = _last_pointer(environ).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    try:
        path = json.loads(text)["path"]
    except (ValueError, TypeError, KeyError):
        # Written before the pointer was JSON: the path, then one newline.
        path = text.removesuffix("\n")
    if not isinstance(path, str) or not path or not Path(path).is_file():
        raise UsageError("no session to continue: start one with --session NAME")
    return path


@dataclass(frozen=True)
class SessionSummary:
    """One row of `mavera sessions`."""

    name: str
    turns: int
    last_used: float
    persona: str | None


def list_sessions(environ: Mapping[str, str]) -> list[SessionSummary]:
    """The sessions in the sessions directory, most recently used first. Skipped: what is
    not a session or cannot be read, and names that are not UTF-8 (no output can show them
    as they are, nor `--session NAME` name them)."""
    directory = sessions_dir(environ)
    try:
        paths = sorted(directory.glob("*" + _SUFFIX))
    except OSError:
        return []
    rows = []
    for path in paths:
        name = path.name[: -len(_SUFFIX)]
        if utf8_text(name) != name:
            continue
        try:
            session = _read_stored(name, path)
        except (OSError, NotASessionFile):
            continue
        if session is None:  # removed since the listing
            continue
        rows.append(
            SessionSummary(
                name, len(session.turns), session.last_used, session.settings.get("persona")
            )
        )
    rows.sort(key=lambda row: row.last_used, reverse=True)
    return rows


def remove_session(name: str, environ: Mapping[str, str]) -> Path:
    """Delete session NAME; a usage error if there is none, or if the file is not a session
    (a NAME with `/` may be any path: `sessions rm ./main.py` must not delete a program)."""
    path = session_path(name, environ)
    missing = f"no session named {name} ({path})"
    try:
        if _read_stored(name, path) is None:
            raise UsageError(missing)
        path.unlink()
    except FileNotFoundError:  # removed meanwhile
        raise UsageError(missing) from None
    except NotASessionFile as exc:
        raise UsageError(f"{exc}: it was not removed") from exc
    except OSError as exc:
        raise UsageError(f"cannot remove session {name} ({path}): {exc.strerror}") from exc
    return path
