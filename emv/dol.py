"""Data Object Lists (EMV 4.4 Book 3, §5.4).

A DOL (PDOL, CDOL1/2, DDOL, TDOL, UDOL, ...) is a list of entries, each a tag
(coded as in Annex B1) and a one-byte length, with no values. The card sends it;
the terminal answers with the values of those data objects concatenated, each
fitted to the length the card asked for (§5.4):

* a data object of format ``n`` is padded with leading hex zeroes, or loses its
  leftmost bytes, to fit;
* a data object of format ``cn`` is padded with trailing hex 'F's, or loses its
  rightmost bytes;
* any other data object is padded with trailing hex zeroes, or loses its
  rightmost bytes;
* a data object the terminal does not have (or does not know), and any
  constructed data object, is sent as hex zeroes of the requested length.

:func:`build_dol_data` does this for a terminal; :func:`split_dol_data` is the
card's side: it cuts DOL related data back into values by tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from emv import tags, tlv

__all__ = [
    "DolEntry",
    "DolError",
    "build_dol_data",
    "encode_dol",
    "fit_value",
    "parse_dol",
    "split_dol_data",
]


class DolError(ValueError):
    """A malformed DOL, or DOL related data that does not fit its DOL.

    ``offset`` is the byte offset in the DOL where parsing failed, or None when the
    problem is the related data as a whole."""

    def __init__(self, problem: str, offset: int | None = None) -> None:
        where = f"DOL error at offset {offset}" if offset is not None else "DOL error"
        super().__init__(f"{where}: {problem}")
        self.offset = offset
        self.problem = problem


@dataclass(frozen=True, slots=True)
class DolEntry:
    """One DOL entry: the tag asked for and the length its value must have."""

    tag: int
    length: int

    def to_bytes(self) -> bytes:
        return tlv.tag_bytes(self.tag) + bytes((self.length,))


def _read_tag(dol: bytes, pos: int) -> tuple[int, int]:
    """The tag starting at ``pos`` and where it ends (BER-TLV tag rules, Book 3 Annex B1)."""
    try:
        return tlv.read_tag(dol, pos)
    except tlv.TlvError as err:
        raise DolError(err.problem, err.offset) from None


def parse_dol(dol: bytes) -> list[DolEntry]:
    """The entries of a DOL, in order (§5.4). Raises :class:`DolError` naming the
    offset of a malformed tag or of a tag with no length byte."""
    entries: list[DolEntry] = []
    pos = 0
    while pos < len(dol):
        tag, end = _read_tag(dol, pos)
        if end >= len(dol):
            raise DolError(f"tag {tlv.tag_hex(tag)} has no length byte", pos)
        entries.append(DolEntry(tag, dol[end]))
        pos = end + 1
    return entries


def encode_dol(entries: Iterable[DolEntry]) -> bytes:
    """The DOL for ``entries``: each tag followed by its one-byte length."""
    return b"".join(entry.to_bytes() for entry in entries)


def fit_value(tag: int, value: bytes, length: int) -> bytes:
    """``value`` padded or truncated to ``length`` by the §5.4 rule for ``tag``'s format."""
    if len(value) == length or length == 0:
        return value[:length]
    info = tags.tag_info(tag)
    fmt = info.fmt if info is not None else "b"
    if fmt == "n":
        return value[-length:] if len(value) > length else value.rjust(length, b"\x00")
    if len(value) > length:
        return value[:length]
    return value.ljust(length, b"\xff" if fmt == "cn" else b"\x00")


def build_dol_data(entries: Iterable[DolEntry], values: Mapping[int, bytes]) -> bytes:
    """The DOL related data for ``entries`` from ``values`` by tag (§5.4): each value
    fitted to its entry's length; absent or constructed data objects as zeroes."""
    out = bytearray()
    for entry in entries:
        value = values.get(entry.tag)
        if value is None or tlv.is_constructed(entry.tag):
            out += bytes(entry.length)
        else:
            out += fit_value(entry.tag, value, entry.length)
    return bytes(out)


def split_dol_data(entries: Iterable[DolEntry], data: bytes) -> dict[int, bytes]:
    """The values in DOL related ``data``, by tag, cut by the entries' lengths (the
    card's reading of a command). A tag listed twice keeps its first value. Raises
    :class:`DolError` if ``data`` is not exactly as long as the DOL asks."""
    entries = list(entries)
    expected = sum(entry.length for entry in entries)
    if len(data) != expected:
        raise DolError(f"DOL related data is {len(data)} bytes but the DOL asks for {expected}")
    values: dict[int, bytes] = {}
    pos = 0
    for entry in entries:
        values.setdefault(entry.tag, bytes(data[pos : pos + entry.length]))
        pos += entry.length
    return values
