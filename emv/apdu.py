"""Command and response APDUs (ISO/IEC 7816-4 §5.1) and the EMV commands (EMV 4.4 Book 3 §6.5).

A command APDU is a four-byte header CLA INS P1 P2, then optionally a command
data field announced by Lc, then optionally Le, the maximum number of bytes
expected back (Ne). ISO/IEC 7816-4 §5.1 (decoding rules also in ISO/IEC 7816-3
§12.1.3) knows four cases, each in a short and an extended form:

=======  ==========================================  ==========================================
case     short                                       extended
=======  ==========================================  ==========================================
1        header                                      (no extended form)
2        header Le                                   header 00 Le1 Le2
3        header Lc data (Lc 01..FF)                  header 00 Lc1 Lc2 data (Lc 0001..FFFF)
4        header Lc data Le                           header 00 Lc1 Lc2 data Le1 Le2
=======  ==========================================  ==========================================

Le '00' means 256 in the short form and '0000' means 65536 in the extended
form; :class:`CommandApdu` keeps Ne itself (``le=256``, ``le=65536``) and no
field for the form, so one command has one value whatever its encoding.

A response APDU is an optional data field followed by the status bytes SW1 SW2
(ISO/IEC 7816-4 §5.6); :func:`sw_meaning` puts a status word into words.

Parsing is strict: every malformed encoding raises :class:`ApduError` naming
the byte offset and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from emv.tlv import Tlv, tag_hex

__all__ = [
    "INS_NAMES",
    "PPSE",
    "ApduError",
    "CommandApdu",
    "CryptogramType",
    "ResponseApdu",
    "command_name",
    "compute_cryptographic_checksum",
    "exchange_relay_resistance_data",
    "generate_ac",
    "get_challenge",
    "get_data",
    "get_processing_options",
    "internal_authenticate",
    "read_record",
    "recover_ac",
    "select",
    "select_ppse",
    "sw_meaning",
]

MAX_SHORT_NC = 255
MAX_SHORT_NE = 256
MAX_EXTENDED_NC = 65535
MAX_EXTENDED_NE = 65536
PPSE = b"2PAY.SYS.DDF01"
"""DF name of the Proximity Payment System Environment (EMV Contactless Book B §3.3)."""

_HEADER = 4


class ApduError(ValueError):
    """A malformed APDU or an invalid field: says where (byte offset) or which field, and what."""

    def __init__(self, problem: str, offset: int | None = None) -> None:
        where = "" if offset is None else f" at offset {offset}"
        super().__init__(f"APDU error{where}: {problem}")
        self.problem = problem
        self.offset = offset


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ApduError(f"{name} must be a byte (0..255), got {value}")


# --- command APDUs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """One command: header, command data (Nc = ``len(data)``) and Ne (``le``, None when absent)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        header = (self.cla, self.ins, self.p1, self.p2)
        if not 0 <= min(header) <= max(header) <= 0xFF:  # one test for the four, then which
            for name, value in zip(("cla", "ins", "p1", "p2"), header, strict=True):
                _check_byte(name, value)
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > MAX_EXTENDED_NC:
            raise ApduError(f"data is {len(self.data)} bytes; at most {MAX_EXTENDED_NC} fit in Lc")
        if self.le is not None and not 1 <= self.le <= MAX_EXTENDED_NE:
            raise ApduError(f"le must be None or 1..{MAX_EXTENDED_NE}, got {self.le}")

    @property
    def case(self) -> int:
        """The ISO/IEC 7816-4 §5.1 case: 1 (no data, no Le), 2 (Le), 3 (data), 4 (data and Le)."""
        if self.data:
            return 3 if self.le is None else 4
        return 1 if self.le is None else 2

    @property
    def fits_short(self) -> bool:
        """Whether the short form can carry this command (Nc <= 255 and Ne <= 256)."""
        return len(self.data) <= MAX_SHORT_NC and (self.le or 0) <= MAX_SHORT_NE

    def to_bytes(self, *, extended: bool | None = None) -> bytes:
        """Encode: the short form when it fits, else extended; ``extended`` forces a form.

        Case 1 has a single form (the header). Asking for the short form of a
        command that does not fit raises :class:`ApduError`.
        """
        fits_short = self.fits_short
        use_extended = not fits_short if extended is None else extended
        if not use_extended and not fits_short:
            raise ApduError(
                f"short form cannot carry Nc={len(self.data)} / Ne={self.le}"
                f" (limits {MAX_SHORT_NC} / {MAX_SHORT_NE})"
            )
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.case == 1:
            return header
        size = 2 if use_extended else 1
        body = b"\x00" if use_extended else b""
        if self.data:
            body += len(self.data).to_bytes(size, "big") + self.data
        if self.le is not None:
            body += (self.le % (MAX_EXTENDED_NE if use_extended else MAX_SHORT_NE)).to_bytes(
                size, "big"
            )
        return header + body

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> CommandApdu:
        """Decode any case, short or extended (ISO/IEC 7816-3 §12.1.3, 7816-4 §5.1)."""
        raw = bytes(raw)
        if len(raw) < _HEADER:
            raise ApduError(f"header needs 4 bytes, got {len(raw)}", len(raw))
        cla, ins, p1, p2 = raw[:_HEADER]
        body = raw[_HEADER:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", _short_ne(body[0]))
        if body[0] != 0:
            data, le = _parse_short_body(body)
        else:
            data, le = _parse_extended_body(body)
        return cls(cla, ins, p1, p2, data, le)


def _short_ne(byte: int) -> int:
    return byte or MAX_SHORT_NE


def _extended_ne(field: bytes) -> int:
    return int.from_bytes(field, "big") or MAX_EXTENDED_NE


def _parse_short_body(body: bytes) -> tuple[bytes, int | None]:
    """Cases 3S and 4S: Lc (01..FF) at offset 4, then Lc data bytes, then at most one Le byte."""
    nc = body[0]
    after_data = len(body) - 1 - nc
    if after_data == 0:
        return body[1:], None
    if after_data == 1:
        return body[1:-1], _short_ne(body[-1])
    if after_data < 0:
        raise ApduError(
            f"short Lc={nc:02X} announces {nc} data bytes but only {len(body) - 1} follow", 4
        )
    raise ApduError(
        f"short Lc={nc:02X} and {nc} data bytes leave {after_data} bytes where at most"
        " one (Le) may follow",
        _HEADER + 1 + nc,
    )


def _parse_extended_body(body: bytes) -> tuple[bytes, int | None]:
    """Cases 2E, 3E and 4E: marker '00' at offset 4, then Le or Lc on two bytes."""
    if len(body) < 3:
        raise ApduError(f"extended length marker 00 needs two length bytes, got {len(body) - 1}", 5)
    if len(body) == 3:
        return b"", _extended_ne(body[1:3])
    nc = int.from_bytes(body[1:3], "big")
    if nc == 0:
        raise ApduError("extended Lc=0000 followed by more bytes: Lc must be 0001..FFFF", 5)
    after_data = len(body) - 3 - nc
    if after_data == 0:
        return body[3:], None
    if after_data == 2:
        return body[3:-2], _extended_ne(body[-2:])
    if after_data < 0:
        raise ApduError(
            f"extended Lc={nc:04X} announces {nc} data bytes but only {len(body) - 3} follow", 5
        )
    raise ApduError(
        f"extended Lc={nc:04X} and {nc} data bytes leave {after_data} bytes where none or"
        " two (Le) may follow",
        _HEADER + 3 + nc,
    )


# --- response APDUs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """A response: data field and the status bytes SW1 SW2 (ISO/IEC 7816-4 §5.1, §5.6)."""

    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        _check_byte("sw1", self.sw1)
        _check_byte("sw2", self.sw2)
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", bytes(self.data))

    @classmethod
    def parse(cls, raw: bytes | bytearray | memoryview) -> ResponseApdu:
        """Split a response into data and trailer; it must hold at least SW1 SW2."""
        raw = bytes(raw)
        if len(raw) < 2:
            raise ApduError(f"a response needs SW1 SW2 (2 bytes), got {len(raw)}", len(raw))
        return cls(raw[:-2], raw[-2], raw[-1])

    @property
    def sw(self) -> int:
        """SW1 SW2 as one int, e.g. ``0x9000``."""
        return self.sw1 << 8 | self.sw2

    @property
    def ok(self) -> bool:
        """Normal processing: ``9000``."""
        return self.sw == 0x9000

    def to_bytes(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))


# --- status words ---------------------------------------------------------------------------

# ISO/IEC 7816-4 §5.6 (Tables 5 and 6) with the EMV wording where EMV 4.4 Book 1 §11 and
# Book 3 §6.5 name a status word themselves (6283, 6984, 6985, 6A81).
_STATUS_WORDS: Mapping[int, str] = MappingProxyType(
    {
        0x9000: "normal processing: no further qualification",
        0x6200: "warning, memory unchanged: no information given",
        0x6281: "warning, memory unchanged: part of returned data may be corrupted",
        0x6282: "warning, memory unchanged: end of file or record reached before reading Ne bytes",
        0x6283: "warning, memory unchanged: selected file invalidated (deactivated)",
        0x6284: "warning, memory unchanged: FCI not formatted according to ISO/IEC 7816-4",
        0x6285: "warning, memory unchanged: selected file in termination state",
        0x6286: "warning, memory unchanged: no input data available from a sensor on the card",
        0x6300: "warning, memory changed: no information given (e.g. verification failed)",
        0x6381: "warning, memory changed: file filled up by the last write",
        0x6400: "execution error, memory unchanged: no information given",
        0x6401: "execution error, memory unchanged: immediate response required by the card",
        0x6500: "execution error, memory changed: no information given",
        0x6581: "execution error, memory changed: memory failure",
        0x6600: "security-related issue: no information given",
        0x6700: "wrong length: no further indication",
        0x6800: "functions in CLA not supported: no information given",
        0x6881: "functions in CLA not supported: logical channel not supported",
        0x6882: "functions in CLA not supported: secure messaging not supported",
        0x6883: "functions in CLA not supported: last command of the chain expected",
        0x6884: "functions in CLA not supported: command chaining not supported",
        0x6900: "command not allowed: no information given",
        0x6981: "command not allowed: command incompatible with file structure",
        0x6982: "command not allowed: security status not satisfied",
        0x6983: "command not allowed: authentication method blocked",
        0x6984: "command not allowed: referenced data invalidated",
        0x6985: "command not allowed: conditions of use not satisfied",
        0x6986: "command not allowed: no current EF",
        0x6987: "command not allowed: expected secure messaging data objects missing",
        0x6988: "command not allowed: incorrect secure messaging data objects",
        0x6A00: "wrong parameters P1-P2: no information given",
        0x6A80: "wrong parameters: incorrect parameters in the command data field",
        0x6A81: "wrong parameters: function not supported",
        0x6A82: "wrong parameters: file or application not found",
        0x6A83: "wrong parameters: record not found",
        0x6A84: "wrong parameters: not enough memory space in the file",
        0x6A85: "wrong parameters: Nc inconsistent with TLV structure",
        0x6A86: "wrong parameters: incorrect parameters P1-P2",
        0x6A87: "wrong parameters: Nc inconsistent with parameters P1-P2",
        0x6A88: "wrong parameters: referenced data or reference data not found",
        0x6A89: "wrong parameters: file already exists",
        0x6A8A: "wrong parameters: DF name already exists",
        0x6B00: "wrong parameters P1-P2",
        0x6D00: "instruction code not supported or invalid",
        0x6E00: "class not supported",
        0x6F00: "no precise diagnosis",
    }
)

# What SW1 alone says when SW2 carries no listed qualification (ISO/IEC 7816-4 §5.6, Table 5).
_SW1_FAMILIES: Mapping[int, str] = MappingProxyType(
    {
        0x62: "warning, memory unchanged",
        0x63: "warning, memory changed",
        0x64: "execution error, memory unchanged",
        0x65: "execution error, memory changed",
        0x66: "security-related issue",
        0x67: "wrong length",
        0x68: "functions in CLA not supported",
        0x69: "command not allowed",
        0x6A: "wrong parameters P1-P2",
        0x6B: "wrong parameters P1-P2",
        0x6D: "instruction code not supported or invalid",
        0x6E: "class not supported",
        0x6F: "no precise diagnosis",
    }
)


def sw_meaning(sw: int) -> str:
    """The status word in words (ISO/IEC 7816-4 §5.6; EMV 4.4 Book 1 §11, Book 3 §6.5).

    Families whose SW2 is a number are spelled out: ``61xx`` (bytes still
    available), ``6Cxx`` (wrong Le, exact length) and ``63Cx`` (counter).
    """
    if not 0 <= sw <= 0xFFFF:
        raise ApduError(f"status word must be 0000..FFFF, got {sw}")
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw in _STATUS_WORDS:
        return _STATUS_WORDS[sw]
    if sw1 == 0x61:
        return f"normal processing: {sw2 or 256} bytes still available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le field; exact length {sw2 or 256}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"warning, memory changed: counter {sw2 & 0x0F} (e.g. PIN tries left)"
    if sw1 == 0x62 and 0x02 <= sw2 <= 0x80:
        return f"warning, memory unchanged: triggering by the card ({sw2:02X})"
    if sw1 in _SW1_FAMILIES:
        return f"{_SW1_FAMILIES[sw1]}: SW2 {sw2:02X} not defined by ISO/IEC 7816-4"
    if sw1 & 0xF0 == 0x90:
        return f"proprietary / application-specific status {sw:04X}"
    return f"invalid status word {sw:04X}: SW1 must be 61..6F or 9X"


# --- EMV command builders (EMV 4.4 Book 3 §6.5) ---------------------------------------------

_CLA_ISO = 0x00
_CLA_EMV = 0x80

INS_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0x1E: "APPLICATION BLOCK",
        0x18: "APPLICATION UNBLOCK",
        0x16: "CARD BLOCK",
        0x82: "EXTERNAL AUTHENTICATE",
        0xAE: "GENERATE AC",
        0x84: "GET CHALLENGE",
        0xCA: "GET DATA",
        0xA8: "GET PROCESSING OPTIONS",
        0xD0: "RECOVER AC",
        0xC0: "GET RESPONSE",
        0x88: "INTERNAL AUTHENTICATE",
        0x24: "PIN CHANGE/UNBLOCK",
        0xB2: "READ RECORD",
        0xA4: "SELECT",
        0x20: "VERIFY",
        0x2A: "COMPUTE CRYPTOGRAPHIC CHECKSUM",
        0xEA: "EXCHANGE RELAY RESISTANCE DATA",
    }
)
"""INS names for traces: Book 3 §6.5, Book C-2 (CCC, ERRD), ISO/IEC 7816-4 (GET RESPONSE)."""


class CryptogramType(IntEnum):
    """GENERATE AC reference control parameter, P1 bits 8-7 (EMV 4.4 Book 3 §6.5.5, Table 12)."""

    AAC = 0x00
    TC = 0x40
    ARQC = 0x80


_CDA_REQUESTED = 0x10  # P1 bit 5: CDA signature requested (Book 3 Table 12)
_SELECT_FIRST, _SELECT_NEXT = 0x00, 0x02  # P2 of SELECT (Book 1 §11.3.2, Table 9)


def select(aid_or_name: bytes, *, first: bool = True) -> CommandApdu:
    """SELECT by DF name (EMV 4.4 Book 1 §11.3): ``00 A4 04 00|02 Lc name 00``.

    P2 '00' selects the first or only occurrence, '02' the next one (partial
    AID matching). A DF name is 1 to 16 bytes (ISO/IEC 7816-4 §5.3.1.3).
    """
    if not 1 <= len(aid_or_name) <= 16:
        raise ApduError(f"aid_or_name must be 1..16 bytes, got {len(aid_or_name)}")
    p2 = _SELECT_FIRST if first else _SELECT_NEXT
    return CommandApdu(_CLA_ISO, 0xA4, 0x04, p2, bytes(aid_or_name), MAX_SHORT_NE)


def select_ppse() -> CommandApdu:
    """SELECT '2PAY.SYS.DDF01', the first command of every contactless transaction (Book B §3.3)."""
    return select(PPSE)


def get_processing_options(pdol_data: bytes) -> CommandApdu:
    """GET PROCESSING OPTIONS (Book 3 §6.5.8): ``80 A8 00 00 Lc 83 L pdol-data 00``.

    The data field is the Command Template (tag '83') around the PDOL-related
    data, which is empty (``8300``) when the card gave no PDOL.
    """
    template = Tlv.primitive(0x83, bytes(pdol_data)).to_bytes()
    return CommandApdu(_CLA_EMV, 0xA8, 0x00, 0x00, template, MAX_SHORT_NE)


def read_record(sfi: int, record: int) -> CommandApdu:
    """READ RECORD (Book 3 §6.5.11): ``00 B2 record (SFI<<3 | 4) 00``.

    P2 bits 8-4 hold the SFI and bits 3-1 = 100 say 'P1 is a record number'.
    EMV files have SFI 1..30 (Book 3 §7.2); record '00' (current record) and
    'FF' (RFU) are not record numbers (ISO/IEC 7816-4 §7.3.1).
    """
    if not 1 <= sfi <= 30:
        raise ApduError(f"sfi must be 1..30, got {sfi}")
    if not 1 <= record <= 254:
        raise ApduError(f"record must be 1..254, got {record}")
    return CommandApdu(_CLA_ISO, 0xB2, record, sfi << 3 | 0x04, b"", MAX_SHORT_NE)


def generate_ac(
    reference_control: CryptogramType | int, cdol_data: bytes, *, cda: bool = False
) -> CommandApdu:
    """GENERATE AC (Book 3 §6.5.5): ``80 AE P1 00 Lc cdol-data 00``.

    P1 bits 8-7 ask for an AAC, TC or ARQC and bit 5 requests a CDA signature
    (Table 12); the other bits are RFU and must be zero.
    """
    try:
        kind = CryptogramType(reference_control)
    except ValueError:
        raise ApduError(
            f"reference_control must be AAC 00, TC 40 or ARQC 80, got {reference_control:02X}"
        ) from None
    if not cdol_data:
        raise ApduError("cdol_data must not be empty (GENERATE AC carries CDOL-related data)")
    p1 = kind | (_CDA_REQUESTED if cda else 0)
    return CommandApdu(_CLA_EMV, 0xAE, p1, 0x00, bytes(cdol_data), MAX_SHORT_NE)


def recover_ac(drdol_data: bytes) -> CommandApdu:
    """RECOVER AC (EMV Contactless Book C-2, torn transaction recovery): ``80 D0 00 00 Lc data 00``.

    The card answers with the response of the GENERATE AC that was torn, if the DRDOL
    related data (DRDOL 9F51) matches that transaction's.
    """
    if not drdol_data:
        raise ApduError("drdol_data must not be empty (RECOVER AC carries DRDOL-related data)")
    return CommandApdu(_CLA_EMV, 0xD0, 0x00, 0x00, bytes(drdol_data), MAX_SHORT_NE)


def get_data(tag: int) -> CommandApdu:
    """GET DATA (Book 3 §6.5.7): ``80 CA P1 P2 00`` with P1 P2 the tag (e.g. 9F36 ATC)."""
    if not 1 <= tag <= 0xFFFF:
        raise ApduError(f"tag must fit P1 P2 (0001..FFFF), got {tag:X}")
    return CommandApdu(_CLA_EMV, 0xCA, tag >> 8, tag & 0xFF, b"", MAX_SHORT_NE)


def compute_cryptographic_checksum(udol_data: bytes) -> CommandApdu:
    """COMPUTE CRYPTOGRAPHIC CHECKSUM (Book C-2, mag-stripe): ``80 2A 8E 80 Lc udol-data 00``."""
    if not udol_data:
        raise ApduError("udol_data must not be empty (the UDOL asks at least for the UN)")
    return CommandApdu(_CLA_EMV, 0x2A, 0x8E, 0x80, bytes(udol_data), MAX_SHORT_NE)


def exchange_relay_resistance_data(terminal_rrp_entropy: bytes) -> CommandApdu:
    """EXCHANGE RELAY RESISTANCE DATA (Book C-2 §5.3): ``80 EA 00 00 04 entropy 00``.

    The data is the 4-byte Terminal Relay Resistance Entropy (tag DF8301).
    """
    if len(terminal_rrp_entropy) != 4:
        raise ApduError(f"terminal_rrp_entropy must be 4 bytes, got {len(terminal_rrp_entropy)}")
    return CommandApdu(_CLA_EMV, 0xEA, 0x00, 0x00, bytes(terminal_rrp_entropy), MAX_SHORT_NE)


def get_challenge() -> CommandApdu:
    """GET CHALLENGE (Book 3 §6.5.6): ``00 84 00 00 00``, an 8-byte unpredictable number back."""
    return CommandApdu(_CLA_ISO, 0x84, 0x00, 0x00, b"", MAX_SHORT_NE)


def internal_authenticate(ddol_data: bytes) -> CommandApdu:
    """INTERNAL AUTHENTICATE (Book 3 §6.5.9): ``00 88 00 00 Lc ddol-data 00`` (DDA)."""
    if not ddol_data:
        raise ApduError("ddol_data must not be empty (the DDOL asks at least for 9F37)")
    return CommandApdu(_CLA_ISO, 0x88, 0x00, 0x00, bytes(ddol_data), MAX_SHORT_NE)


# --- trace names ----------------------------------------------------------------------------


def command_name(c: CommandApdu) -> str:
    """A short name for traces, with the parameters that matter.

    ``SELECT 2PAY.SYS.DDF01``, ``SELECT A0000000031010 (next)``, ``READ RECORD
    SFI 1 record 2``, ``GENERATE AC ARQC+CDA``, ``GET DATA 9F36``; an
    instruction EMV does not define reads ``UNKNOWN (CLA 80 INS 12)``.
    """
    name = INS_NAMES.get(c.ins)
    if name is None:
        return f"UNKNOWN (CLA {c.cla:02X} INS {c.ins:02X})"
    if c.ins == 0xA4:
        selected = f"{name} {_df_name(c.data)}".rstrip()
        return selected + (" (next)" if c.p2 & 0x03 == _SELECT_NEXT else "")
    if c.ins == 0xB2:
        if c.p2 & 0x07 == 0x04:
            return f"{name} SFI {c.p2 >> 3} record {c.p1}"
        return f"{name} P1 {c.p1:02X} P2 {c.p2:02X}"
    if c.ins == 0xAE:
        kind = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}.get(c.p1 & 0xC0, "RFU")
        return f"{name} {kind}" + ("+CDA" if c.p1 & _CDA_REQUESTED else "")
    if c.ins == 0xCA:
        return f"{name} {tag_hex(c.p1 << 8 | c.p2) if c.p1 or c.p2 else '00'}"
    return name


def _df_name(name: bytes) -> str:
    """The name as text when every byte is printable ASCII, else as hex."""
    if name and all(0x20 < b < 0x7F for b in name):
        return name.decode("ascii")
    return name.hex().upper()
