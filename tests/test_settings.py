"""Settings precedence, the config file, prompt assembly and transport safety (in-process units)."""

from __future__ import annotations

import io
import os

import pytest

from mavera_cli.config import Settings, resolve_settings
from mavera_cli.errors import AuthError, UsageError
from mavera_cli.prompt import assemble_prompt
from tests.conftest import run_mavera


def write_config(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "config" / "mavera" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_flag_beats_environment_beats_config_beats_default(tmp_path) -> None:
    env = write_config(
        tmp_path, 'model = "from-config"\ntimeout = 5\npersona = "p-config"\napi_key = "k"\n'
    )
    env["MAVERA_MODEL"] = "from-env"
    settings = resolve_settings({"model": None, "timeout": 9}, env)
    assert settings.model == "from-env"
    assert settings.timeout == 9
    assert settings.persona == "p-config"
    assert settings.retries == 2
    assert settings.base_url == "https://app.mavera.io/api/v1"
    assert settings.origins["model"] == "env MAVERA_MODEL"
    assert settings.origins["timeout"] == "flag"
    assert settings.origins["retries"] == "default"
    assert resolve_settings({"model": "from-flag"}, env).model == "from-flag"


def test_key_only_from_environment_or_config(tmp_path) -> None:
    env = write_config(tmp_path, 'api_key = "from-config"\n')
    assert resolve_settings({"api_key": "from-flag"}, env).api_key == "from-config"
    assert resolve_settings({}, {**env, "MAVERA_API_KEY": "from-env"}).api_key == "from-env"


def test_key_never_in_repr(tmp_path) -> None:
    settings = resolve_settings({}, {"MAVERA_API_KEY": "secret-123", "HOME": str(tmp_path)})
    assert "secret-123" not in repr(settings)
    assert "secret-123" not in str(settings)


def test_readable_config_with_key_warns(tmp_path) -> None:
    env = write_config(tmp_path, 'api_key = "k"\n', mode=0o644)
    assert any("chmod 600" in warning for warning in resolve_settings({}, env).warnings)
    env = write_config(tmp_path, 'api_key = "k"\n', mode=0o600)
    assert resolve_settings({}, env).warnings == ()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [({"timeout": "abc"}, "timeout"), ({"timeout": -1}, "timeout"), ({"retries": "-2"}, "retries")],
)
def test_invalid_values_are_usage_errors(tmp_path, flags, needle) -> None:
    with pytest.raises(UsageError, match=needle):
        resolve_settings(flags, {"HOME": str(tmp_path)})


def test_bad_toml_is_a_usage_error(tmp_path) -> None:
    env = write_config(tmp_path, "model = [unclosed\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve_settings({}, env)


def test_plain_http_with_key_only_to_loopback() -> None:
    Settings(base_url="http://127.0.0.1:9/api/v1", api_key="k").check_transport()
    Settings(base_url="http://localhost:9", api_key="k").check_transport()
    with pytest.raises(UsageError, match="allow-insecure-http"):
        Settings(base_url="http://example.com/api/v1", api_key="k").check_transport()
    Settings(base_url="http://example.com", api_key="k", allow_insecure_http=True).check_transport()
    with pytest.raises(AuthError):
        Settings().require_key()


def test_cli_refuses_plain_http_to_a_remote_host() -> None:
    result = run_mavera(["stream", "--base-url", "http://192.0.2.1/api/v1", "hi"], expect=2)
    assert "plain http" in result.stderr


def test_prompt_parts_join_with_one_blank_line(tmp_path) -> None:
    first = tmp_path / "a.txt"
    first.write_text("A\n\n")
    stdin = io.BytesIO(b"S\n")
    assert (
        assemble_prompt(["w1", "w2"], [str(first)], stdin, stdin_is_tty=False) == "S\n\nA\n\nw1 w2"
    )


def test_prompt_does_not_read_a_terminal_unless_asked() -> None:
    class Exploding(io.BytesIO):
        def read(self, *args):  # type: ignore[override]
            raise AssertionError("read a TTY")

    assert assemble_prompt(["hi"], [], Exploding(), stdin_is_tty=True) == "hi"
    with pytest.raises(UsageError, match="no prompt"):
        assemble_prompt([], [], Exploding(), stdin_is_tty=True)


def test_prompt_rejects_non_utf8_stdin() -> None:
    with pytest.raises(UsageError, match="UTF-8"):
        assemble_prompt([], [], io.BytesIO(b"\xff\xfe"), stdin_is_tty=False)
