"""One conversation's turn logic: what earlier turns add to a request, and what a completed
response adds to the history.

The invocation holds at most one `Conversation`. The connection consults it when a request
goes out (`prepare`: the history goes in front of this turn's input) and tells it when a
response completed (`completed`: this turn's input items and the response's output items
become the turn waiting to be kept). The command's end decides: a command that ended well
`commit`s the turn (the session file is rewritten atomically); one that failed, broke or was
interrupted only `touch`es the session's "last used" time. A `tools --exec` turn sends
several requests; each completed one replaces the waiting turn with a longer one (the later
request's input holds the earlier calls and their outputs), so the last one is kept whole.
A kept turn whose session could not be marked most recent (for `-c`) is told as a warning
through `warn`, not as a failure: the turn is in the file, and a retry would add it twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mavera_cli.config import Settings
from mavera_cli.errors import MaveraError, UsageError
from mavera_cli.events import ResponseAccumulator
from mavera_cli.sessions import (
    REMEMBERED_SETTINGS,
    Item,
    Session,
    Turn,
    load_session,
    most_recent_session,
    update_session,
)


def user_message(text: str) -> Item:
    return {"role": "user", "content": text}


class Conversation:
    """The history a request continues, and the turn the current command may add to it."""

    def __init__(
        self,
        session: Session,
        environ: Mapping[str, str],
        *,
        persist: bool = True,
        previous_response_id: str | None = None,
    ) -> None:
        self.session = session
        self._environ = environ
        self._persist = persist
        self._secret: str | None = None
        self._previous_response_id = previous_response_id
        self._sent: list[Item] = []  # this turn's items in the request last sent
        self._waiting: Turn | None = None  # the turn a completed response made
        # Where a warning goes; the command sets its terminal's (which knows -q).
        self.warn: Callable[[str], None] = self._warn_on_stderr

    @classmethod
    def open(
        cls,
        name: str | None,
        continue_last: bool,
        environ: Mapping[str, str],
        previous_response_id: str | None = None,
    ) -> Conversation | None:
        """The conversation `--session NAME` or `-c` names; None for a one-off request."""
        if name is not None and continue_last:
            raise UsageError("--session and -c/--continue both name a session: give one")
        if continue_last:
            name = most_recent_session(environ)
        if name is None:
            return None
        return cls(load_session(name, environ), environ, previous_response_id=previous_response_id)

    @classmethod
    def in_memory(cls) -> Conversation:
        """A conversation kept only while the process runs (`chat` without --session)."""
        return cls(Session("", Path()), {}, persist=False)

    # --- settings: flag > session > environment > config file > default ---

    def setting_flags(self, flags: Mapping[str, Any]) -> dict[str, Any]:
        """`flags` with the session's remembered settings where no flag was given."""
        merged = dict(flags)
        for name, value in self.session.settings.items():
            if merged.get(name) is None:
                merged[name] = value
        return merged

    def resolved(self, settings: Settings, flags: Mapping[str, Any]) -> Settings:
        """The settings with the session named as the origin of what it supplied; the key
        they carry is masked in everything the session writes."""
        self._secret = settings.api_key
        origins = dict(settings.origins)
        for name in self.session.settings:
            if flags.get(name) is None:
                origins[name] = f"session {self.session.name}"
        return replace(settings, origins=origins)

    # --- requests ---

    def prepare(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The request body with the history in front of this turn's input."""
        given = payload.get("input")
        current = [user_message(given)] if isinstance(given, str) else list(given or [])
        self._sent = current
        body = dict(payload)
        if self._previous_response_id:
            # The server holds the earlier turns: only this turn's items are sent.
            body["previous_response_id"] = self._previous_response_id
            body["input"] = current
        else:
            body["input"] = [*self.session.history(), *current]
        return body

    def completed(self, response: Mapping[str, Any], fallback: ResponseAccumulator | None) -> None:
        """A response completed: this turn, as far as it went, is what would be kept."""
        output = response.get("output")
        if isinstance(output, list) and output:
            items = [item for item in output if isinstance(item, dict)]
        else:
            items = _items_from(fallback)
        response_id = response.get("id")
        self._waiting = Turn(
            [*self._sent, *items],
            response_id if isinstance(response_id, str) else None,
            time.time(),
        )

    # --- the end of a command ---

    def commit(self, settings: Settings) -> None:
        """The command ended well: keep the turn (a new session remembers its settings)."""
        turn, self._waiting = self._waiting, None
        if turn is None:
            return

        def add_turn(session: Session) -> None:
            if not session.turns and not session.exists:
                # What the session was started with; a default is no choice worth keeping.
                session.settings = {
                    name: value
                    for name in REMEMBERED_SETTINGS
                    if isinstance(value := getattr(settings, name), str)
                    and value
                    and settings.origins.get(name, "default") != "default"
                }
            session.turns.append(turn)

        if self._persist:
            self._tell(update_session(self.session, add_turn, self._secret, self._environ))
        else:
            add_turn(self.session)

    def abandon(self) -> None:
        """The command failed or was interrupted: the history stays as it was."""
        self._waiting = None
        if self._persist and self.session.exists:
            # "Last used" moves, the history does not. Best effort: the failure being
            # reported matters more than the timestamp.
            with contextlib.suppress(MaveraError):
                update_session(self.session, _unchanged, self._secret, self._environ)

    def reset(self) -> None:
        """Forget every turn (`/reset` in chat); a stored session is rewritten empty."""
        self._waiting = None
        if self._persist and self.session.exists:
            self._tell(update_session(self.session, _forget_turns, self._secret, self._environ))
        else:
            _forget_turns(self.session)

    def _tell(self, warning: str | None) -> None:
        if warning is not None:
            self.warn(warning)

    def _warn_on_stderr(self, message: str) -> None:
        from mavera_cli.terminal import Terminal

        Terminal(secret=self._secret, environ=self._environ).warn(message)


def _unchanged(session: Session) -> None:
    pass


def _forget_turns(session: Session) -> None:
    session.turns.clear()


def _items_from(accumulator: ResponseAccumulator | None) -> list[Item]:
    """Output items rebuilt from the stream, for a server whose final event lists none."""
    if accumulator is None:
        return []
    items: list[Item] = []
    text = accumulator.output_text()
    if text:
        items.append({"role": "assistant", "content": text})
    items.extend(call.as_item() for call in accumulator.calls.values())
    return items
