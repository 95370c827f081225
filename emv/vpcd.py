"""The vsmartcard vpcd protocol, the bytes of it (the sockets live with each side:
:mod:`hce.card.vpcd` the card, :mod:`terminal.readers.vpcd` the reader).

vsmartcard's vpcd is a PC/SC reader driver (pcscd's ``ifd-vpcd``) that listens on
TCP (35963 by default); the virtual card is the TCP *client* that connects to it.
Each message either way is a 2-byte big-endian length followed by that many bytes
(:func:`frame`): from the reader, a 1-byte message is a control (``00`` power off,
``01`` power on, ``02`` reset, ``04`` get ATR, the only one answered); any longer
message is a command APDU, answered with the whole response APDU.

The ATR a contactless card shows through PC/SC is built from its ISO/IEC 14443-4
ATS (:func:`contactless_atr`, PC/SC Part 3).
"""

from __future__ import annotations

__all__ = [
    "CTRL_ATR",
    "CTRL_OFF",
    "CTRL_ON",
    "CTRL_RESET",
    "MAX_MESSAGE",
    "VPCD_PORT",
    "contactless_atr",
    "frame",
    "historical_bytes",
]

VPCD_PORT = 35963
"""The TCP port pcscd's vpcd driver listens on for its first reader."""
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04
"""vpcd control messages (1 byte long)."""
MAX_MESSAGE = 0xFFFF
"""The longest message the 2-byte length can announce."""


def frame(message: bytes) -> bytes:
    """``message`` as it goes on the wire: its 2-byte big-endian length, then itself."""
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"a vpcd message holds at most {MAX_MESSAGE} bytes, not {len(message)}")
    return len(message).to_bytes(2, "big") + message


def historical_bytes(ats: bytes) -> bytes:
    """The historical bytes T1..Tk of an ISO/IEC 14443-4 ATS (§5.2): TL (the length,
    itself included), then T0 (format byte: b5, b6, b7 say TA(1), TB(1), TC(1)
    follow), those interface bytes, then the historical bytes up to TL."""
    if not ats or ats[0] != len(ats) or ats[0] < 1:
        raise ValueError(f"ATS {ats.hex().upper()}: TL is not its length")
    if len(ats) == 1:
        return b""  # TL only: no T0, no historical bytes
    t0 = ats[1]
    start = 2 + sum(1 for bit in (0x10, 0x20, 0x40) if t0 & bit)
    if start > len(ats):
        raise ValueError(f"ATS {ats.hex().upper()}: T0 announces more interface bytes")
    return ats[start:]


def contactless_atr(ats: bytes) -> bytes:
    """The ATR a PC/SC reader reports for an ISO/IEC 14443-4 Type A card (PC/SC Part 3
    §3.1.3.2.3.1, "ATR for contactless smart cards"):

    ``3B`` (TS, direct convention), ``8n`` (T0: TD1 follows, n historical bytes),
    ``80`` (TD1: TD2 follows, T=0), ``01`` (TD2: T=1), the ATS's historical bytes
    (at most 15: the rest do not fit T0), and TCK, the exclusive-or of every byte
    from T0 to the last historical byte (ISO/IEC 7816-3 §8.2.5, so T0..TCK XOR to 0).

    A card with no historical bytes (the emvtap card's ATS 05 78 80 E0 00) is
    ``3B 80 80 01 01``. (``3B 8F 80 01 80 4F 0C A0 00 00 03 06 ...`` is the Part 3
    ATR of a *storage* card, ISO/IEC 14443-3 only, with a registered card name:
    not what an ISO-DEP payment card gives.)"""
    history = historical_bytes(ats)[:15]
    body = bytes([0x80 | len(history), 0x80, 0x01]) + history
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])
