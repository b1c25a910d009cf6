"""The README never lies: its test command is the one CI runs."""

from __future__ import annotations

from tests.conftest import REPO


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    block = readme[readme.index("```sh") + 1 : readme.index("```", readme.index("```sh") + 1)]
    install_line, test_line = (line.split("#")[0].strip() for line in block[:2])
    assert "mavera stream --mock" in install_line
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_line in ci_lines
