"""`mavera sessions` (list), `sessions show NAME [--json]`, `sessions rm NAME`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import one_line_error, run_mavera


def _env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state")}


def _talk(tmp_path: Path, name: str, *prompts: str, persona: str | None = None) -> None:
    for prompt in prompts:
        flags = ["-p", persona] if persona else []
        run_mavera(["stream", "--mock", "--session", name, *flags, prompt], env=_env(tmp_path))


def test_sessions_lists_each_session_most_recent_first(tmp_path: Path) -> None:
    _talk(tmp_path, "older", "a")
    _talk(tmp_path, "newer", "b", "c", persona="p-1")
    for args in (["sessions"], ["sessions", "list"], ["sessions", "list", "--json"]):
        rows = [json.loads(line) for line in run_mavera(args, env=_env(tmp_path)).text.splitlines()]
        assert [(r["name"], r["turns"], r["persona"]) for r in rows] == [
            ("newer", 2, "p-1"),
            ("older", 1, None),
        ]
        assert all(r["last_used"].startswith("20") for r in rows)


def test_sessions_with_none_prints_nothing(tmp_path: Path) -> None:
    assert run_mavera(["sessions"], env=_env(tmp_path)).stdout == b""


def test_show_prints_the_conversation_and_json_the_stored_items(tmp_path: Path) -> None:
    _talk(tmp_path, "s", "hello", "again")
    out = run_mavera(["sessions", "show", "s"], env=_env(tmp_path)).text
    assert out == (
        "user: hello\nassistant: You said: hello\n\n"
        'user: again\nassistant: You said: again [turn 2; 3 input items; earlier: "hello"]\n'
    )
    stored = json.loads(run_mavera(["sessions", "show", "s", "--json"], env=_env(tmp_path)).text)
    assert [turn["items"][0]["content"] for turn in stored["turns"]] == ["hello", "again"]
    assert stored["version"] == 1


def test_show_describes_calls_and_their_outputs(tmp_path: Path) -> None:
    functions = tmp_path / "f.json"
    functions.write_text(
        json.dumps([{"type": "function", "name": "look", "parameters": {"type": "object"}}])
    )
    run_mavera(
        [
            "tools",
            "--mock",
            "--session",
            "t",
            "--functions",
            str(functions),
            "--exec",
            "look=cat",
            "x",
        ],
        env=_env(tmp_path),
    )
    lines = run_mavera(["sessions", "show", "t"], env=_env(tmp_path)).text.splitlines()
    assert lines[0] == "user: x"
    assert lines[1].startswith("function_call look {} (call_1)")
    assert lines[2] == "function_call_output (call_1): {}"
    assert lines[3] == "assistant: Tool look returned: {}"


def test_rm_deletes_a_session(tmp_path: Path) -> None:
    _talk(tmp_path, "gone", "a")
    run_mavera(["sessions", "rm", "gone"], env=_env(tmp_path))
    assert run_mavera(["sessions"], env=_env(tmp_path)).stdout == b""
    result = run_mavera(["sessions", "rm", "gone"], env=_env(tmp_path), expect=2)
    one_line_error(result.stderr, "no session named gone")


def test_show_of_a_missing_session_is_a_usage_error(tmp_path: Path) -> None:
    result = run_mavera(["sessions", "show", "nope"], env=_env(tmp_path), expect=2)
    one_line_error(result.stderr, "no session named nope")
