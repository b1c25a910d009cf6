"""The man page, completions and README exit-code table are generated from the CLI's own
definitions, committed, current, and render cleanly; `--help` lists commands, exit codes and
real examples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from mavera_cli.cli import command_spec
from mavera_cli.clispec import CommandSpec, split_examples
from mavera_cli.errors import EXIT_CODE_MEANINGS, ExitCode
from scripts import docgen
from tests.cli_examples import check_invocation, invocations
from tests.conftest import REPO, run_mavera

SPEC = command_spec()
LEAVES = [command for command in SPEC.walk() if command.path and not command.is_group]
MAN = REPO / "man" / "mavera.1"
CONTRACT = REPO.parent / "shared" / "cli-contract.md"
# Exit codes beyond the contract's table (extensions it allows; each in --help, man page, README).
EXTENSIONS = {"74"}


def leaf_id(command: CommandSpec) -> str:
    return " ".join(command.path)


# --- up to date ----------------------------------------------------------------------------


def test_committed_files_equal_what_docgen_generates() -> None:
    stale = docgen.stale_files(REPO)
    assert not stale, f"out of date: {stale}; run `python -m scripts.docgen` and commit"


def test_docgen_check_flags_a_stale_file_and_regenerating_fixes_it(tmp_path) -> None:
    for relative in docgen.generated_files(REPO):
        source = REPO / relative
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / relative)
    bash = tmp_path / "completions" / "mavera.bash"
    bash.write_text(bash.read_text().replace("--save-raw", "--save-rax"))
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| 7 | `partial_stream` |", "| 7 | `partial` |"))

    def docgen_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scripts.docgen", "--root", str(tmp_path), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    check = docgen_cli("--check")
    assert check.returncode == 1
    assert check.stderr.splitlines() == [
        "out of date: README.md (run: python -m scripts.docgen)",
        "out of date: completions/mavera.bash (run: python -m scripts.docgen)",
    ]
    assert "--save-rax" in bash.read_text(), "--check must not write"
    regenerate = docgen_cli()
    assert regenerate.returncode == 0
    assert set(regenerate.stdout.splitlines()) == {
        "wrote README.md",
        "wrote completions/mavera.bash",
    }
    assert docgen_cli("--check").returncode == 0
    assert bash.read_text() == (REPO / "completions" / "mavera.bash").read_text()


def test_man_page_date_changes_only_when_its_content_does() -> None:
    committed = MAN.read_text()
    kept = docgen.generated_files(REPO, today="2999-01-01")[docgen.MAN_PAGE]
    assert kept == committed
    changed = docgen._man_page_text(
        SPEC, committed.replace("mavera \\- ", "mavera \\- X"), "2999-01-01"
    )
    assert ".TH MAVERA 1 2999-01-01 " in changed


# --- the man page renders, and names everything ----------------------------------------------

RENDERERS = {
    "groff": ["groff", "-man", "-ww", "-z", "-Tutf8"],
    "mandoc": ["mandoc", "-Tlint", "-W", "warning"],
    "man": ["man", "--warnings", "-l"],
}


@pytest.mark.parametrize("tool", RENDERERS)
def test_man_page_renders_without_warnings(tool) -> None:
    if shutil.which(RENDERERS[tool][0]) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    done = subprocess.run(
        [*RENDERERS[tool], str(MAN)],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def rendered_man_page() -> str:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed (.ci/run installs it)")
    done = subprocess.run(
        [groff, "-man", "-Tascii", "-P", "-cbou", str(MAN)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_man_page_names_every_command_option_and_exit_code() -> None:
    text = rendered_man_page()
    sections = re.findall(r"^([A-Z][A-Z ]+)$", text, re.MULTILINE)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "ENVIRONMENT"):
        assert section in sections
    for section in ("FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert section in sections
    words = set(re.findall(r"[\w.-]+", text))
    for command in SPEC.walk():
        assert command.name in text, command.name
        for option in command.options:
            for name in option.all_names:
                assert name in words, f"{command.name} {name}"
    exit_status = text[text.index("\nEXIT STATUS\n") : text.index("\nEXAMPLES\n")]
    for code in ExitCode:
        assert re.search(rf"^\s+{int(code)} {code.name}\b", exit_status, re.MULTILINE), code
    for variable in ("MAVERA_API_KEY", "MAVERA_BASE_URL", "NO_COLOR", "FORCE_COLOR"):
        assert variable in words
    assert "mavera/config.toml" in text


def test_man_page_exit_status_is_the_contracts_table() -> None:
    if not CONTRACT.is_file():
        pytest.skip("shared/cli-contract.md is not beside the checkout")
    contract = dict(re.findall(r"^\| (\d+) \| (\w+) \|", CONTRACT.read_text(), re.MULTILINE))
    ours = {str(int(code)): code.name for code in ExitCode}
    # Every contract code is ours, by the same name; ours adds only the documented extensions.
    assert {number: ours.get(number) for number in contract} == contract
    assert set(ours) - set(contract) <= EXTENSIONS
    exit_status = rendered_man_page().split("\nEXIT STATUS\n")[1]
    for number, name in contract.items():
        assert f"{number} {name}" in exit_status


def test_man_page_examples_are_valid_command_lines() -> None:
    lines = [line for example in docgen.GENERAL_EXAMPLES for line in example.lines]
    found = [args for line in lines for args in invocations(line)]
    assert len(found) >= 8
    for args in found:
        assert check_invocation(SPEC, args) == [], args
    text = rendered_man_page()
    assert "jq" in text and "case" in text and "--events" in text


# --- README --------------------------------------------------------------------------------


def test_readme_exit_code_table_has_every_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index(docgen.README_START) : readme.index(docgen.README_END)]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+) \|$", table, re.MULTILINE)
    assert [(int(code), name) for code, name, _ in rows] == [
        (int(code), code.name) for code in EXIT_CODE_MEANINGS
    ]


def readme_shell_lines() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines()]


def test_readme_examples_are_valid_command_lines() -> None:
    found = [args for line in readme_shell_lines() for args in invocations(line)]
    assert len(found) >= 30
    for args in found:
        assert check_invocation(SPEC, args) == [], args


def test_readme_shows_every_command() -> None:
    used = {
        tuple(args[: len(command.path)])
        for line in readme_shell_lines()
        for args in invocations(line)
        for command in LEAVES
    }
    for command in LEAVES:
        assert command.path in used, f"no README example for {command.name}"


# --- --help --------------------------------------------------------------------------------


def test_top_level_help_lists_the_commands_and_the_exit_codes() -> None:
    text = run_mavera(["--help"]).text
    commands = text[text.index("Commands:") : text.index("Exit codes:")]
    for command in SPEC.subcommands:
        assert re.search(rf"^\s+{command.path[-1]}\s+\S", commands, re.MULTILINE), command.name
    codes = text[text.index("Exit codes:") :]
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert re.search(rf"^\s+{int(code)}\s+{code.name}\s+{re.escape(meaning)}$", codes, re.M)


@pytest.mark.parametrize("command", LEAVES, ids=leaf_id)
def test_each_command_help_shows_two_or_three_real_examples(command: CommandSpec) -> None:
    text = run_mavera([*command.path, "--help"]).text
    assert "Examples:" in text, text
    shown = split_examples(text.split("\nArguments:")[0].split("\nOptions:")[0])[1]
    assert 2 <= len(shown) <= 3, shown
    # Each example is shown unwrapped, on one line, exactly as written in the docstring.
    assert list(shown) == list(command.examples)
    for example in shown:
        calls = invocations(example)
        assert calls, f"not a mavera command line: {example}"
        for args in calls:
            assert check_invocation(SPEC, args) == [], example


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("mavera stream --bogus hi", "unknown option --bogus"),
        ("mavera replay --as yaml x.sse", "--as 'yaml' is not a choice"),
        ("mavera replay", "missing FILE"),
        ("mavera streem hi", "unknown command streem"),
        ("mavera completion tcsh", "SHELL 'tcsh' is not a choice"),
        ("cat x | mavera stream --timeout", "--timeout needs a value"),
    ],
)
def test_example_checker_catches_what_would_not_run(line: str, problem: str) -> None:
    (args,) = invocations(line)
    assert any(problem in found for found in check_invocation(SPEC, args))
