"""Contactless kernels (EMV Contactless Books C-2 and C-3) and what they share with Entry Point.

Entry Point (:mod:`terminal.entry`) selects an application and activates its
kernel with a :class:`Selected`: the AID, the card's FCI, the AID's
configuration and the pre-processing indicators (Book B §3.1.1, §3.5). The kernel
runs the transaction over the :class:`terminal.session.CardSession` and returns a
:class:`KernelResult`: the outcome (Book A §6.2), and what a tester wants to see
(the path taken, ODA, CVM, TVR, the cryptogram, the data record for the host, the
decisions in words).

A kernel never raises out of :meth:`Kernel.run` for anything the card does: every
card answer, however malformed, ends in an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from emv.apdu import CryptogramType
from terminal.config import AidConfig, TerminalConfig
from terminal.oda import OdaResult
from terminal.outcome import Outcome, UiRequest
from terminal.session import CardSession

__all__ = ["DATA_RECORD_TAGS", "Indicators", "Kernel", "KernelResult", "Selected"]

DATA_RECORD_TAGS = (
    0x5A, 0x5F34, 0x9F26, 0x9F27, 0x9F36, 0x9F10, 0x9F02, 0x9F03, 0x9F1A, 0x95,
    0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x57, 0x5F24, 0x9F6E, 0x9F6C, 0x9F66,
    0x9F33, 0x9F34, 0x9F35, 0x9F09, 0x84, 0x9F1E, 0x9F21, 0x9F6B, 0x56, 0x9F60, 0x9F61,
)  # fmt: skip
"""The data objects a kernel puts in its data record for online authorisation and
clearing (Book C-2 Annex A "Data Record", Book C-3 §5.7 online data), those present."""


@dataclass(frozen=True)
class Indicators:
    """Entry Point Pre-Processing Indicators for one combination (Book B §3.1.1, Table 3-3).

    ``ttq`` is the TTQ for Kernel 3 as pre-processing set it (byte 2 bits 8-7 for
    online cryptogram required and CVM required), None for other kernels."""

    status_check_requested: bool = False
    contactless_application_not_allowed: bool = False
    zero_amount: bool = False
    cvm_required_limit_exceeded: bool = False
    floor_limit_exceeded: bool = False
    ttq: bytes | None = None


@dataclass(frozen=True)
class Selected:
    """What Entry Point hands the kernel at activation (Book B §3.5)."""

    aid: bytes  # the ADF name selected (the DF Name 84 of the FCI)
    fci: bytes  # the SELECT response data, the FCI template '6F'
    config: AidConfig
    terminal: TerminalConfig
    indicators: Indicators
    terminal_data: dict[int, bytes]  # terminal_data(): the transaction's data objects


@dataclass
class KernelResult:
    """How the kernel ended, and what it found out on the way."""

    outcome: Outcome
    kernel: str  # "C-2", "C-3"
    path: str = ""  # "qVSDC", "M/Chip", "mag-stripe"; "" when it ended before choosing
    oda: OdaResult = field(default_factory=OdaResult)
    tvr: bytes = bytes(5)
    cryptogram_type: CryptogramType | None = None
    data_record: dict[int, bytes] = field(default_factory=dict)
    card_data: dict[int, bytes] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)
    ui: list[UiRequest] = field(default_factory=list)  # UI requests made on the way (Book A §7.1)


class Kernel(Protocol):
    """A contactless kernel; one instance serves many transactions (Kernel 2 keeps its
    torn transaction log across them)."""

    name: str  # "C-2", "C-3"

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        """Run the transaction on the selected application; never raises for card behaviour."""
        ...
