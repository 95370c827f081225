"""The transaction a terminal is asked to make, and the terminal's data objects for it.

A :class:`Transaction` is what the POS application gives Entry Point (Book A §5,
Book B §3.1): amount, other amount, currency, type, date and time, and the
Unpredictable Number for this transaction (the caller draws it, so runs can be
replayed). :func:`terminal_data` turns it and the terminal's configuration into
the data objects a card may ask for in a DOL (Book 3 Annex A: 9F02, 9F03, 9F1A,
5F2A, 9A, 9F21, 9C, 9F37, 9F35, 9F33, 9F40, ...), by tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from emv.tlv import encode_primitive

__all__ = ["Transaction", "TransactionType", "bcd_amount", "encode_data", "terminal_data"]


class TransactionType(IntEnum):
    """Transaction Type 9C (ISO 8583 processing code, first two digits)."""

    PURCHASE = 0x00
    CASH = 0x01
    PURCHASE_WITH_CASHBACK = 0x09
    REFUND = 0x20


@dataclass(frozen=True)
class Transaction:
    """One transaction to run: amounts in minor units of ``currency`` (ISO 4217 numeric,
    4 digits as in 5F2A, e.g. "0826"), ``when`` the terminal's local date and time,
    ``unpredictable_number`` the 4 bytes of 9F37."""

    amount: int
    currency: str
    when: datetime
    unpredictable_number: bytes
    amount_other: int = 0
    type: TransactionType = TransactionType.PURCHASE

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= 999_999_999_999:
            raise ValueError(f"amount {self.amount} does not fit n 12")
        if not 0 <= self.amount_other <= 999_999_999_999:
            raise ValueError(f"amount_other {self.amount_other} does not fit n 12")
        if len(self.currency) != 4 or not self.currency.isdigit():
            raise ValueError(f"currency {self.currency!r} is not 4 digits (e.g. 0826)")
        if len(self.unpredictable_number) != 4:
            raise ValueError("unpredictable_number must be 4 bytes")


def bcd_amount(amount: int) -> bytes:
    """An amount as n 12 (6 bytes BCD), the format of 9F02 and 9F03."""
    return bytes.fromhex(f"{amount:012d}")


def terminal_data(transaction: Transaction, constants: dict[int, bytes]) -> dict[int, bytes]:
    """The transaction's data objects by tag, over the terminal's ``constants`` (its
    configured 9F1A, 9F35, 9F33, 9F40, 9F15, 9F16, 9F1C, 9F1E, 9F4E, 5F36 ...):
    9F02, 9F03, 5F2A, 9A, 9F21, 9C, 9F37 and the TVR (95) all zero to start with."""
    when = transaction.when
    return {
        **constants,
        0x9F02: bcd_amount(transaction.amount),
        0x9F03: bcd_amount(transaction.amount_other),
        0x5F2A: bytes.fromhex(transaction.currency),
        0x9A: bytes.fromhex(when.strftime("%y%m%d")),
        0x9F21: bytes.fromhex(when.strftime("%H%M%S")),
        0x9C: bytes((transaction.type,)),
        0x9F37: transaction.unpredictable_number,
        0x95: bytes(5),
    }


def encode_data(values: dict[int, bytes], tags: tuple[int, ...]) -> bytes:
    """The data objects ``tags`` (those present) as BER-TLV, in that order."""
    return b"".join(encode_primitive(tag, values[tag]) for tag in tags if tag in values)
