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
``--link vpcd-direct`` puts a loopback TCP socket between the terminal and the card
(vsmartcard's vpcd protocol, :mod:`terminal.readers.vpcd` and :mod:`hce.card.vpcd`).

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
import re
from functools import cache
from pathlib import Path

from emv import tags, trace
from hce.card import CardProfile, ProfileError, load_profile, shipped_profiles
from scenarios.hsm_spec import PIN_ENV, parse_hsm
from scenarios.remote import add_server_options, connect, server_from_args
from scenarios.subcommands import Subcommands, mask_option
from scenarios.tap import LINK_MODES, TapEnvironment
from terminal.config import TerminalConfig, load_config
from terminal.report import render, to_dict
from terminal.transaction import TransactionType

__all__ = ["EXIT_DECLINED", "add_tap_command", "parse_amount", "parse_currency"]

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
        "host, and print the transaction and the decoded APDU trace. Exit status 0 when "
        "approved, 1 for any other outcome, 2 for a usage error.",
    )
    tap.add_argument("--card", required=True, metavar="PROFILE", help="card profile name or file")
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
    tap.add_argument(
        "--link",
        choices=LINK_MODES,
        default="inprocess",
        help="how the terminal reaches the card: in process (default) or over a "
        "loopback vpcd socket (vpcd-direct)",
    )
    add_server_options(tap)
    tap.add_argument("--trace-text", type=Path, metavar="FILE", help="write the transcript")
    tap.add_argument("--trace-json", type=Path, metavar="FILE", help="write JSON lines")
    tap.add_argument("--pcapng", type=Path, metavar="FILE", help="write pcapng for Wireshark")
    tap.add_argument("--json", action="store_true", help="print one JSON document")
    mask_option(tap)
    tap.set_defaults(handler=_tap)


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


def _tap(args: argparse.Namespace) -> int:
    pkcs11 = parse_hsm(args.hsm)
    profile = _profile(args.card)
    config = load_config(args.config)
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
    hsm = None if pkcs11 is None else pkcs11.environment_hsm
    remote = server_from_args(args)
    if remote is not None:
        if pkcs11 is not None:
            raise TapUsageError("--hsm: a running token server (--server) has its own HSM")
        remote = connect(remote, "emvtap-tap")
    with TapEnvironment(
        profile, config=config, host=args.host, hsm=hsm, remote=remote, link=args.link
    ) as environment:
        result, recorded = environment.tap(amount, currency, TYPES[args.type], amount_other=other)
    mask = not args.clear
    if args.trace_text:
        args.trace_text.write_text(trace.to_text(recorded, mask=mask), encoding="utf-8")
    if args.trace_json:
        args.trace_json.write_text(trace.to_jsonl(recorded, mask=mask), encoding="utf-8")
    if args.pcapng:
        args.pcapng.write_bytes(trace.to_pcapng(recorded, mask=mask))
    if args.json:
        document = to_dict(result, clear=args.clear)
        document["card"] = environment.profile.name
        document["config"] = config.name
        document["trace"] = [
            json.loads(line) for line in trace.to_jsonl(recorded, mask=mask).splitlines()
        ]
        print(json.dumps(document, indent=2))
    else:
        print(f"Card:         {environment.profile.name} ({environment.profile.key_mode})")
        where = args.host if remote is None else remote.url
        print(f"Terminal:     {config.name}, host {where}")
        print(render(result, clear=args.clear, exponent=exponent))
        print(trace.to_text(recorded, mask=mask), end="")
    return 0 if result.approved else EXIT_DECLINED
