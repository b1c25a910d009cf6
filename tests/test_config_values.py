"""Values of the wrong type or out of range are usage errors (2) that say where the value came
from: the flag, the environment variable, or the config file and its key (issue 11 item 20),
and no number of seconds can overflow an OS timer into exit 1 (item 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mavera_cli.config import MAX_SECONDS, resolve_settings
from mavera_cli.errors import UsageError
from tests.conftest import TEST_KEY, one_line_error, run_mavera
from tests.scripted_server import ScriptedServer, text_stream


def config_file(tmp_path: Path, text: str) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "config" / "mavera" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    return path, {"XDG_CONFIG_HOME": str(tmp_path / "config")}


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("persona = {a = 1}\n", "persona", "expected a string, got a table"),
        ("model = 5\n", "model", "expected a string, got an integer"),
        ('base_url = ["https://x"]\n', "base_url", "expected a string, got an array"),
        ("instructions = true\n", "instructions", "expected a string, got a boolean"),
        ('timeout = "x"\n', "timeout", "expected a number of seconds, got a string"),
        ("timeout = true\n", "timeout", "expected a number of seconds, got a boolean"),
        ("timeout = 1e300\n", "timeout", f"at most {MAX_SECONDS}, got 1e+300"),
        ("timeout = -3\n", "timeout", "more than 0"),
        ("retries = 1.5\n", "retries", "expected a whole number >= 0, got a float"),
        ("retries = -1\n", "retries", "expected a whole number >= 0, got -1"),
    ],
)
def test_a_config_value_of_the_wrong_type_names_the_file_and_key(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path, env = config_file(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        resolve_settings({}, env)
    assert caught.value.message.startswith(f"{key} in config file {path}: "), caught.value
    assert expected in caught.value.message


def test_a_config_api_key_of_the_wrong_type_is_not_quoted(tmp_path: Path) -> None:
    path, env = config_file(tmp_path, f'api_key = ["{TEST_KEY}"]\n')
    result = run_mavera(["stream", "--mock", "hi"], env=env, key=None, expect=2)
    one_line_error(result.stderr, f"api_key in config file {path}", "got an array")
    assert TEST_KEY not in result.stderr and "SENTINEL" not in result.stderr


def test_the_cli_reports_a_config_type_error_as_usage(tmp_path: Path) -> None:
    path, env = config_file(tmp_path, "persona = {a = 1}\n")
    result = run_mavera(["stream", "--mock", "hi"], env=env, expect=2)
    one_line_error(result.stderr, f"persona in config file {path}", "got a table")
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAVERA_TIMEOUT", "abc", "expected a number of seconds, got 'abc'"),
        ("MAVERA_TIMEOUT", "1e300", f"at most {MAX_SECONDS}, got '1e300'"),
        ("MAVERA_TIMEOUT", "nan", "more than 0"),
        ("MAVERA_RETRIES", "-1", "expected a whole number >= 0, got '-1'"),
        ("MAVERA_RETRIES", "two", "expected a whole number >= 0, got 'two'"),
    ],
)
def test_an_invalid_environment_value_names_the_variable(
    variable: str, value: str, expected: str
) -> None:
    result = run_mavera(["stream", "--mock", "hi"], env={variable: value}, expect=2)
    one_line_error(result.stderr, f"{variable}: ", expected)


@pytest.mark.parametrize("flag", ["--timeout", "--max-time"])
@pytest.mark.parametrize("value", ["1e12", "1e300", "inf", "nan", "-1", "0"])
def test_out_of_range_seconds_are_usage_errors_not_overflows(flag: str, value: str) -> None:
    result = run_mavera(["stream", "--mock", flag, value, "hi"], expect=2)
    one_line_error(result.stderr, f"{flag}: expected a number of seconds more than 0")
    assert "internal error" not in result.stderr and result.stdout == b""


@pytest.mark.parametrize("flag", ["--timeout", "--max-time"])
def test_the_longest_accepted_seconds_still_work(flag: str) -> None:
    result = run_mavera(["stream", "--mock", flag, str(MAX_SECONDS), "hi"])
    assert result.stdout == b"You said: hi\n"


@pytest.mark.parametrize("value", ["1e12", "inf", "nan", "0"])
def test_tool_timeout_out_of_range_is_a_usage_error(tmp_path: Path, value: str) -> None:
    functions = tmp_path / "f.json"
    functions.write_text('[{"name": "f"}]')
    args = ["tools", "--mock", "--functions", str(functions), "--exec", "f=cat"]
    result = run_mavera([*args, "--tool-timeout", value, "hi"], expect=2)
    one_line_error(result.stderr, "--tool-timeout: expected a number of seconds more than 0")


def test_an_invalid_base_url_names_where_it_came_from(tmp_path: Path) -> None:
    path, env = config_file(tmp_path, 'base_url = "nope"\n')
    from_file = run_mavera(["stream", "hi"], env=env, expect=2)
    one_line_error(from_file.stderr, "'nope'", f"(from config file {path})")
    from_env = run_mavera(["stream", "hi"], env={"MAVERA_BASE_URL": "ftp://x"}, expect=2)
    one_line_error(from_env.stderr, "'ftp://x'", "(from MAVERA_BASE_URL)")


def test_a_base_url_with_a_user_or_password_is_refused_without_showing_it(
    tmp_path: Path, server: ScriptedServer
) -> None:
    """httpx would send `user:password@` as Basic auth in place of the key (a sure 401), and
    every message quoting the URL would show the password: a usage error, masked, sent nowhere."""
    with_password = server.base_url.replace("http://", "http://user:hunter2pw@")
    with_token = server.base_url.replace("http://", "http://tok3n5ecret@")
    path, file_env = config_file(tmp_path, f'base_url = "{with_token}"\n')
    runs = [
        (["stream", "--base-url", with_password, "hi"], {}, "(from --base-url)"),
        (["batch", "--lines", "--base-url", with_password, "-"], {}, "(from --base-url)"),
        (["ask", "hi"], {"MAVERA_BASE_URL": with_token}, "(from MAVERA_BASE_URL)"),
        (["usage"], file_env, f"(from config file {path})"),
    ]
    for args, env, source in runs:
        result = run_mavera(args, env=env, stdin=b"hi\n", expect=2)
        one_line_error(result.stderr, "http://***@127.0.0.1:", "user name or password", source)
        assert b"hunter2pw" not in result.stdout and "hunter2pw" not in result.stderr
        assert b"tok3n5ecret" not in result.stdout and "tok3n5ecret" not in result.stderr
    events = run_mavera(["stream", "--events", "--base-url", with_password, "hi"], expect=2)
    assert b'"exit_code":2' in events.stdout and b"hunter2pw" not in events.stdout
    assert server.requests == []
    shown = run_mavera(["config", "show", "--json"], env={"MAVERA_BASE_URL": with_password})
    assert b'"http://***@127.0.0.1:' in shown.stdout and b"hunter2pw" not in shown.stdout


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1/v1", "expected http(s)://host/"),  # urlsplit's ValueError: was exit 1
        ("https://api.example.com:99999/v1", "port must be a number from 1 to 65535"),
        ("https://api.example.com:-1/v1", "port must be a number from 1 to 65535"),
        ("https://api.example.com:0/v1", "port must be a number from 1 to 65535"),
        ("https://api.example.com:abc/v1", "port must be a number"),  # was "invalid proxy"
        ("https://api example.com/v1", "'api example.com' is not a host name"),
        ("https://api..example.com/v1", "an empty label"),  # the resolver's UnicodeError: exit 1
        (f"https://{'a' * 64}.example.com/v1", "one over 63 characters"),
        ("https://xn--/v1", "Punycode"),  # httpx's IDNA check: was "invalid proxy setting"
    ],
)
def test_a_base_url_that_cannot_be_sent_to_is_a_usage_error(url: str, reason: str) -> None:
    result = run_mavera(["stream", "--retries", "0", "--base-url", url, "hi"], expect=2)
    one_line_error(result.stderr, f"invalid base URL {url!r} (from --base-url)", reason)


def test_a_base_url_between_spaces_is_used_without_them(server: ScriptedServer) -> None:
    """`export MAVERA_BASE_URL=" https://… "`: what is meant is clear (the key is stripped too)."""
    server.script(lambda ex, wire: (wire.head(), wire.send_chunks(text_stream(["ok"]))))
    result = run_mavera(["stream", "hi"], env={"MAVERA_BASE_URL": f"  {server.base_url}/ \n"})
    assert result.stdout == b"ok\n"
    assert [exchange.path for exchange in server.requests] == ["/api/v1/responses"]


def test_a_config_file_is_never_looked_for_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative XDG_CONFIG_HOME (ignored, as the XDG spec says) or an empty HOME read
    `./…/mavera/config.toml`: a file in an untrusted folder could set base_url and take the
    key there."""
    monkeypatch.chdir(tmp_path)
    for folder in ("relcfg/mavera", ".config/mavera"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.toml").write_text('model = "from-this-folder"\n')
    home = tmp_path / "home"
    shown = run_mavera(
        ["config", "show", "--json"], env={"HOME": str(home), "XDG_CONFIG_HOME": "relcfg"}
    )
    rows = json.loads(shown.stdout)
    assert rows["config_file"] == {
        "value": str(home / ".config/mavera/config.toml"),
        "source": "default",
        "exists": False,
    }
    assert rows["model"]["value"] != "from-this-folder"
    refused = run_mavera(
        ["stream", "--mock", "hi"], env={"HOME": "", "XDG_CONFIG_HOME": ""}, expect=2
    )
    one_line_error(refused.stderr, "HOME is empty", "the config file", ".config")
