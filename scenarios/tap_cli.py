"""``emvtap tap``: one contactless transaction, in this process, end to end.

``emvtap tap --card PROFILE --amount 12.34`` builds a :class:`scenarios.tap.TapEnvironment`
in a temporary directory (the card of a shipped profile or a YAML file, its issuer or
token server with a soft HSM, or with ``--hsm pkcs11:MODULE[:TOKEN]`` its keys on a
PKCS#11 token under a label prefix of their own, destroyed afterwards
(:mod:`scenarios.hsm_spec`, PIN in ``EMVTAP_HSM_PIN``), the terminal of ``--config``,
the host in process or over HTTPS on loopback), taps the card once, and prints the
transaction (:func:`terminal.report.render`) and the decoded APDU trace; ``--json`` prints both
as one JSON document instead. ``--trace-text``, ``--trace-json`` and ``--pcapng``
write the trace (the pcapng opens in Wireshark with ``-d iso14443.subdissector,iso7816``).
With ``--server URL`` (``--server-cert FILE`` or ``--server-pin HEX``; the admin
credential in ``EMVTAP_SERVER_CREDENTIAL``, a plastic card's IMK-AC in
``EMVTAP_IMK_AC``: :mod:`scenarios.remote`) the card is set up on that running
token server over HTTPS and the terminal's host is that server.
``--link`` puts a real link between the terminal and the emulated card
(:mod:`scenarios.links`: a loopback vpcd socket, pcscd with vsmartcard's vpcd driver,
nfcpy's simulated RF link).

``emvtap tap --reader NAME --amount 1.00`` taps whatever card or phone is on a real
reader instead: ``NAME`` is a PC/SC reader (``emvtap readers`` lists them) or an nfcpy
device as ``nfc:usb``, ``nfc:usb:BUS:DEV`` or ``nfc:udp:HOST:PORT``. There is no
issuer host for a card from outside (an online request ends "unable to go online",
i.e. declined) and its offline data authentication needs its scheme's CA key: the
configuration's ``ca_keys`` and ``--ca-keys FILE`` (:class:`emv.crypto.oda.CaKeyStore`
text, as ``emvtap card serve --ca-keys`` writes).

Amounts are decimal in the transaction currency (``12.34`` is 1234 minor units
for an exponent of 2, ISO 4217 minor units; the terminal's 5F36 for its own
currency). PANs are masked unless ``--clear``.

Exit status: 0 when the transaction was approved, 1 when it ended with any other
outcome (declined, try another interface, end application ...), 2 for a usage
error (a bad amount or currency, an unknown profile, a configuration that does
not load, an HSM that cannot be opened, a token server that cannot be used), reported
as one line ``emvtap: error: ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from functools import cache
from pathlib import Path

from emv import tags, trace
from emv.crypto.oda import CaKeyStore, OdaError
from emv.link import LinkError
from hce.card import CardProfile, ProfileError, load_profile, shipped_profiles
from scenarios.hsm_spec import PIN_ENV, parse_hsm
from scenarios.links import LINK_HELP, open_reader, parse_link
from scenarios.remote import add_server_options, connect, server_from_args
from scenarios.subcommands import Subcommands, mask_option
from scenarios.tap import TapEnvironment
from terminal.config import TerminalConfig, load_config, with_ca_keys
from terminal.pos import Terminal, TransactionResult
from terminal.readers.pcsc import list_readers
from terminal.report import render, to_dict
from terminal.transaction import Transaction, TransactionType

__all__ = [
    "EXIT_DECLINED",
    "add_readers_command",
    "add_tap_command",
    "parse_amount",
    "parse_currency",
]

EXIT_DECLINED = 1
TYPES = {
    "purchase": TransactionType.PURCHASE,
    "cash": TransactionType.CASH,
    "refund": TransactionType.REFUND,
    "cashback": TransactionType.PURCHASE_WITH_CASHBACK,
}
_AMOUNT = re.compile(r"\A(\d+)(?:\.(\d+))?\Z")
MAX_AMOUNT = 999_999_999_999  # n 12 (9F02)


class TapUsageError(ValueError):
    """A mistake in the command line: one line, exit status 2."""


@cache
def _numeric_by_alpha() -> dict[str, str]:
    """ISO 4217 alphabetic code -> numeric code as 5F2A holds it (``"GBP"`` -> ``"0826"``)."""
    table = {}
    for number in range(1000):
        code = f"{number:04d}"
        known = tags.currency(bytes.fromhex(code))
        if known is not None:
            table[known[0]] = code
    return table


def parse_currency(text: str) -> str:
    """``"GBP"``, ``"826"`` or ``"0826"`` -> ``"0826"`` (ISO 4217, n 3 in two bytes)."""
    value = text.strip().upper()
    if value.isdigit() and len(value) in (3, 4):
        code = value.rjust(4, "0")
        if tags.currency(bytes.fromhex(code)) is None:
            raise TapUsageError(f"--currency {text}: not an ISO 4217 numeric currency code")
        return code
    numeric = _numeric_by_alpha().get(value)
    if numeric is None:
        raise TapUsageError(
            f"--currency {text}: not an ISO 4217 currency (e.g. GBP, EUR, USD or 0826)"
        )
    return numeric


def currency_exponent(currency: str, config: TerminalConfig) -> int:
    """Decimals of ``currency``: the terminal's 5F36 for its own, else ISO 4217's (else 2)."""
    if bytes.fromhex(currency) == config.currency:
        return config.currency_exponent
    known = tags.currency(bytes.fromhex(currency))
    return known[2] if known is not None and known[2] is not None else 2


def parse_amount(text: str, exponent: int, option: str = "--amount") -> int:
    """A decimal amount -> minor units (``"12.34"``, exponent 2 -> 1234)."""
    found = _AMOUNT.match(text.strip())
    if found is None:
        raise TapUsageError(f"{option} {text!r}: not a decimal amount such as 12.34")
    units, decimals = found.group(1), found.group(2) or ""
    if len(decimals) > exponent:
        raise TapUsageError(f"{option} {text}: more than {exponent} decimal(s) for this currency")
    value = int(units + decimals.ljust(exponent, "0"))
    if value > MAX_AMOUNT:
        raise TapUsageError(f"{option} {text}: does not fit the 12 digits of an EMV amount")
    return value


def add_tap_command(commands: Subcommands) -> None:
    """Register ``emvtap tap``."""
    tap = commands.add_parser(
        "tap",
        help="run one contactless transaction: card, terminal, token server",
        description="Tap an emulated card (a shipped profile such as visa_qvsdc_plastic, "
        "or a YAML profile) on the emvtap terminal once, with the token server as issuer "
        "host, and print the transaction and the decoded APDU trace; or, with --reader, "
        "tap whatever card or phone is on a real reader (no issuer host: an online "
        "request is declined). Exit status 0 when approved, 1 for any other outcome, 2 "
        "for a usage error.",
    )
    source = tap.add_mutually_exclusive_group(required=True)
    source.add_argument("--card", metavar="PROFILE", help="emulated card: profile name or file")
    source.add_argument(
        "--reader",
        metavar="NAME",
        help="tap the card on a real reader instead: a PC/SC reader name, or nfc:usb, "
        "nfc:usb:BUS:DEV, nfc:udp:HOST:PORT (nfcpy)",
    )
    tap.add_argument("--amount", required=True, metavar="AMOUNT", help="e.g. 12.34")
    tap.add_argument(
        "--currency", metavar="CODE", help="ISO 4217 code, 0826 or GBP (default: the terminal's)"
    )
    tap.add_argument("--type", choices=sorted(TYPES), default="purchase", help="transaction type")
    tap.add_argument(
        "--amount-other", metavar="AMOUNT", help="the cashback part of --amount (9F03)"
    )
    tap.add_argument(
        "--config", default="default", metavar="NAME|FILE", help="terminal configuration"
    )
    tap.add_argument(
        "--host",
        choices=("inprocess", "http"),
        default="inprocess",
        help="reach the token server in process, or over HTTPS on 127.0.0.1",
    )
    tap.add_argument(
        "--hsm",
        default="soft",
        metavar="SPEC",
        help="the token server's HSM: 'soft' (default) or 'pkcs11:MODULE[:TOKEN]' (a "
        "PKCS#11 module path and token label, by default the module's only token; the "
        f"user PIN comes from {PIN_ENV}); the keys made for the tap are destroyed after it",
    )
    tap.add_argument("--link", default="inprocess", metavar="LINK", help=LINK_HELP)
    tap.add_argument(
        "--ca-keys",
        type=Path,
        metavar="FILE",
        help="with --reader: CA public keys to trust besides the configuration's",
    )
    tap.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --reader: how long to wait for a card (default 10)",
    )
    add_server_options(tap)
    tap.add_argument("--trace-text", type=Path, metavar="FILE", help="write the transcript")
    tap.add_argument("--trace-json", type=Path, metavar="FILE", help="write JSON lines")
    tap.add_argument("--pcapng", type=Path, metavar="FILE", help="write pcapng for Wireshark")
    tap.add_argument("--json", action="store_true", help="print one JSON document")
    mask_option(tap)
    tap.set_defaults(handler=_tap)


def add_readers_command(commands: Subcommands) -> None:
    """Register ``emvtap readers``."""
    readers = commands.add_parser(
        "readers",
        help="list the PC/SC readers (for emvtap tap --reader)",
        description="List the readers pcscd knows, one a line, for emvtap tap --reader "
        "NAME. NFC devices through nfcpy are named nfc:usb, nfc:usb:BUS:DEV or "
        "nfc:udp:HOST:PORT instead (python -m nfc lists the USB ones). Exit status 2 "
        "when the PC/SC service is not running.",
    )
    readers.set_defaults(handler=_readers)


def _readers(_args: argparse.Namespace) -> int:
    names = list_readers()
    for name in names:
        print(name)
    if not names:
        print("(pcscd is running but has no reader)", file=sys.stderr)
    return 0


def _profile(name: str) -> CardProfile:
    """The card profile; an unknown name lists the shipped ones."""
    try:
        return load_profile(name)
    except ProfileError as err:
        if Path(name).exists() or "cannot read" not in err.problem:
            raise
        shipped = ", ".join(path.stem for path in shipped_profiles())
        raise TapUsageError(
            f"--card {name}: no such profile file or shipped profile (shipped: {shipped})"
        ) from None


def _amounts(args: argparse.Namespace, config: TerminalConfig) -> tuple[int, str, int, int]:
    """``--amount``, the currency, its exponent and ``--amount-other``, checked."""
    currency = parse_currency(args.currency) if args.currency else config.currency.hex()
    exponent = currency_exponent(currency, config)
    amount = parse_amount(args.amount, exponent)
    other = (
        0
        if args.amount_other is None
        else parse_amount(args.amount_other, exponent, "--amount-other")
    )
    if other > amount:
        raise TapUsageError("--amount-other: more than --amount (which includes it)")
    if other and args.type != "cashback":
        raise TapUsageError("--amount-other: only for --type cashback")
    return amount, currency, exponent, other


def _tap(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    amount, currency, exponent, other = _amounts(args, config)
    if args.reader is not None:
        when, un = datetime.now(), os.urandom(4)  # a transaction now, a fresh UN
        transaction = Transaction(amount, currency, when, un, other, TYPES[args.type])
        return _tap_reader(args, config, transaction, exponent)
    if args.ca_keys is not None:
        raise TapUsageError("--ca-keys: only with --reader (an emulated card's CA is trusted)")
    pkcs11 = parse_hsm(args.hsm)
    profile = _profile(args.card)
    hsm = None if pkcs11 is None else pkcs11.environment_hsm
    remote = server_from_args(args)
    if remote is not None:
        if pkcs11 is not None:
            raise TapUsageError("--hsm: a running token server (--server) has its own HSM")
        remote = connect(remote, "emvtap-tap")
    try:
        link = parse_link(args.link)
    except ValueError as err:
        raise TapUsageError(str(err)) from None
    with TapEnvironment(
        profile, config=config, host=args.host, hsm=hsm, remote=remote, link=link
    ) as environment:
        result, recorded = environment.tap(amount, currency, TYPES[args.type], amount_other=other)
    where = args.host if remote is None else remote.url
    card = (environment.profile.name, f" ({environment.profile.key_mode})")
    return _report(
        args, result, recorded, card=card, terminal=(config, f"host {where}"), exponent=exponent
    )


def _tap_reader(
    args: argparse.Namespace, config: TerminalConfig, transaction: Transaction, exponent: int
) -> int:
    """``--reader``: the card on a real reader, no issuer host (module docstring)."""
    if args.card is not None or args.link != "inprocess":
        raise TapUsageError("--link: only with --card (--reader is the link)")
    if args.ca_keys is not None:
        try:
            keys = CaKeyStore.parse(args.ca_keys.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, OdaError) as err:
            raise TapUsageError(f"--ca-keys {args.ca_keys}: {err}") from None
        config = with_ca_keys(config, keys)
    try:
        reader = open_reader(args.reader, args.wait)
    except (LinkError, OSError, ValueError) as err:
        raise TapUsageError(f"--reader {args.reader}: {err}") from None
    recorded = trace.Trace()
    with reader:
        link = trace.RecordingLink(reader, recorded, time.monotonic_ns)
        result = Terminal(config, None).transact(link, transaction)
    card, terminal = (args.reader, ""), (config, "no host")
    return _report(args, result, recorded, card=card, terminal=terminal, exponent=exponent)


def _report(
    args: argparse.Namespace,
    result: TransactionResult,
    recorded: trace.Trace,
    *,
    card: tuple[str, str],
    terminal: tuple[TerminalConfig, str],
    exponent: int,
) -> int:
    """Write the trace files asked for, print the result; the exit status. ``card`` is
    the card's name and a note on it, ``terminal`` the configuration and its host."""
    mask = not args.clear
    if args.trace_text:
        args.trace_text.write_text(trace.to_text(recorded, mask=mask), encoding="utf-8")
    if args.trace_json:
        args.trace_json.write_text(trace.to_jsonl(recorded, mask=mask), encoding="utf-8")
    if args.pcapng:
        args.pcapng.write_bytes(trace.to_pcapng(recorded, mask=mask))
    if args.json:
        document = to_dict(result, clear=args.clear)
        document["card"] = card[0]
        document["config"] = terminal[0].name
        document["trace"] = [
            json.loads(line) for line in trace.to_jsonl(recorded, mask=mask).splitlines()
        ]
        print(json.dumps(document, indent=2))
    else:
        print(f"Card:         {card[0]}{card[1]}")
        print(f"Terminal:     {terminal[0].name}, {terminal[1]}")
        print(render(result, clear=args.clear, exponent=exponent))
        print(trace.to_text(recorded, mask=mask), end="")
    return 0 if result.approved else EXIT_DECLINED
