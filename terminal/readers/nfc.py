"""The terminal's NFC reader: an :class:`emv.link.Link` over nfcpy.

:class:`NfcReader` opens ``nfc.ContactlessFrontend`` on an nfcpy path:
``udp:HOST:PORT`` (nfcpy's simulated RF link: the card, e.g.
:class:`hce.card.nfc.NfcCard`, listens there) or ``usb[:...]`` / ``tty:...`` (a
reader nfcpy drives: PN533, PN532, RC-S380, ACR122U...).

:meth:`~NfcReader.power_on` polls for a 106 kbit/s Type A card (SENS_REQ,
anticollision, SEL_REQ: ``clf.sense``), checks SEL_RES says ISO/IEC 14443-4,
sends RATS (FSD ``fsd``, CID 0) and returns the ATS. The block protocol is
:class:`emv.isodep.Pcd` over ``clf.exchange``, not nfcpy's ``Type4Tag``: nfcpy's
gives a card 30 ms to answer RATS, asks for FSD 256 only, sends a frame again
after a time-out only when FWT is below 1 s (never for FWI 14) and has no
S(DESELECT). Here each frame waits the card's FWT (plus ΔFWT) but at most
``timeout`` seconds, a time-out or a garbled frame is recovered with R(NAK) /
R(ACK) up to ``retries`` times (ISO/IEC 14443-4 Rules 4 and 5), S(WTX) is
granted, and power off sends S(DESELECT) then switches the field off.

Errors (:mod:`emv.link`):

* no card answers the poll within ``timeout``: :class:`~emv.link.CardRemoved`
  ("no card in the field"); a card that answers the poll but is not ISO/IEC
  14443-4, or never answers RATS, or answers a malformed ATS:
  :class:`~emv.link.LinkError`;
* a card that stops answering (time-outs, retransmissions included) is looked
  for again with a poll: gone, :class:`~emv.link.CardRemoved` ("the card left the
  field"); still there, :class:`~emv.link.LinkError` (a mute card). Either way the
  activation is over: the next exchange needs a new power-on;
* the field switched off under the reader (nfcpy's RFOFF): CardRemoved; an ISO-DEP
  protocol error, a response without a status word, a device error: LinkError.

With the udp link the reader's socket is bound to the card's host when that is a
loopback address (nfcpy leaves it to the system, which binds 0.0.0.0), so a test
on 127.0.0.1 opens nothing beyond loopback. nfcpy's udp driver waits 1 s for an
answer to each poll: an empty field costs at least that.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from typing import Any, NoReturn

from emv.isodep import (
    DELTA_FWT,
    FRAME_SIZES,
    MAX_FRAME,
    S_DESELECT,
    IsoDepError,
    Pcd,
    Rats,
    Unanswered,
    frame_size_index,
    frame_waiting_time,
    parse_ats,
)
from emv.link import CardRemoved, LinkError, udp_address

try:
    import nfc
    import nfc.clf
    import nfc.clf.udp
except ImportError as err:  # pragma: no cover - the extra is installed in development
    raise ImportError("terminal.readers.nfc needs nfcpy: pip install 'emvtap[nfc]'") from err

__all__ = ["NfcReader"]

SEL_RES_ISO_DEP = 0x20
"""SEL_RES (SAK, ISO/IEC 14443-3) b6: the card speaks ISO/IEC 14443-4."""
POLL_INTERVAL = 0.1
"""The least time between two polls of the field (hardware answers a poll at once)."""
DESELECT_WAIT = 0.5
"""The longest wait for the answer to S(DESELECT) (the field goes off anyway)."""


class _UdpInitiator(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's udp device whose socket is bound to the card's host when that is a
    loopback address (nfcpy's is bound by the system, to 0.0.0.0, at its first send)."""

    socket: Any  # nfcpy's, a UDP socket (None while the field is off)
    addr: tuple[str, int]

    def __init__(self, host: str, port: int) -> None:
        # Not nfcpy's __init__: it names a port by its service where one exists (9 ->
        # "discard") and then fails to read it back as a number.
        self.addr = (socket.gethostbyname(host), port)
        self._path = f"udp:{self.addr[0]}:{port}"
        self._vendor_name, self._device_name, self._chipset_name = "emvtap", "reader", "UDP"
        self.socket = None
        self._create_socket()

    def _create_socket(self) -> None:
        if self.socket is None:
            super()._create_socket()
            created: Any = self.socket  # (mypy: no longer None)
            if _is_loopback(self.addr[0]):
                created.bind((self.addr[0], 0))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NfcReader:
    """A contactless reader on the nfcpy ``device`` (module docstring). ``timeout``
    bounds the wait for a card at power-on and for each frame of an exchange;
    ``fsd`` is the frame size asked for in RATS (16 to 256); ``retries`` how many
    times a frame is sent again before the card counts as mute or gone."""

    def __init__(
        self, device: str, *, timeout: float = 5.0, fsd: int = MAX_FRAME, retries: int = 2
    ) -> None:
        if fsd not in FRAME_SIZES or fsd > MAX_FRAME:
            sizes = ", ".join(str(size) for size in FRAME_SIZES if size <= MAX_FRAME)
            raise ValueError(f"FSD {fsd}: one of {sizes}")
        if retries < 0:
            raise ValueError(f"retries: 0 or more, not {retries}")
        self.timeout = timeout
        self.fsd = fsd
        self.retries = retries
        self.ats: bytes | None = None  # the ATS of the card activated
        self._pcd: Pcd | None = None
        self._clf = nfc.ContactlessFrontend()
        udp = udp_address(device)
        if udp is not None:
            udp_device = _UdpInitiator(*udp)
            self._clf.device = udp_device
            self.path = str(udp_device._path)
        else:
            try:
                opened = self._clf.open(device)
            except OSError as err:
                raise OSError(err.errno, f"{device}: {err.strerror}") from None
            if not opened:
                raise OSError(f"{device}: no NFC reader found there")
            self.path = device

    def __repr__(self) -> str:
        state = "a card activated" if self._pcd is not None else "no card"
        return f"NfcReader({self.path}, {state})"

    # --- the Link --------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """A new tap: the field is reset, a card polled for and activated (RATS);
        returns its ATS."""
        self._pcd = None
        self.ats = None
        deadline = time.monotonic() + self.timeout
        problem: str | None = None  # why a card that answered the poll is not active
        while True:
            started = time.monotonic()
            target = self._sense()
            if target is not None:
                sel_res = bytes(target.sel_res or b"\x00")
                if not sel_res[0] & SEL_RES_ISO_DEP:
                    self._mute()
                    raise LinkError(
                        f"the card in the field does not speak ISO/IEC 14443-4 "
                        f"(SEL_RES {sel_res.hex().upper()})"
                    )
                problem = self._activate()
                if problem is None:
                    assert self.ats is not None
                    return self.ats
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(max(0.0, min(POLL_INTERVAL - (now - started), deadline - now)))
        self._mute()
        if problem is not None:
            raise LinkError(f"a card answered the poll but {problem} (in {self.timeout} s)")
        raise CardRemoved(f"no card in the field of {self.path} in {self.timeout} s")

    def power_off(self) -> None:
        """S(DESELECT) to an active card, then the field off. Harmless when off."""
        pcd, self._pcd = self._pcd, None
        if pcd is not None:
            with contextlib.suppress(nfc.clf.CommunicationError, OSError):
                self._clf.exchange(S_DESELECT, min(self.timeout, DESELECT_WAIT))
        self._mute()

    def transceive(self, command: bytes) -> bytes:
        """Send one command APDU, return the card's whole response APDU."""
        pcd = self._pcd
        if pcd is None:
            raise CardRemoved(f"no card activated on {self.path} (power on first)")
        try:
            response = self._exchange(pcd, command)
        except Unanswered as err:
            self._lost(str(err))
        except IsoDepError as err:
            self._pcd = None
            raise LinkError(str(err)) from None
        if len(response) < 2:
            self._pcd = None
            raise LinkError(f"a response without a status word: {response.hex().upper()}")
        return response

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Power off and release the device."""
        self.power_off()
        self._clf.close()

    def __enter__(self) -> NfcReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the protocol ----------------------------------------------------------------------

    def _sense(self) -> Any:
        """One poll for a 106 kbit/s Type A card: its nfcpy RemoteTarget, or None."""
        try:
            return self._clf.sense(nfc.clf.RemoteTarget("106A"))
        except OSError as err:
            raise LinkError(f"{self.path}: {err}") from None

    def _activate(self) -> str | None:
        """RATS to the card just polled; None when it answered a good ATS (kept in
        :attr:`ats`, with the session), else what went wrong."""
        fsd = self.fsd
        with contextlib.suppress(OSError):  # the udp driver's limit, the chip's
            fsd = max(s for s in FRAME_SIZES if s <= min(fsd, self._clf.max_recv_data_size + 2))
        rats = Rats(frame_size_index(fsd), 0).to_bytes()
        try:
            answer = self._clf.exchange(rats, self.timeout)
        except nfc.clf.TimeoutError:
            return "did not answer RATS"
        except nfc.clf.CommunicationError as err:
            return f"its answer to RATS was garbled ({err})"
        except OSError as err:
            raise LinkError(f"{self.path}: {err}") from None
        ats = bytes(answer or b"")
        try:
            decoded = parse_ats(ats)
            max_frame = min(MAX_FRAME, self._clf.max_send_data_size + 2)
            self._pcd = Pcd(decoded, fsd=fsd, max_frame=max_frame, retries=self.retries)
        except IsoDepError as err:
            self._mute()
            raise LinkError(f"the card's ATS: {err}") from None
        if decoded.sfgi:  # the card asked for a start-up frame guard time (§5.2.5)
            time.sleep(frame_waiting_time(decoded.sfgi))
        self.ats = ats
        return None

    def _exchange(self, pcd: Pcd, command: bytes) -> bytes:
        """One command APDU through ``pcd``: the response APDU."""
        frame_wait = min(self.timeout, pcd.fwt + DELTA_FWT)
        frame = pcd.command(command)
        wait = frame_wait
        while True:
            try:
                received = self._clf.exchange(frame, wait)
            except nfc.clf.TimeoutError:
                frame, wait = pcd.timeout(), frame_wait
                continue
            except nfc.clf.BrokenLinkError as err:
                self._pcd = None
                raise CardRemoved(f"the field broke down: {err}") from None
            except nfc.clf.CommunicationError as err:  # a garbled frame (Rule 4)
                frame, wait = pcd.invalid(str(err) or type(err).__name__), frame_wait
                continue
            except OSError as err:
                self._pcd = None
                raise LinkError(f"{self.path}: {err}") from None
            step = pcd.receive(bytes(received or b""))
            if step.response is not None:
                return step.response
            assert step.send is not None
            frame, wait = step.send, step.wait or frame_wait

    def _lost(self, problem: str) -> NoReturn:
        """The card stopped answering: poll for it, raise what is found."""
        self._pcd = None
        still_there = self._sense() is not None
        self._mute()
        if still_there:
            raise LinkError(f"the card does not answer ({problem}); it is still in the field")
        raise CardRemoved(f"the card left the field ({problem}; it does not answer a poll)")

    def _mute(self) -> None:
        """The field off (nfcpy's udp link: RFOFF to the card)."""
        with self._clf.lock:
            device = self._clf.device
            if device is not None:
                with contextlib.suppress(OSError):
                    device.mute()
