"""The ``emvtap`` command line.

Subcommands (each with ``--help``):

* ``emvtap tlv decode HEX``: a BER-TLV string as a named, decoded tree;
* ``emvtap trace show FILE``: a JSON-lines trace as a decoded transcript;
* ``emvtap trace convert FILE --pcapng OUT``: a JSON-lines trace to pcapng;
* ``emvtap selfcheck``: the crypto known-answer tests and an ODA round trip;
* ``emvtap card show PROFILE``: a card profile's data objects, decoded;
* ``emvtap server ...``: the token server (``scenarios.server_cli``);
* ``emvtap tap --card PROFILE --amount 12.34``: one transaction, card to terminal
  to token server (``scenarios.tap_cli``);
* ``emvtap run PATH...``: YAML tap scenarios, with JUnit XML, HTML and trace
  reports (``scenarios.run_cli``).

Bad input ends with one line ``emvtap: error: ...`` naming what and where, and
exit status 2; a failed self-check, a tap that is not approved, and a scenario run
with a failure, exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from emv import tags, tlv, trace
from emv.link import LinkError
from hce.hsm.interface import HsmError
from hce.server.errors import ServiceError
from hce.wallet.errors import WalletError
from scenarios import selfcheck
from scenarios.about import version
from scenarios.card_cli import add_card_commands
from scenarios.run_cli import add_run_command
from scenarios.server_cli import ServerSetupError, add_server_commands
from scenarios.subcommands import EXIT_USAGE, Subcommands, command_group, mask_option, usage
from scenarios.tap_cli import add_readers_command, add_tap_command

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


class CliError(Exception):
    """A user mistake: reported as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # the reader went away (e.g. `emvtap ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (
        CliError,
        LinkError,
        ServerSetupError,
        HsmError,
        ServiceError,
        WalletError,
        ValueError,
        OSError,
    ) as err:
        message = " ".join(str(err).split())  # one line, whatever the error's own layout
        print(f"emvtap: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emvtap",
        description="NFC EMV contactless emulator and test harness.",
    )
    parser.add_argument("--version", action="version", version=f"emvtap {version()}")
    parser.set_defaults(handler=lambda _args: usage(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_tlv(commands)
    _add_trace(commands)
    _add_selfcheck(commands)
    add_server_commands(commands)
    add_card_commands(commands)
    add_tap_command(commands)
    add_readers_command(commands)
    add_run_command(commands)
    return parser


# --- tlv -----------------------------------------------------------------------------------


def _add_tlv(commands: Subcommands) -> None:
    sub = command_group(commands, "tlv", "BER-TLV tools")
    decode = sub.add_parser(
        "decode",
        help="decode BER-TLV hex into a named tree",
        description="Decode BER-TLV (EMV Book 3 Annex B) and print it with tag names and "
        "decoded values. Spaces in HEX are ignored; '-' reads HEX from standard input.",
    )
    decode.add_argument("hex", nargs="+", metavar="HEX", help="the data, in hex")
    decode.add_argument("--json", action="store_true", help="print machine-readable JSON")
    decode.add_argument(
        "--lenient", action="store_true", help="accept malformed real-world data where possible"
    )
    mask_option(decode)
    decode.set_defaults(handler=_tlv_decode)


def _tlv_decode(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.hex == ["-"] else "".join(args.hex)
    data = _hex_argument(text)
    objects = tlv.decode(data, strict=not args.lenient)
    mask = not args.clear
    if args.json:
        print(json.dumps(tags.to_json(objects, mask=mask), indent=2))
    else:
        print(tags.render(objects, mask=mask).rstrip("\n"))
    return 0


def _hex_argument(text: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((i for i, c in enumerate(cleaned) if c not in "0123456789abcdefABCDEF"), None)
        where = f"character {bad + 1} ({cleaned[bad]!r})" if bad is not None else "odd length"
        raise CliError(f"HEX is not hexadecimal: {where}") from None


# --- trace ---------------------------------------------------------------------------------


def _add_trace(commands: Subcommands) -> None:
    sub = command_group(commands, "trace", "APDU trace tools")
    show = sub.add_parser(
        "show",
        help="print a JSON-lines trace as a decoded transcript",
        description="Print an emvtap JSON-lines trace: command names, status words and "
        "response data as named TLV trees.",
    )
    show.add_argument("file", type=Path, metavar="FILE", help="trace in emvtap JSON lines")
    mask_option(show)
    show.set_defaults(handler=_trace_show)
    convert = sub.add_parser(
        "convert",
        help="convert a JSON-lines trace to pcapng (or text)",
        description="Convert an emvtap JSON-lines trace. The pcapng opens in Wireshark with "
        "'-d iso14443.subdissector,iso7816' to show the APDUs.",
    )
    convert.add_argument("file", type=Path, metavar="FILE", help="trace in emvtap JSON lines")
    convert.add_argument("--pcapng", type=Path, metavar="OUT", help="write pcapng to OUT")
    convert.add_argument("--text", type=Path, metavar="OUT", help="write the transcript to OUT")
    mask_option(convert)
    convert.set_defaults(handler=_trace_convert)


def _read_trace(path: Path) -> trace.Trace:
    try:
        return trace.from_jsonl(path.read_text(encoding="utf-8"))
    except trace.TraceError as err:
        raise CliError(f"{path}: {err}") from None


def _trace_show(args: argparse.Namespace) -> int:
    print(trace.to_text(_read_trace(args.file), mask=not args.clear), end="")
    return 0


def _trace_convert(args: argparse.Namespace) -> int:
    if not (args.pcapng or args.text):
        raise CliError("trace convert: give --pcapng OUT and/or --text OUT")
    recorded = _read_trace(args.file)
    if args.pcapng:
        args.pcapng.write_bytes(trace.to_pcapng(recorded, mask=not args.clear))
    if args.text:
        args.text.write_text(trace.to_text(recorded, mask=not args.clear), encoding="utf-8")
    return 0


# --- selfcheck -----------------------------------------------------------------------------


def _add_selfcheck(commands: Subcommands) -> None:
    check = commands.add_parser(
        "selfcheck",
        help="run the crypto known-answer tests and an ODA round trip",
        description="Check emvtap's cryptography against the published vectors it ships "
        "(emv/crypto/vectors) and run an offline data authentication round trip on a "
        "freshly generated test PKI. Exits 1 if anything disagrees.",
    )
    check.add_argument("--json", action="store_true", help="print results as JSON")
    check.add_argument("-v", "--verbose", action="store_true", help="list every vector")
    check.set_defaults(handler=_selfcheck)


def _selfcheck(args: argparse.Namespace) -> int:
    results = selfcheck.run()
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(selfcheck.report(results, verbose=args.verbose), end="")
    return 0 if all(r.passed for r in results) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
