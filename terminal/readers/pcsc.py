"""The terminal's PC/SC reader: an :class:`emv.link.Link` over pcsc-lite (or WinSCard)
through pyscard's low-level ``smartcard.scard`` API (PC/SC Part 5, the ICC resource
manager: ``SCardEstablishContext``, ``SCardGetStatusChange``, ``SCardConnect``,
``SCardTransmit``, ``SCardDisconnect``).

:meth:`PcscReader.power_on` is a tap: it waits up to ``timeout`` seconds for a card to
*arrive* (``SCardGetStatusChange``, first with ``SCARD_STATE_UNAWARE`` to learn the
reader's state, then blocking until the state changes, so a card already there does
not wait and nothing sleep-polls), connects to it and returns its ATR (for a
contactless card, the PC/SC Part 3 §3.1.3.2.3 ATR built from its ATS). The card is
taken with ``SCARD_SHARE_EXCLUSIVE``: an EMV transaction is one stateful sequence
(SELECT, GET PROCESSING OPTIONS, READ RECORD, GENERATE AC) and any other PC/SC
client's command in between would change what the card has selected or counted;
shared mode would need ``SCardBeginTransaction`` around the whole tap to give the same
guarantee. Another application holding the card is reported at once (sharing
violation) rather than interleaved. :meth:`PcscReader.power_off` disconnects with
``SCARD_UNPOWER_CARD``, so the card sees its power go and the next power-on is a new
tap.

:meth:`PcscReader.transceive` exchanges whole APDUs (ISO/IEC 7816-4 §5.1) and does
what the transport layer owes the application (:func:`exchange_apdu`): a status
``61XX`` is answered with GET RESPONSE ``00 C0 00 00 XX``, the data of every response
concatenated, as long as the card answers ``61XX``; a status ``6CXX`` (wrong Le, exact
length XX) has the same command sent again with Le = XX (EMV 4.4 Book 1 §9.3.1,
ISO/IEC 7816-3 §12.2, ISO/IEC 7816-4 §5.1.3). A card that never stops asking is cut
off after :data:`MAX_ROUNDS` such rounds.

Failures (:func:`pcsc_error`), every message naming the operation, the reader and
pcsc-lite's text and code:

=============================================================  ==========================
return code                                                    raised
=============================================================  ==========================
``SCARD_W_REMOVED_CARD``, ``SCARD_E_NO_SMARTCARD``,            :class:`~emv.link.CardRemoved`
``SCARD_W_RESET_CARD``, ``SCARD_W_UNPOWERED_CARD``,
``SCARD_E_READER_UNAVAILABLE``
an empty response (what vpcd gives once the card hung up)      :class:`~emv.link.CardRemoved`
``SCARD_E_NOT_TRANSACTED``, ``SCARD_F_COMM_ERROR`` in          :class:`~emv.link.CardRemoved`
``SCardTransmit``, then pcscd reports the reader empty         (else :class:`~emv.link.LinkError`)
within :data:`CARD_GONE_WAIT_S` (a tear mid-exchange)
no card within ``timeout`` in :meth:`PcscReader.power_on`      :class:`~emv.link.CardRemoved`
``SCARD_E_NO_SERVICE``, ``SCARD_E_SERVICE_STOPPED``            :class:`~emv.link.LinkError`
                                                               (:data:`SERVICE_NOT_AVAILABLE`)
anything else (time-outs, sharing violation, mute card, ...)   :class:`~emv.link.LinkError`
=============================================================  ==========================

A lost PC/SC service (pcscd stopped or restarted) drops the reader's context, and the
next :meth:`PcscReader.power_on` establishes a new one (also when the loss happened
between taps and shows only there): once pcscd is back, the next tap works.

pyscard is an optional dependency (``pip install emvtap[pcsc]``), imported on first
use; without it every entry point raises :class:`emv.link.LinkError` saying so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from emv.apdu import ApduError, CommandApdu
from emv.link import CardRemoved, LinkError

__all__ = [
    "MAX_ROUNDS",
    "SERVICE_NOT_AVAILABLE",
    "PcscReader",
    "exchange_apdu",
    "list_readers",
    "pcsc_error",
]

MAX_ROUNDS = 64
"""GET RESPONSE and Le re-send rounds allowed for one command (64 x 256 bytes is far
beyond any EMV response)."""

SERVICE_NOT_AVAILABLE = "PC/SC service not available (is pcscd running?)"

# PC/SC return codes (pcsc-lite's pcsclite.h, the same values as Windows' winerror.h).
SCARD_S_SUCCESS = 0x00000000
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_F_COMM_ERROR = 0x80100013
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069

CARD_GONE = frozenset(
    {
        SCARD_W_REMOVED_CARD,  # the card left since we connected
        SCARD_E_NO_SMARTCARD,  # no card in the reader
        SCARD_W_RESET_CARD,  # reset under us: its state is lost, as after a tear
        SCARD_W_UNPOWERED_CARD,  # powered off under us: likewise
        SCARD_E_READER_UNAVAILABLE,  # the reader itself went (unplugged)
    }
)
"""Return codes that mean the card is no longer there to talk to: :class:`CardRemoved`."""

EXCHANGE_FAILED = frozenset({SCARD_E_NOT_TRANSACTED, SCARD_F_COMM_ERROR})
"""Return codes of an exchange that failed on the way to the card or back: the card may
have left (a tear). :class:`CardRemoved` when pcscd then reports the reader empty within
:data:`CARD_GONE_WAIT_S`, :class:`LinkError` otherwise."""
CARD_GONE_WAIT_S = 1.5

SERVICE_LOST = frozenset({SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED})
"""Return codes that mean pcscd is not (or no longer) there: the context must be made anew."""

_GET_RESPONSE = b"\x00\xc0\x00\x00"  # ISO/IEC 7816-4 §7.6.1, without Le
_SW1_MORE_DATA = 0x61  # '61XX': XX more bytes to fetch with GET RESPONSE
_SW1_WRONG_LE = 0x6C  # '6CXX': send again with Le = XX
_SHORT_NE = 256  # Le '00' in the short form


# --- the transport rules, pure ------------------------------------------------------------


def exchange_apdu(
    command: bytes,
    transmit: Callable[[bytes], bytes],
    *,
    where: str = "the reader",
    max_rounds: int = MAX_ROUNDS,
) -> bytes:
    """Send ``command`` through ``transmit`` (one exchange with the card) and return the
    whole response APDU, applying the transport-level rules of EMV 4.4 Book 1 §9.3.1,
    ISO/IEC 7816-3 §12.2 and ISO/IEC 7816-4 §5.1.3:

    * ``61XX``: keep the response's data, send GET RESPONSE ``00 C0 00 00 XX`` (XX
      ``00``: 256 bytes; class ``00``, the basic channel EMV uses) and go on with its
      answer;
    * ``6CXX``: send the last command again with Le = XX (``00``: 256), in its own
      form (short or extended), dropping that response.

    Anything else ends the exchange: the data gathered, then the last response (data
    and status). ``where`` names the reader in error messages. More than
    ``max_rounds`` rounds is :class:`LinkError` (a card that never stops asking); a
    response of one byte (no status word) is :class:`LinkError`, and of no byte at all
    :class:`CardRemoved` (the reader got nothing from the card).
    """
    gathered = b""
    sent = command
    for _ in range(max_rounds + 1):
        response = transmit(sent)
        if not response:
            raise CardRemoved(
                f"{where} returned an empty response to {sent.hex().upper()}"
                " (the card is gone or out of the field)"
            )
        if len(response) < 2:
            raise LinkError(
                f"{where} returned {response.hex().upper()} to {sent.hex().upper()}:"
                " a response needs at least SW1 SW2"
            )
        sw1, sw2 = response[-2], response[-1]
        if sw1 == _SW1_MORE_DATA:
            gathered += response[:-2]
            sent = _GET_RESPONSE + bytes([sw2])
        elif sw1 == _SW1_WRONG_LE:
            sent = _with_le(sent, sw2 or _SHORT_NE, where)
        else:
            return gathered + response
    raise LinkError(
        f"{where}: the card still answered {sw1:02X}{sw2:02X} after {max_rounds} GET RESPONSE"
        f" or Le re-send rounds for {command.hex().upper()}"
    )


def _with_le(command: bytes, ne: int, where: str) -> bytes:
    """``command`` with Le asking for ``ne`` bytes, in the same form (short or extended)."""
    try:
        parsed = CommandApdu.parse(command)
    except ApduError as err:
        raise LinkError(
            f"{where}: the card asked for {command.hex().upper()} again with"
            f" Le={ne % _SHORT_NE:02X} but it is not a command APDU ({err})"
        ) from None
    extended = parsed.case != 1 and parsed.to_bytes(extended=True) == command
    return dataclasses.replace(parsed, le=ne).to_bytes(extended=extended)


# --- return codes -----------------------------------------------------------------------


def pcsc_error(code: int, doing: str, text: str) -> LinkError:
    """The exception for PC/SC return ``code`` met while ``doing`` (what and on which
    reader), with ``text`` pcsc-lite's words for it: :class:`CardRemoved` for the codes
    in :data:`CARD_GONE`, :class:`LinkError` for everything else (a lost service says
    so: :data:`SERVICE_NOT_AVAILABLE`)."""
    code &= 0xFFFFFFFF
    if code in SERVICE_LOST:
        return LinkError(f"{doing}: {SERVICE_NOT_AVAILABLE}: {text} (0x{code:08X})")
    kind = CardRemoved if code in CARD_GONE else LinkError
    return kind(f"{doing}: {text} (0x{code:08X})")


def _scard() -> Any:
    """pyscard's ``smartcard.scard``, or :class:`LinkError` saying how to get it."""
    try:
        from smartcard import scard  # noqa: PLC0415  (pyscard is an optional extra)
    except ImportError as err:
        raise LinkError(f"PC/SC needs pyscard ({err}): pip install emvtap[pcsc]") from None
    return scard


def _pyscard(doing: str, function: Callable[..., Any], *args: Any) -> tuple[int, list[Any]]:
    """``function(*args)`` from pyscard: its return code and its other results. What
    pyscard raises itself (bad arguments, failures of its own) is :class:`LinkError`."""
    try:
        results = function(*args)
    except Exception as err:
        raise LinkError(f"{doing}: pyscard raised {type(err).__name__}: {err}") from None
    values = list(results) if isinstance(results, list | tuple) else [results]
    return int(values[0]) & 0xFFFFFFFF, values[1:]


def _text(code: int) -> str:
    """pcsc-lite's words for ``code``."""
    try:
        return str(_scard().SCardGetErrorMessage(code))
    except Exception:  # the text is a courtesy: never let it hide the code
        return "PC/SC error"


def _error(code: int, doing: str) -> LinkError:
    """:func:`pcsc_error` with pcsc-lite's text for ``code``."""
    return pcsc_error(code, doing, _text(code))


def _ok(doing: str, function: Callable[..., Any], *args: Any) -> list[Any]:
    """:func:`_pyscard`'s results after the return code, which must be success."""
    code, values = _pyscard(doing, function, *args)
    if code != SCARD_S_SUCCESS:
        raise _error(code, doing)
    return values


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names) or "none"


# --- the reader -------------------------------------------------------------------------


def list_readers() -> list[str]:
    """The readers pcscd knows (empty when it has none); :class:`LinkError` when the
    PC/SC service is not running."""
    scard = _scard()
    doing = "listing PC/SC readers"
    (context,) = _ok(doing, scard.SCardEstablishContext, scard.SCARD_SCOPE_USER)
    try:
        return _readers(scard, context, doing)
    finally:
        with contextlib.suppress(Exception):
            scard.SCardReleaseContext(context)


def _readers(scard: Any, context: Any, doing: str) -> list[str]:
    code, values = _pyscard(doing, scard.SCardListReaders, context, [])
    if code == SCARD_E_NO_READERS_AVAILABLE:
        return []
    if code != SCARD_S_SUCCESS:
        raise _error(code, doing)
    return [str(name) for name in values[0]]


class _ServiceLost(Exception):
    """The PC/SC service went under a context (the :class:`LinkError` to raise inside)."""

    def __init__(self, error: LinkError) -> None:
        super().__init__(str(error))
        self.error = error


class PcscReader:
    """The PC/SC reader ``name`` (None: the first one pcscd lists) as a
    :class:`emv.link.Link` (module docstring); :meth:`power_on` waits up to
    ``timeout`` seconds for a card. A reader that is not there is :class:`LinkError`
    naming the readers that are. Call :meth:`close` at the end (or use ``with``)."""

    def __init__(self, name: str | None = None, *, timeout: float = 5.0) -> None:
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        self.timeout = timeout
        self._scard = _scard()
        self._card: Any = None  # SCARDHANDLE while connected
        self._protocol = 0
        self._context: Any = None
        self._establish()
        readers = _readers(self._scard, self._context, "listing PC/SC readers")
        if name is None and not readers:
            self._release()
            raise LinkError("no PC/SC reader: pcscd lists none")
        if name is not None and name not in readers:
            self._release()
            raise LinkError(f"no PC/SC reader {name!r}; the readers are: {_quoted(readers)}")
        self.name: str = readers[0] if name is None else name

    def __repr__(self) -> str:
        state = "a card connected" if self._card is not None else "no card"
        return f"PcscReader({self.name!r}, {state})"

    @property
    def connected(self) -> bool:
        """Whether a card is connected (powered on, not yet off or gone)."""
        return self._card is not None

    # --- the Link --------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """A new tap: power off any card connected, wait up to ``timeout`` for a card,
        connect to it (exclusive, T=0 or T=1) and return its ATR. No card in time:
        :class:`CardRemoved`; the PC/SC service gone: :class:`LinkError` (a context lost
        to a pcscd restart is made anew first)."""
        self.power_off()
        try:
            self._wait_for_card()
        except _ServiceLost as lost:
            self._release()
            raise lost.error from None
        scard = self._scard
        card, protocol = self._checked(
            f"connecting to the card on reader {self.name!r}",
            scard.SCardConnect,
            self._context,
            self.name,
            scard.SCARD_SHARE_EXCLUSIVE,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        self._card, self._protocol = card, int(protocol)
        _, _, _, atr = self._checked(
            f"reading the ATR on reader {self.name!r}", scard.SCardStatus, card
        )
        if not atr:
            self.power_off()
            raise CardRemoved(f"the card on reader {self.name!r} gave no ATR")
        return bytes(atr)

    def power_off(self) -> None:
        """Disconnect, powering the card off (``SCARD_UNPOWER_CARD``); harmless when not
        connected, or when the card or pcscd has gone already."""
        card, self._card = self._card, None
        if card is None:
            return
        doing = f"powering off the card on reader {self.name!r}"
        code, _ = _pyscard(doing, self._scard.SCardDisconnect, card, self._scard.SCARD_UNPOWER_CARD)
        if code in SERVICE_LOST:
            self._release()
        elif code not in (SCARD_S_SUCCESS, *CARD_GONE):  # a card gone is off
            raise _error(code, doing)

    def transceive(self, command: bytes) -> bytes:
        """Send one command APDU, return the card's whole response APDU (GET RESPONSE and
        Le re-sends done here: :func:`exchange_apdu`)."""
        if self._card is None:
            raise CardRemoved(f"no card powered on reader {self.name!r} (power_on first)")
        if len(command) < 4:
            raise LinkError(f"a {len(command)}-byte command is not an APDU (4 bytes at least)")
        try:
            return exchange_apdu(command, self._transmit, where=f"reader {self.name!r}")
        except CardRemoved:
            self._forget_card()
            raise

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Power the card off and release the PC/SC context; harmless twice."""
        with contextlib.suppress(LinkError):
            self.power_off()
        self._release()

    def __enter__(self) -> PcscReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- PC/SC -----------------------------------------------------------------------------

    def _transmit(self, command: bytes) -> bytes:
        doing = f"sending {command.hex().upper()} to the card on reader {self.name!r}"
        card, protocol = self._card, self._protocol
        code, values = _pyscard(doing, self._scard.SCardTransmit, card, protocol, list(command))
        if code == SCARD_S_SUCCESS:
            return bytes(values[0])
        if code in EXCHANGE_FAILED and self._card_left():
            self._forget_card()
            raise CardRemoved(f"{doing}: the card left ({_text(code)} 0x{code:08X})")
        raise self._failed(code, doing)

    def _checked(self, doing: str, function: Callable[..., Any], *args: Any) -> list[Any]:
        """``function(*args)``'s results after the return code, which must be success
        (else :meth:`_failed`)."""
        code, values = _pyscard(doing, function, *args)
        if code != SCARD_S_SUCCESS:
            raise self._failed(code, doing)
        return values

    def _failed(self, code: int, doing: str) -> LinkError:
        """The error for ``code``, the card forgotten when it is gone and the context when
        the service is."""
        if code in CARD_GONE:
            self._forget_card()
        elif code in SERVICE_LOST:
            self._card = None  # its handle died with the service
            self._release()
        return _error(code, doing)

    def _card_left(self) -> bool:
        """After a failed exchange: whether pcscd reports the card gone within
        :data:`CARD_GONE_WAIT_S` (it looks at its readers every 0.4 s), waiting on the
        reader's state changes."""
        deadline = time.monotonic() + CARD_GONE_WAIT_S
        present = self._scard.SCARD_STATE_PRESENT
        try:
            event = self._state_change(self._scard.SCARD_STATE_UNAWARE, 0)
            while event is not None and event & present:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                event = self._state_change(event & ~self._scard.SCARD_STATE_CHANGED, _ms(left))
        except (LinkError, _ServiceLost):
            return False
        return event is not None

    def _wait_for_card(self) -> None:
        """Until a card is in the reader: its state now, then blocking on changes of
        state (pcsc-lite's event counter included) until the deadline."""
        deadline = time.monotonic() + self.timeout
        present, unknown = self._scard.SCARD_STATE_PRESENT, self._scard.SCARD_STATE_UNKNOWN
        event = self._state_now()
        while event is not None and not event & present:
            if event & unknown:
                raise LinkError(f"reader {self.name!r}: pcscd does not know it any more")
            left = deadline - time.monotonic()
            if left <= 0:
                break
            event = self._state_change(event & ~self._scard.SCARD_STATE_CHANGED, _ms(left))
        if event is None or not event & present:
            raise CardRemoved(f"no card on reader {self.name!r} in {self.timeout:g} s")

    def _state_now(self) -> int | None:
        """The reader's state at once (``SCARD_STATE_UNAWARE``). A context lost to a
        pcscd restart since the last tap fails this first look: it is made anew, once."""
        if self._context is not None:
            with contextlib.suppress(_ServiceLost):
                return self._state_change(self._scard.SCARD_STATE_UNAWARE, 0)
            self._release()
        self._establish()
        return self._state_change(self._scard.SCARD_STATE_UNAWARE, 0)

    def _state_change(self, known: int, timeout_ms: int) -> int | None:
        """The reader's event state once it differs from ``known``; None: not in time."""
        doing = f"waiting for a card on reader {self.name!r}"
        code, values = _pyscard(
            doing, self._scard.SCardGetStatusChange, self._context, timeout_ms, [(self.name, known)]
        )
        if code == SCARD_E_TIMEOUT:
            return None
        if code in SERVICE_LOST:
            raise _ServiceLost(_error(code, doing))
        if code != SCARD_S_SUCCESS:
            raise _error(code, doing)
        return int(values[0][0][1])

    def _establish(self) -> None:
        (self._context,) = _ok(
            "establishing a PC/SC context",
            self._scard.SCardEstablishContext,
            self._scard.SCARD_SCOPE_USER,
        )

    def _forget_card(self) -> None:
        """The card is gone: free pcscd's handle (and unpower whatever is left of it)."""
        with contextlib.suppress(LinkError):
            self.power_off()

    def _release(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            with contextlib.suppress(Exception):
                self._scard.SCardReleaseContext(context)


def _ms(seconds: float) -> int:
    """A non-negative time-out in whole milliseconds, rounded up."""
    return max(0, math.ceil(seconds * 1000))
