"""``emvtap card serve PROFILE --vpcd [HOST:PORT] | --nfc DEVICE``: an emulated card
for a vpcd reader, or in an NFC field.

The card is built for PROFILE as :class:`scenarios.tap.TapEnvironment` builds it:

* a **plastic** profile: a :class:`hce.card.SoftIssuer` (keys made now) and its
  counters in ``--state DIR`` (``counters.bin``, :class:`hce.card.FileCounterStore`),
  so the ATC keeps counting across restarts;
* an **HCE** profile: an in-process token server and a provisioned wallet, in a new
  directory ``hce-N`` under the state directory (the phone is given keys again
  whenever it runs out, before a tap).

The state directory is a temporary one, removed at the end, unless ``--state`` is
given. ``--ca-keys FILE`` writes the CA public key a terminal needs for the card's
offline data authentication, in the :class:`emv.crypto.oda.CaKeyStore` text format.
The UID is ``--uid`` or a random single-size NFCID1 (``08`` then 3 random bytes,
ISO/IEC 14443-3), kept in the state directory.

Where the card goes, one of (``--vpcd`` when neither is given):

* ``--vpcd [HOST:PORT]``: the card connects to the vpcd reader (pcscd's ``ifd-vpcd``,
  or :class:`terminal.readers.vpcd.VpcdReader`) and serves it
  (:class:`hce.card.vpcd.VpcdCard`) behind :class:`hce.card.vpcd.PcscReaderCard`,
  which answers the reader's own GET DATA (UID, ATS historical bytes). After the
  reader drops the connection the card connects again after ``--reconnect-pause``
  seconds.
* ``--nfc DEVICE``: the card is an ISO/IEC 14443-4 Type A target on the nfcpy device
  DEVICE (:class:`hce.card.nfc.NfcCard`; every activation is a new tap):
  ``udp:HOST:PORT``, nfcpy's simulated RF link, the card listening on HOST:PORT (PORT
  0: a free port, named in the banner; a reader opens ``udp:HOST:PORT``, e.g.
  :class:`terminal.readers.nfc.NfcReader` or ``emvtap tap --reader nfc:udp:...``), or
  ``usb``, ``usb:BUS:DEV``, ``usb:VID:PID``, a reader that can emulate a card: PN533
  boards, SCM SCL3711, Sony RC-S380 (not the ACR122U, which nfcpy cannot make listen).
  Those chips need a 4-byte UID starting with ``08``, which the stable UID is.
  ``--reconnect-pause`` is refused: a card in a field does not reconnect.

A banner line on standard output says which card (PAN masked unless ``--clear``), its
UID and where it is, once the card is there. SIGINT or SIGTERM closes the connection
or the device, prints "card stopped" on standard error and ends with status 0. A
device or a reader that cannot be used is a one-line error (exit status 2).
"""

from __future__ import annotations

import argparse
import re
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
from emv.link import udp_address
from emv.masking import mask_pan
from emv.vpcd import VPCD_PORT
from hce.card import Card, FileCounterStore, SoftIssuer, load_profile, personalise
from hce.card.vpcd import CardLike, PcscReaderCard, VpcdCard
from scenarios.links import RANDOM_UID_FIRST, random_uid
from scenarios.tap import TapEnvironment

__all__ = [
    "DEFAULT_RECONNECT_PAUSE",
    "DEFAULT_VPCD",
    "NFC_FORMS",
    "ServedCard",
    "build_card",
    "parse_endpoint",
    "parse_nfc_device",
    "parse_uid",
    "serve",
]

DEFAULT_VPCD = f"127.0.0.1:{VPCD_PORT}"
DEFAULT_RECONNECT_PAUSE = 1.0
"""Seconds before the card joins vpcd again (pcscd misses a card that comes back at once)."""
NFC_FORMS = "usb, usb:BUS:DEV, usb:VID:PID or udp:HOST:PORT"
UID_FILE = "uid"
_USB_PATH = re.compile(r"usb(:[0-9a-fA-F]{4}(:[0-9a-fA-F]{4})?|:[0-9]{1,3}(:[0-9]{1,3})?)?")
"""nfcpy's USB paths: ``usb``, ``usb:VID[:PID]`` (4 hex digits), ``usb:BUS[:DEV]``."""


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a host and a port from 1 to 65535."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--vpcd {text!r}: expected HOST:PORT, e.g. {DEFAULT_VPCD}")
    return host, int(port_text)


def parse_nfc_device(text: str) -> str:
    """``--nfc``: an nfcpy path the card can listen on (:data:`NFC_FORMS`; a UDP port
    from 0, a free one, to 65535). Whether a device is there is seen when it opens."""
    try:
        udp = udp_address(text, any_port=True)
        if udp is not None and text.count(":") != 2:  # the card says where it listens
            raise ValueError("a card on the udp link needs HOST and PORT")
        if udp is not None:
            return text
    except ValueError as err:
        raise ValueError(f"--nfc {text!r}: {err}; expected {NFC_FORMS}") from None
    if _USB_PATH.fullmatch(text) is None:
        raise ValueError(f"--nfc {text!r}: expected {NFC_FORMS}")
    return text


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
    uid = random_uid()
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
        counters = FileCounterStore(state / "counters.bin")
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
    uid_given = parse_uid(args.uid) if args.uid is not None else None
    pause = DEFAULT_RECONNECT_PAUSE if args.reconnect_pause is None else args.reconnect_pause
    device: str | None = None
    endpoint: tuple[str, int] | None = None
    if args.nfc is not None:
        device = parse_nfc_device(args.nfc)
        if args.reconnect_pause is not None:
            raise ValueError(
                "--reconnect-pause is for --vpcd only (an NFC card does not reconnect)"
            )
        if uid_given is not None and device.startswith("usb"):
            _check_hardware_uid(uid_given)
    else:
        endpoint = parse_endpoint(args.vpcd if args.vpcd is not None else DEFAULT_VPCD)
        if pause < 0:
            raise ValueError(f"--reconnect-pause {pause}: expected 0 or more seconds")
    owned = args.state is None
    state = Path(tempfile.mkdtemp(prefix="emvtap-card-")) if owned else Path(args.state)
    try:
        state.mkdir(parents=True, exist_ok=True)
        served = build_card(args.profile, state)
        try:
            uid = uid_given or _stable_uid(state)
            if device is not None:
                return _serve_nfc(args, served, device, uid)
            assert endpoint is not None
            return _serve_vpcd(args, served, endpoint, uid, pause)
        finally:
            served.close()
    finally:
        if owned:
            shutil.rmtree(state, ignore_errors=True)


def _check_hardware_uid(uid: bytes) -> None:
    """The UID a PN53x or RC-S380 chip can give a card (before the card is built)."""
    if len(uid) != 4 or uid[0] != RANDOM_UID_FIRST:
        raise ValueError(
            f"--uid {uid.hex().upper()}: a card on a USB reader has a 4-byte UID starting 08"
        )


def _banner(args: argparse.Namespace, served: ServedCard, uid: bytes, where: str) -> str:
    pan = served.pan if args.clear else mask_pan(served.pan)
    return (
        f"emvtap: card {args.profile} (PAN {pan}, UID {uid.hex().upper()}) {where}; Ctrl-C to stop"
    )


def _serve_vpcd(
    args: argparse.Namespace,
    served: ServedCard,
    endpoint: tuple[str, int],
    uid: bytes,
    pause: float,
) -> int:
    host, port = endpoint
    if args.ca_keys is not None:
        write_ca_keys(Path(args.ca_keys), served.ca_key, args.profile)
    vicc = VpcdCard(PcscReaderCard(served.card, uid), host, port)

    def serving(stop: threading.Event) -> None:
        vicc.serve(stop, retry=max(pause, 0.05), pause=pause)

    banner = _banner(args, served, uid, f"connecting to vpcd {host}:{port}")
    _serve_until_signal(serving, vicc.close, banner)
    return 0


def _serve_nfc(args: argparse.Namespace, served: ServedCard, device: str, uid: bytes) -> int:
    try:  # nfcpy is an optional extra
        import nfc.clf  # noqa: PLC0415

        from hce.card.nfc import NfcCard  # noqa: PLC0415
    except ImportError:
        raise ValueError("--nfc needs nfcpy: pip install 'emvtap[nfc]'") from None
    try:
        target = NfcCard(served.card, device, uid=uid)
    except OSError as err:  # no device there, no access, an address that cannot be bound
        message = err.strerror or str(err)
        if not message.startswith(device):
            message = f"{device}: {message}"
        raise OSError(f"--nfc {message}") from None
    except nfc.clf.Error as err:
        raise OSError(f"--nfc {device}: {err}") from None
    try:
        if args.ca_keys is not None:
            write_ca_keys(Path(args.ca_keys), served.ca_key, args.profile)

        def serving(stop: threading.Event) -> None:
            try:
                target.serve(stop)
            except nfc.clf.UnsupportedTargetError as err:
                raise OSError(f"--nfc {target.path}: {err}: it cannot emulate a card") from None
            except nfc.clf.Error as err:
                raise OSError(f"--nfc {target.path}: {err}") from None

        banner = _banner(args, served, uid, f"listening on nfc {target.path}")
        _serve_until_signal(serving, target.close, banner)
    finally:
        target.close()
    return 0


def _serve_until_signal(
    serving: Callable[[threading.Event], None], close: Callable[[], None], banner: str
) -> None:
    """Run ``serving(stop)`` on a thread and print ``banner``; SIGINT or SIGTERM sets
    ``stop`` and calls ``close`` (from the main thread, which holds none of the card's
    locks: it only waits). What ``serving`` raises is raised here."""
    stop = threading.Event()
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            serving(stop)
        except BaseException as err:
            failed.append(err)
        finally:
            done.set()

    def stopping() -> None:
        stop.set()
        close()

    thread = threading.Thread(target=run, name="emvtap-card-serve", daemon=True)
    with _stopping_on_signals(stopping):
        thread.start()
        print(banner, flush=True)
        done.wait()
    thread.join()
    if failed:
        raise failed[0]
    print("emvtap: card stopped", file=sys.stderr, flush=True)
