"""Resolved settings: flag > environment > config file > default, and where each came from.

The API key is read only from `MAVERA_API_KEY` or the config file, never from a flag.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mavera_cli.errors import AuthError, UsageError
from mavera_cli.redact import KEY_MASK, mask_url_credentials

DEFAULT_BASE_URL = "https://app.mavera.io/api/v1"
# Characters a URL's host cannot hold (RFC 3986 excludes them, and so do DNS names).
_NOT_IN_HOSTS = frozenset('<>"{}|\\^`')
DEFAULT_MODEL = "mavera-1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2
# The longest --timeout / --max-time / --tool-timeout accepted, in seconds (about 11.5 days).
# The OS timers behind them overflow somewhere past 9e9 s (socket timeouts, setitimer); a
# bound this far below that keeps every platform clear of it and is longer than any request.
MAX_SECONDS = 1_000_000

# name in Settings -> (environment variable, key in the config file)
_SOURCES: dict[str, tuple[str | None, str]] = {
    "base_url": ("MAVERA_BASE_URL", "base_url"),
    "api_key": ("MAVERA_API_KEY", "api_key"),
    "persona": ("MAVERA_PERSONA_ID", "persona"),
    "model": ("MAVERA_MODEL", "model"),
    "timeout": ("MAVERA_TIMEOUT", "timeout"),
    "retries": ("MAVERA_RETRIES", "retries"),
    "instructions": (None, "instructions"),
}
_DEFAULTS: dict[str, Any] = {
    "base_url": DEFAULT_BASE_URL,
    "api_key": None,
    "persona": None,
    "model": DEFAULT_MODEL,
    "timeout": DEFAULT_TIMEOUT,
    "retries": DEFAULT_RETRIES,
    "instructions": None,
}


def config_path(environ: Mapping[str, str]) -> Path:
    """The TOML config file: `$MAVERA_CONFIG`, else `$XDG_CONFIG_HOME/mavera/config.toml`
    (default `~/.config/…`)."""
    if environ.get("MAVERA_CONFIG"):
        return Path(environ["MAVERA_CONFIG"])
    return xdg_dir(environ, "XDG_CONFIG_HOME", ".config", "the config file") / "mavera/config.toml"


def config_path_origin(environ: Mapping[str, str]) -> str:
    """Where `config_path` got the path from, in the words `origins` uses."""
    if environ.get("MAVERA_CONFIG"):
        return "env MAVERA_CONFIG"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    return "env XDG_CONFIG_HOME" if os.path.isabs(xdg) else "default"


def xdg_dir(environ: Mapping[str, str], variable: str, default: str, what: str) -> Path:
    """An XDG base directory: `$variable` if it is an absolute path (the XDG spec has a
    relative one ignored), else `default` in the home directory. An empty or relative HOME
    is a usage error: `what` would be found in whatever folder the command runs from (a
    config file there could send the key anywhere)."""
    xdg = environ.get(variable, "")
    if os.path.isabs(xdg):
        return Path(xdg)
    home = environ.get("HOME")
    if home is None:  # unset: the password database's home, as the shell's `~`
        home = os.path.expanduser("~")
    if not os.path.isabs(home):
        problem = f"is not an absolute path ({home})" if home else "is empty"
        raise UsageError(
            f"HOME {problem}: {what} would be looked for in {Path(home, default)}, relative to "
            f"the current folder; set HOME or {variable} to an absolute path"
        )
    return Path(home, default)


@dataclass(frozen=True)
class SettingSource:
    """Where one setting can come from, for `config show`, the man page and the README."""

    name: str
    env: str | None
    file_key: str
    default: Any


def setting_sources() -> list[SettingSource]:
    """Every setting that can come from the environment or the config file, in order."""
    return [
        SettingSource(name, env, file_key, _DEFAULTS[name])
        for name, (env, file_key) in _SOURCES.items()
    ]


@dataclass(frozen=True)
class Settings:
    """Everything a request needs, resolved once; `origins` says where each value came from."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    persona: str | None = None
    model: str = DEFAULT_MODEL
    instructions: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_time: float | None = None
    retries: int = DEFAULT_RETRIES
    allow_insecure_http: bool = False
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        key = KEY_MASK if self.api_key else None
        return (
            f"Settings(base_url={mask_url_credentials(self.base_url)!r}, api_key={key!r}, "
            f"persona={self.persona!r}, model={self.model!r}, timeout={self.timeout!r}, "
            f"max_time={self.max_time!r}, retries={self.retries!r})"
        )

    def require_key(self) -> str:
        """The API key, or an AuthError (exit 3) saying how to provide one."""
        if not self.api_key:
            raise AuthError(
                "no API key: set MAVERA_API_KEY (or api_key in the config file), "
                "or use --mock to try the tool offline"
            )
        return self.api_key

    def check_transport(self) -> None:
        """Refuse a base URL that cannot be sent to as given (before a request would fail in
        a less telling way), and to send the key in clear text to anything but this machine."""
        problem = base_url_problem(self.base_url)
        if problem is not None:
            shown = mask_url_credentials(self.base_url)
            raise UsageError(
                f"invalid base URL {shown!r} (from {self.base_url_source()}): {problem}"
            )
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        insecure = parts.scheme == "http" and not is_loopback(host)
        if insecure and not self.allow_insecure_http:
            raise UsageError(
                f"refusing to send the API key over plain http to {host}; "
                "use https, or pass --allow-insecure-http if you really mean it"
            )

    def base_url_source(self) -> str:
        """Where the base URL came from, as a message names it."""
        origin = self.origins.get("base_url", "default")
        return {"flag": "--base-url", "default": "the default"}.get(
            origin, origin.removeprefix("env ").replace("config ", "config file ")
        )


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be the API's base URL, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": a `[` left open
        return "expected http(s)://host/..."
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return "expected http(s)://host/..."
    if "@" in parts.netloc:
        # httpx would send it as Basic auth in place of the key (a sure 401), and every
        # message quoting the URL would show the password.
        return (
            "it holds a user name or password ('…@'): Mavera authenticates with the API key "
            "only; take them out"
        )
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    return _host_problem(host)


def _host_problem(host: str) -> str | None:
    try:
        ipaddress.ip_address(host.partition("%")[0])  # an IPv6 zone: fe80::1%eth0
        return None
    except ValueError:
        pass
    if any(char.isspace() or not char.isprintable() or char in _NOT_IN_HOSTS for char in host):
        return f"{host!r} is not a host name"
    try:
        # What the resolver is given (an internal error at connect time, otherwise).
        host.encode("idna")
    except UnicodeError:
        return f"{host!r} is not a host name (an empty label, or one over 63 characters)"
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback ranges (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str], *, read_config: bool = True
) -> Settings:
    """Merge flags (None = not given), environment and config file into `Settings`.

    A value that is not of its setting's type is a UsageError naming where it came from:
    the flag, the environment variable, or the config file and its key.
    """
    path = config_path(environ)
    file_values, warnings = _read_config(path) if read_config else ({}, [])
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, (env_name, file_key) in _SOURCES.items():
        if name != "api_key" and flags.get(name) is not None:
            origin, raw = "flag", flags[name]
        elif env_name and environ.get(env_name):
            origin, raw = f"env {env_name}", environ[env_name]
        elif file_key in file_values:
            origin, raw = f"config {path}", file_values[file_key]
        else:
            values[name], origins[name] = _DEFAULTS[name], "default"
            continue
        where = _SourceName(name, origin, env_name, file_key, path)
        values[name], origins[name] = _checked_value(name, raw, where), origin
    api_key = _clean_key(values["api_key"], origins["api_key"]) if values["api_key"] else None
    if api_key and origins["api_key"].startswith("config"):
        warnings.extend(_permission_warning(path))
    max_time = flags.get("max_time")
    return Settings(
        base_url=str(values["base_url"]).strip().rstrip("/"),
        api_key=api_key,
        persona=values["persona"] or None,
        model=values["model"],
        instructions=values["instructions"] or None,
        timeout=values["timeout"],
        max_time=None if max_time is None else seconds("--max-time", max_time),
        retries=values["retries"],
        allow_insecure_http=bool(flags.get("allow_insecure_http")),
        origins=origins,
        warnings=tuple(warnings),
    )


def _clean_key(value: Any, origin: str) -> str | None:
    """The key without surrounding whitespace; AuthError (exit 3) if it still is no header value.

    Keys read from secret files end in "\\n" or "\\r\\n": stripped. What is left goes into an
    HTTP header as is, so a control character, a space or a non-ASCII character inside it is
    refused here, naming where the key came from and never quoting it (an HTTP library's own
    error would show it, through repr()).
    """
    key = str(value).strip()
    if not key:
        return None
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise AuthError(
            f"the API key from {_key_source(origin)} holds a space, a control character or a "
            "non-ASCII character; an API key is printable ASCII"
        )
    return key


def _key_source(origin: str) -> str:
    """`origins` words as a person reads them: "MAVERA_API_KEY", "the config file PATH"."""
    if origin.startswith("env "):
        return origin.removeprefix("env ")
    return "the config file " + origin.removeprefix("config ")


@dataclass(frozen=True)
class _SourceName:
    """How an error names where a value came from."""

    name: str
    origin: str
    env_name: str | None
    file_key: str
    path: Path

    def __str__(self) -> str:
        if self.origin == "flag":
            return "--" + self.name.replace("_", "-")
        if self.origin.startswith("env") and self.env_name:
            return self.env_name
        return f"{self.file_key} in config file {self.path}"


# TOML's names for the Python types tomllib returns, for "must be a string, not a table".
_TOML_TYPES = {
    dict: "a table",
    list: "an array",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
}


def _toml_type(value: Any) -> str:
    return _TOML_TYPES.get(type(value), "a date or time")


def _checked_value(name: str, value: Any, where: _SourceName) -> Any:
    """A setting's value from flag, environment or file, checked and converted to its type."""
    from_file = where.origin.startswith("config")
    if name == "timeout":
        if from_file and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UsageError(f"{where}: expected a number of seconds, got {_toml_type(value)}")
        return seconds(str(where), value)
    if name == "retries":
        if from_file and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{where}: expected a whole number >= 0, got {_toml_type(value)}")
        return _retries(str(where), value)
    if not isinstance(value, str):
        # Never quote the value: for api_key it is the secret.
        raise UsageError(f"{where}: expected a string, got {_toml_type(value)}")
    return value


def _read_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is not TOML
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    try:
        import tomllib  # only when there is a config file to read

        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {key for _, key in _SOURCES.values()})
    warnings = [f"config file {path}: unknown setting {name!r} ignored" for name in unknown]
    return data, warnings


def _permission_warning(path: Path) -> list[str]:
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return [f"config file {path} holds an API key and is readable by others; chmod 600 it"]
    return []


def seconds(name: str, value: Any) -> float:
    """A number of seconds for `name` (a flag, variable or config key): more than 0 and at
    most MAX_SECONDS; anything else is a UsageError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: expected a number of seconds, got {_shown(value)}") from None
    if not 0 < number <= MAX_SECONDS:  # also false for nan
        raise UsageError(
            f"{name}: expected a number of seconds more than 0 and at most {MAX_SECONDS}, "
            f"got {_shown(value)}"
        )
    return number


def _retries(name: str, value: Any) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0:
        raise UsageError(f"{name}: expected a whole number >= 0, got {_shown(value)}")
    return number


def _shown(value: Any) -> str:
    """A value as an error quotes it: numbers as typed, text quoted."""
    return f"{value:g}" if isinstance(value, float) else repr(value)


def masked(value: str | None) -> str:
    """How a key is shown anywhere: never its text."""
    return KEY_MASK if value else "(not set)"
