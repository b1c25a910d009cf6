"""TAB completion: `mavera completion SHELL` prints the committed scripts, and real shells
driving them offer commands, options, choices and files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mavera_cli.completion import SCRIPT_FILES, SHELLS
from tests.conftest import REPO, run_mavera

COMPLETIONS = REPO / "completions"


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_the_committed_script(shell: str) -> None:
    result = run_mavera(["completion", shell])
    assert result.text == (COMPLETIONS / SCRIPT_FILES[shell]).read_text()
    assert result.stderr == ""


def test_completion_refuses_an_unknown_shell() -> None:
    result = run_mavera(["completion", "tcsh"], expect=2)
    assert result.stdout == b""
    assert "tcsh" in result.stderr


def require(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with a few files for file completion to find (and nothing else)."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    for name in ("schema.json", "notes.md", "run.sse"):
        (work / name).write_text("{}")
    return work


# --- bash ----------------------------------------------------------------------------------

# Splits the line the way readline does for completion (COMP_WORDBREAKS includes "="), then
# calls the completion function bash would call, and prints what it offers.
BASH_DRIVER = r"""
source "$1"
line="$2"
read -ra COMP_WORDS <<< "$line"
[[ "$line" == *" " || -z "$line" ]] && COMP_WORDS+=("")
words=()
for word in "${COMP_WORDS[@]}"; do
    if [[ "$word" == -*=* ]]; then
        words+=("${word%%=*}" "=" "${word#*=}")
    else
        words+=("$word")
    fi
done
COMP_WORDS=("${words[@]}")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$line"
COMP_POINT=${#line}
complete -p mavera >/dev/null || exit 3
_mavera
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash_complete(line: str, cwd: Path) -> list[str]:
    bash = require("bash")
    done = subprocess.run(
        [
            bash,
            "--norc",
            "--noprofile",
            "-c",
            BASH_DRIVER,
            "driver",
            str(COMPLETIONS / "mavera.bash"),
            line,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return sorted(word for word in done.stdout.splitlines() if word)


def test_bash_completes_st_to_stream(workdir) -> None:
    assert bash_complete("mavera st", workdir) == ["stream"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "mavera ",
            [
                "ask",
                "batch",
                "chat",
                "completion",
                "config",
                "inspect",
                "json",
                "mock",
                "personas",
                "replay",
                "sessions",
                "stream",
                "tools",
                "usage",
            ],
        ),
        ("mavera config s", ["show"]),
        ("mavera sessions ", ["list", "rm", "show"]),
        ("mavera stream --sa", ["--save-raw"]),
        ("mavera json --sch", ["--schema", "--schema-name"]),
        ("mavera tools --tool-e", ["--tool-errors"]),
        ("mavera replay --as ", ["json", "stream", "tools"]),
        ("mavera replay --as=j", ["json"]),
        ("mavera completion ", ["bash", "fish", "zsh"]),
        ("mavera --ver", ["--version"]),
        ("mavera stream --mock hello ", []),  # prompt words: nothing to offer
        ("mavera stream --model ", []),  # a value, not a file
    ],
)
def test_bash_completes_commands_options_and_choices(workdir, line, expected) -> None:
    assert bash_complete(line, workdir) == expected


@pytest.mark.parametrize(
    "line",
    [
        "mavera json --schema ",
        "mavera json --schema=",
        "mavera tools --functions ",
        "mavera stream -f ",
        "mavera ask --file ",
        "mavera stream --save-raw ",
        "mavera replay ",
        "mavera stream -m x -f ",  # after an option that took a value
    ],
)
def test_bash_completes_files_for_file_options_and_arguments(workdir, line) -> None:
    assert bash_complete(line, workdir) == ["notes.md", "run.sse", "schema.json", "sub"]


def test_bash_completes_a_file_prefix(workdir) -> None:
    assert bash_complete("mavera json --schema sc", workdir) == ["schema.json"]


# --- fish ----------------------------------------------------------------------------------


def fish_complete(line: str, cwd: Path) -> list[str]:
    fish = require("fish")
    script = f"source {COMPLETIONS / 'mavera.fish'}; complete -C {line!r}"
    done = subprocess.run(
        [fish, "--no-config", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return sorted(entry.split("\t")[0] for entry in done.stdout.splitlines())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mavera st", ["stream"]),
        ("mavera config s", ["show"]),
        ("mavera json --sch", ["--schema", "--schema-name"]),
        ("mavera replay --as ", ["json", "stream", "tools"]),
        ("mavera json --schema ", ["notes.md", "run.sse", "schema.json", "sub/"]),
        ("mavera stream --save-raw ", ["notes.md", "run.sse", "schema.json", "sub/"]),
        ("mavera replay ", ["notes.md", "run.sse", "schema.json", "sub/"]),
        ("mavera stream --mock hello ", []),
    ],
)
def test_fish_completes(workdir, line, expected) -> None:
    assert fish_complete(line, workdir) == expected


# --- zsh -----------------------------------------------------------------------------------

# An interactive zsh on a pseudo-terminal with the completion on $fpath: type the line, press
# TAB, then Ctrl-X, bound to a widget that saves the edited line to a file. The screen (with
# any list of matches) is printed.
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty -b z 'zsh -f -i'
zpty -w z "PS1='> '; unsetopt BEEP; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "save-buffer() { print -r -- \"\$BUFFER\" > $3 }; zle -N save-buffer"
zpty -w z "bindkey '^X' save-buffer"
sleep 0.5
while zpty -r -t z line; do :; done
zpty -w -n z "$2"$'\t'
sleep 0.5
zpty -w -n z $'\C-x'
out=""
for i in {1..100}; do
    sleep 0.1
    while zpty -r -t z line; do out+="$line"; done
    [[ -s $3 ]] && break
done
print -r -- "$out"
zpty -d z
"""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def zsh_complete(line: str, cwd: Path) -> tuple[str, str]:
    """The edited line after one TAB, and the text the terminal showed."""
    zsh = require("zsh")
    saved = cwd.parent / "buffer.txt"
    done = subprocess.run(
        [zsh, "-f", "-c", ZSH_DRIVER, "driver", str(COMPLETIONS), line, str(saved)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert saved.is_file(), f"zsh never ran the widget: {done.stdout!r}"
    return saved.read_text().rstrip("\n"), _ANSI.sub("", done.stdout)


def test_zsh_script_is_valid_zsh() -> None:
    zsh = require("zsh")
    done = subprocess.run([zsh, "-n", str(COMPLETIONS / "_mavera")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize(
    ("line", "completed"),
    [
        ("mavera st", "mavera stream "),
        ("mavera config s", "mavera config show "),
        ("mavera json --schema sc", "mavera json --schema schema.json "),
        ("mavera stream --save-r", "mavera stream --save-raw "),
        ("mavera completion f", "mavera completion fish "),
    ],
)
def test_zsh_completes(workdir, line, completed) -> None:
    assert zsh_complete(line, workdir)[0] == completed


def test_zsh_lists_the_choices_of_an_option(workdir) -> None:
    edited, screen = zsh_complete("mavera replay --as ", workdir)
    assert edited == "mavera replay --as "
    assert re.search(r"json\s+stream\s+tools", screen), screen


# --- `mock --fault`: the fault kinds (a counted kind completes up to its colon) ---------------

FAULT_KINDS = sorted(
    [
        "rate-limit",
        "server-error",
        "drop-after:",
        "stall-after:",
        "failed",
        "incomplete",
        "bad-json",
    ]
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mavera mock --fault ", FAULT_KINDS),
        ("mavera mock --fault dr", ["drop-after:"]),
        ("mavera mock --fault=s", ["server-error", "stall-after:"]),
        ("mavera mock --fail-first 1 --fault ", FAULT_KINDS),
    ],
)
def test_bash_completes_fault_kinds(workdir, line, expected) -> None:
    assert bash_complete(line, workdir) == expected


def test_fish_completes_fault_kinds(workdir) -> None:
    assert fish_complete("mavera mock --fault ", workdir) == FAULT_KINDS
    assert fish_complete("mavera mock --fault st", workdir) == ["stall-after:"]


@pytest.mark.parametrize(
    ("line", "completed"),
    [
        ("mavera mock --fault ra", "mavera mock --fault rate-limit "),
        ("mavera mock --fault dr", "mavera mock --fault drop-after:"),  # the count comes next
    ],
)
def test_zsh_completes_fault_kinds(workdir, line, completed) -> None:
    assert zsh_complete(line, workdir)[0] == completed


def test_zsh_lists_the_fault_kinds(workdir) -> None:
    edited, screen = zsh_complete("mavera mock --fault ", workdir)
    assert edited == "mavera mock --fault "
    for kind in FAULT_KINDS:
        assert kind in screen, screen
