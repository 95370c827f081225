"""``emvtap card``: card profiles.

``emvtap card show PROFILE`` personalises a profile (a shipped profile's name or
a YAML file) as it would be for a tap and prints every data object a terminal
can read from it, decoded (:func:`hce.card.show_profile`); PANs are masked
unless ``--clear``.

``emvtap card serve PROFILE --vpcd [HOST:PORT]`` serves the emulated card to a
vsmartcard vpcd reader (pcscd's ``ifd-vpcd``), ``--nfc DEVICE`` puts it in an NFC
field through nfcpy (``udp:HOST:PORT``, the simulated RF link, or a USB reader that
can emulate a card), until SIGINT or SIGTERM (:mod:`scenarios.card_serve`).
"""

from __future__ import annotations

import argparse

from hce.card import show_profile
from scenarios.card_serve import DEFAULT_RECONNECT_PAUSE, DEFAULT_VPCD, NFC_FORMS, serve
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
        help="serve an emulated card to a vpcd reader (pcscd's vsmartcard driver) or in an "
        "NFC field (nfcpy)",
        description="Build the emulated card for PROFILE (a plastic card under a test "
        "issuer, or an HCE card provisioned by an in-process token server) and serve it "
        "until SIGINT or SIGTERM: to the vsmartcard vpcd reader at HOST:PORT (--vpcd, the "
        "default; the card connects again after the reader drops it), or as an ISO/IEC "
        "14443-4 Type A card on an nfcpy device (--nfc: nfcpy's simulated RF link on UDP, "
        "or a USB reader that can emulate a card: PN533-based boards, SCM SCL3711, Sony "
        "RC-S380; the ACR122U cannot). Each power-on or activation is a new tap.",
    )
    serve_parser.add_argument(
        "profile", metavar="PROFILE", help="a shipped profile's name or a file"
    )
    where = serve_parser.add_mutually_exclusive_group()
    where.add_argument(
        "--vpcd",
        metavar="HOST:PORT",
        nargs="?",
        const=DEFAULT_VPCD,
        help=f"connect to the vpcd reader at HOST:PORT (the default, at {DEFAULT_VPCD})",
    )
    where.add_argument(
        "--nfc",
        metavar="DEVICE",
        help=f"be a card on the nfcpy device DEVICE: {NFC_FORMS}. udp: nfcpy's simulated "
        "RF link, the card listening on HOST:PORT for a reader such as emvtap tap --reader "
        "nfc:udp:HOST:PORT; usb: a reader that can emulate a card (PN533-based boards, "
        "SCM SCL3711, Sony RC-S380; not the ACR122U), which needs a 4-byte UID starting 08",
    )
    serve_parser.add_argument(
        "--state",
        metavar="DIR",
        help="keep the card's state here (default: a temporary directory, removed at the "
        "end): a plastic card's ATC counters and the UID carry over to the next start; an "
        "HCE card's token server and wallet are kept in a new hce-N folder each start "
        "(it is provisioned afresh), and a plastic card's issuer keys are new each start",
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
        help="--vpcd only: wait this long before connecting again after the reader drops "
        f"the card (default {DEFAULT_RECONNECT_PAUSE}: pcscd misses a card that comes back "
        "at once)",
    )
    mask_option(serve_parser)
    serve_parser.set_defaults(handler=serve)


def _show(args: argparse.Namespace) -> int:
    print(show_profile(args.profile, mask=not args.clear))
    return 0
