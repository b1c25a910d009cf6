"""A plain description of the command tree, read from the live Typer/Click objects.

The man page, the shell completions and the help-example checks are all generated from this,
so a new command or option shows up everywhere without a list kept by hand. The Click objects
are read by attribute only; nothing here imports typer or click.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Click's marker for "do not re-wrap this paragraph" (a backspace character on its own line).
NO_REWRAP = "\b"
EXAMPLES_HEADING = "Examples:"
# Metavars that name a path: their values complete as files.
_FILE_METAVAR = re.compile(r"\b(FILE|PATH|DIR)S?\b", re.IGNORECASE)


@dataclass(frozen=True)
class OptionSpec:
    """One option: its spellings, what it takes, and how its value completes."""

    names: tuple[str, ...]
    negations: tuple[str, ...] = ()  # `--compact` for a `--pretty/--compact` switch
    metavar: str | None = None  # None: a flag that takes no value
    help: str = ""
    choices: tuple[str, ...] = ()
    takes_file: bool = False
    repeatable: bool = False
    # Values TAB offers that are not the only ones allowed (`drop-after:` wants a count after
    # it); from the option's completion callback. Unlike `choices`, nothing checks against them.
    suggestions: tuple[str, ...] = ()

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + self.negations

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def long_name(self) -> str:
        longs = [name for name in self.names if name.startswith("--")]
        return longs[0] if longs else self.names[0]


@dataclass(frozen=True)
class ArgumentSpec:
    """One positional argument."""

    metavar: str
    help: str = ""
    variadic: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    takes_file: bool = False


@dataclass(frozen=True)
class CommandSpec:
    """A command or a group of commands; `path` is () for `mavera` itself."""

    path: tuple[str, ...]
    summary: str = ""
    description: str = ""
    examples: tuple[str, ...] = ()
    epilog: str = ""
    options: tuple[OptionSpec, ...] = ()
    arguments: tuple[ArgumentSpec, ...] = ()
    subcommands: tuple[CommandSpec, ...] = field(default=())

    @property
    def name(self) -> str:
        return " ".join(("mavera", *self.path))

    @property
    def is_group(self) -> bool:
        return bool(self.subcommands)

    def walk(self) -> Iterator[CommandSpec]:
        """This command and every command below it, depth first, in help order."""
        yield self
        for sub in self.subcommands:
            yield from sub.walk()

    def find(self, path: tuple[str, ...]) -> CommandSpec:
        """The command at `path` (KeyError if there is none)."""
        command = self
        for word in path:
            command = next(
                (sub for sub in command.subcommands if sub.path[-1] == word), None
            ) or _missing(path)
        return command

    def option(self, name: str) -> OptionSpec | None:
        """The option spelled `name` here, if any."""
        return next((option for option in self.options if name in option.all_names), None)

    def synopsis(self) -> str:
        """`mavera stream [OPTIONS] [PROMPT]...`, as a usage line."""
        parts = [self.name]
        if self.is_group:
            parts += ["[OPTIONS]", "COMMAND", "[ARGS]..."]
            return " ".join(parts)
        if self.options:
            parts.append("[OPTIONS]")
        parts += [
            usage_word(argument.metavar, argument.required, argument.variadic)
            for argument in self.arguments
        ]
        return " ".join(parts)


def usage_word(metavar: str, required: bool, variadic: bool) -> str:
    """How a positional argument is written in a usage line, as man pages write it:
    `FILE` (required), `[PROMPT]` (optional), `[PROMPT]...` (any number). Braces would
    read as a choice, so they are not used (Typer writes a required argument `{FILE}`)."""
    word = metavar if required else f"[{metavar}]"
    return word + ("..." if variadic else "")


def argument_usage(param: Any) -> str:
    """`usage_word` for a Click argument object (read by attribute, like everything here)."""
    metavar = getattr(param, "metavar", None) or str(param.name).upper()
    return usage_word(metavar, bool(param.required), getattr(param, "nargs", 1) == -1)


def _missing(path: tuple[str, ...]) -> CommandSpec:
    raise KeyError(" ".join(path))


def describe(command: Any, path: tuple[str, ...] = (), parent: Any = None) -> CommandSpec:
    """Describe a Click command (from `typer.main.get_command(app)`) and everything below it.

    `parent` is the parent's Click context: settings such as `-h` for help are inherited.
    """
    context = command.make_context(
        path[-1] if path else "mavera", [], parent=parent, resilient_parsing=True
    )
    help_text = _clean(getattr(command, "help", None) or "")
    description, examples = split_examples(help_text)
    summary = _clean(getattr(command, "short_help", None) or "") or _first_sentence(description)
    options: list[OptionSpec] = []
    arguments: list[ArgumentSpec] = []
    params = list(getattr(command, "params", []))
    help_option = command.get_help_option(context)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if getattr(param, "hidden", False):
            continue
        if getattr(param, "param_type_name", "") == "argument":
            arguments.append(_argument(param))
        else:
            options.append(_option(param, context))
    subcommands = [
        describe(sub, (*path, name), context)
        for name, sub in getattr(command, "commands", {}).items()
        if not getattr(sub, "hidden", False)
    ]
    return CommandSpec(
        path=path,
        summary=summary,
        description=description,
        examples=examples,
        epilog=_clean(getattr(command, "epilog", None) or ""),
        options=tuple(options),
        arguments=tuple(arguments),
        subcommands=tuple(subcommands),
    )


def split_examples(help_text: str) -> tuple[str, tuple[str, ...]]:
    """Split a help text into its description and the command lines under "Examples:"."""
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == EXAMPLES_HEADING:
            body = [entry.strip() for entry in lines[index + 1 :]]
            examples = tuple(entry for entry in body if entry and entry != NO_REWRAP)
            return "\n".join(lines[:index]).strip(), examples
    return help_text.strip(), ()


def _clean(text: str) -> str:
    """Dedent a docstring-style help text (Click keeps the indentation of later lines)."""
    lines = text.expandtabs().splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    margin = min(indents, default=0)
    cleaned = [lines[0].strip()] + [line[margin:].rstrip() for line in lines[1:]] if lines else []
    return "\n".join(cleaned).strip()


def _first_sentence(text: str) -> str:
    first = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    return first


def _choices(param: Any) -> tuple[str, ...]:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    if choices is None:  # a plain click.Choice type
        choices = getattr(getattr(param, "type", None), "choices", None)
    return tuple(str(getattr(choice, "value", choice)) for choice in choices or ())


def _takes_file(param: Any, metavar: str | None) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and (descriptor.is_path or descriptor.is_file):
        return True
    if type(getattr(param, "type", None)).__name__ in ("Path", "File"):
        return True
    return bool(metavar and _FILE_METAVAR.search(metavar))


def _type_metavar(param: Any) -> str:
    """Click's names for a value of this type, for options declared without a metavar."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        return str(getattr(getattr(param, "type", None), "name", "value")).upper()
    names = {int: "INTEGER", float: "FLOAT"}
    return next(
        (name for kind, name in names.items() if annotation == kind or annotation == kind | None),
        "TEXT",
    )


def _suggestions(param: Any, context: Any) -> tuple[str, ...]:
    """What the option's own completion callback offers for an empty word (Click's
    `shell_complete`); file completion and the type's choices are described elsewhere."""
    items = param.shell_complete(context, "")
    return tuple(item.value for item in items if item.type == "plain" and item.value)


def _option(param: Any, context: Any) -> OptionSpec:
    is_flag = bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))
    choices = _choices(param)
    metavar: str | None = None
    if not is_flag:
        metavar = getattr(param, "metavar", None) or (
            "[" + "|".join(choices) + "]" if choices else _type_metavar(param)
        )
    names = sorted(param.opts, key=lambda name: (name.startswith("--"), name))
    return OptionSpec(
        names=tuple(names),
        negations=tuple(getattr(param, "secondary_opts", ())),
        metavar=metavar,
        help=" ".join((getattr(param, "help", None) or "").split()),
        choices=choices,
        takes_file=not is_flag and _takes_file(param, metavar),
        repeatable=bool(getattr(param, "multiple", False)) or bool(getattr(param, "count", False)),
        suggestions=() if is_flag or choices else _suggestions(param, context),
    )


def _argument(param: Any) -> ArgumentSpec:
    metavar = getattr(param, "metavar", None) or str(param.name).upper()
    return ArgumentSpec(
        metavar=metavar,
        help=" ".join((getattr(param, "help", None) or "").split()),
        variadic=getattr(param, "nargs", 1) == -1,
        required=bool(getattr(param, "required", False)),
        choices=_choices(param),
        takes_file=_takes_file(param, metavar),
    )
