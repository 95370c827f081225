"""Terminal risk management and terminal action analysis (EMV 4.4 Book 3 §10.6 and §10.7,
as Book C-2 §7.8 "Terminal Action Analysis" and S456.37-S456.39 use them).

Terminal risk management in a contactless kernel is the floor limit check (Book 3
§10.6.1; Book C-2 S456.37-S456.38): an amount above the Reader Contactless Floor
Limit sets "Transaction exceeds floor limit". Random selection and velocity checking
are not done by Kernel 2; the AIP's "terminal risk management is to be performed" is
informative only.

Terminal action analysis (Book 3 §10.7, Book C-2 TAA.1-TAA.18) compares the TVR with
the Issuer Action Codes (9F0E Denial, 9F0F Online, 9F0D Default) and the Terminal
Action Codes of the reader:

* Denial: a TVR bit set in TAC-Denial or IAC-Denial asks for an AAC (an absent
  IAC-Denial counts as all bits clear);
* an online-only terminal (Terminal Type x1 or x4) then asks for an ARQC;
* an offline-only terminal (x3, x6) asks for a TC unless a TVR bit is set in
  TAC-Default or IAC-Default, then an AAC (an absent IAC-Default counts as all bits set);
* an offline terminal with online capability (x2, x5) asks for an ARQC when a TVR bit is
  set in TAC-Online or IAC-Online (absent: all bits set), else a TC.

All functions are pure: bytes and numbers in, a decision and its reason out.
"""

from __future__ import annotations

from dataclasses import dataclass

from emv.apdu import CryptogramType
from emv.bitfields import TVR
from terminal.config import Tacs

__all__ = [
    "DEFAULT_IAC_DEFAULT",
    "DEFAULT_IAC_DENIAL",
    "DEFAULT_IAC_ONLINE",
    "ActionCodes",
    "TaaDecision",
    "floor_limit_exceeded",
    "matching_bits",
    "terminal_action_analysis",
]

TVR_LENGTH = 5
DEFAULT_IAC_DENIAL = bytes(TVR_LENGTH)
"""Book 3 §10.7: an absent IAC-Denial is taken as all bits clear."""
DEFAULT_IAC_ONLINE = b"\xff" * TVR_LENGTH
"""Book 3 §10.7: an absent IAC-Online is taken as all bits set."""
DEFAULT_IAC_DEFAULT = b"\xff" * TVR_LENGTH
"""Book 3 §10.7: an absent IAC-Default is taken as all bits set."""

_ONLINE_ONLY = frozenset({0x1, 0x4})  # Terminal Type second digit (Book 4 Annex A1)
_OFFLINE_ONLY = frozenset({0x3, 0x6})


def floor_limit_exceeded(amount: int, floor_limit: int | None) -> bool:
    """Book 3 §10.6.1, Book C-2 S456.37: the amount is above the floor limit (no limit: never)."""
    return floor_limit is not None and amount > floor_limit


@dataclass(frozen=True)
class ActionCodes:
    """The card's Issuer Action Codes as read (None when the card gave none, or a value
    that is not 5 bytes long, which counts as absent)."""

    denial: bytes | None = None
    online: bytes | None = None
    default: bytes | None = None

    @classmethod
    def from_card(cls, data: dict[int, bytes]) -> ActionCodes:
        """IAC-Denial 9F0E, IAC-Online 9F0F, IAC-Default 9F0D from the card's data objects."""

        def five(tag: int) -> bytes | None:
            value = data.get(tag)
            return value if value is not None and len(value) == TVR_LENGTH else None

        return cls(denial=five(0x9F0E), online=five(0x9F0F), default=five(0x9F0D))


@dataclass(frozen=True)
class TaaDecision:
    """The cryptogram to ask for and why."""

    cryptogram: CryptogramType
    reason: str


def matching_bits(tvr: bytes, *codes: bytes) -> bytes:
    """The TVR bits set in any of ``codes`` (each 5 bytes, like the TVR)."""
    combined = bytearray(TVR_LENGTH)
    for code in codes:
        for i, byte in enumerate(code[:TVR_LENGTH]):
            combined[i] |= byte
    return bytes(a & b for a, b in zip(tvr[:TVR_LENGTH], combined, strict=False))


def _words(bits: bytes) -> str:
    """The TVR bits in words, for a reason."""
    return "; ".join(TVR.from_bytes(bits.ljust(TVR_LENGTH, b"\x00")).describe())


def terminal_action_analysis(
    tvr: bytes, tacs: Tacs, iacs: ActionCodes, terminal_type: int
) -> TaaDecision:
    """Book C-2 TAA.1-TAA.18 (Book 3 §10.7): AAC, ARQC or TC for the first GENERATE AC."""
    denial = matching_bits(tvr, tacs.denial, iacs.denial or DEFAULT_IAC_DENIAL)
    if any(denial):
        return TaaDecision(CryptogramType.AAC, f"denial action codes match: {_words(denial)}")
    kind = terminal_type & 0x0F
    if kind in _ONLINE_ONLY:
        return TaaDecision(CryptogramType.ARQC, "online-only terminal")
    if kind in _OFFLINE_ONLY:
        default = matching_bits(tvr, tacs.default, iacs.default or DEFAULT_IAC_DEFAULT)
        if any(default):
            return TaaDecision(
                CryptogramType.AAC, f"offline-only terminal, default codes match: {_words(default)}"
            )
        return TaaDecision(CryptogramType.TC, "offline-only terminal, no default code matches")
    online = matching_bits(tvr, tacs.online, iacs.online or DEFAULT_IAC_ONLINE)
    if any(online):
        return TaaDecision(CryptogramType.ARQC, f"online action codes match: {_words(online)}")
    return TaaDecision(CryptogramType.TC, "no denial or online action code matches")
