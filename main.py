"""Command line of the face-replacement tool: the commands' ``COMMAND`` contracts turned into one parser.

Each command is a package that exports ``COMMAND`` (``pipeline.core.command.Command``: name,
help, options, run or subcommands); this file only lists the packages, builds the parser
from their contracts and calls the chosen one.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.core.command import Command, load_command
from pipeline.core.errors import UserError
from pipeline.core.options import add_arguments

#: the command packages, in the order ``main.py --help`` lists them
PACKAGES = ("extract", "train", "enhance", "convert", "evaluate", "verify", "consent", "info", "models", "masks",
            "studio", "export", "migrate")


def commands() -> dict[str, Command]:
    return {c.name: c for c in map(load_command, PACKAGES)}


def _add_command(sub: Any, command: Command) -> None:
    s = sub.add_parser(command.name, help=command.help, description=command.description)
    done: set[str] = set()
    for title, cls in command.option_groups():
        target: Any = s if title is None else s.add_argument_group(title)
        add_arguments(target, cls, skip=done)
        done |= set(cls.__dataclass_fields__)
    if command.subcommands:
        actions = s.add_subparsers(dest=command.dest, required=True, metavar="ACTION", help=command.subcommands_help)
        for action in command.subcommands:
            _add_command(actions, action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Video face replacement in stages that share a workspace folder:\n"
                    "  extract (dst video, src photos) -> train -> convert -> evaluate.\n"
                    "Between stages you may delete aligned faces and repaint masks; "
                    "the pipeline honours that.")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands().values():
        _add_command(sub, command)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = commands()[args.command]
    from pipeline.core.logs import setup_logging
    setup_logging(args.verbose)
    try:
        if command.check_environment:
            from pipeline.core.environment import check_environment
            check_environment()
        run = command.chosen(args).run
        assert run is not None
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"error: {command.interrupted}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from pipeline.core.process import exit_quickly
    # a wrapper that runs this file through runpy (an audit, a memory probe) has code of its own still to run
    exit_quickly(main(), wrapped=sys._getframe().f_back is not None)
