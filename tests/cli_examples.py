"""Checks of the shell examples in help texts and docs against the live command tree.

Test-only: the shipped package keeps just what runs (`mavera_cli.clispec.describe`).
"""

from __future__ import annotations

import re
import shlex

from mavera_cli.clispec import CommandSpec

_SHELL_OPERATORS = ";&|()<>"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def invocations(example: str) -> list[list[str]]:
    """The `mavera …` commands in a shell line, as argument lists (after the word `mavera`).

    `mavera` counts only in command position: first in a command, or after `NAME=value`.
    """
    lexer = shlex.shlex(example, posix=True, punctuation_chars=_SHELL_OPERATORS)
    lexer.whitespace_split = True
    found: list[list[str]] = []
    current: list[str] | None = None
    command_position = True
    for token in lexer:
        if token and set(token) <= set(_SHELL_OPERATORS):
            current, command_position = None, True
        elif current is not None:
            current.append(token)
        elif command_position and token == "mavera":
            current = []
            found.append(current)
        elif command_position and not _ASSIGNMENT.match(token):
            command_position = False
    return found


def check_invocation(root: CommandSpec, args: list[str]) -> list[str]:
    """Problems with one `mavera` argument list: unknown commands, options or choices."""
    problems: list[str] = []
    command = root
    positionals: list[str] = []
    words = iter(args)
    only_positionals = False
    for word in words:
        if word == "--" and not only_positionals:
            only_positionals = True
            continue
        if word.startswith("-") and word != "-" and not only_positionals:
            name, has_inline, inline = word.partition("=")
            option = command.option(name)
            if option is None:
                problems.append(f"{command.name}: unknown option {name}")
                continue
            if option.takes_value:
                value = inline if has_inline else next(words, None)
                if value is None:
                    problems.append(f"{command.name}: {name} needs a value")
                elif option.choices and value not in option.choices:
                    problems.append(f"{command.name}: {name} {value!r} is not a choice")
            elif has_inline:
                problems.append(f"{command.name}: {name} takes no value")
            continue
        if command.is_group and not positionals:
            try:
                command = command.find((word,))
            except KeyError:
                problems.append(f"{command.name}: unknown command {word}")
                return problems
            continue
        positionals.append(word)
    if command.is_group:
        problems.append(f"{command.name}: no command given")
    for argument, value in zip(command.arguments, positionals, strict=False):
        if argument.choices and value not in argument.choices:
            problems.append(f"{command.name}: {argument.metavar} {value!r} is not a choice")
    required = [argument for argument in command.arguments if argument.required]
    if len(positionals) < len(required):
        problems.append(f"{command.name}: missing {required[len(positionals)].metavar}")
    if not any(argument.variadic for argument in command.arguments) and len(positionals) > len(
        command.arguments
    ):
        problems.append(f"{command.name}: unexpected argument {positionals[-1]!r}")
    return problems
