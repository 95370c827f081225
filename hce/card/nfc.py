"""The emulated card as an ISO/IEC 14443-4 Type A target through nfcpy.

:class:`NfcCard` listens as a 106 kbit/s Type A target (SENS_RES ``04 00``, or
``44 00`` for a 7-byte UID, lowest byte first; SEL_RES ``20``: ISO/IEC 14443-4
compliant; the UID given), answers RATS with this card's ATS
(:func:`emv.isodep.build_ats`: FWI 14, no NAD, no CID), then runs the block
protocol (:class:`emv.isodep.Picc`), handing each whole command APDU to
``card.transceive`` and chaining the response back.

Each activation is a new tap: ``card.power_on()`` at RATS (before the ATS goes
out), ``card.power_off()`` when the session ends: S(DESELECT) (before its answer
goes out), the reader switching its field off (RFOFF), no frame from the reader
for ``idle_timeout`` seconds, :meth:`NfcCard.close`, or an error of the link.
:meth:`NfcCard.serve` listens again after each session until told to stop;
:attr:`NfcCard.ended` says why the last one ended.

A card whose ``transceive`` raises :class:`emv.link.CardRemoved` has left the
field: the session ends there, unanswered (the reader sees a mute card). Any
other exception is the card failing: the reader gets status '6F00' (no precise
diagnosis, ISO/IEC 7816-4 §5.6) and the session goes on.

``device`` is an nfcpy path:

* ``udp:HOST:PORT``: nfcpy's simulated RF link (frames as UDP datagrams; no
  hardware). The card is the side that listens, on HOST:PORT (PORT 0: a free
  port, see :attr:`NfcCard.path`). nfcpy's own udp driver binds its listening
  socket to 0.0.0.0 and only once a listen starts, and closes it before each
  listen; here the socket is bound to HOST itself (``udp:127.0.0.1:PORT`` stays
  on loopback), once, for the card's life: a reader's poll that comes between two
  sessions waits in the socket instead of being lost.
* ``usb[:VID[:PID]]`` or ``usb[:BUS[:DEV]]``: a PN53x-class reader able to act as
  a card (PN533 boards, SCM SCL3711, Sony RC-S380). Its chip answers RATS itself
  with the ATS given it (nfcpy's ``rats_res``), hides the RATS from the host on
  PN53x (the FSD is then taken as 256, what EMV readers ask for), and needs a
  4-byte UID starting with ``08`` (a random NFCID1). The ACR122U cannot emulate a
  card (nfcpy has no listen modes for it). Untested here without hardware.

:meth:`NfcCard.close` works from any thread; on the udp link it interrupts a
listen or a session at once (a datagram to the card's own socket wakes it), on
hardware at the end of the chip's current wait (at most ``poll`` seconds).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

from emv.isodep import MAX_FRAME, IsoDepError, Picc, PiccReply, build_ats, parse_rats
from emv.link import CardRemoved, udp_address
from hce.card.vpcd import CardLike

try:
    import nfc
    import nfc.clf
    import nfc.clf.udp
except ImportError as err:  # pragma: no cover - the extra is installed in development
    raise ImportError("hce.card.nfc needs nfcpy: pip install 'emvtap[nfc]'") from err

__all__ = ["NfcCard"]

log = logging.getLogger(__name__)

SEL_RES_ISO_DEP = b"\x20"
"""SEL_RES (SAK, ISO/IEC 14443-3) with b6 set: the target speaks ISO/IEC 14443-4."""
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
_WAKE = b"WAKE"  # not an nfcpy udp frame: wakes a listening socket, is then dropped
_CASCADE_TAG = 0x88
_AFTER_DESELECT = 0.01  # hardware: how long to listen after answering DESELECT (0 waits for ever)


class _UdpTarget(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's udp device as a card that stays in the field: its socket is bound to
    the host given (not 0.0.0.0) when it is made, and kept until :meth:`close`
    (nfcpy's closes it before each listen and binds it anew). ``closing`` makes
    every receive time out, so a listen returns None and an exchange raises."""

    socket: Any  # nfcpy's, a UDP socket (None once closed)
    addr: tuple[str, int]

    def __init__(self, host: str, port: int) -> None:
        # Not nfcpy's __init__: it names a port by its service where one exists (9 ->
        # "discard") and then fails to read it back as a number.
        self.addr = (socket.gethostbyname(host), port)
        self.socket = None
        self._create_socket()  # unbound
        try:
            self.socket.bind(self.addr)
        except OSError as err:
            self.socket.close()
            raise OSError(err.errno, f"udp:{host}:{port}: cannot listen: {err.strerror}") from None
        self.addr = self.socket.getsockname()[:2]
        self._path = f"udp:{self.addr[0]}:{self.addr[1]}"
        self._vendor_name, self._device_name, self._chipset_name = "emvtap", "card", "UDP"
        self.closing = threading.Event()

    def _create_socket(self) -> None:
        if self.socket is None and getattr(self, "closing", None) is not None:
            raise OSError(f"{self._path}: the card's socket is closed")  # made once only
        super()._create_socket()

    def _bind_socket(self, time_to_return: float) -> bool:
        return True  # bound once, in __init__

    def mute(self) -> None:
        """Nothing: the socket is the card's presence in the field, kept between sessions."""

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def _recv_data(self, timeout: float | None, *brty_list: str) -> Any:
        if self.closing.is_set():
            raise nfc.clf.TimeoutError("the card is closing")
        return super()._recv_data(timeout, *brty_list)

    def wake(self) -> None:
        """Set :attr:`closing` and wake a receive in progress (from any thread)."""
        self.closing.set()
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker,
        ):
            waker.sendto(_WAKE, self.addr)


def _check_uid(uid: bytes, hardware: bool) -> None:
    if hardware and (len(uid) != 4 or uid[0] != 0x08):
        raise ValueError(
            f"UID {uid.hex().upper()}: a PN53x or RC-S380 card has a 4-byte random "
            "UID starting with 08"
        )
    if len(uid) not in (4, 7, 10):
        raise ValueError(f"UID {uid.hex().upper()}: an NFCID1 is 4, 7 or 10 bytes")
    if uid[0] == _CASCADE_TAG:
        raise ValueError(f"UID {uid.hex().upper()}: 88 (the cascade tag) cannot start it")


def _sens_res(uid: bytes) -> bytes:
    """SENS_RES (ATQA), lowest byte first: UID size in b8 b7, bit frame anticollision."""
    return bytes(({4: 0x04, 7: 0x44, 10: 0x84}[len(uid)], 0x00))


class NfcCard:
    """``card`` as an ISO/IEC 14443-4 Type A target on the nfcpy ``device`` (module
    docstring), with NFCID1 ``uid``. ``fsci`` and ``historical`` go into the ATS
    (frames of 256 bytes by default); ``idle_timeout`` is how long a session waits
    for the reader's next frame; ``poll`` how long one listen lasts in
    :meth:`serve` (the longest it takes to notice its ``stop`` event: :meth:`close`
    is immediate on the udp link).

    :attr:`ready` is set once the card listens (on udp, a reader may poll from then
    on); :attr:`sessions` counts activations, :attr:`ended` says why the last
    session ended, :attr:`path` is the nfcpy path a reader opens to reach it."""

    def __init__(
        self,
        card: CardLike,
        device: str,
        *,
        uid: bytes,
        fsci: int = 8,
        historical: bytes = b"",
        idle_timeout: float = 10.0,
        poll: float = 0.5,
    ) -> None:
        udp = udp_address(device, any_port=True)
        _check_uid(uid, hardware=udp is None)
        self.card = card
        self.uid = uid
        self.ats = build_ats(fsci=fsci, historical=historical)
        self.idle_timeout = idle_timeout
        self.poll = poll
        self.ready = threading.Event()
        self.sessions = 0
        self.ended: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._serving = False
        self._powered = False
        self._udp: _UdpTarget | None = None
        self._clf = nfc.ContactlessFrontend()
        if udp is not None:
            self._udp = _UdpTarget(*udp)
            self._clf.device = self._udp
            self.path: str = self._udp.path
        else:
            try:
                opened = self._clf.open(device)
            except OSError as err:
                raise OSError(err.errno, f"{device}: {err.strerror}") from None
            if not opened:
                raise OSError(f"{device}: no NFC device found there")
            self.path = device

    def __repr__(self) -> str:
        return f"NfcCard({self.card!r}, {self.path}, UID {self.uid.hex().upper()})"

    @property
    def port(self) -> int | None:
        """The UDP port the card listens on (None on hardware)."""
        return None if self._udp is None else int(self._udp.addr[1])

    # --- serving ---------------------------------------------------------------------------

    def serve(self, stop: threading.Event) -> None:
        """Listen, serve a session, listen again, until ``stop`` is set (noticed within
        ``poll`` seconds) or :meth:`close` is called; the device is closed on the way
        out when :meth:`close` was."""
        with self._lock:
            if self._closed:
                return
            self._serving = True
        try:
            while not stop.is_set() and not self._closed:
                self.serve_once(self.poll)
        finally:
            with self._lock:
                self._serving = False
                closed = self._closed
            if closed:
                self._clf.close()

    def serve_once(self, timeout: float) -> str | None:
        """Listen up to ``timeout`` seconds; when a reader activates the card, serve
        the session to its end. Why it ended (also :attr:`ended`), or None when no
        reader activated the card."""
        target = nfc.clf.LocalTarget(
            "106A",
            sens_res=_sens_res(self.uid),
            sdd_res=self.uid,
            sel_res=SEL_RES_ISO_DEP,
            rats_res=self.ats,  # hardware: the chip answers RATS with it
        )
        self.ready.set()
        activated = self._clf.listen(target, timeout)
        if activated is None or self._closed:
            return None
        first = activated.tt4_cmd
        if not first:  # not ISO-DEP: some other activation (a Type 2 command)
            return None
        self.sessions += 1
        self.ended = self._session(bytes(first), activated.rats_cmd)
        log.debug("%s: session %d ended: %s", self.path, self.sessions, self.ended)
        return self.ended

    def close(self) -> None:
        """Stop serving and close the device (from any thread); a session in
        progress ends (the card is powered off)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        if self._udp is not None:
            self._udp.wake()
        if not serving:
            self._clf.close()

    def __enter__(self) -> NfcCard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one session -----------------------------------------------------------------------

    def _session(self, first: bytes, rats: bytes | None) -> str:
        """One activation, from the RATS (udp) or the first block after it (hardware,
        whose chip answered the RATS): why it ended."""
        try:
            if first[0] == 0xE0:  # the RATS itself: answer it
                picc = Picc.activate(first, self.ats)
                reply = PiccReply(send=self.ats)
            else:
                fsd = parse_rats(rats).fsd if rats else MAX_FRAME
                picc = Picc(self.ats, fsd=fsd)
                reply = None
        except IsoDepError as err:
            return f"activation refused: {err}"
        try:
            self.card.power_on()
        except Exception as err:
            return f"the card failed to power on: {err!r}"
        self._powered = True
        try:
            if reply is None:
                reply = picc.receive(first)
            return self._run(picc, reply)
        finally:
            self._power_off()

    def _run(self, picc: Picc, reply: PiccReply) -> str:
        while True:
            send = reply.send
            if reply.command is not None:
                try:
                    response = self._transceive(reply.command)
                except CardRemoved as err:
                    return f"the card left the field: {err}"
                send = picc.respond(response)
            elif reply.ignored is not None:
                log.debug("%s: ignored: %s", self.path, reply.ignored)
            if reply.deselected:
                self._power_off()  # before the answer: the reader sees an unpowered card
                # nfcpy sends and then receives; on udp a wait of 0 receives nothing (a
                # new tap's RATS stays for the next listen), a chip needs a short one
                wait = 0 if self._udp is not None else _AFTER_DESELECT
                with contextlib.suppress(nfc.clf.CommunicationError, OSError):
                    self._clf.exchange(send, wait)
                return "deselected"
            try:
                frame = self._clf.exchange(send, self.idle_timeout)
            except nfc.clf.BrokenLinkError:
                return "the reader switched its field off (RFOFF)"
            except nfc.clf.TimeoutError:
                if self._closed:
                    return "closed"
                return f"no frame from the reader in {self.idle_timeout} s"
            except nfc.clf.CommunicationError as err:
                if self._closed:
                    return "closed"
                log.debug("%s: %s: ignored", self.path, err)
                reply = PiccReply()  # an unreadable frame: go on receiving (Rule 10)
                continue
            except OSError as err:
                return f"device error: {err}"
            if frame is None:
                return "the link broke"
            reply = picc.receive(bytes(frame))

    def _transceive(self, command: bytes) -> bytes:
        try:
            return self.card.transceive(command)
        except CardRemoved:
            raise
        except Exception:
            log.exception("%s: the card failed on %s", self.path, command.hex().upper())
            return SW_NO_PRECISE_DIAGNOSIS

    def _power_off(self) -> None:
        """Power the card off, once a session."""
        if not self._powered:
            return
        self._powered = False
        try:
            self.card.power_off()
        except Exception:
            log.exception("%s: the card failed to power off", self.path)
