"""The reader side of a vpcd link: the role pcscd's vsmartcard vpcd driver plays.

vsmartcard's vpcd protocol: the reader listens on TCP and the virtual card (vicc,
:mod:`hce.card.vpcd` for the emvtap card) connects to it. Each message either way
is a 2-byte big-endian length followed by that many bytes. The reader sends a
1-byte message for a control (``00`` power off, ``01`` power on, ``02`` reset,
``04`` get ATR, answered by the ATR) and anything longer as a command APDU, which
the card answers with the whole response APDU (ISO/IEC 7816-4 §5.1).

:class:`VpcdReader` is an :class:`emv.link.Link` over that protocol, so the emvtap
terminal can talk to a card over a real socket without pcscd in between
(``--link vpcd-direct``). :meth:`~VpcdReader.power_on` sends power on then get ATR
and returns the ATR (for a contactless card, the PC/SC Part 3 ATR the card builds
from its ATS: ``3B 8n 80 01 ... TCK``). A card that hangs up (end of file, a reset
connection), answers an empty message (the card side's "not in the field"), or
was never connected raises :class:`emv.link.CardRemoved`; a card that does not
answer within ``timeout`` seconds, or answers something that is not the protocol,
raises :class:`emv.link.LinkError` (and the card is dropped: a late answer must not
be taken for the next one's).

TCP_NODELAY is set and TCP_QUICKACK re-armed before every ``recv`` (Linux), so an
exchange costs no delayed-ACK wait.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from emv.link import CardRemoved, LinkError
from emv.vpcd import CTRL_ATR, CTRL_OFF, CTRL_ON, MAX_MESSAGE, frame

__all__ = ["VpcdReader"]

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class VpcdReader:
    """A vpcd reader listening on ``host``:``port`` (0: a free port, see :attr:`port`)
    for one card at a time (module docstring). ``timeout`` bounds each exchange.
    Call :meth:`accept` before using the link, :meth:`close` at the end."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._card: socket.socket | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "a card connected" if self._card is not None else "no card"
        return f"VpcdReader({self.host}:{self.port}, {state})"

    @property
    def connected(self) -> bool:
        """Whether a card is connected."""
        return self._card is not None

    def accept(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: for ever) for a card to connect; a card
        already connected is dropped first. No card in time: :class:`LinkError`."""
        self._drop()
        self._listener.settimeout(timeout)
        try:
            sock, _ = self._listener.accept()
        except TimeoutError:
            where = f"{self.host}:{self.port}"
            raise LinkError(f"no card connected to {where} in {timeout} s") from None
        except OSError as err:
            raise LinkError(f"{self.host}:{self.port}: {err}") from None
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._card = sock

    # --- the Link --------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Power on (a new tap) and get ATR; returns the ATR."""
        self._send(bytes([CTRL_ON]))
        self._send(bytes([CTRL_ATR]))
        atr = self._receive()
        if not atr:
            raise CardRemoved("the card gave an empty ATR")
        return atr

    def power_off(self) -> None:
        """Power off; harmless with no card connected."""
        if self._card is None:
            return
        with contextlib.suppress(LinkError):  # the card is gone: it is off
            self._send(bytes([CTRL_OFF]))

    def transceive(self, command: bytes) -> bytes:
        """Send one command APDU, return the card's whole response APDU."""
        if not 2 <= len(command) <= MAX_MESSAGE:
            raise LinkError(
                f"a {len(command)}-byte command cannot be sent over vpcd "
                f"(2 to {MAX_MESSAGE} bytes; 1 byte is a control)"
            )
        self._send(command)
        response = self._receive()
        if not response:
            raise CardRemoved("the card answered nothing (not powered, or out of the field)")
        if len(response) < 2:
            raise LinkError(f"a response without a status word: {response.hex().upper()}")
        return response

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the card (it sees end of file) and stop listening."""
        self._drop()
        self._listener.close()

    def __enter__(self) -> VpcdReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- framing ---------------------------------------------------------------------------

    def _drop(self) -> None:
        with self._lock:
            sock, self._card = self._card, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _socket(self) -> socket.socket:
        sock = self._card
        if sock is None:
            raise CardRemoved(f"no card connected to {self.host}:{self.port}")
        return sock

    def _send(self, message: bytes) -> None:
        sock = self._socket()
        try:
            sock.sendall(frame(message))
        except TimeoutError:
            self._drop()
            raise LinkError(f"the card took more than {self.timeout} s to take a message") from None
        except OSError as err:
            self._drop()
            raise CardRemoved(f"the card hung up: {err}") from None

    def _receive(self) -> bytes:
        sock = self._socket()
        length = int.from_bytes(self._read(sock, 2), "big")
        return self._read(sock, length)

    def _read(self, sock: socket.socket, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            try:
                if _QUICKACK is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                chunk = sock.recv(count - len(data))
            except TimeoutError:
                self._drop()  # a late answer would be taken for the next one's
                raise LinkError(f"the card did not answer in {self.timeout} s") from None
            except OSError as err:
                self._drop()
                raise CardRemoved(f"the card hung up: {err}") from None
            if not chunk:
                self._drop()
                raise CardRemoved("the card hung up (end of file)")
            data += chunk
        return bytes(data)
