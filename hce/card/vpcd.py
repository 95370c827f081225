"""The card side of a vpcd link: an emulated card as a vsmartcard virtual card (vicc).

vsmartcard's vpcd is a PC/SC reader driver (pcscd's ``ifd-vpcd``) that listens on
TCP (35963 by default); the virtual card is the TCP *client* that connects to it.
Each message either way is a 2-byte big-endian length followed by that many bytes:

* from the reader, a 1-byte message is a control: ``00`` power off, ``01`` power
  on, ``02`` reset, ``04`` get ATR. Only get ATR is answered (the ATR, as a
  length-prefixed message); the others have no answer;
* any longer message is a command APDU (ISO/IEC 7816-4 §5.1) and the card answers
  with the whole response APDU.

:class:`VpcdCard` serves an :class:`emv.link.Link`-like card (:class:`hce.card.Card`):
power on is a new tap (``card.power_on()``), power off ``card.power_off()``,
reset both in turn, and every APDU goes to ``card.transceive``. The card has no
way to say "not powered" in this protocol: when ``transceive`` raises (a card out
of the field, :class:`emv.link.CardRemoved`) it answers an empty message, which
the reader side (:class:`terminal.readers.vpcd.VpcdReader`) reads as the card gone.

The ATR is what a PC/SC reader reports for a contactless card (PC/SC Part 3
§3.1.3.2.3, :func:`contactless_atr`), made from the ISO/IEC 14443-4 ATS that
``power_on`` returns.

A session ends cleanly, without raising, on end of file or on anything that is not
the protocol (a zero-length message, a message cut short, an unknown control):
:attr:`VpcdCard.ended` says why. TCP_NODELAY is set and TCP_QUICKACK re-armed before
every ``recv`` (Linux turns quick acknowledgement off again by itself; without it
each APDU costs a ~40 ms delayed ACK).

:class:`PcscReaderCard` wraps a card with what a PC/SC contactless reader answers
itself, before the card sees the command (the ``FF`` class pseudo-APDUs of PC/SC
Part 3 §3.2.2.1): GET DATA for the UID and the ATS historical bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from emv.link import CardRemoved, Link
from emv.vpcd import (
    CTRL_ATR,
    CTRL_OFF,
    CTRL_ON,
    CTRL_RESET,
    VPCD_PORT,
    contactless_atr,
    frame,
    historical_bytes,
)

__all__ = ["CardLike", "CardSlot", "PcscReaderCard", "VpcdCard"]

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


CardLike = Link
"""What :class:`VpcdCard` needs of a card: an :class:`emv.link.Link`."""


def _arm(sock: socket.socket) -> None:
    """Re-arm TCP_QUICKACK (Linux clears it after acknowledging)."""
    if _QUICKACK is not None:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


PCSC_CLA = 0xFF
"""The class byte of the commands a PC/SC reader answers itself (PC/SC Part 3 §3.2.2.1)."""
_INS_GET_DATA = 0xCA
_GET_UID, _GET_HISTORICAL = 0x00, 0x01
_SW_OK = b"\x90\x00"
_SW_END_OF_DATA = b"\x62\x82"  # Le is longer than the data: all the data, then 6282
_SW_WRONG_LENGTH = b"\x67\x00"
_SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
_SW_INS_NOT_SUPPORTED = b"\x6d\x00"


class PcscReaderCard:
    """``card`` behind a PC/SC contactless reader: the reader's own commands (class
    ``FF``, PC/SC Part 3 §3.2.2.1) are answered here and never reach the card.

    GET DATA (§3.2.2.1.3, ``FF CA P1 00 Le``): P1 ``00`` the UID (``uid``: 4 or 7
    bytes, an ISO/IEC 14443-3 NFCID1), P1 ``01`` the historical bytes of the ATS the
    last power-on gave (none: an empty answer). Le ``00`` asks for all of it; a
    longer Le gets all of it and '6282' (end of data before Le bytes), a shorter one
    '6CXX' with XX the length available. Another P1 or P2 is '6A81' (function not
    supported), a GET DATA that is not a case 2 command '6700', and any other
    instruction of class ``FF`` '6D00' (instruction not supported). Everything else
    goes to ``card``, and so do power on and off."""

    def __init__(self, card: CardLike, uid: bytes) -> None:
        if len(uid) not in (4, 7):
            raise ValueError(f"UID {uid.hex().upper()}: an NFCID1 is 4 or 7 bytes here")
        self.card = card
        self.uid = uid
        self._ats = b""

    def __repr__(self) -> str:
        return f"PcscReaderCard({self.card!r}, UID {self.uid.hex().upper()})"

    def power_on(self) -> bytes:
        """Power the card on; its ATS (kept for GET DATA P1 01)."""
        self._ats = self.card.power_on()
        return self._ats

    def power_off(self) -> None:
        self.card.power_off()

    def transceive(self, command: bytes) -> bytes:
        """A reader command answered here; any other command the card's answer."""
        if not command or command[0] != PCSC_CLA:
            return self.card.transceive(command)
        if len(command) < 4 or command[1] != _INS_GET_DATA:
            return _SW_INS_NOT_SUPPORTED
        if len(command) != 5:
            return _SW_WRONG_LENGTH
        p1, p2, le = command[2], command[3], command[4]
        if p2 != 0 or p1 not in (_GET_UID, _GET_HISTORICAL):
            return _SW_FUNCTION_NOT_SUPPORTED
        data = self.uid if p1 == _GET_UID else historical_bytes(self._ats) if self._ats else b""
        if le == 0 or le == len(data):
            return data + _SW_OK
        if le > len(data):
            return data + _SW_END_OF_DATA
        return bytes([0x6C, len(data)])


class CardSlot:
    """The place in a reader's field where cards are presented one after another: one
    long-lived vpcd connection (pcscd sees one card, always present) serving whichever
    card :meth:`present` put there last. Each power-on is a new tap of that card, so
    swapping cards between taps is a card taken away and another presented, without
    the second or so pcscd needs to notice a virtual card leave and come back.

    An empty slot powers on with ``ats`` (a card's ATR is all PC/SC asks for at
    power-on) but answers no command (:class:`emv.link.CardRemoved`: the reader sees
    a card gone)."""

    def __init__(self, ats: bytes) -> None:
        self._ats = ats
        self._card: CardLike | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CardSlot({self._card!r})"

    def present(self, card: CardLike | None) -> None:
        """Put ``card`` in the slot (None: empty it); the card in it is powered off first."""
        with self._lock:
            old, self._card = self._card, card
        if old is not None and old is not card:
            old.power_off()

    def power_on(self) -> bytes:
        card = self._card
        return self._ats if card is None else card.power_on()

    def power_off(self) -> None:
        card = self._card
        if card is not None:
            card.power_off()

    def transceive(self, command: bytes) -> bytes:
        card = self._card
        if card is None:
            raise CardRemoved("no card in the slot")
        return card.transceive(command)


class _Ended(Exception):
    """The session is over (the reason is the message)."""


class VpcdCard:
    """``card`` as a vpcd virtual card, connecting to the reader at ``host``:``port``
    (module docstring). :meth:`serve_once` serves one connection; :meth:`serve`
    connects again after each until its ``stop`` event is set; :meth:`close` (from
    any thread) ends the session in progress."""

    def __init__(
        self,
        card: CardLike,
        host: str = "127.0.0.1",
        port: int = VPCD_PORT,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.ended: str | None = None  # why the last session ended
        self.atr: bytes | None = None  # the ATR of the last power-on
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"VpcdCard({self.card!r}, {self.host}:{self.port})"

    # --- serving ---------------------------------------------------------------------------

    def serve_once(self) -> str:
        """Connect, serve until the session ends; why it ended (also :attr:`ended`).
        A reader that cannot be reached raises :class:`OSError`."""
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        with self._lock:
            if self._closed:
                sock.close()
                self.ended = "closed"
                return self.ended
            self._sock = sock
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.ended = self._session(sock)
        finally:
            with self._lock:
                self._sock = None
            sock.close()
        return self.ended

    def serve(self, stop: threading.Event, retry: float = 0.1, pause: float = 0.0) -> None:
        """Serve connection after connection until ``stop`` is set (or :meth:`close`);
        a reader not (yet) listening is tried again every ``retry`` seconds, and after a
        session ends the card waits ``pause`` seconds before connecting again (pcscd's
        vpcd driver misses a card that comes back at once)."""
        while not stop.is_set() and not self._closed:
            try:
                self.serve_once()
            except OSError:
                stop.wait(retry)
            else:
                if pause > 0:
                    stop.wait(pause)

    def close(self) -> None:
        """End the session in progress (the reader sees end of file) and serve no more."""
        with self._lock:
            self._closed = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)

    # --- one session -----------------------------------------------------------------------

    def _session(self, sock: socket.socket) -> str:
        try:
            while True:
                message = self._receive(sock)
                answer = self._answer(message)
                if answer is not None:
                    sock.sendall(frame(answer))
        except _Ended as end:
            return str(end)
        except OSError as err:
            return f"socket error: {err}"

    def _answer(self, message: bytes) -> bytes | None:
        """The answer to one message (None: none is due)."""
        if len(message) == 0:
            raise _Ended("framing error: a zero-length message")
        if len(message) > 1:
            try:
                return self.card.transceive(message)
            except Exception:  # a card out of the field, or one that failed
                return b""
        control = message[0]
        if control == CTRL_OFF:
            self.card.power_off()
        elif control == CTRL_ON:
            self.atr = contactless_atr(self.card.power_on())
        elif control == CTRL_RESET:
            self.card.power_off()
            self.atr = contactless_atr(self.card.power_on())
        elif control == CTRL_ATR:
            if self.atr is None:  # asked before any power-on: the card's ATR all the same
                self.atr = contactless_atr(self.card.power_on())
            return self.atr
        else:
            raise _Ended(f"framing error: unknown control {control:02X}")
        return None

    @staticmethod
    def _receive(sock: socket.socket) -> bytes:
        header = _read(sock, 2)
        if not header:
            raise _Ended("end of file")
        if len(header) < 2:
            raise _Ended("framing error: end of file inside a length")
        length = int.from_bytes(header, "big")
        body = _read(sock, length)
        if len(body) < length:
            raise _Ended(f"framing error: end of file after {len(body)} of {length} bytes")
        return body


def _read(sock: socket.socket, count: int) -> bytes:
    """Up to ``count`` bytes: fewer only at end of file."""
    data = bytearray()
    while len(data) < count:
        _arm(sock)
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
