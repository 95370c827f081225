"""Reading the card's records: the AFL, READ RECORD, and the static data to authenticate.

EMV 4.4 Book 3 §10.2 (Read Application Data) and Book 2 §5.4 / §6.4:

* the Application File Locator (94) is a list of 4-byte entries: SFI (bits 8-4 of
  byte 1), first record, last record, and how many records from the first take
  part in offline data authentication; SFI 1-30, first >= 1, last >= first, and
  the ODA count not more than the records in the entry, else the AFL is in error;
* each record must answer '9000' and be a Record Template '70' (for SFI 1-10); a
  primitive data object may not appear twice among everything the card gave;
* for offline data authentication, records of SFI 1-10 count with the value of
  their '70' template (tag and length left out), records of SFI 11-30 whole; a
  record of SFI 1-10 that is not a '70' template makes ODA fail (the kernel says
  how), so it is reported, not raised.

The kernels call :func:`parse_afl` and :func:`read_records`; errors are
:class:`terminal.session.CardDataError` naming the entry, record and tag.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from emv import apdu, tlv
from terminal.session import CardDataError, CardSession

__all__ = ["AflEntry", "Records", "parse_afl", "read_records", "store_objects"]

RECORD_TEMPLATE = 0x70


@dataclass(frozen=True)
class AflEntry:
    """One AFL entry (Book 3 §10.2)."""

    sfi: int
    first: int
    last: int
    oda_records: int


def parse_afl(afl: bytes) -> list[AflEntry]:
    """The AFL's entries; :class:`CardDataError` names the entry in error."""
    if not afl or len(afl) % 4:
        raise CardDataError(f"AFL (94): {len(afl)} bytes, expected a multiple of 4")
    entries = []
    for number, pos in enumerate(range(0, len(afl), 4), start=1):
        byte1, first, last, oda = afl[pos : pos + 4]
        entry = AflEntry(byte1 >> 3, first, last, oda)
        if byte1 & 0x07 or not 1 <= entry.sfi <= 30:
            raise CardDataError(f"AFL (94) entry {number}: SFI byte {byte1:02X} is not an SFI 1-30")
        if first == 0 or last < first:
            raise CardDataError(f"AFL (94) entry {number}: records {first} to {last}")
        if oda > last - first + 1:
            raise CardDataError(f"AFL (94) entry {number}: {oda} ODA records of {last - first + 1}")
        entries.append(entry)
    return entries


@dataclass
class Records:
    """What READ RECORD gave: the static data to authenticate, in AFL order, and
    whether every ODA record could be used (a non-'70' record of SFI 1-10 cannot)."""

    static_data: bytes = b""
    oda_records_valid: bool = True
    read: list[tuple[int, int]] = field(default_factory=list)


def store_objects(
    objects: MutableMapping[int, bytes], found: Sequence[tlv.Tlv], where: str
) -> None:
    """Add the primitive objects of ``found`` (inside templates too, depth first) to
    ``objects``; a primitive object the card already gave is a :class:`CardDataError`
    (Book 3 §10.2)."""
    for obj in found:
        if obj.children is not None:
            store_objects(objects, obj.children, where)
        elif obj.tag in objects:
            raise CardDataError(f"{where}: tag {tlv.tag_hex(obj.tag)} given twice")
        else:
            objects[obj.tag] = obj.value


def read_records(
    session: CardSession, entries: list[AflEntry], objects: MutableMapping[int, bytes]
) -> Records:
    """READ RECORD every record of ``entries``, adding its data objects to ``objects``."""
    records = Records()
    for entry in entries:
        for number in range(entry.first, entry.last + 1):
            where = f"READ RECORD SFI {entry.sfi} record {number}"
            answer = session.exchange(apdu.read_record(entry.sfi, number))
            if not answer.ok:
                raise CardDataError(f"{where}: status {answer.sw:04X}")
            try:
                decoded = tlv.decode(answer.data)
            except tlv.TlvError as err:
                raise CardDataError(f"{where}: {err}") from None
            is_template = len(decoded) == 1 and decoded[0].tag == RECORD_TEMPLATE
            if entry.sfi <= 10 and not is_template:
                raise CardDataError(f"{where}: not a record template '70'")
            store_objects(objects, decoded[0].children or () if is_template else decoded, where)
            records.read.append((entry.sfi, number))
            if number - entry.first < entry.oda_records:
                records.static_data += decoded[0].value if entry.sfi <= 10 else answer.data
    return records
