"""``emvtap card``: card profiles.

``emvtap card show PROFILE`` personalises a profile (a shipped profile's name or
a YAML file) as it would be for a tap and prints every data object a terminal
can read from it, decoded (:func:`hce.card.show_profile`); PANs are masked
unless ``--clear``.
"""

from __future__ import annotations

import argparse

from hce.card import show_profile
from scenarios.subcommands import Subcommands, command_group, mask_option

__all__ = ["add_card_commands"]


def add_card_commands(commands: Subcommands) -> None:
    """Register ``emvtap card show``."""
    sub = command_group(commands, "card", "card profiles: show")
    show = sub.add_parser(
        "show",
        help="print a card profile's data objects, decoded",
        description="Personalise PROFILE (a shipped profile's name, e.g. visa_qvsdc_plastic, "
        "or a YAML file) with a throw-away test issuer and print what a terminal reads: the "
        "PPSE answer, then per application its FCI, AIP, AFL and records, decoded.",
    )
    show.add_argument("profile", metavar="PROFILE", help="a shipped profile's name or a file")
    mask_option(show)
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    print(show_profile(args.profile, mask=not args.clear))
    return 0
