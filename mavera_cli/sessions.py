"""The session store: one JSON file per conversation under `$XDG_STATE_HOME/mavera/sessions/`.

A file is only ever replaced whole (a temp file in the same directory, fsync, rename), so a
crash or `kill -9` at any moment leaves either the old file or the new one, never half of
either. Files are created 0600 in a 0700 directory. The API key is masked in every string
before anything is written (a server may echo it back inside an answer).

A NAME without `/` names a file in the sessions directory; a NAME with `/` is a path. The
most recently used session (for `-c`) is recorded in a small pointer file beside the
directory, also replaced atomically.

Two commands may continue one session at once (two terminals, a script in the background):
every write is a read-modify-write of the file as stored *then*, under a lock on its
directory (`update_session`), so a turn another command added meanwhile is kept, never
overwritten by a copy loaded earlier.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mavera_cli.errors import OutputFailedError, UsageError
from mavera_cli.redact import Redactor

FORMAT_VERSION = 1
# The settings a session remembers from the turn that started it.
REMEMBERED_SETTINGS = ("persona", "model", "instructions")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SUFFIX = ".json"

Item = dict[str, Any]


def state_dir(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/mavera`, default `~/.local/state/mavera`."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / "mavera"


def sessions_dir(environ: Mapping[str, str]) -> Path:
    return state_dir(environ) / "sessions"


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
            "name": self.name,
            "created": self.created,
            "last_used": self.last_used,
            "settings": self.settings,
            "turns": [turn.as_json() for turn in self.turns],
        }


def load_session(name: str, environ: Mapping[str, str]) -> Session:
    """Session NAME as stored, or a new empty one (not yet written) if there is none."""
    path = session_path(name, environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Session(name, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read session {name} ({path}): {exc}") from exc
    try:
        data = json.loads(text)
        return _session_from(name, path, data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"session {name} ({path}) is not a mavera session file") from exc


def _session_from(name: str, path: Path, data: Any) -> Session:
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError("not a session")
    turns = []
    for turn in data["turns"]:
        items = turn["items"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("bad turn")
        turns.append(Turn(items, turn.get("response_id"), float(turn.get("at") or 0)))
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
        float(data.get("created") or 0),
        float(data.get("last_used") or 0),
        exists=True,
    )


def save_session(session: Session, secret: str | None, environ: Mapping[str, str]) -> None:
    """Write the whole session atomically (0600), the key masked, and mark it most recent."""
    now = time.time()
    session.created = session.created or now
    session.last_used = now
    data = _masked(session.as_json(), Redactor(secret))
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    try:
        write_atomically(session.path, text.encode("utf-8"))
        session.exists = True
        write_atomically(_last_pointer(environ), (str(session.path.resolve()) + "\n").encode())
    except OSError as exc:  # output that cannot be written, like a full disk for --save-raw
        raise OutputFailedError(
            f"cannot write session {session.name} ({session.path}): {exc.strerror or exc}"
        ) from exc


def update_session(
    session: Session,
    change: Callable[[Session], None],
    secret: str | None,
    environ: Mapping[str, str],
) -> None:
    """Apply `change` to the session as stored now, write it, and make `session` that.

    Another command may have added turns since `session` was loaded: they stay. The lock
    on the directory holds off such a command's own read-modify-write meanwhile.
    """
    with _directory_locked(session.path.parent):
        current = _stored_now(session)
        change(current)
        save_session(current, secret, environ)
    session.settings, session.turns = current.settings, current.turns
    session.created, session.last_used = current.created, current.last_used
    session.exists = current.exists


def _stored_now(session: Session) -> Session:
    """The session as its file holds it now; `session` itself if there is no file (yet, or
    any more: `sessions rm` while a turn ran)."""
    try:
        text = session.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return session
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputFailedError(
            f"cannot read session {session.name} ({session.path}) to update it: {exc}"
        ) from exc
    try:
        return _session_from(session.name, session.path, json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
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
        text = _last_pointer(environ).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if not text or not Path(text).is_file():
        raise UsageError("no session to continue: start one with --session NAME")
    return text


@dataclass(frozen=True)
class SessionSummary:
    """One row of `mavera sessions`."""

    name: str
    turns: int
    last_used: float
    persona: str | None


def list_sessions(environ: Mapping[str, str]) -> list[SessionSummary]:
    """The sessions in the sessions directory, most recently used first (unreadable skipped)."""
    directory = sessions_dir(environ)
    try:
        paths = sorted(directory.glob("*" + _SUFFIX))
    except OSError:
        return []
    rows = []
    for path in paths:
        name = path.name[: -len(_SUFFIX)]
        try:
            session = _session_from(name, path, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        rows.append(
            SessionSummary(
                name, len(session.turns), session.last_used, session.settings.get("persona")
            )
        )
    rows.sort(key=lambda row: row.last_used, reverse=True)
    return rows


def remove_session(name: str, environ: Mapping[str, str]) -> Path:
    """Delete session NAME; a usage error if there is none."""
    path = session_path(name, environ)
    try:
        path.unlink()
    except FileNotFoundError:
        raise UsageError(f"no session named {name} ({path})") from None
    except OSError as exc:
        raise UsageError(f"cannot remove session {name} ({path}): {exc.strerror}") from exc
    return path
