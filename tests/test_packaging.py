"""What `pip install` / `pipx install` gives: the man page ships in the wheel as data under
share/man/man1, so `man mavera` finds it in a venv or pipx (issue 11 item 24); and usage lines
say `[PROMPT]...` and `FILE`, as man pages write them, not `[PROMPT]` and `{FILE}`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mavera_cli.cli import command_spec
from tests.conftest import REPO, run_mavera

MAN_PAGE_IN_WHEEL = "share/man/man1/mavera.1"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("mavera_cli-*.whl")
    return path


def test_the_wheel_carries_the_man_page_as_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(MAN_PAGE_IN_WHEEL)]
        assert names == [f"{wheel.name.split('-py')[0]}.data/data/{MAN_PAGE_IN_WHEEL}"]
        assert archive.read(names[0]) == (REPO / "man" / "mavera.1").read_bytes()


def test_the_wheel_holds_only_what_runs(wheel: Path) -> None:
    """Developer tools (docgen) and test-only helpers stay out of the shipped package."""
    with zipfile.ZipFile(wheel) as archive:
        modules = {name for name in archive.namelist() if name.endswith(".py")}
        assert "mavera_cli/cli.py" in modules
        assert not any(name.startswith(("scripts/", "tests/")) for name in modules)
        assert "mavera_cli/docgen.py" not in modules
        clispec = archive.read("mavera_cli/clispec.py").decode()
    assert "def check_invocation" not in clispec and "def invocations" not in clispec


def test_an_install_puts_the_man_page_where_man_finds_it(wheel: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the mavera-cli this test runs from.
    install = ["install", "-q", "--no-deps", "--ignore-installed", "--prefix", str(prefix)]
    installed = subprocess.run(
        [sys.executable, "-m", "pip", *install, str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    page = prefix / MAN_PAGE_IN_WHEEL
    assert page.read_bytes() == (REPO / "man" / "mavera.1").read_bytes()
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed (.ci/run installs man-db)")
    found = subprocess.run(
        [man, "-M", str(prefix / "share" / "man"), "-w", "mavera"], capture_output=True, text=True
    )
    assert found.stdout.strip() == str(page)


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("stream", "mavera stream [OPTIONS] [PROMPT]..."),
        ("ask", "mavera ask [OPTIONS] [PROMPT]..."),
        ("json", "mavera json [OPTIONS] [PROMPT]..."),
        ("tools", "mavera tools [OPTIONS] [PROMPT]..."),
        ("replay", "mavera replay [OPTIONS] FILE"),
        ("completion", "mavera completion [OPTIONS] SHELL"),
    ],
)
def test_usage_lines_read_as_man_pages_write_them(command: str, usage: str) -> None:
    first = run_mavera([command, "--help"]).text.splitlines()[0]
    assert first == f"Usage: {usage}"
    assert "{" not in first


def test_every_usage_line_is_the_man_page_synopsis() -> None:
    for command in command_spec().walk():
        if command.is_group:
            continue
        first = run_mavera([*command.path, "--help"]).text.splitlines()[0]
        assert first == f"Usage: {command.synopsis()}"


def test_a_missing_argument_shows_the_same_usage_line() -> None:
    result = run_mavera(["replay"], expect=2)
    assert "Usage: mavera replay [OPTIONS] FILE\n" in result.stderr
    assert "{FILE}" not in result.stderr
