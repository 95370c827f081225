"""What goes into a device's batch of limited-use keys (docs/cbp.md "Keys", "The batch").

* A LUK batch: ``count`` LUKs with fresh key indexes (the issue hour since
  2020-01-01T00:00Z in 3 bytes, a sequence number in 1). Indexes only grow per
  token, so none is ever issued twice: when an hour's 256 sequence numbers are
  spent, the next index borrows the following hour.
* An SUK batch: the token's next ``count`` ATCs, each with its SUK and, when the
  cardholder's PIN is given, its SUK-UV (masked with the PIN mask by the HSM).
* Every batch also carries the device's log key (ident: the first 4 bytes of
  its fingerprint), so a wallet can always MAC its transaction log. The log key
  has no limits: 0 transactions, 0 amount, expiry 'FFFFFF' (never).

Key expiry is an hour count too: a key is expired from the start of its
``expiry_hour`` on (issue hour + time to live).
"""

from __future__ import annotations

from datetime import UTC, datetime

from emv.crypto.wrap import BatchKind
from hce.hsm.interface import BatchRequest, LimitedUse
from hce.server.errors import Conflict

__all__ = [
    "EPOCH",
    "NEVER",
    "hour_of",
    "log_key",
    "luk_idents",
    "luk_requests",
    "suk_requests",
]

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
NEVER = 0xFFFFFF
MAX_KEY_INDEX = 0xFFFFFFFF
MAX_ATC = 0xFFFF


def hour_of(at: datetime) -> int:
    """Whole hours from 2020-01-01T00:00Z to ``at`` (the key index's hour, docs/cbp.md)."""
    return int((at - EPOCH).total_seconds()) // 3600


def luk_idents(last: int | None, hour: int, count: int) -> list[int]:
    """``count`` key indexes (as integers) after ``last``, starting no earlier than ``hour``."""
    first = hour << 8 if last is None else max(last + 1, hour << 8)
    if first + count - 1 > MAX_KEY_INDEX:
        raise Conflict("no key index left for this token")
    return list(range(first, first + count))


def luk_requests(
    idents: list[int], max_transactions: int, max_amount: int, expiry_hour: int
) -> list[BatchRequest]:
    """One LUK per key index, with the LUK limits."""
    return [
        BatchRequest(
            LimitedUse(BatchKind.LUK, ident.to_bytes(4, "big")),
            max_transactions,
            max_amount,
            expiry_hour,
        )
        for ident in idents
    ]


def suk_requests(
    first_atc: int, count: int, max_amount: int, expiry_hour: int, *, user_verified: bool
) -> list[BatchRequest]:
    """For each ATC its SUK, then (``user_verified``) its SUK-UV: one transaction each.
    The caller has allocated the ATCs (at most 'FFFF', :data:`MAX_ATC`)."""
    kinds = (BatchKind.SUK, BatchKind.SUK_UV) if user_verified else (BatchKind.SUK,)
    return [
        BatchRequest(LimitedUse(kind, atc.to_bytes(4, "big")), 1, max_amount, expiry_hour)
        for atc in range(first_atc, first_atc + count)
        for kind in kinds
    ]


def log_key(fingerprint: bytes) -> BatchRequest:
    """The device's log key entry (docs/cbp.md "The transaction log")."""
    return BatchRequest(LimitedUse(BatchKind.LOG, fingerprint[:4]), 0, 0, NEVER)
