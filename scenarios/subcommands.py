"""The shape every ``emvtap`` command group shares: a parser whose subcommands each
have ``--help``, and which prints its help (exit status 2) when run alone."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TypeAlias

__all__ = ["EXIT_USAGE", "Subcommands", "command_group", "mask_option", "usage"]

EXIT_USAGE = 2
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def usage(parser: argparse.ArgumentParser) -> int:
    """Print ``parser``'s help to stderr; the exit status for a missing subcommand."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def mask_option(parser: argparse.ArgumentParser) -> None:
    """``--clear``: PANs are masked in every printout unless it is given."""
    parser.add_argument(
        "--clear",
        action="store_true",
        help="show PANs in clear (they are masked by default)",
    )


def command_group(commands: Subcommands, name: str, summary: str, **options: Any) -> Subcommands:
    """A command with subcommands of its own (``options`` go to its parser)."""
    options.setdefault("description", f"{summary}.")
    group = commands.add_parser(name, help=summary, **options)
    group.set_defaults(handler=lambda _args: usage(group))
    return group.add_subparsers(title="commands", metavar="COMMAND")
