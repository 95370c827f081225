"""``emvtap card``: card profiles.

``emvtap card show PROFILE`` personalises a profile (a shipped profile's name or
a YAML file) as it would be for a tap and prints every data object a terminal
can read from it, decoded (:func:`hce.card.show_profile`); PANs are masked
unless ``--clear``.

``emvtap card serve PROFILE --vpcd [HOST:PORT]`` serves the emulated card to a
vsmartcard vpcd reader (pcscd's ``ifd-vpcd``) until SIGINT or SIGTERM
(:mod:`scenarios.card_serve`).
"""

from __future__ import annotations

import argparse

from hce.card import show_profile
from scenarios.card_serve import DEFAULT_VPCD, serve
from scenarios.subcommands import Subcommands, command_group, mask_option

__all__ = ["add_card_commands"]


def add_card_commands(commands: Subcommands) -> None:
    """Register ``emvtap card show`` and ``emvtap card serve``."""
    sub = command_group(commands, "card", "card profiles: show, serve")
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
    _add_serve(sub)


def _add_serve(sub: Subcommands) -> None:
    serve_parser = sub.add_parser(
        "serve",
        help="serve an emulated card to a vpcd reader (pcscd's vsmartcard driver)",
        description="Build the emulated card for PROFILE (a plastic card under a test "
        "issuer, or an HCE card provisioned by an in-process token server) and serve it "
        "to the vsmartcard vpcd reader at HOST:PORT until SIGINT or SIGTERM; the card "
        "connects again after the reader drops it.",
    )
    serve_parser.add_argument(
        "profile", metavar="PROFILE", help="a shipped profile's name or a file"
    )
    serve_parser.add_argument(
        "--vpcd",
        metavar="HOST:PORT",
        nargs="?",
        const=DEFAULT_VPCD,
        default=DEFAULT_VPCD,
        help=f"the vpcd reader to connect to (default {DEFAULT_VPCD})",
    )
    serve_parser.add_argument(
        "--state",
        metavar="DIR",
        help="keep the card's state here (ATC counters, token server and wallet, UID) so "
        "it survives restarts (default: a temporary directory, removed at the end)",
    )
    serve_parser.add_argument(
        "--ca-keys",
        metavar="FILE",
        help="write the CA public key a terminal needs for the card's offline data "
        "authentication to FILE (CA key store text format)",
    )
    serve_parser.add_argument(
        "--uid",
        metavar="HEX",
        help="the card's UID, 4 or 7 bytes in hex (default: a random 4-byte NFCID1 "
        "starting 08, kept in the state directory)",
    )
    serve_parser.add_argument(
        "--reconnect-pause",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="wait this long before connecting again after the reader drops the card "
        "(default 1.0: pcscd misses a card that comes back at once)",
    )
    mask_option(serve_parser)
    serve_parser.set_defaults(handler=serve)


def _show(args: argparse.Namespace) -> int:
    print(show_profile(args.profile, mask=not args.clear))
    return 0
