"""`--session NAME`, `-c`, `--previous-response-id`: the history each request carries, what a
completed turn adds, what a failed one does not, and the files on disk. Real loopback servers
record every request body; the answers are the fake server's own (`mock/answers.py`)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mavera_cli.mock import MockServer
from mavera_cli.mock.answers import CallAnswer, answer
from mavera_cli.mock.responses import ResponseIds, final_response, response_events, sse_frame
from tests.conftest import TEST_KEY, mavera_env, one_line_error, read_pipe_until, run_mavera
from tests.scripted_server import DONE, Exchange, ScriptedServer, Wire, text_stream

SCHEMA = '{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}'
FUNCTIONS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
_numbers = itertools.count(1)


def mock_answer(outcome: str = "completed") -> Callable[[Exchange, Wire], None]:
    """A scripted handler answering like the built-in fake server (which the recorded request
    bodies of `ScriptedServer.requests` then show)."""

    def handle(exchange: Exchange, wire: Wire) -> None:
        request = exchange.json()
        reply = answer(request)
        ids = ResponseIds.for_request(
            next(_numbers), 1_700_000_000, call=isinstance(reply, CallAnswer)
        )
        if request.get("stream"):
            events = response_events(request, reply, ids, outcome)  # type: ignore[arg-type]
            wire.head()
            wire.send(b"".join(sse_frame(event) for event in events) + DONE)
        else:
            wire.respond(200, final_response(request, reply, ids, outcome))  # type: ignore[arg-type]

    return handle


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def env_for(state: Path, **extra: str) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(state), **extra}


def session_file(state: Path, name: str) -> Path:
    return state / "mavera" / "sessions" / f"{name}.json"


def stored(state: Path, name: str) -> dict[str, Any]:
    return json.loads(session_file(state, name).read_text())  # type: ignore[no-any-return]


def shape(items: list[dict[str, Any]]) -> list[str]:
    """Each item as `role` or `type`, for comparing histories."""
    return [item.get("type") or item["role"] for item in items]


def turn(server: ScriptedServer, state: Path, *args: str, expect: int = 0, **env: str) -> str:
    result = run_mavera(
        [*args, "--base-url", server.base_url], env=env_for(state, **env), expect=expect
    )
    return result.text


def test_turn_three_of_stream_json_tools_sends_the_whole_history_in_order(
    server: ScriptedServer, state: Path, tmp_path: Path
) -> None:
    server.script(mock_answer())
    functions = tmp_path / "functions.json"
    functions.write_text(json.dumps(FUNCTIONS))
    turn(server, state, "stream", "--session", "trip", "first")
    turn(server, state, "json", "--session", "trip", "--schema", SCHEMA, "second")
    out = turn(
        server,
        state,
        "tools",
        "--session",
        "trip",
        "--functions",
        str(functions),
        "--exec",
        "get_weather=cat",
        "third",
    )
    assert len(server.requests) == 4  # tools --exec: a call round, then the answer round
    earlier = ["user", "message", "user", "message"]
    first_round = server.requests[2].json()["input"]
    assert shape(first_round) == [*earlier, "user"]
    assert [first_round[i]["content"] for i in (0, 2, 4)] == ["first", "second", "third"]
    assert first_round[1]["content"][0]["text"] == "You said: first"
    assert isinstance(json.loads(first_round[3]["content"][0]["text"])["n"], int)
    second_round = server.requests[3].json()["input"]
    assert shape(second_round) == [*earlier, "user", "function_call", "function_call_output"]
    call, output = second_round[5], second_round[6]
    assert call["name"] == "get_weather" and output["call_id"] == call["call_id"]
    assert json.loads(output["output"]) == json.loads(call["arguments"])
    # The fake server sees the conversation: which turn, and what came before.
    assert 'turn 3; 7 input items; earlier: "first" / "second"' in out
    kept = stored(state, "trip")["turns"]
    assert [shape(t["items"]) for t in kept] == [
        ["user", "message"],
        ["user", "message"],
        ["user", "function_call", "function_call_output", "message"],
    ]


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("failed", 10), ("incomplete", 10), ("cut", 7), ("http500", 8)],
)
def test_a_turn_that_did_not_complete_is_not_kept(
    server: ScriptedServer, state: Path, outcome: str, code: int
) -> None:
    def broken(exchange: Exchange, wire: Wire) -> None:
        if outcome == "http500":
            wire.respond(500, {"error": {"message": "down"}})
        elif outcome == "cut":
            wire.head()
            wire.send(b"".join(text_stream(["half ", "an ", "answer"])[:5]))
        else:
            mock_answer(outcome)(exchange, wire)

    server.script(mock_answer(), broken, mock_answer())
    turn(server, state, "stream", "--session", "s", "kept")
    before = stored(state, "s")
    turn(server, state, "stream", "--session", "s", "--retries", "0", "lost", expect=code)
    after = stored(state, "s")
    assert after["turns"] == before["turns"]
    assert after["last_used"] >= before["last_used"]  # used, but the history is unchanged
    turn(server, state, "stream", "--session", "s", "next")
    sent = server.requests[2].json()["input"]
    assert [item.get("content") for item in sent if item.get("role") == "user"] == [
        "kept",
        "next",
    ]


def test_json_that_is_not_valid_is_not_kept(server: ScriptedServer, state: Path) -> None:
    def not_json(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send(b"".join(text_stream(["not ", "json"])))

    server.script(mock_answer(), not_json)
    turn(server, state, "stream", "--session", "s", "kept")
    turn(server, state, "json", "--session", "s", "--schema", SCHEMA, "bad", expect=11)
    assert len(stored(state, "s")["turns"]) == 1


def test_ctrl_c_during_the_answer_keeps_no_half_turn(state: Path, server: ScriptedServer) -> None:
    def slow(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send(b"".join(text_stream(["first ", "words"])[:4]))
        wire.hold()

    server.script(mock_answer(), slow)
    turn(server, state, "stream", "--session", "s", "kept")
    before = stored(state, "s")["turns"]
    proc = _start(["stream", "--session", "s", "interrupted"], server, state)
    try:
        assert b"first" in read_pipe_until(proc.stdout.fileno(), b"first")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        _reap(proc)
    assert stored(state, "s")["turns"] == before


def _wait_for_requests(server: ScriptedServer, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def _user_texts(state: Path, name: str) -> list[str]:
    return [t["items"][0]["content"] for t in stored(state, name)["turns"]]


def test_two_commands_on_one_session_at_once_keep_both_turns(
    state: Path, server: ScriptedServer
) -> None:
    """A command that loaded the session before another one added a turn keeps that turn
    when it adds its own (it does not write back the copy it loaded)."""
    other_done = threading.Event()

    def after_the_other(exchange: Exchange, wire: Wire) -> None:
        assert other_done.wait(15)
        mock_answer()(exchange, wire)

    server.script(mock_answer(), after_the_other, mock_answer())
    turn(server, state, "stream", "--session", "s", "first")
    slow = _start(["stream", "--session", "s", "slow"], server, state)
    try:
        _wait_for_requests(server, 2)
        assert len(server.requests) == 2, "the slow command sent its request"
        turn(server, state, "stream", "--session", "s", "meanwhile")
        assert _user_texts(state, "s") == ["first", "meanwhile"]
        other_done.set()
        assert slow.wait(15) == 0
    finally:
        other_done.set()
        _reap(slow)
    # The slow command sent the history it loaded, and the file keeps every turn.
    assert shape(server.requests[1].json()["input"]) == ["user", "message", "user"]
    assert _user_texts(state, "s") == ["first", "meanwhile", "slow"]


def test_a_failed_turn_does_not_write_back_an_old_copy(state: Path, server: ScriptedServer) -> None:
    """A turn that fails only moves "last used": of the file as it is now, not as loaded."""
    other_done = threading.Event()

    def fail_after_the_other(exchange: Exchange, wire: Wire) -> None:
        assert other_done.wait(15)
        wire.respond(500, {"error": {"message": "boom", "type": "server_error"}})

    server.script(mock_answer(), fail_after_the_other, mock_answer())
    turn(server, state, "stream", "--session", "s", "first")
    failing = _start(["stream", "--session", "s", "--retries", "0", "fails"], server, state)
    try:
        _wait_for_requests(server, 2)
        turn(server, state, "stream", "--session", "s", "meanwhile")
        other_done.set()
        assert failing.wait(15) == 8  # server_error
    finally:
        other_done.set()
        _reap(failing)
    assert _user_texts(state, "s") == ["first", "meanwhile"]


def test_many_commands_finishing_together_keep_every_turn(state: Path) -> None:
    """Eight commands answer at the same moment and add their turns at once: the lock on
    the directory lets each read-modify-write run whole, so none is lost."""
    with MockServer() as mock:
        turn_env = mavera_env(env_for(state))
        run_mavera(
            ["stream", "--session", "busy", "--base-url", mock.base_url, "start"],
            env=env_for(state),
        )
        command = [sys.executable, "-m", "mavera_cli", "stream", "--session", "busy"]
        procs = [
            subprocess.Popen(
                [*command, "--base-url", mock.base_url, f"turn {n}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=turn_env,
            )
            for n in range(8)
        ]
        try:
            codes = [proc.wait(30) for proc in procs]
        finally:
            for proc in procs:
                _reap(proc)
    assert codes == [0] * 8
    texts = _user_texts(state, "busy")
    assert texts[0] == "start"
    assert sorted(texts[1:]) == sorted(f"turn {n}" for n in range(8))


def _start(args: list[str], server: ScriptedServer, state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mavera_cli", *args, "--base-url", server.base_url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mavera_env(env_for(state)),
    )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _assert_whole(state: Path, name: str, allowed: set[int]) -> int:
    data = stored(state, name)  # valid JSON, or this fails
    turns = data["turns"]
    assert len(turns) in allowed
    for kept in turns:
        assert shape(kept["items"]) == ["user", "message"], kept
    assert not [p for p in session_file(state, name).parent.iterdir() if p.suffix == ".tmp"]
    return len(turns)


def test_kill_9_at_any_point_of_a_turn_leaves_a_whole_session(
    state: Path, server: ScriptedServer
) -> None:
    answered: list[int] = []

    def waiting(exchange: Exchange, wire: Wire) -> None:
        wire.hold(5)

    def midway(exchange: Exchange, wire: Wire) -> None:
        wire.head()
        wire.send(b"".join(text_stream(["mid ", "way"])[:4]))
        wire.hold(5)

    server.script(mock_answer())
    turn(server, state, "stream", "--session", "k", "kept")
    # Before any byte of the answer, and in the middle of it.
    for handler, marker in ((waiting, None), (midway, b"mid")):
        server.script(handler)
        proc = _start(["stream", "--session", "k", "killed"], server, state)
        try:
            if marker is None:
                deadline = time.monotonic() + 15
                while len(server.requests) < len(answered) + 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                assert marker in read_pipe_until(proc.stdout.fileno(), marker)  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            _reap(proc)
        answered.append(1)
        assert _assert_whole(state, "k", {1}) == 1
    # The whole answer is out: the save is happening right now (or just did).
    server.script(mock_answer())
    count = 1
    for _ in range(4):
        proc = _start(["stream", "--session", "k", "racing"], server, state)
        try:
            read_pipe_until(proc.stdout.fileno(), b"racing\n")  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            _reap(proc)
        count = _assert_whole(state, "k", {count, count + 1})


def test_session_files_are_private(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(server, state, "stream", "--session", "p", "hello")
    path = session_file(state, "p")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "mavera" / "last-session").stat().st_mode) == 0o600


def test_the_key_is_never_in_a_session_file_even_when_the_server_echoes_it(
    server: ScriptedServer, state: Path
) -> None:
    def echo_key(exchange: Exchange, wire: Wire) -> None:
        key = exchange.headers.get("authorization", "").removeprefix("Bearer ")
        assert key == TEST_KEY
        wire.head()
        wire.send(b"".join(text_stream(["your key: ", key[:9], key[9:], " ok"])))

    def echo_key_body(exchange: Exchange, wire: Wire) -> None:
        key = exchange.headers.get("authorization", "").removeprefix("Bearer ")
        body = final_response_with(f"the key {key} again")
        wire.respond(200, body)

    server.script(echo_key, echo_key_body)
    out = turn(server, state, "stream", "--session", "leak", "hi")
    turn(server, state, "ask", "--session", "leak", "again")
    assert TEST_KEY not in out
    data = session_file(state, "leak").read_bytes()
    assert TEST_KEY.encode() not in data
    assert data.count(b"***") >= 2
    assert len(stored(state, "leak")["turns"]) == 2


def final_response_with(text: str) -> dict[str, Any]:
    return {
        "id": "resp_k",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
    }


def test_precedence_flag_then_session_then_environment(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(
        server, state, "stream", "--session", "p", "-p", "persona1", "-m", "model1", "-s", "be", "a"
    )
    env = {"MAVERA_MODEL": "envmodel", "MAVERA_PERSONA_ID": "envpersona"}
    turn(server, state, "stream", "--session", "p", "b", **env)
    turn(server, state, "stream", "--session", "p", "-m", "flagmodel", "c", **env)
    turn(server, state, "stream", "--session", "p", "d", **env)
    bodies = [request.json() for request in server.requests]
    chosen = [(b["model"], b.get("persona_id"), b.get("instructions")) for b in bodies]
    assert chosen == [
        ("model1", "persona1", "be"),
        ("model1", "persona1", "be"),  # the session beats the environment
        ("flagmodel", "persona1", "be"),  # a flag beats the session, for that turn only
        ("model1", "persona1", "be"),
    ]
    assert stored(state, "p")["settings"] == {
        "persona": "persona1",
        "model": "model1",
        "instructions": "be",
    }


def test_a_new_session_remembers_no_defaults(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(server, state, "stream", "--session", "d", "a")
    assert stored(state, "d")["settings"] == {}
    turn(server, state, "stream", "--session", "d", "b", MAVERA_MODEL="later")
    assert server.requests[1].json()["model"] == "later"


def test_continue_takes_the_most_recent_session(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(server, state, "stream", "--session", "older", "one")
    turn(server, state, "stream", "--session", "newer", "two")
    turn(server, state, "stream", "-c", "three")
    assert len(stored(state, "newer")["turns"]) == 2
    assert len(stored(state, "older")["turns"]) == 1
    turn(server, state, "stream", "--session", "older", "four")
    turn(server, state, "ask", "--continue", "five")
    assert len(stored(state, "older")["turns"]) == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-c"], "no session to continue"),
        (["--session", "a", "-c"], "give one"),
        (["--session", ".hidden"], "invalid session name"),
        (["--session", "a b"], "invalid session name"),
    ],
)
def test_bad_session_choices_are_usage_errors(state: Path, args: list[str], needle: str) -> None:
    result = run_mavera(["stream", "--mock", *args, "hi"], env=env_for(state), expect=2)
    one_line_error(result.stderr, needle)


def test_a_corrupt_session_file_is_a_usage_error_and_is_left_alone(state: Path) -> None:
    path = session_file(state, "bad")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "turns": [')
    result = run_mavera(
        ["stream", "--mock", "--session", "bad", "hi"], env=env_for(state), expect=2
    )
    one_line_error(result.stderr, "not a mavera session file")
    assert path.read_text() == '{"version": 1, "turns": ['


def test_a_name_with_a_slash_is_a_path(server: ScriptedServer, state: Path, tmp_path: Path) -> None:
    server.script(mock_answer())
    path = tmp_path / "elsewhere" / "talk.json"
    turn(server, state, "stream", "--session", str(path), "one")
    turn(server, state, "stream", "--session", str(path), "two")
    assert len(json.loads(path.read_text())["turns"]) == 2
    assert not (state / "mavera" / "sessions").exists()
    turn(server, state, "stream", "-c", "three")  # the most recent, wherever it is
    assert len(json.loads(path.read_text())["turns"]) == 3


def test_ask_continues_a_session_without_streaming(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(server, state, "ask", "--session", "a", "one")
    out = turn(server, state, "ask", "--session", "a", "two")
    assert out == 'You said: two [turn 2; 3 input items; earlier: "one"]\n'
    body = server.requests[1].json()
    assert body["stream"] is False
    assert shape(body["input"]) == ["user", "message", "user"]


def test_previous_response_id_is_passed_through(server: ScriptedServer, state: Path) -> None:
    server.script(mock_answer())
    turn(server, state, "stream", "--previous-response-id", "resp_abc", "alone")
    body = server.requests[0].json()
    assert body["previous_response_id"] == "resp_abc" and body["input"] == "alone"
    turn(server, state, "stream", "--session", "r", "one")
    turn(server, state, "stream", "--session", "r", "--previous-response-id", "resp_x", "two")
    body = server.requests[2].json()
    # The server holds the earlier turns: only this one is sent; the session still keeps it.
    assert body["previous_response_id"] == "resp_x"
    assert body["input"] == [{"role": "user", "content": "two"}]
    assert len(stored(state, "r")["turns"]) == 2


def test_the_fake_server_answers_each_turn_and_keeps_its_tool_loop(
    state: Path, tmp_path: Path
) -> None:
    functions = tmp_path / "functions.json"
    functions.write_text(json.dumps(FUNCTIONS))
    env = env_for(state)
    first = run_mavera(["stream", "--mock", "--session", "m", "hello"], env=env)
    assert first.text == "You said: hello\n"
    tools = ["tools", "--mock", "--session", "m", "--functions", str(functions)]
    for n in (2, 3):
        out = run_mavera([*tools, "--exec", "get_weather=cat", f"weather {n}"], env=env).text
        assert out.startswith('Tool get_weather returned: {"city":')
        assert f"[turn {n};" in out
    calls = [
        item["call_id"]
        for kept in stored(state, "m")["turns"]
        for item in kept["items"]
        if item.get("type") == "function_call"
    ]
    assert len(calls) == 2 and len(set(calls)) == 2  # call ids stay unique across turns


def test_a_long_session_adds_little_to_a_request_start(state: Path) -> None:
    from mavera_cli.conversation import Conversation
    from mavera_cli.sessions import Session, Turn, save_session, session_path

    environ = env_for(state)
    answer_text = "word " * 200
    session = Session("long", session_path("long", environ))
    for n in range(50):
        items = [
            {"role": "user", "content": f"question {n}"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": answer_text}],
            },
        ]
        session.turns.append(Turn(items, f"resp_{n}", 1.0))
    save_session(session, TEST_KEY, environ)
    started = time.perf_counter()
    conversation = Conversation.open("long", False, environ)
    assert conversation is not None
    body = conversation.prepare({"model": "m", "input": "next", "stream": True})
    elapsed = time.perf_counter() - started
    assert len(body["input"]) == 101
    assert elapsed < 0.02 * 5  # the target is 20 ms; slack for a loaded CI machine


def test_a_session_that_cannot_be_written_is_exit_74() -> None:
    # /proc takes no new files, even from root: the session reads as new, its write fails.
    args = ["stream", "--mock", "--session", "/proc/mavera-talk.json", "hi"]
    result = run_mavera(args, expect=74)
    assert result.text == "You said: hi\n"  # the answer is out; keeping it failed
    one_line_error(result.stderr, "cannot write session")
