"""Masking primary account numbers in data objects, for traces and printouts.

What is shown of a PAN follows the usual truncation rule (PCI DSS 3.4): at most
the first six and the last four digits, and never so many that fewer than six
digits stay hidden. Masked BCD digits become the nibble ``F`` and masked
characters of track 1 become ``*``, so a masked value keeps its length and its
TLV structure: a masked response still parses.

PANs appear in these data objects (EMV 4.4 Book 3 Annex A; Book C-2):

* ``5A`` Application PAN (cn, padded with ``F``);
* ``57`` Track 2 Equivalent Data and ``9F6B`` Track 2 Data (PAN, separator ``D``, ...);
* ``56`` Track 1 Data (ASCII: format code ``B``, PAN, ``^``, name, ...).
"""

from __future__ import annotations

from emv import tlv

__all__ = ["PAN_TAGS", "mask_pan", "mask_tlv", "mask_value"]

PAN_TAGS = frozenset({0x5A, 0x57, 0x9F6B, 0x56})
_HIDDEN_NIBBLE = "F"
_HIDDEN_CHAR = "*"


def _shown(length: int) -> tuple[int, int]:
    """How many leading and trailing digits of a ``length``-digit PAN may be shown."""
    tail = min(4, length // 4)
    head = min(6, max(0, length - tail - 6))
    return head, tail


def mask_pan(pan: str) -> str:
    """``"4761739001010010"`` -> ``"476173******0010"``."""
    head, tail = _shown(len(pan))
    return pan[:head] + _HIDDEN_CHAR * (len(pan) - head - tail) + pan[len(pan) - tail :]


def _mask_bcd(value: bytes, separator: str | None) -> bytes:
    """Mask the PAN digits at the start of a BCD value.

    The PAN ends at ``separator`` (the ``D`` of track 2) or, without one, where
    the trailing ``F`` padding of a cn value starts. Masking twice changes nothing.
    """
    digits = value.hex().upper()
    end = digits.find(separator) if separator else len(digits.rstrip("F"))
    if end < 0:
        end = len(digits)
    head, tail = _shown(end)
    masked = digits[:head] + _HIDDEN_NIBBLE * (end - head - tail) + digits[end - tail : end]
    return bytes.fromhex(masked + digits[end:])


def _mask_track1(value: bytes) -> bytes:
    """Track 1 (ISO/IEC 7813): format code, PAN up to ``^``, then the rest."""
    end = value.find(b"^")
    if end < 0:
        end = len(value)
    pan = value[1:end].decode("latin-1")
    return value[:1] + mask_pan(pan).encode("latin-1") + value[end:]


def mask_value(tag: int, value: bytes) -> bytes:
    """``value`` with its PAN digits hidden when ``tag`` carries a PAN, else unchanged."""
    if tag == 0x5A:
        return _mask_bcd(value, None)
    if tag in (0x57, 0x9F6B):
        return _mask_bcd(value, "D")
    if tag == 0x56:
        return _mask_track1(value)
    return value


def mask_tlv(data: bytes) -> bytes:
    """``data`` with the PAN in every PAN-bearing data object masked in place.

    The input is parsed leniently; bytes that are not TLV pass through unchanged,
    so any response data can be given.
    """
    out = bytearray(data)
    for top in tlv.decode(data, strict=False):
        for _, obj in top.walk():
            if obj.tag in PAN_TAGS and obj.children is None:
                start = _value_offset(data, obj)
                out[start : start + len(obj.value)] = mask_value(obj.tag, obj.value)
    return bytes(out)


def _value_offset(data: bytes, obj: tlv.Tlv) -> int:
    """Where ``obj``'s value starts in ``data``: after its tag and length field as encoded."""
    length_at = obj.offset + len(tlv.tag_bytes(obj.tag))
    first = data[length_at]
    return length_at + 1 + (first & 0x7F if first & 0x80 else 0)
