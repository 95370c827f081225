"""``emvtap card serve PROFILE --vpcd [HOST:PORT]``: an emulated card for a vpcd reader.

The card is built for PROFILE as :class:`scenarios.tap.TapEnvironment` builds it:

* a **plastic** profile: a :class:`hce.card.SoftIssuer` (keys made now) and its
  counters in ``--state DIR`` (``counters.json``, :class:`hce.card.FileCounterStore`),
  so the ATC keeps counting across restarts;
* an **HCE** profile: an in-process token server and a provisioned wallet, in a new
  directory ``hce-N`` under the state directory (the phone is given keys again
  whenever it runs out, before a tap).

The state directory is a temporary one, removed at the end, unless ``--state`` is
given. ``--ca-keys FILE`` writes the CA public key a terminal needs for the card's
offline data authentication, in the :class:`emv.crypto.oda.CaKeyStore` text format.

The card then connects to the vpcd reader (pcscd's ``ifd-vpcd``, or
:class:`terminal.readers.vpcd.VpcdReader`) and serves it (:class:`hce.card.vpcd.VpcdCard`)
behind :class:`hce.card.vpcd.PcscReaderCard`, which answers the reader's own GET DATA
(UID, ATS historical bytes). The UID is ``--uid`` or a random single-size NFCID1
(``08`` then 3 random bytes, ISO/IEC 14443-3), kept in the state directory. After the
reader drops the connection the card connects again after ``--reconnect-pause``
seconds. SIGINT or SIGTERM closes the connection and ends with status 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from emv.crypto import oda
from emv.masking import mask_pan
from emv.vpcd import VPCD_PORT
from hce.card import Card, FileCounterStore, SoftIssuer, load_profile, personalise
from hce.card.vpcd import CardLike, PcscReaderCard, VpcdCard
from scenarios.tap import TapEnvironment

__all__ = ["DEFAULT_VPCD", "ServedCard", "build_card", "parse_endpoint", "parse_uid", "serve"]

DEFAULT_VPCD = f"127.0.0.1:{VPCD_PORT}"
RANDOM_UID_FIRST = 0x08
"""The first byte of a random single-size NFCID1 (ISO/IEC 14443-3 §6.5.4)."""
UID_FILE = "uid"


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a host and a port from 1 to 65535."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--vpcd {text!r}: expected HOST:PORT, e.g. {DEFAULT_VPCD}")
    return host, int(port_text)


def parse_uid(text: str) -> bytes:
    """``--uid``: 8 or 14 hex digits (a 4- or 7-byte NFCID1)."""
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        uid = b""
    if len(uid) not in (4, 7):
        raise ValueError(f"--uid {text!r}: expected 4 or 7 bytes in hex (8 or 14 digits)")
    return uid


def _stable_uid(state: Path) -> bytes:
    """The random UID kept in the state directory (made on first use)."""
    path = state / UID_FILE
    if path.is_file():
        uid = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(uid) == 4 and uid[0] == RANDOM_UID_FIRST:
            return uid
    uid = bytes([RANDOM_UID_FIRST]) + os.urandom(3)
    path.write_text(uid.hex().upper() + "\n", encoding="ascii")
    return uid


@dataclass
class ServedCard:
    """The card to serve, its PAN, its CA key (None: no ODA) and what to close."""

    card: CardLike
    pan: str
    ca_key: oda.CaPublicKey | None
    close: Callable[[], None]


class _Replenishing:
    """An HCE card whose phone is given keys again, when it ran out, before each tap."""

    def __init__(self, environment: TapEnvironment) -> None:
        self.environment = environment
        self.card = environment.emulated

    def power_on(self) -> bytes:
        self.environment.replenish()
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def transceive(self, command: bytes) -> bytes:
        return self.card.transceive(command)


def _fresh_directory(state: Path, stem: str) -> Path:
    """``state/stem-N`` for the first N not taken."""
    number = 1
    while (state / f"{stem}-{number}").exists():
        number += 1
    return state / f"{stem}-{number}"


def build_card(profile_name: str, state: Path) -> ServedCard:
    """The emulated card for ``profile_name`` with its state in ``state`` (module docstring)."""
    profile = load_profile(profile_name)
    if profile.key_mode == "plastic":
        issuer = SoftIssuer()
        image = personalise(profile, issuer.signer(profile))
        counters = FileCounterStore(state / "counters.json")
        card = Card(image, issuer.plastic_keys(profile, counters))
        oda_done = any(app.oda.enabled for app in profile.applications)
        ca_key = issuer.ca_public_key(profile) if oda_done else None
        return ServedCard(card, profile.pan, ca_key, lambda: None)
    environment = TapEnvironment(profile, host="none", directory=_fresh_directory(state, "hce"))
    emulated = environment.emulated
    return ServedCard(
        _Replenishing(environment),
        emulated.image.profile.pan,
        environment.ca_key,
        environment.close,
    )


def write_ca_keys(path: Path, ca_key: oda.CaPublicKey | None, profile: str) -> None:
    """The terminal's CA key for the card in the CaKeyStore text format (none: a comment)."""
    lines = [f"# emvtap card serve {profile}: the CA public key of its offline data authentication"]
    lines.append(
        oda.format_ca_key(ca_key) if ca_key is not None else "# (none: the card does no ODA)"
    )
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


@contextmanager
def _stopping_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``stop`` (the previous handlers come back at the end)."""

    def handler(_number: int, _frame: FrameType | None) -> None:
        stop()

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def serve(args: argparse.Namespace) -> int:
    """``emvtap card serve``: build the card, say where it goes, serve until a signal."""
    host, port = parse_endpoint(args.vpcd)
    uid_given = parse_uid(args.uid) if args.uid is not None else None
    if args.reconnect_pause < 0:
        raise ValueError(f"--reconnect-pause {args.reconnect_pause}: expected 0 or more seconds")
    owned = args.state is None
    state = Path(tempfile.mkdtemp(prefix="emvtap-card-")) if owned else Path(args.state)
    try:
        state.mkdir(parents=True, exist_ok=True)
        served = build_card(args.profile, state)
        try:
            return _serve(args, served, host, port, uid_given or _stable_uid(state))
        finally:
            served.close()
    finally:
        if owned:
            shutil.rmtree(state, ignore_errors=True)


def _serve(args: argparse.Namespace, served: ServedCard, host: str, port: int, uid: bytes) -> int:
    if args.ca_keys is not None:
        write_ca_keys(Path(args.ca_keys), served.ca_key, args.profile)
    pan = served.pan if args.clear else mask_pan(served.pan)
    vicc = VpcdCard(PcscReaderCard(served.card, uid), host, port)
    print(
        f"emvtap: card {args.profile} (PAN {pan}, UID {uid.hex().upper()}) connecting to "
        f"vpcd {host}:{port}; Ctrl-C to stop",
        flush=True,
    )
    stop = threading.Event()

    def stopping() -> None:
        stop.set()
        vicc.close()

    pause = float(args.reconnect_pause)
    with _stopping_on_signals(stopping):
        vicc.serve(stop, retry=max(pause, 0.05), pause=pause)
    print("emvtap: card stopped", file=sys.stderr, flush=True)
    return 0
