"""How a terminal reaches its emulated card: the ``--link`` modes of ``emvtap tap`` and
``emvtap run`` (DESIGN.md, "Links").

================================  ====================================================
``--link``                        what is between the terminal and the card
================================  ====================================================
``inprocess`` (default)           nothing: the terminal holds the card object
``vpcd-direct``                   a loopback TCP socket speaking vsmartcard's vpcd
                                  protocol: :class:`terminal.readers.vpcd.VpcdReader`
                                  listens, :class:`hce.card.vpcd.VpcdCard` connects
                                  (no pcscd needed)
``pcsc[:READER][@HOST:PORT]``     pcscd: the card joins vsmartcard's vpcd driver at
                                  HOST:PORT (default 127.0.0.1:35963) and the terminal
                                  uses the PC/SC reader READER (default ``Virtual PCD
                                  00 00``) through pyscard
``nfc-udp``                       nfcpy's simulated RF link on a free loopback UDP
                                  port: ISO/IEC 14443-4 both ways
                                  (:class:`hce.card.nfc.NfcCard`,
                                  :class:`terminal.readers.nfc.NfcReader`)
================================  ====================================================

:func:`attach` puts a card on a link and returns the terminal's side of it. Over
``pcsc`` one *station* per process and reader keeps a single vpcd connection open
(:class:`hce.card.vpcd.CardSlot`): each environment presents its card in the slot and
takes it away at the end, so pcscd sees one card, always there, and each power-on (a
``SCardConnect``) is a new tap of whichever card is in the slot. That spares the second
pcscd needs to see a virtual card leave and another arrive, and survives a pcscd
restart (the card connects again after :data:`RECONNECT_PAUSE`, the reader takes a new
PC/SC context). One reader serves one scenario at a time.

A card on a real link has a UID: a random single-size NFCID1 (:func:`random_uid`).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

from emv.link import Link, LinkError
from emv.vpcd import VPCD_PORT
from hce.card.card import ATS
from hce.card.vpcd import CardLike, CardSlot, PcscReaderCard, VpcdCard
from terminal.readers.pcsc import PcscReader, list_readers
from terminal.readers.vpcd import VpcdReader

__all__ = [
    "LINK_KINDS",
    "RANDOM_UID_FIRST",
    "Attachment",
    "LinkSpec",
    "Reader",
    "attach",
    "check_link",
    "close_stations",
    "open_reader",
    "parse_link",
    "random_uid",
]

LinkKind = Literal["inprocess", "vpcd-direct", "pcsc", "nfc-udp"]
LINK_KINDS: tuple[LinkKind, ...] = ("inprocess", "vpcd-direct", "pcsc", "nfc-udp")
LINK_FORMS = "inprocess, vpcd-direct, pcsc[:READER][@HOST:PORT] or nfc-udp"
LINK_HELP = (
    "how the terminal reaches the emulated card: inprocess (default), vpcd-direct (a "
    "loopback vpcd socket), pcsc[:READER][@HOST:PORT] (pcscd's vpcd reader, default "
    "'Virtual PCD 00 00', the card joining vpcd at 127.0.0.1:35963; one scenario at a "
    "time) or nfc-udp (nfcpy's simulated RF link on loopback)"
)
DEFAULT_READER = "Virtual PCD 00 00"
"""vsmartcard's first vpcd reader (slot 0 on port 35963)."""
ACCEPT_TIMEOUT = 5.0  # seconds a vpcd-direct reader waits for its card thread
TAP_TIMEOUT = 5.0  # seconds a PC/SC or NFC reader waits for a card at power-on
RECONNECT_PAUSE = 1.0  # seconds before a card joins vpcd again (pcscd must see it go)
RANDOM_UID_FIRST = 0x08
"""The first byte of a random single-size NFCID1 (ISO/IEC 14443-3 §6.5.4)."""


class Reader(Link, Protocol):
    """A real reader: a :class:`~emv.link.Link` to close at the end (``with``)."""

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(self, *exc: object) -> None: ...


def random_uid() -> bytes:
    """A random single-size NFCID1: ``08`` then 3 random bytes (ISO/IEC 14443-3 §6.5.4)."""
    return bytes([RANDOM_UID_FIRST]) + os.urandom(3)


@dataclass(frozen=True)
class LinkSpec:
    """A parsed ``--link`` (module docstring); ``reader`` and ``vpcd`` count for pcsc."""

    kind: LinkKind = "inprocess"
    reader: str = DEFAULT_READER
    vpcd: tuple[str, int] = ("127.0.0.1", VPCD_PORT)

    def __str__(self) -> str:
        if self.kind != "pcsc":
            return self.kind
        return f"pcsc:{self.reader}@{self.vpcd[0]}:{self.vpcd[1]}"

    @property
    def exclusive(self) -> bool:
        """Whether one scenario at a time can use the link (one reader)."""
        return self.kind == "pcsc"

    def check_jobs(self, jobs: int) -> None:
        """A :class:`ValueError` when ``jobs`` scenarios at once cannot share the link."""
        if self.exclusive and jobs > 1:
            raise ValueError(f"--link {self}: one reader runs one scenario at a time (-j 1)")


def parse_link(text: str) -> LinkSpec:
    """``--link`` text as a :class:`LinkSpec`; a :class:`ValueError` naming the forms."""
    for kind in LINK_KINDS:
        if text == kind:
            return LinkSpec(kind)
    kind_text, _, rest = text.partition(":")
    if kind_text != "pcsc":
        raise ValueError(f"--link {text!r}: expected {LINK_FORMS}")
    reader, at, where = rest.partition("@")
    vpcd = LinkSpec().vpcd
    if at:
        host, colon, port = where.rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"--link {text!r}: after '@', expected HOST:PORT of vpcd")
        vpcd = (host, int(port))
    return LinkSpec("pcsc", reader or DEFAULT_READER, vpcd)


def check_link(spec: LinkSpec) -> None:
    """What ``spec`` needs is there (:class:`LinkError` saying what is not): for pcsc,
    pcscd and its reader; for nfc-udp, nfcpy."""
    if spec.kind == "pcsc":
        readers = list_readers()
        if spec.reader not in readers:
            there = ", ".join(repr(name) for name in readers) or "none"
            raise LinkError(f"--link {spec}: no PC/SC reader {spec.reader!r} (readers: {there})")
    elif spec.kind == "nfc-udp" and importlib.util.find_spec("nfc") is None:
        raise LinkError("--link nfc-udp needs nfcpy: pip install emvtap[nfc]")


def open_reader(name: str, timeout: float) -> PcscReader | Reader:
    """The real reader ``name``: ``nfc:PATH`` an nfcpy device (``usb``, ``usb:BUS:DEV``,
    ``udp:HOST:PORT``), anything else a PC/SC reader; ``timeout`` the wait for a card."""
    if name.startswith("nfc:"):
        from terminal.readers.nfc import NfcReader  # noqa: PLC0415  (nfcpy: optional)

        return NfcReader(name.removeprefix("nfc:"), timeout=timeout)
    return PcscReader(name, timeout=timeout)


class Attachment(Protocol):
    """A card on a link: the terminal's side (:attr:`link`), and :meth:`close`."""

    @property
    def link(self) -> Link: ...

    def close(self) -> None: ...


def attach(spec: LinkSpec, card: CardLike) -> Attachment:
    """``card`` on the link ``spec`` describes, ready for the terminal's first tap."""
    if spec.kind == "inprocess":
        return _InProcess(card)
    if spec.kind == "vpcd-direct":
        return _VpcdDirect(card)
    if spec.kind == "pcsc":
        return _PcscPresented(_station(spec), card)
    return _NfcUdp(card)


class _InProcess:
    def __init__(self, card: CardLike) -> None:
        self.link: Link = card

    def close(self) -> None:
        pass


class _VpcdDirect:
    """A :class:`VpcdReader` on a free loopback port and a :class:`VpcdCard` thread
    serving the card to it, connected."""

    def __init__(self, card: CardLike) -> None:
        self._reader = VpcdReader("127.0.0.1", 0)
        self._card = VpcdCard(card, "127.0.0.1", self._reader.port)
        self._thread = threading.Thread(
            target=self._card.serve_once, name="emvtap-vpcd-card", daemon=True
        )
        self._thread.start()
        try:
            self._reader.accept(ACCEPT_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.link: Link = self._reader

    def close(self) -> None:
        self._card.close()
        self._reader.close()
        self._thread.join(ACCEPT_TIMEOUT)


class _NfcUdp:
    """An :class:`NfcCard` on a free loopback UDP port, on a thread, and an
    :class:`NfcReader` polling it."""

    def __init__(self, card: CardLike) -> None:
        # nfcpy (an optional extra) is imported only when this link is used.
        from hce.card.nfc import NfcCard  # noqa: PLC0415
        from terminal.readers.nfc import NfcReader  # noqa: PLC0415

        self._stop = threading.Event()
        self._card = NfcCard(card, "udp:127.0.0.1:0", uid=random_uid())
        try:
            self._reader = NfcReader(self._card.path, timeout=TAP_TIMEOUT)
        except BaseException:
            self._card.close()
            raise
        self._thread = threading.Thread(
            target=self._card.serve, args=(self._stop,), name="emvtap-nfc-card", daemon=True
        )
        self._thread.start()
        if not self._card.ready.wait(ACCEPT_TIMEOUT):
            self.close()
            raise LinkError(f"the NFC card did not listen in {ACCEPT_TIMEOUT} s")
        self.link: Link = self._reader

    def close(self) -> None:
        self._stop.set()
        self._card.close()
        self._thread.join(ACCEPT_TIMEOUT)
        self._reader.close()


class _Station:
    """One vpcd connection serving a :class:`CardSlot` to pcscd, and the PC/SC reader it
    shows up in (module docstring)."""

    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        self.reader = PcscReader(spec.reader, timeout=TAP_TIMEOUT)  # pcscd and READER are there
        self.slot = CardSlot(ATS)
        self._stop = threading.Event()
        self._vicc = VpcdCard(self.slot, *spec.vpcd)
        self._thread = threading.Thread(
            target=self._vicc.serve,
            args=(self._stop,),
            kwargs={"retry": RECONNECT_PAUSE / 10, "pause": RECONNECT_PAUSE},
            name="emvtap-pcsc-station",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._vicc.close()
        self._thread.join(ACCEPT_TIMEOUT)
        self.reader.close()


_stations: dict[LinkSpec, _Station] = {}
_stations_lock = threading.Lock()


def _station(spec: LinkSpec) -> _Station:
    """This process's station for ``spec`` (made on first use)."""
    with _stations_lock:
        station = _stations.get(spec)
        if station is None:
            station = _stations[spec] = _Station(spec)
        return station


def close_stations() -> None:
    """Close this process's pcsc stations (also done at exit)."""
    with _stations_lock:
        stations = list(_stations.values())
        _stations.clear()
    for station in stations:
        station.close()


atexit.register(close_stations)


class _PcscPresented:
    """A card presented in a station's slot; :meth:`close` takes it away."""

    def __init__(self, station: _Station, card: CardLike) -> None:
        self._station = station
        station.slot.present(PcscReaderCard(card, random_uid()))
        self.link: Link = station.reader

    def close(self) -> None:
        self._station.reader.power_off()
        self._station.slot.present(None)
