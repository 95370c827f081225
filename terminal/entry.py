"""Entry Point (EMV Contactless Book B): from "a card is in the field" to a kernel's outcome.

CONTRACT (to be implemented): see the class and function docstrings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from emv.link import Link
from terminal.config import AidConfig, TerminalConfig
from terminal.kernels import Indicators, Kernel, KernelResult
from terminal.outcome import Outcome, UiRequest
from terminal.transaction import Transaction

__all__ = ["Attempt", "Candidate", "EntryPoint", "EntryResult"]


@dataclass(frozen=True)
class Candidate:
    """One entry of the Candidate List (Book B §3.3.2): a PPSE directory entry the
    reader supports, with its configuration."""

    aid: bytes  # ADF Name (4F)
    label: str  # Application Label (50), "" when absent
    priority: int | None  # Application Priority Indicator (87) bits 4-1, None when absent
    kernel_id: int  # the kernel identifier Entry Point resolved (Book B §3.3.2.5)
    config: AidConfig


@dataclass
class Attempt:
    """One kernel activation (a candidate, or a new tap): what was selected, how it ended."""

    aid: bytes | None
    kernel: KernelResult | None
    outcome: Outcome


@dataclass
class EntryResult:
    """Entry Point's result for one transaction, restarts included."""

    outcome: Outcome  # the outcome Entry Point ends with
    kernel: KernelResult | None  # the last kernel activation's result, None if none ran
    indicators: dict[bytes, Indicators] = field(default_factory=dict)  # by AID (pre-processing)
    candidates: list[Candidate] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    ui: list[UiRequest] = field(default_factory=list)  # every UI request, in order
    taps: int = 0  # how many times the card was activated (power on)


class EntryPoint:
    """Entry Point for one terminal configuration and its kernels (by kernel id)."""

    def __init__(self, config: TerminalConfig, kernels: Mapping[int, Kernel]) -> None:
        self.config = config
        self.kernels = kernels

    def process(self, link: Link, transaction: Transaction) -> EntryResult:
        """Pre-processing, protocol activation, combination selection, kernel activation,
        outcome processing with restarts (Book B §3.1-§3.5). Never raises for card behaviour."""
        raise NotImplementedError
