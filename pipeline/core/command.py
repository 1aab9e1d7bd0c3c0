"""The contract of a command: each command package exports one ``COMMAND``; ``main.py`` loops over them.

A :class:`Command` says everything the command line needs to know: the name, the one-line
help of ``main.py --help``, the description of ``main.py NAME --help``, the option
dataclasses (declared with :func:`pipeline.core.options.option`) and the function that runs
it, or instead its subcommands (``masks train|apply|export|import``). It is checked when
it is built, so a package with a malformed ``COMMAND`` fails when it is imported (and a
test imports every command package), not when a user first calls it.

``run`` gets the parsed arguments and builds its options with
:func:`pipeline.core.options.from_namespace` before it imports the stage's heavy modules
(torch), so bad input is refused at once; it prints its result and returns the exit code.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

#: titled option groups computed when the parser is built (one per registered model type, say)
OptionGroups = Callable[[], Iterable[tuple[str, type]]]

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Command:
    name: str
    help: str                                   # one line, listed by ``main.py --help``
    description: str                            # ``main.py NAME --help``
    options: tuple[type, ...] = ()              # option dataclasses, added to the parser in this order
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple[Command, ...] = ()       # instead of ``run``: ``main.py NAME ACTION``
    subcommands_help: str = ""                  # the help of the ACTION argument
    groups: OptionGroups | None = None          # more options, each group under its title
    check_environment: bool = True              # refuse to run with packages outside their tested ranges
    interrupted: str = "interrupted; run the same command again to resume"     # the error line on Ctrl-C

    def __post_init__(self) -> None:
        def bad(what: str) -> TypeError:
            return TypeError(f"command {self.name!r}: {what}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise bad("the name must be lower-case letters, digits and '-'")
        for label, text in (("help", self.help), ("description", self.description),
                            ("interrupted", self.interrupted)):
            if not isinstance(text, str) or not text.strip():
                raise bad(f"{label} is empty")
        if "\n" in self.help:
            raise bad("help must be one line")
        if not isinstance(self.options, tuple):
            raise bad("options must be a tuple of option dataclasses")
        for cls in self.options:
            _check_options(cls, bad)
        if self.groups is not None and not callable(self.groups):
            raise bad("groups must be a function returning (title, option dataclass) pairs")
        if (self.run is None) == (not self.subcommands):
            raise bad("give either run or subcommands, not both or neither")
        if self.run is not None and not callable(self.run):
            raise bad("run must be a function of the parsed arguments")
        if self.subcommands:
            if not all(isinstance(s, Command) for s in self.subcommands):
                raise bad("subcommands must be Commands")
            names = [s.name for s in self.subcommands]
            if len(set(names)) != len(names):
                raise bad(f"subcommand names repeat: {names}")
            if not self.subcommands_help.strip():
                raise bad("subcommands need subcommands_help")
            if self.options or self.groups is not None:
                raise bad("options belong to the subcommands")

    def option_groups(self) -> list[tuple[str | None, type]]:
        """(group title, or None for the command's own options; option dataclass), as the parser gets them."""
        return [(None, cls) for cls in self.options] + list(self.groups() if self.groups is not None else ())

    def walk(self, path: str = "") -> Iterator[tuple[str, Command]]:
        """("masks train", its Command) for this command and every subcommand below it."""
        path = f"{path} {self.name}".strip()
        yield path, self
        for sub in self.subcommands:
            yield from sub.walk(path)

    @property
    def dest(self) -> str:
        """The namespace attribute that holds the chosen subcommand (``masks_action``)."""
        return f"{self.name.replace('-', '_')}_action"

    def chosen(self, args: argparse.Namespace) -> Command:
        """The command that runs for ``args``: this one, or the subcommand (of a subcommand) chosen."""
        command = self
        while command.subcommands:
            action = getattr(args, command.dest)
            command = next(s for s in command.subcommands if s.name == action)
        return command


def _check_options(cls: object, bad: Callable[[str], TypeError]) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise bad(f"{cls!r} is not an options dataclass")
    undeclared = [f.name for f in dataclasses.fields(cls) if "option" not in f.metadata]
    if undeclared:
        raise bad(f"{cls.__name__} has fields not declared with option(): {', '.join(undeclared)}")


def load_command(package: str) -> Command:
    """The ``COMMAND`` of a command package, checked."""
    import importlib
    command = getattr(importlib.import_module(package), "COMMAND", None)
    if not isinstance(command, Command):
        raise TypeError(f"command package {package!r} exports no COMMAND (a pipeline.core.command.Command)")
    if command.name != package.rsplit(".", 1)[-1]:
        raise TypeError(f"command package {package!r} exports the command {command.name!r}; name them alike")
    return command
