"""Import boundaries: the core stays free of the terminal, and start-up stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("mavera_cli", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.errors", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.sse", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.retry", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.events", {"httpx", "rich", "typer"}),
        ("mavera_cli.core", {"httpx", "rich", "typer"}),
        ("mavera_cli.client", {"rich", "typer"}),
        ("mavera_cli.render.text", {"httpx", "rich", "typer"}),
        ("mavera_cli.render.ndjson", {"httpx", "rich", "typer"}),
        ("mavera_cli.mock", {"httpx", "rich", "typer"}),
        ("mavera_cli.redact", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.printable", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.schema", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.render.preview", {"httpx", "typer", "rich", "partial_json_parser"}),
        ("mavera_cli.clispec", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.completion", {"httpx", "rich", "typer", "orjson"}),
        # The CLI layer's plain parts: wiring and jobs know no Typer, and reporting no HTTP.
        ("mavera_cli.options", {"httpx", "rich", "typer", "orjson"}),
        ("mavera_cli.reporting", {"httpx", "rich", "typer"}),
        ("mavera_cli.invocation", {"rich", "typer", "click"}),
        ("mavera_cli.structured", {"rich", "typer", "click"}),
        ("mavera_cli.toolrun", {"rich", "typer", "click"}),
        ("mavera_cli.render.choose", {"httpx", "rich", "typer"}),
    ],
)
def test_module_imports_stay_within_their_layer(module: str, forbidden: set[str]) -> None:
    assert not (loaded_after(f"import {module}") & forbidden)


def test_version_imports_nothing_heavy() -> None:
    code = (
        "import sys; from mavera_cli.entry import main; main(['--version']); "
        "print(' '.join(sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("mavera ")
    loaded = {name.split(".")[0] for name in out.stderr.split()}
    assert not loaded & {"httpx", "rich", "typer", "orjson"}


def test_only_the_cli_layer_imports_typer() -> None:
    """Typer (and Click) stay in cli.py, commands/ and typer_options.py (style habit 2)."""
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "mavera_cli"
    allowed = {"cli.py", "typer_options.py", "entry.py"}
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name not in allowed
        and path.parent.name != "commands"
        and any(
            line.startswith(("import typer", "from typer", "import click", "from click"))
            or line.strip().startswith(("import typer", "from typer", "import click"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_a_command_builds_and_imports_only_itself() -> None:
    """`mavera stream` builds the stream command alone: no other command's module, no Click
    objects for them; the whole tree is built only for help and unknown names."""
    code = (
        "import sys; from mavera_cli.entry import main\n"
        "code = main(['stream', '--mock', 'hi'])\n"
        "print(code, ' '.join(m for m in sys.modules if m.startswith('mavera_cli.commands.')), "
        "file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "You said: hi\n"
    code_and_modules = out.stderr.split()
    assert code_and_modules[0] == "0"
    assert set(code_and_modules[1:]) == {"mavera_cli.commands.requests"}


def test_the_whole_tree_is_built_for_help_and_unknown_names() -> None:
    import typer.main

    from mavera_cli.cli import COMMANDS, app_for

    def names(args: list[str]) -> set[str]:
        group = typer.main.get_command(app_for(args))
        return set(getattr(group, "commands", {}))

    assert names(["stream", "hi"]) == {"stream"}
    assert names(["sessions", "list"]) == {"sessions"}
    assert names([]) == names(["--help"]) == names(["strem"]) == set(COMMANDS)
