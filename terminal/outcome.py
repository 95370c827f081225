"""Outcomes: how a kernel (and then Entry Point) ends a transaction (EMV Contactless Book A §6.2).

An :class:`Outcome` is the Outcome Parameter Set of Book A Table 6-1 as emvtap
uses it: the status (Approved, Declined, Online Request, Try Another Interface,
End Application, Try Again, Select Next), where to start again (Start A-D or N/A),
the CVM, the user interface requests (Book A §7.1, :class:`UiRequest`, now and on
restart), whether to switch the field off and whether a receipt is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = ["Cvm", "Message", "Outcome", "ReaderStatus", "Start", "Status", "UiRequest"]


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
