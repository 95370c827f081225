"""Reconciling a device's transaction log with what the server saw (docs/cbp.md
"The transaction log").

The wallet uploads its log: entries (BER-TLV template E2) and the chained MAC
of each, ``MAC_i = MAC(log key, MAC_(i-1) || entry_i)`` with ``MAC_0 = '00'x8``
(ISO/IEC 9797-1 algorithm 3, method 2 padding: ``Hsm.application_cryptogram``
with EMV padding computes it under the log key without the key leaving the HSM).

The report says: where the chain first breaks (that entry and every one after
it are *forged*: altered, inserted, or following a removal), which ATCs are
missing from the device's sequence, which ATCs the server approved that the log
does not hold, which transactions the card approved offline (the server never
saw them), and which entries claim to have gone online without the server
having any record of that cryptogram.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from emv import tlv
from hce.server.store import AuthorisationRow, IssuedKeyRow

__all__ = [
    "LogEntry",
    "Outcome",
    "ReconciliationReport",
    "first_broken_link",
    "parse_log_entry",
    "reconcile_entries",
]

TAG_ENTRY = 0xE2
TAG_OUTCOME = 0xCB
MAC_0 = bytes(8)


class Outcome(IntEnum):
    """Tag CB of a log entry."""

    ONLINE = 0x01
    OFFLINE_APPROVED = 0x02
    DECLINED_BY_CARD = 0x03


@dataclass(frozen=True)
class LogEntry:
    """One tap as the wallet logged it."""

    atc: int
    cryptogram: bytes
    outcome: Outcome


@dataclass(frozen=True)
class ReconciliationReport:
    """What the log and the server's records say together; positions are 0-based."""

    reconciliation_id: str
    device_id: str
    entries: int
    verified: int  # entries before the first broken link
    forged: tuple[int, ...]  # positions from the first broken link on
    malformed: tuple[int, ...]  # positions that are no E2 log entry
    missing_atcs: tuple[int, ...]  # holes in the device's ATC sequence
    approved_not_logged: tuple[int, ...]  # ATCs the server approved, absent from the log
    offline_unseen: tuple[int, ...]  # ATCs the card approved offline
    online_unseen: tuple[int, ...]  # ATCs logged as online with no authorisation record

    def as_dict(self) -> dict[str, object]:
        """JSON-able fields and the verdict (how a reconciliation is stored and served)."""
        return {**dataclasses.asdict(self), "consistent": self.consistent}

    @property
    def consistent(self) -> bool:
        """No forgery, malformation, gap or unexplained online entry (offline approvals are
        expected news, not inconsistencies)."""
        return not (
            self.forged
            or self.malformed
            or self.missing_atcs
            or self.approved_not_logged
            or self.online_unseen
        )


def parse_log_entry(entry: bytes) -> LogEntry:
    """The fields reconciliation matches on: an E2 template with 9F36, 9F26 and CB
    (ValueError otherwise)."""
    objects = tlv.decode(entry)
    if len(objects) != 1 or objects[0].tag != TAG_ENTRY:
        raise ValueError("log entry: expected one E2 template")
    values = tlv.index(objects)
    fields = {}
    for tag, length in ((0x9F36, 2), (0x9F26, 8), (TAG_OUTCOME, 1)):
        value = values.get(tag)
        if value is None or len(value) != length:
            raise ValueError(f"log entry: tag {tlv.tag_hex(tag)} missing or of wrong length")
        fields[tag] = value
    return LogEntry(
        int.from_bytes(fields[0x9F36], "big"),
        fields[0x9F26],
        Outcome(fields[TAG_OUTCOME][0]),
    )


def first_broken_link(
    mac: Callable[[bytes], bytes],
    entries: Sequence[bytes],
    macs: Sequence[bytes],
    previous: bytes = MAC_0,
) -> int | None:
    """The position of the first entry whose MAC does not chain from ``previous``, or
    None. ``mac`` computes the log key's MAC of ``MAC_(i-1) || entry_i`` (inside the HSM)."""
    for position, (entry, claimed) in enumerate(zip(entries, macs, strict=True)):
        if not hmac.compare_digest(mac(previous + entry), claimed):
            return position
        previous = claimed
    return None


def _missing(logged: set[int], suks: set[int]) -> list[int]:
    """ATCs between the first and the last logged one that the log skips; for a device
    holding SUKs only the ATCs issued to it (the token's ATCs are allocated per token)."""
    if not logged:
        return []
    window = range(min(logged), max(logged) + 1)
    return [atc for atc in window if atc not in logged and (not suks or atc in suks)]


def _in_span(atc: int, logged: set[int], first_upload: bool) -> bool:
    if not logged:
        return first_upload
    return (1 if first_upload else min(logged)) <= atc <= max(logged)


def reconcile_entries(
    reconciliation_id: str,
    device_id: str,
    entries: Sequence[bytes],
    broken: int | None,
    *,
    issued: Sequence[IssuedKeyRow],
    authorisations: Sequence[AuthorisationRow],
    first_upload: bool = True,
) -> ReconciliationReport:
    """Match the parsed log against the keys issued to the device and its authorisations.

    An approval counts as "not logged" when its ATC falls in the span this upload
    covers: from ATC 1 for a device's first upload (else from its first logged ATC)
    to its last logged ATC; later approvals belong to uploads still to come."""
    parsed: dict[int, LogEntry] = {}
    malformed = []
    for position, entry in enumerate(entries):
        try:
            parsed[position] = parse_log_entry(entry)
        except (ValueError, tlv.TlvError):
            malformed.append(position)
    logged = {e.atc for e in parsed.values()}
    seen = {(a.atc, a.arqc) for a in authorisations}
    approved = sorted(
        a.atc for a in authorisations if a.decision == "approved" and a.atc is not None
    )
    suks = {k.ident for k in issued if k.family == "SUK"}
    verified = len(entries) if broken is None else broken
    return ReconciliationReport(
        reconciliation_id=reconciliation_id,
        device_id=device_id,
        entries=len(entries),
        verified=verified,
        forged=tuple(range(verified, len(entries))),
        malformed=tuple(malformed),
        missing_atcs=tuple(_missing(logged, suks)),
        approved_not_logged=tuple(
            atc for atc in approved if atc not in logged and _in_span(atc, logged, first_upload)
        ),
        offline_unseen=tuple(
            e.atc for e in parsed.values() if e.outcome == Outcome.OFFLINE_APPROVED
        ),
        online_unseen=tuple(
            e.atc
            for e in parsed.values()
            if e.outcome == Outcome.ONLINE and (e.atc, e.cryptogram) not in seen
        ),
    )
