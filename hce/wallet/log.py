"""The wallet's transaction log: one E2 template per tap, chained by MAC (docs/cbp.md
"The transaction log").

    MAC_0 = '00'x8,   MAC_i = ISO/IEC 9797-1 alg. 3 (log key, MAC_(i-1) || entry_i)

so the server, which derives the same log key, sees any altered, removed or
inserted entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from emv.crypto import ac, cbp
from emv.tlv import Tlv

__all__ = ["Outcome", "first_bad_entry", "log_entry"]

TAG_ENTRY = 0xE2
TAG_KEY_IDENT = 0xC2
TAG_OUTCOME = 0xCB


class Outcome(IntEnum):
    """Tag CB: what the card decided."""

    ONLINE_REQUESTED = 0x01
    APPROVED_OFFLINE = 0x02
    DECLINED = 0x03


def log_entry(
    data: ac.CryptogramData, cryptogram: bytes, cid: bytes, key_ident: bytes, outcome: Outcome
) -> bytes:
    """The E2 template of one tap: ATC, amount, currency, date, cryptogram, CID, the key
    index (CBP-V) or '0000' || ATC (CBP-M) of the key used, and the outcome."""
    p = Tlv.primitive
    return Tlv.template(
        TAG_ENTRY,
        p(0x9F36, data.atc),
        p(0x9F02, data.amount_authorised),
        p(0x5F2A, data.transaction_currency_code),
        p(0x9A, data.transaction_date),
        p(0x9F26, cryptogram),
        p(0x9F27, cid),
        p(TAG_KEY_IDENT, key_ident),
        p(TAG_OUTCOME, bytes((outcome,))),
    ).to_bytes()


def first_bad_entry(
    log_key: bytes, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
) -> int | None:
    """The position of the first entry whose MAC does not chain from ``previous``
    (or ``len(entries)`` when the MAC lists differ in length), None when all verify."""
    for position, (entry, mac) in enumerate(zip(entries, macs, strict=False)):
        if cbp.chain_log_mac(log_key, previous, entry) != mac:
            return position
        previous = mac
    return None if len(entries) == len(macs) else min(len(entries), len(macs))
