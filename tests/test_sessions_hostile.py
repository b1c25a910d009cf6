"""Session files and folders as a hostile or careless user leaves them: valid JSON that no
request could carry, odd file names and types, symlinks, a state folder that is a file, a
HOME that is empty. Each gets a one-line answer and the right exit code, never a traceback,
a hang, or another file deleted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import one_line_error, run_mavera


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def env_for(state: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(state)}


def sessions_dir(state: Path) -> Path:
    folder = state / "mavera" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def turns_in(path: Path) -> list[str]:
    return [turn["items"][0]["content"] for turn in json.loads(path.read_text())["turns"]]


def _item_with(value: str) -> str:
    item = '{"role":"user","content":"hi","x":' + value + "}"
    return '{"version":1,"turns":[{"items":[' + item + "]}]}"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param('{"version":1,"turns":[],"created":1' + "0" * 400 + "}", id="huge-int"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="deep-arrays"),
        pytest.param(_item_with('"hi \\ud800"'), id="lone-surrogate"),
        pytest.param(_item_with("1" * 30), id="int-beyond-64-bits"),
        pytest.param(_item_with("[" * 300 + "]" * 300), id="deeper-than-a-request"),
        pytest.param(_item_with("NaN"), id="nan"),
        pytest.param(_item_with("1e999"), id="infinite"),
        pytest.param('{"version":1,"turns":[],"last_used":1e300}', id="time-beyond-calendars"),
    ],
)
def test_json_that_no_request_could_carry_is_not_a_session(state: Path, document: str) -> None:
    folder = sessions_dir(state)
    (folder / "bad.json").write_text(document)
    run_mavera(["ask", "--mock", "--session", "good", "hi"], env=env_for(state))
    for args in (["sessions", "show", "bad", "--json"], ["ask", "--mock", "--session", "bad", "x"]):
        result = run_mavera(args, env=env_for(state), expect=2)
        one_line_error(result.stderr, "bad", "is not a mavera session file")
        assert result.stdout == b""
    assert (folder / "bad.json").read_text() == document  # left as it was
    listed = run_mavera(["sessions"], env=env_for(state)).text.splitlines()
    assert [json.loads(line)["name"] for line in listed] == ["good"]  # the bad one skipped


def test_a_file_name_that_is_not_utf8_is_skipped_in_the_listing(state: Path) -> None:
    run_mavera(["ask", "--mock", "--session", "s1", "hi"], env=env_for(state))
    folder = sessions_dir(state)
    odd = Path(os.fsdecode(bytes(folder) + b"/bad\xffname.json"))
    odd.write_bytes((folder / "s1.json").read_bytes())
    result = run_mavera(["sessions"], env=env_for(state))
    assert [json.loads(line)["name"] for line in result.text.splitlines()] == ["s1"]


def test_rm_refuses_a_file_that_is_not_a_session(state: Path, tmp_path: Path) -> None:
    program = tmp_path / "main.py"
    program.write_text("print('hello')\n")
    result = run_mavera(["sessions", "rm", str(program)], env=env_for(state), expect=2)
    one_line_error(result.stderr, "is not a mavera session file", "not removed")
    assert program.read_text() == "print('hello')\n"
    talk = tmp_path / "talk.json"
    run_mavera(["ask", "--mock", "--session", str(talk), "hi"], env=env_for(state))
    run_mavera(["sessions", "rm", str(talk)], env=env_for(state))
    assert not talk.exists()


def test_a_saved_turn_whose_marker_cannot_be_written_is_a_warning_not_a_failure(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "statefile"  # XDG_STATE_HOME a regular file: no -c marker there
    state_file.write_text("")
    talk = tmp_path / "ptr.json"
    result = run_mavera(["ask", "--mock", "--session", str(talk), "hi"], env=env_for(state_file))
    assert result.text == "You said: hi\n"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mavera: warning: "), result.stderr
    assert "-c will not find it" in lines[0] and "Not a directory" in lines[0]
    assert turns_in(talk) == ["hi"]  # kept once: exit 0, so nothing retries it
    quiet = run_mavera(
        ["ask", "-q", "--mock", "--session", str(talk), "hi"], env=env_for(state_file)
    )
    assert quiet.stderr == ""  # -q silences the warning as any other
    assert turns_in(talk) == ["hi", "hi"]


def test_continue_finds_a_session_whose_path_ends_in_a_space(state: Path, tmp_path: Path) -> None:
    talk = tmp_path / "trail "
    run_mavera(["ask", "--mock", "--session", str(talk), "one"], env=env_for(state))
    run_mavera(["ask", "--mock", "-c", "two"], env=env_for(state))
    assert turns_in(talk) == ["one", "two"]


def test_continue_finds_a_session_whose_path_is_not_utf8(state: Path, tmp_path: Path) -> None:
    talk = Path(os.fsdecode(bytes(tmp_path) + b"/a\xff.json"))
    run_mavera(["ask", "--mock", "--session", str(talk), "one"], env=env_for(state))
    run_mavera(["ask", "--mock", "-c", "two"], env=env_for(state))
    assert turns_in(talk) == ["one", "two"]
    shown = run_mavera(["sessions", "show", str(talk), "--json"], env=env_for(state))
    assert json.loads(shown.stdout)["name"].endswith("a\ufffd.json")


def test_a_symlinked_session_is_written_through_to_its_target(state: Path, tmp_path: Path) -> None:
    target = tmp_path / "kept" / "real.json"
    target.parent.mkdir()
    run_mavera(["ask", "--mock", "--session", str(target), "one"], env=env_for(state))
    link = tmp_path / "link.json"
    link.symlink_to(target)
    run_mavera(["ask", "--mock", "--session", str(link), "two"], env=env_for(state))
    assert link.is_symlink() and link.resolve() == target
    assert turns_in(target) == ["one", "two"]
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_a_fifo_is_not_a_session_and_never_blocks(state: Path) -> None:
    folder = sessions_dir(state)
    os.mkfifo(folder / "fifo.json")
    run_mavera(["ask", "--mock", "--session", "real", "hi"], env=env_for(state))
    listed = run_mavera(["sessions"], env=env_for(state), timeout=5).text.splitlines()
    assert [json.loads(line)["name"] for line in listed] == ["real"]
    for args in (["ask", "--mock", "--session", "fifo", "x"], ["sessions", "rm", "fifo"]):
        result = run_mavera(args, env=env_for(state), expect=2, timeout=5)
        one_line_error(result.stderr, "not a regular file")
    assert (folder / "fifo.json").exists()


def test_an_empty_home_is_a_usage_error_not_a_folder_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"HOME": "", "XDG_STATE_HOME": ""}
    for args in (["sessions"], ["ask", "--mock", "--session", "s", "hi"]):
        result = run_mavera(args, env=env, expect=2)
        one_line_error(result.stderr, "HOME is empty", ".local/state", "XDG_STATE_HOME")
    assert list(tmp_path.iterdir()) == []


def test_a_relative_xdg_state_home_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_STATE_HOME": "relstate"}
    run_mavera(["ask", "--mock", "--session", "s", "hi"], env=env)
    assert not (tmp_path / "relstate").exists()
    assert turns_in(home / ".local/state/mavera/sessions/s.json") == ["hi"]


def test_a_fault_asked_for_in_a_session_turn_happens(state: Path) -> None:
    env = env_for(state)
    run_mavera(["ask", "--mock", "--session", "f", "kept"], env=env)
    run_mavera(["ask", "--mock", "--session", "f", "x mock-fault:failed"], env=env, expect=10)
    run_mavera(["stream", "--mock", "-c", "mock-fault:incomplete"], env=env, expect=10)
    assert turns_in(sessions_dir(state) / "f.json") == ["kept"]
    # An earlier turn's marker is history, not this turn's request.
    earlier = {
        "version": 1,
        "turns": [{"items": [{"role": "user", "content": "mock-fault:failed"}]}],
    }
    (sessions_dir(state) / "g.json").write_text(json.dumps(earlier))
    run_mavera(["ask", "--mock", "--session", "g", "next"], env=env)
    chat = ["chat", "--mock", "--retries", "0"]
    result = run_mavera(chat, stdin=b"one\nmock-fault:server-error\nthree\n", env=env, expect=8)
    assert result.text == "You said: one\n"
