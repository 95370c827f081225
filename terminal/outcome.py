"""Outcomes: how a kernel (and then Entry Point) ends a transaction (EMV Contactless Book A §6.2).

An :class:`Outcome` is the Outcome Parameter Set of Book A Table 6-1 as emvtap
uses it: the status (Approved, Declined, Online Request, Try Another Interface,
End Application, Try Again, Select Next), where to start again (Start A-D or N/A),
the CVM, the user interface requests (Book A §7.1, :class:`UiRequest`, now and on
restart), whether to switch the field off and whether a receipt is wanted.

The builders at the end (:func:`approved`, :func:`declined`, :func:`online_request`,
:func:`end_application`, :func:`try_again`, :func:`select_next`,
:func:`try_another_interface`) are how Entry Point, the kernels and the POS make
their outcomes; their keyword arguments carry what differs between those callers
(the reader status of the UI request, whether the field goes off, the receipt).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = [
    "PRESENT_CARD_AGAIN",
    "Cvm",
    "Message",
    "Outcome",
    "ReaderStatus",
    "Start",
    "Status",
    "UiRequest",
    "approved",
    "declined",
    "end_application",
    "online_request",
    "select_next",
    "try_again",
    "try_another_interface",
]


class Status(StrEnum):
    """Outcome parameter Status (Book A §6.2.1, Table 6-1)."""

    APPROVED = "Approved"
    DECLINED = "Declined"
    ONLINE_REQUEST = "Online Request"
    TRY_ANOTHER_INTERFACE = "Try Another Interface"
    END_APPLICATION = "End Application"
    TRY_AGAIN = "Try Again"
    SELECT_NEXT = "Select Next"


class Start(StrEnum):
    """Outcome parameter Start (Book A §6.2.1): where Entry Point restarts (Book B §3.5)."""

    A = "A"  # pre-processing
    B = "B"  # protocol activation (a new tap)
    C = "C"  # combination selection (the next candidate)
    D = "D"  # kernel activation (same kernel, e.g. after an online response)
    NA = "N/A"


class Cvm(StrEnum):
    """Outcome parameter CVM (Book A §6.2.1)."""

    NO_CVM = "No CVM"
    SIGNATURE = "Obtain Signature"
    ONLINE_PIN = "Online PIN"
    CONFIRMATION_CODE_VERIFIED = "Confirmation Code Verified"  # CDCVM on the device
    NA = "N/A"


class Message(IntEnum):
    """User interface Message Identifiers (Book A §7.1, Table 7-1)."""

    APPROVED = 0x03
    NOT_AUTHORISED = 0x07
    ENTER_PIN = 0x09
    PROCESSING_ERROR = 0x0F
    REMOVE_CARD = 0x10
    WELCOME = 0x14
    PRESENT_CARD = 0x15
    PROCESSING = 0x16
    CARD_READ_OK = 0x17
    INSERT_OR_SWIPE_CARD = 0x18
    PRESENT_ONE_CARD_ONLY = 0x19
    APPROVED_SIGN = 0x1A
    AUTHORISING = 0x1B
    TRY_ANOTHER_CARD = 0x1C
    INSERT_CARD = 0x1D
    CLEAR_DISPLAY = 0x1E
    SEE_PHONE = 0x20
    PRESENT_CARD_AGAIN = 0x21

    @property
    def text(self) -> str:
        """The message as a reader displays it."""
        return _TEXTS[self]


_TEXTS = {
    Message.APPROVED: "Approved",
    Message.NOT_AUTHORISED: "Not Authorised",
    Message.ENTER_PIN: "Please Enter Your PIN",
    Message.PROCESSING_ERROR: "Processing Error",
    Message.REMOVE_CARD: "Remove Card",
    Message.WELCOME: "Welcome",
    Message.PRESENT_CARD: "Present Card",
    Message.PROCESSING: "Processing",
    Message.CARD_READ_OK: "Card Read OK",
    Message.INSERT_OR_SWIPE_CARD: "Please Insert or Swipe Card",
    Message.PRESENT_ONE_CARD_ONLY: "Please Present One Card Only",
    Message.APPROVED_SIGN: "Approved Please Sign",
    Message.AUTHORISING: "Authorising Please Wait",
    Message.TRY_ANOTHER_CARD: "Insert, Swipe or Try Another Card",
    Message.INSERT_CARD: "Please Insert Card",
    Message.CLEAR_DISPLAY: "",
    Message.SEE_PHONE: "See Phone for Instructions",
    Message.PRESENT_CARD_AGAIN: "Present Card Again",
}


class ReaderStatus(StrEnum):
    """User interface Status (Book A §7.1, Table 7-2)."""

    NOT_READY = "Not Ready"
    IDLE = "Idle"
    READY_TO_READ = "Ready to Read"
    PROCESSING = "Processing"
    CARD_READ_SUCCESSFULLY = "Card Read Successfully"
    PROCESSING_ERROR = "Processing Error"


@dataclass(frozen=True)
class UiRequest:
    """A User Interface Request (Book A §7.1): a message and the reader's status."""

    message: Message
    status: ReaderStatus = ReaderStatus.NOT_READY

    def __str__(self) -> str:
        return f"{self.message.text or 'clear display'} ({self.status})"


@dataclass(frozen=True)
class Outcome:
    """The Outcome Parameter Set (Book A §6.2.1, Table 6-1), as emvtap uses it.

    ``alternate_interface`` is the interface a Try Another Interface outcome
    prefers ("contact chip" or "mag-stripe"); ``reason`` says in words why the
    outcome was chosen (it names the check, never a card secret or a PAN).
    """

    status: Status
    start: Start = Start.NA
    cvm: Cvm = Cvm.NA
    ui_request: UiRequest | None = None
    ui_request_on_restart: UiRequest | None = None
    field_off: bool = True
    receipt: bool = False
    alternate_interface: str | None = None
    reason: str = ""

    @property
    def final(self) -> bool:
        """True when nothing more happens for this transaction without a new tap."""
        return self.start == Start.NA


PRESENT_CARD_AGAIN = UiRequest(Message.PRESENT_CARD_AGAIN, ReaderStatus.READY_TO_READ)
"""The UI Request on restart after a communication error: "Present Card Again", Ready to
Read (Book A §7.1, Table 7-1 message '21')."""


# --- builders (Book A §6.2.1, Table 6-1; UI Requests Book A §7.1) -----------------------------


def approved(
    cvm: Cvm,
    reason: str,
    *,
    reader: ReaderStatus = ReaderStatus.CARD_READ_SUCCESSFULLY,
    receipt: bool = False,
) -> Outcome:
    """Approved (Book A §6.2.1): "Approved", or "Approved Please Sign" for a signature
    (Book A §7.1, Table 7-1 messages '03' and '1A'), with ``reader`` as the reader's
    status. A signature always asks for a receipt; ``receipt`` asks for one anyway."""
    signature = cvm == Cvm.SIGNATURE
    message = Message.APPROVED_SIGN if signature else Message.APPROVED
    return Outcome(
        Status.APPROVED,
        cvm=cvm,
        ui_request=UiRequest(message, reader),
        receipt=receipt or signature,
        reason=reason,
    )


def declined(
    reason: str,
    *,
    cvm: Cvm = Cvm.NA,
    reader: ReaderStatus = ReaderStatus.CARD_READ_SUCCESSFULLY,
    receipt: bool = False,
) -> Outcome:
    """Declined (Book A §6.2.1): "Not Authorised" (Book A §7.1, message '07') with
    ``reader`` as the reader's status; the CVM and receipt as given."""
    return Outcome(
        Status.DECLINED,
        cvm=cvm,
        ui_request=UiRequest(Message.NOT_AUTHORISED, reader),
        receipt=receipt,
        reason=reason,
    )


def online_request(
    cvm: Cvm,
    reason: str,
    *,
    reader: ReaderStatus = ReaderStatus.NOT_READY,
    receipt: bool = False,
) -> Outcome:
    """Online Request (Book A §6.2.1): "Authorising Please Wait" (Book A §7.1, message
    '1B') with ``reader`` as the reader's status. A signature always asks for a
    receipt; ``receipt`` asks for one anyway."""
    return Outcome(
        Status.ONLINE_REQUEST,
        cvm=cvm,
        ui_request=UiRequest(Message.AUTHORISING, reader),
        receipt=receipt or cvm == Cvm.SIGNATURE,
        reason=reason,
    )


def end_application(
    reason: str,
    message: Message | None = Message.TRY_ANOTHER_CARD,
    reader: ReaderStatus = ReaderStatus.NOT_READY,
    *,
    field_off: bool = True,
) -> Outcome:
    """End Application (Book A §6.2.1): by default "Insert, Swipe or Try Another Card"
    (Book A §7.1, message '1C'), Not Ready; ``message`` None sends no UI Request."""
    ui = UiRequest(message, reader) if message is not None else None
    return Outcome(Status.END_APPLICATION, ui_request=ui, field_off=field_off, reason=reason)


def try_again(
    reason: str,
    ui: UiRequest | None = None,
    on_restart: UiRequest | None = PRESENT_CARD_AGAIN,
    *,
    field_off: bool = True,
) -> Outcome:
    """Try Again at Start B (Book A §6.2.1): a new tap, after a communication error, a
    collision or a request to act on the phone first. ``ui`` is sent now, ``on_restart``
    when the card is asked for again (Book A §7.1; by default "Present Card Again")."""
    return Outcome(
        Status.TRY_AGAIN,
        start=Start.B,
        ui_request=ui,
        ui_request_on_restart=on_restart,
        field_off=field_off,
        reason=reason,
    )


def select_next(reason: str) -> Outcome:
    """Select Next at Start C (Book A §6.2.1): the candidate is removed and the next one
    selected, the field left on; no UI Request."""
    return Outcome(Status.SELECT_NEXT, start=Start.C, field_off=False, reason=reason)


def try_another_interface(
    reason: str,
    message: Message,
    alternate: str | None = None,
    *,
    reader: ReaderStatus = ReaderStatus.NOT_READY,
    field_off: bool = True,
) -> Outcome:
    """Try Another Interface (Book A §6.2.1): ``message`` (Book A §7.1) with ``reader``
    as the reader's status; ``alternate`` the interface preferred ("contact chip",
    "mag-stripe"), when one is."""
    return Outcome(
        Status.TRY_ANOTHER_INTERFACE,
        ui_request=UiRequest(message, reader),
        field_off=field_off,
        alternate_interface=alternate,
        reason=reason,
    )
