"""Bit-field data elements as typed values that encode and decode themselves.

Each class is a frozen dataclass built from keyword arguments (``TVR(cda_failed=True)``),
compared by value, read back by attribute (``tvr.offline_data_authentication_not_performed``)
and put into words with :meth:`describe`. Bits are numbered as the specifications
number them: byte 1 is the first byte, b8 its most significant bit.

Fixed-length bitmaps (AIP, AUC, TVR, TSI, TTQ, CTQ, CID, CVM Results, Terminal
Capabilities, Additional Terminal Capabilities, one CV Rule) declare each field
with the byte and bit where it starts; every bit no field claims is an RFU bit.
RFU bits are kept, not dropped (``rfu``, an int with the set RFU bits at their
place in the whole value), so any byte string decodes and encodes back
unchanged, and :meth:`describe` reports them as ``RFU bit bX of byte N set``.

The layout is read once per class into shifts and masks, and a bitmap decodes
and encodes with ``int.from_bytes`` and bit operations. (It used to be a
``construct`` ``BitStruct``: 20-60 µs a parse or build, against a few µs this
way, and a contactless tap handles dozens of these objects: a performance reason
to leave the "built with construct" of the design here.)

The variable-length CVM List (8E) and Kernel Identifier (9F2A) are plain code.

:data:`BITFIELDS` maps each tag to its class; every class offers the
:class:`BitField` interface.

Sources: EMV 4.4 Book 3 Annex C (AIP C1, AUC C2, CVM List C3, CID §6.5.5.4, TVR C5,
TSI C6), Book 4 Annex A (Terminal Capabilities A2, Additional Terminal Capabilities
A3, CVM Results A4), EMV Contactless Book A §5.7 and Book C-3 Annex A (TTQ, CTQ),
Book C-2 (AIP byte 2, TVR byte 5 relay resistance bits), Book B §3 (Kernel Identifier).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import ClassVar, Protocol, Self, TypeVar

__all__ = [
    "AIP",
    "AUC",
    "BITFIELDS",
    "CID",
    "CTQ",
    "CVM_CONDITIONS",
    "CVM_METHODS",
    "INTERNATIONAL_KERNELS",
    "KERNEL_TYPES",
    "TSI",
    "TTQ",
    "TVR",
    "AdditionalTerminalCapabilities",
    "BitField",
    "BitfieldError",
    "CvRule",
    "CvmList",
    "CvmResults",
    "KernelIdentifier",
    "TerminalCapabilities",
]


class BitfieldError(ValueError):
    """A value that is not a valid encoding of the named data object, or an invalid field."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class BitField(Protocol):
    """What the tag pretty printer needs: ``BITFIELDS[tag].from_bytes(value).describe()``."""

    NAME: ClassVar[str]
    """The data object's name and tag, e.g. ``Terminal Verification Results (95)``."""

    @classmethod
    def from_bytes(cls, data: bytes) -> Self: ...

    def to_bytes(self) -> bytes: ...

    def describe(self) -> list[str]: ...


# --- fixed-length bitmaps -------------------------------------------------------------------

_SPEC = "emv.bitfields"


@dataclass(frozen=True)
class _Bits:
    """Where a field sits: byte (1 = first), highest bit (8 = b8) and width in bits."""

    byte: int
    bit: int
    width: int
    text: str
    words: Callable[[int], str] = str
    always: bool = False  # describe a multi-bit field even when it is zero


def _flag(byte: int, bit: int, text: str) -> bool:
    """A one-bit field, described by ``text`` when set."""
    return field(default=False, metadata={_SPEC: _Bits(byte, bit, 1, text)})


def _number(
    byte: int, bit: int, width: int, text: str, words: Callable[[int], str], *, always: bool = False
) -> int:
    """A multi-bit field, described as ``text: words(value)`` (when non-zero unless ``always``)."""
    return field(default=0, metadata={_SPEC: _Bits(byte, bit, width, text, words, always)})


def _named(table: Mapping[int, str], other: str) -> Callable[[int], str]:
    """Words for a coded value: from ``table``, else ``other`` and the value in hex."""
    return lambda value: table.get(value, f"{other} {value:02X}")


def _shift(length: int, byte: int, bit: int) -> int:
    """Where bit ``bit`` of byte ``byte`` sits in the whole value read as a big-endian int."""
    return (length - byte) * 8 + bit - 1


@dataclass(frozen=True, kw_only=True)
class _Bitmap:
    """Base of the fixed-length bitmaps; :func:`_layout` fills in the class variables."""

    NAME: ClassVar[str]
    LENGTH: ClassVar[int]
    _FIELDS: ClassVar[tuple[tuple[str, _Bits], ...]]
    _CHECKS: ClassVar[tuple[tuple[str, int | None], ...]]  # name, largest value (None: a flag)
    _FLAGS: ClassVar[tuple[tuple[str, int], ...]]  # name, its bit in the whole value
    _NUMBERS: ClassVar[tuple[tuple[str, int, int], ...]]  # name, shift, largest value
    _RFU: ClassVar[tuple[tuple[int, int, int], ...]]  # byte, bit, its bit in the whole value
    _RFU_MASK: ClassVar[int]
    _DEFAULTS: ClassVar[dict[str, object]]  # every field: all clear

    rfu: int = 0
    """The RFU bits that are set, in place in the whole value read as a big-endian int."""

    def _keyword_init(self, **values: int) -> None:
        """What :func:`_layout` makes each bitmap's ``__init__``: the dataclass's keyword
        arguments, checked, over the defaults (all clear). The ``__init__`` the dataclass
        writes would set and check all 40 fields of a TVR one by one (about 10 µs a
        TVR); this checks only the fields given and sets them at once."""
        defaults = self._DEFAULTS
        for name in values:
            if name not in defaults:
                raise TypeError(
                    f"{type(self).__name__}.__init__() got an unexpected keyword argument {name!r}"
                )
        for name, largest in self._CHECKS:
            if name not in values:
                continue
            value = values[name]
            if largest is None:
                if value is not True and value is not False:
                    raise BitfieldError(self.NAME, f"{name} must be a bool, got {value!r}")
            elif not isinstance(value, int) or not 0 <= value <= largest:
                raise BitfieldError(self.NAME, f"{name} must be 0..{largest}, got {value!r}")
        rfu = values.get("rfu", 0)
        if rfu < 0 or rfu & ~self._RFU_MASK:
            raise BitfieldError(
                self.NAME, f"rfu {rfu:X} sets bits outside the RFU mask {self._RFU_MASK:X}"
            )
        state = self.__dict__
        state.update(defaults)
        state.update(values)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode exactly :attr:`LENGTH` bytes; RFU bits are kept in ``rfu``.

        Every value a field reads out of its bits is in range, so the decoded object
        is made without the keyword checks of ``__init__``.
        """
        data = bytes(data)
        if len(data) != cls.LENGTH:
            raise BitfieldError(cls.NAME, f"expected {cls.LENGTH} bytes, got {len(data)}")
        whole = int.from_bytes(data, "big")
        values: dict[str, object] = {name: whole & bit != 0 for name, bit in cls._FLAGS}
        for name, shift, largest in cls._NUMBERS:
            values[name] = whole >> shift & largest
        values["rfu"] = whole & cls._RFU_MASK
        decoded = object.__new__(cls)
        decoded.__dict__.update(values)
        return decoded

    def to_bytes(self) -> bytes:
        values = self.__dict__
        whole = self.rfu
        for name, bit in self._FLAGS:
            if values[name]:
                whole |= bit
        for name, shift, _ in self._NUMBERS:
            whole |= values[name] << shift
        return whole.to_bytes(self.LENGTH, "big")

    def describe(self) -> list[str]:
        """Set flags and meaningful multi-bit fields in words, then any set RFU bit."""
        lines: list[str] = []
        for name, spec in self._FIELDS:
            value = getattr(self, name)
            if spec.width == 1:
                if value:
                    lines.append(spec.text)
            elif value or spec.always:
                lines.append(f"{spec.text}: {spec.words(value)}")
        lines += [
            f"RFU bit b{bit} of byte {byte} set" for byte, bit, mask in self._RFU if self.rfu & mask
        ]
        return lines


_B = TypeVar("_B", bound=_Bitmap)


def _layout(name: str, length: int) -> Callable[[type[_B]], type[_B]]:
    """Give a bitmap dataclass its name, length and the place of each field in the value.

    Walks every bit from byte 1 b8 to byte ``length`` b1: a bit where a field
    starts takes that field (and the bits below it that its width covers), any
    other is an RFU bit. A field's value sits at ``shift`` in the whole value
    read as a big-endian int.
    """

    def apply(cls: type[_B]) -> type[_B]:
        declared = tuple((f.name, f.metadata[_SPEC]) for f in fields(cls) if _SPEC in f.metadata)
        at = {(spec.byte, spec.bit): (fname, spec) for fname, spec in declared}
        flags: list[tuple[str, int]] = []
        numbers: list[tuple[str, int, int]] = []
        rfu: list[tuple[int, int, int]] = []
        for byte in range(1, length + 1):
            bit = 8
            while bit >= 1:
                if (byte, bit) in at:
                    fname, spec = at[byte, bit]
                    shift = _shift(length, byte, bit) - spec.width + 1
                    if spec.width == 1:
                        flags.append((fname, 1 << shift))
                    else:
                        numbers.append((fname, shift, (1 << spec.width) - 1))
                    bit -= spec.width
                else:
                    rfu.append((byte, bit, 1 << _shift(length, byte, bit)))
                    bit -= 1
        cls.NAME, cls.LENGTH = name, length
        cls._FIELDS = declared
        cls._CHECKS = tuple(
            (fname, None if spec.width == 1 else (1 << spec.width) - 1) for fname, spec in declared
        )
        cls._FLAGS = tuple(flags)
        cls._NUMBERS = tuple(numbers)
        cls._RFU = tuple(rfu)
        cls._RFU_MASK = sum(mask for _, _, mask in rfu)
        cls._DEFAULTS = {f.name: f.default for f in fields(cls)}
        cls.__init__ = cls._keyword_init  # type: ignore[method-assign]  # see _keyword_init
        return cls

    return apply


@_layout("Application Interchange Profile (82)", 2)
@dataclass(frozen=True, kw_only=True)
class AIP(_Bitmap):
    """Application Interchange Profile: Book 3 Annex C1 Table 41; byte 2 from Book C-2."""

    xda_supported: bool = _flag(1, 8, "XDA supported")
    sda_supported: bool = _flag(1, 7, "SDA supported")
    dda_supported: bool = _flag(1, 6, "DDA supported")
    cardholder_verification_supported: bool = _flag(1, 5, "Cardholder verification is supported")
    terminal_risk_management_required: bool = _flag(
        1, 4, "Terminal risk management is to be performed"
    )
    issuer_authentication_supported: bool = _flag(1, 3, "Issuer authentication is supported")
    on_device_cardholder_verification_supported: bool = _flag(
        1, 2, "On device cardholder verification is supported"
    )
    cda_supported: bool = _flag(1, 1, "CDA supported")
    emv_mode_supported: bool = _flag(2, 8, "EMV mode is supported (contactless)")
    mobile_phone: bool = _flag(2, 7, "Mobile phone")
    contactless_transaction: bool = _flag(2, 6, "Contactless transaction")
    relay_resistance_protocol_supported: bool = _flag(2, 1, "Relay Resistance Protocol supported")


@_layout("Application Usage Control (9F07)", 2)
@dataclass(frozen=True, kw_only=True)
class AUC(_Bitmap):
    """Application Usage Control: Book 3 Annex C2 Table 42."""

    valid_for_domestic_cash: bool = _flag(1, 8, "Valid for domestic cash transactions")
    valid_for_international_cash: bool = _flag(1, 7, "Valid for international cash transactions")
    valid_for_domestic_goods: bool = _flag(1, 6, "Valid for domestic goods")
    valid_for_international_goods: bool = _flag(1, 5, "Valid for international goods")
    valid_for_domestic_services: bool = _flag(1, 4, "Valid for domestic services")
    valid_for_international_services: bool = _flag(1, 3, "Valid for international services")
    valid_at_atms: bool = _flag(1, 2, "Valid at ATMs")
    valid_at_non_atm_terminals: bool = _flag(1, 1, "Valid at terminals other than ATMs")
    domestic_cashback_allowed: bool = _flag(2, 8, "Domestic cashback allowed")
    international_cashback_allowed: bool = _flag(2, 7, "International cashback allowed")


_RRP = _named(
    {0: "not supported", 1: "not performed", 2: "performed", 3: "RFU"}, "relay resistance"
)


@_layout("Terminal Verification Results (95)", 5)
@dataclass(frozen=True, kw_only=True)
class TVR(_Bitmap):
    """Terminal Verification Results: Book 3 Annex C5 Table 46.

    Byte 5 bits 4-1 follow Book C-2 (relay resistance), which emvtap's Mastercard
    kernel sets; EMV 4.4 gives b3-b2 to ECC (Kernel 8) results instead.
    """

    offline_data_authentication_not_performed: bool = _flag(
        1, 8, "Offline data authentication was not performed"
    )
    sda_failed: bool = _flag(1, 7, "SDA failed")
    icc_data_missing: bool = _flag(1, 6, "ICC data missing")
    card_on_exception_file: bool = _flag(1, 5, "Card appears on terminal exception file")
    dda_failed: bool = _flag(1, 4, "DDA failed")
    cda_failed: bool = _flag(1, 3, "CDA failed")
    sda_selected: bool = _flag(1, 2, "SDA selected")
    xda_selected: bool = _flag(1, 1, "XDA selected")
    different_application_versions: bool = _flag(
        2, 8, "ICC and terminal have different application versions"
    )
    expired_application: bool = _flag(2, 7, "Expired application")
    application_not_yet_effective: bool = _flag(2, 6, "Application not yet effective")
    service_not_allowed: bool = _flag(2, 5, "Requested service not allowed for card product")
    new_card: bool = _flag(2, 4, "New card")
    biometric_performed_and_successful: bool = _flag(2, 2, "Biometric performed and successful")
    biometric_template_format_not_supported: bool = _flag(
        2, 1, "Biometric template format not supported"
    )
    cardholder_verification_not_successful: bool = _flag(
        3, 8, "Cardholder verification was not successful"
    )
    unrecognised_cvm: bool = _flag(3, 7, "Unrecognised CVM")
    pin_try_limit_exceeded: bool = _flag(3, 6, "PIN Try Limit exceeded")
    pin_pad_not_present_or_not_working: bool = _flag(
        3, 5, "PIN entry required and PIN pad not present or not working"
    )
    pin_not_entered: bool = _flag(
        3, 4, "PIN entry required, PIN pad present, but PIN was not entered"
    )
    online_cvm_captured: bool = _flag(3, 3, "Online CVM captured")
    biometric_capture_device_not_working: bool = _flag(
        3, 2, "Biometric required but biometric capture device not working"
    )
    biometric_subtype_bypassed: bool = _flag(
        3, 1, "Biometric required, capture device present, but biometric subtype entry bypassed"
    )
    floor_limit_exceeded: bool = _flag(4, 8, "Transaction exceeds floor limit")
    lower_consecutive_offline_limit_exceeded: bool = _flag(
        4, 7, "Lower consecutive offline limit exceeded"
    )
    upper_consecutive_offline_limit_exceeded: bool = _flag(
        4, 6, "Upper consecutive offline limit exceeded"
    )
    selected_randomly_for_online: bool = _flag(
        4, 5, "Transaction selected randomly for online processing"
    )
    merchant_forced_online: bool = _flag(4, 4, "Merchant forced transaction online")
    biometric_try_limit_exceeded: bool = _flag(4, 3, "Biometric Try Limit exceeded")
    biometric_type_not_supported: bool = _flag(4, 2, "A selected biometric type not supported")
    xda_signature_verification_failed: bool = _flag(4, 1, "XDA signature verification failed")
    default_tdol_used: bool = _flag(5, 8, "Default TDOL used")
    issuer_authentication_failed: bool = _flag(5, 7, "Issuer authentication failed")
    script_failed_before_final_generate_ac: bool = _flag(
        5, 6, "Script processing failed before final GENERATE AC"
    )
    script_failed_after_final_generate_ac: bool = _flag(
        5, 5, "Script processing failed after final GENERATE AC"
    )
    relay_resistance_threshold_exceeded: bool = _flag(5, 4, "Relay resistance threshold exceeded")
    relay_resistance_time_limits_exceeded: bool = _flag(
        5, 3, "Relay resistance time limits exceeded"
    )
    relay_resistance_performed: int = _number(5, 2, 2, "Relay resistance protocol", _RRP)


@_layout("Transaction Status Information (9B)", 2)
@dataclass(frozen=True, kw_only=True)
class TSI(_Bitmap):
    """Transaction Status Information: Book 3 Annex C6 Table 47 (byte 2 is all RFU)."""

    offline_data_authentication_performed: bool = _flag(
        1, 8, "Offline data authentication was performed"
    )
    cardholder_verification_performed: bool = _flag(1, 7, "Cardholder verification was performed")
    card_risk_management_performed: bool = _flag(1, 6, "Card risk management was performed")
    issuer_authentication_performed: bool = _flag(1, 5, "Issuer authentication was performed")
    terminal_risk_management_performed: bool = _flag(1, 4, "Terminal risk management was performed")
    script_processing_performed: bool = _flag(1, 3, "Script processing was performed")


@_layout("Terminal Transaction Qualifiers (9F66)", 4)
@dataclass(frozen=True, kw_only=True)
class TTQ(_Bitmap):
    """Terminal Transaction Qualifiers: Book A §5.7 Table 5-4, Book C-3 Annex A.2.

    Byte 2 bits 8-7 are transient (set per transaction by Entry Point); byte 4 is RFU for C-3.
    """

    mag_stripe_mode_supported: bool = _flag(1, 8, "Mag-stripe mode supported")
    emv_mode_supported: bool = _flag(1, 6, "EMV mode supported")
    emv_contact_chip_supported: bool = _flag(1, 5, "EMV contact chip supported")
    offline_only_reader: bool = _flag(1, 4, "Offline-only reader")
    online_pin_supported: bool = _flag(1, 3, "Online PIN supported")
    signature_supported: bool = _flag(1, 2, "Signature supported")
    oda_for_online_authorizations_supported: bool = _flag(
        1, 1, "Offline Data Authentication for Online Authorizations supported"
    )
    online_cryptogram_required: bool = _flag(2, 8, "Online cryptogram required")
    cvm_required: bool = _flag(2, 7, "CVM required")
    contact_chip_offline_pin_supported: bool = _flag(2, 6, "(Contact chip) offline PIN supported")
    issuer_update_processing_supported: bool = _flag(3, 8, "Issuer Update Processing supported")
    consumer_device_cvm_supported: bool = _flag(3, 7, "Consumer Device CVM supported")


@_layout("Card Transaction Qualifiers (9F6C)", 2)
@dataclass(frozen=True, kw_only=True)
class CTQ(_Bitmap):
    """Card Transaction Qualifiers: Book C-3 Annex A.2."""

    online_pin_required: bool = _flag(1, 8, "Online PIN required")
    signature_required: bool = _flag(1, 7, "Signature required")
    go_online_if_oda_fails: bool = _flag(
        1, 6, "Go online if offline data authentication fails and reader is online capable"
    )
    switch_interface_if_oda_fails: bool = _flag(
        1, 5, "Switch interface if offline data authentication fails and reader supports contact"
    )
    go_online_if_application_expired: bool = _flag(1, 4, "Go online if application expired")
    switch_interface_for_cash: bool = _flag(1, 3, "Switch interface for cash transactions")
    switch_interface_for_cashback: bool = _flag(1, 2, "Switch interface for cashback transactions")
    not_valid_for_contactless_atm: bool = _flag(1, 1, "Not valid for contactless ATM transactions")
    consumer_device_cvm_performed: bool = _flag(2, 8, "Consumer Device CVM performed")
    card_supports_issuer_update_processing: bool = _flag(
        2, 7, "Card supports Issuer Update Processing at the POS"
    )


_CRYPTOGRAM_TYPES = _named({0: "AAC", 1: "TC", 2: "ARQC", 3: "AAR"}, "cryptogram type")
_REASON_CODES = _named(
    {
        0: "no information given",
        1: "service not allowed",
        2: "PIN Try Limit exceeded",
        3: "issuer authentication failed",
    },
    "RFU reason",
)


@_layout("Cryptogram Information Data (9F27)", 1)
@dataclass(frozen=True, kw_only=True)
class CID(_Bitmap):
    """Cryptogram Information Data: Book 3 §6.5.5.4 Table 15.

    ``cryptogram_type`` is bits 8-7: 0 AAC, 1 TC, 2 ARQC, 3 AAR (RFU since EMV 4.1).
    """

    cryptogram_type: int = _number(1, 8, 2, "Cryptogram type", _CRYPTOGRAM_TYPES, always=True)
    payment_system_specific: int = _number(1, 6, 2, "Payment system-specific cryptogram", str)
    advice_required: bool = _flag(1, 4, "Advice required")
    reason_code: int = _number(1, 3, 3, "Reason/advice code", _REASON_CODES)


CVM_METHODS: Mapping[int, str] = MappingProxyType(
    {
        0x00: "Fail CVM processing",
        0x01: "Plaintext PIN verification performed by ICC",
        0x02: "Enciphered PIN verified online",
        0x03: "Plaintext PIN verification performed by ICC and signature (paper)",
        0x04: "Enciphered PIN verification performed by ICC",
        0x05: "Enciphered PIN verification performed by ICC and signature (paper)",
        0x06: "Facial biometric verified offline (by ICC)",
        0x07: "Facial biometric verified online",
        0x08: "Finger biometric verified offline (by ICC)",
        0x09: "Finger biometric verified online",
        0x0A: "Palm biometric verified offline (by ICC)",
        0x0B: "Palm biometric verified online",
        0x0C: "Iris biometric verified offline (by ICC)",
        0x0D: "Iris biometric verified online",
        0x0E: "Voice biometric verified offline (by ICC)",
        0x0F: "Voice biometric verified online",
        0x1E: "Signature (paper)",
        0x1F: "No CVM required",
    }
)
"""CVM codes, CV Rule byte 1 bits 6-1 (Book 3 Annex C3 Table 43)."""

CVM_CONDITIONS: Mapping[int, str] = MappingProxyType(
    {
        0x00: "Always",
        0x01: "If unattended cash",
        0x02: "If not unattended cash and not manual cash and not purchase with cashback",
        0x03: "If terminal supports the CVM",
        0x04: "If manual cash",
        0x05: "If purchase with cashback",
        0x06: "If transaction is in the application currency and is under X value",
        0x07: "If transaction is in the application currency and is over X value",
        0x08: "If transaction is in the application currency and is under Y value",
        0x09: "If transaction is in the application currency and is over Y value",
    }
)
"""CVM condition codes, CV Rule byte 2 (Book 3 Annex C3 Table 44)."""


def _cvm_words(code: int) -> str:
    """A CVM code in words, with the ranges Table 43 reserves."""
    if code in CVM_METHODS:
        return CVM_METHODS[code]
    if 0x20 <= code <= 0x2F:
        return f"payment system-specific CVM {code:02X}"
    if 0x30 <= code <= 0x3E:
        return f"issuer-specific CVM {code:02X}"
    if code == 0x3F:
        return "3F (not available for use)"
    return f"RFU CVM {code:02X}"


def _cvm_performed_words(code: int) -> str:
    """CVM Results byte 1: as a CVM code, except that '3F' means no CVM was performed."""
    return "No CVM performed" if code == 0x3F else _cvm_words(code)


def _condition_words(code: int) -> str:
    if code in CVM_CONDITIONS:
        return CVM_CONDITIONS[code]
    if code >= 0x80:
        return f"payment system-specific condition {code:02X}"
    return f"RFU condition {code:02X}"


_CVM_RESULTS = _named({0: "unknown", 1: "failed", 2: "successful"}, "RFU result")


@_layout("CV Rule", 2)
@dataclass(frozen=True, kw_only=True)
class CvRule(_Bitmap):
    """One Cardholder Verification Rule of a CVM List: Book 3 Annex C3 Tables 43-44."""

    method: int = _number(1, 6, 6, "CVM", _cvm_words, always=True)
    condition: int = _number(2, 8, 8, "Condition", _condition_words, always=True)
    apply_next_if_unsuccessful: bool = _flag(
        1, 7, "Apply succeeding CV Rule if this CVM is unsuccessful"
    )


@_layout("CVM Results (9F34)", 3)
@dataclass(frozen=True, kw_only=True)
class CvmResults(_Bitmap):
    """CVM Results: Book 4 Annex A4 Table 33 (byte 1 as a CV Rule byte 1, '3F' = none)."""

    method: int = _number(1, 6, 6, "CVM performed", _cvm_performed_words, always=True)
    condition: int = _number(2, 8, 8, "CVM condition", _condition_words, always=True)
    result: int = _number(3, 8, 8, "CVM result", _CVM_RESULTS, always=True)
    apply_next_if_unsuccessful: bool = _flag(
        1, 7, "Apply succeeding CV Rule if this CVM is unsuccessful"
    )


@_layout("Terminal Capabilities (9F33)", 3)
@dataclass(frozen=True, kw_only=True)
class TerminalCapabilities(_Bitmap):
    """Terminal Capabilities: Book 4 Annex A2 Tables 25-27."""

    manual_key_entry: bool = _flag(1, 8, "Card data input: manual key entry")
    magnetic_stripe: bool = _flag(1, 7, "Card data input: magnetic stripe")
    ic_with_contacts: bool = _flag(1, 6, "Card data input: IC with contacts")
    plaintext_pin_for_icc_verification: bool = _flag(
        2, 8, "CVM: plaintext PIN for ICC verification"
    )
    enciphered_pin_for_online_verification: bool = _flag(
        2, 7, "CVM: enciphered PIN for online verification"
    )
    signature: bool = _flag(2, 6, "CVM: signature (paper)")
    enciphered_pin_for_offline_verification: bool = _flag(
        2, 5, "CVM: enciphered PIN for offline verification (RSA)"
    )
    no_cvm_required: bool = _flag(2, 4, "CVM: no CVM required")
    online_biometric: bool = _flag(2, 3, "CVM: online biometric")
    offline_biometric: bool = _flag(2, 2, "CVM: offline biometric")
    enciphered_pin_for_offline_verification_ecc: bool = _flag(
        2, 1, "CVM: enciphered PIN for offline verification (ECC)"
    )
    sda: bool = _flag(3, 8, "Security: SDA")
    dda: bool = _flag(3, 7, "Security: DDA")
    card_capture: bool = _flag(3, 6, "Security: card capture")
    cda: bool = _flag(3, 4, "Security: CDA")
    xda: bool = _flag(3, 3, "Security: XDA")


@_layout("Additional Terminal Capabilities (9F40)", 5)
@dataclass(frozen=True, kw_only=True)
class AdditionalTerminalCapabilities(_Bitmap):
    """Additional Terminal Capabilities: Book 4 Annex A3 Tables 28-32."""

    cash: bool = _flag(1, 8, "Transaction type: cash")
    goods: bool = _flag(1, 7, "Transaction type: goods")
    services: bool = _flag(1, 6, "Transaction type: services")
    cashback: bool = _flag(1, 5, "Transaction type: cashback")
    inquiry: bool = _flag(1, 4, "Transaction type: inquiry")
    transfer: bool = _flag(1, 3, "Transaction type: transfer")
    payment: bool = _flag(1, 2, "Transaction type: payment")
    administrative: bool = _flag(1, 1, "Transaction type: administrative")
    cash_deposit: bool = _flag(2, 8, "Transaction type: cash deposit")
    numeric_keys: bool = _flag(3, 8, "Data input: numeric keys")
    alphabetic_and_special_keys: bool = _flag(
        3, 7, "Data input: alphabetic and special characters keys"
    )
    command_keys: bool = _flag(3, 6, "Data input: command keys")
    function_keys: bool = _flag(3, 5, "Data input: function keys")
    print_attendant: bool = _flag(4, 8, "Data output: print, attendant")
    print_cardholder: bool = _flag(4, 7, "Data output: print, cardholder")
    display_attendant: bool = _flag(4, 6, "Data output: display, attendant")
    display_cardholder: bool = _flag(4, 5, "Data output: display, cardholder")
    code_table_10: bool = _flag(4, 2, "Data output: code table 10")
    code_table_9: bool = _flag(4, 1, "Data output: code table 9")
    code_table_8: bool = _flag(5, 8, "Data output: code table 8")
    code_table_7: bool = _flag(5, 7, "Data output: code table 7")
    code_table_6: bool = _flag(5, 6, "Data output: code table 6")
    code_table_5: bool = _flag(5, 5, "Data output: code table 5")
    code_table_4: bool = _flag(5, 4, "Data output: code table 4")
    code_table_3: bool = _flag(5, 3, "Data output: code table 3")
    code_table_2: bool = _flag(5, 2, "Data output: code table 2")
    code_table_1: bool = _flag(5, 1, "Data output: code table 1")


# --- variable-length objects ----------------------------------------------------------------

_AMOUNT_MAX = 0xFFFFFFFF
_CVM_LIST_MAX = 252


@dataclass(frozen=True, kw_only=True)
class CvmList:
    """CVM List: Book 3 Annex C3.

    Amount X (4 bytes) and Amount Y (4 bytes), binary in the application
    currency with its implicit decimal point, then two-byte CV Rules in
    priority order; at most 252 bytes in all.
    """

    NAME: ClassVar[str] = "CVM List (8E)"

    amount_x: int = 0
    amount_y: int = 0
    rules: tuple[CvRule, ...] = ()

    def __post_init__(self) -> None:
        for name in ("amount_x", "amount_y"):
            value = getattr(self, name)
            if not 0 <= value <= _AMOUNT_MAX:
                raise BitfieldError(self.NAME, f"{name} must be 0..{_AMOUNT_MAX}, got {value}")
        object.__setattr__(self, "rules", tuple(self.rules))
        if 8 + 2 * len(self.rules) > _CVM_LIST_MAX:
            raise BitfieldError(
                self.NAME, f"{len(self.rules)} rules do not fit in {_CVM_LIST_MAX} bytes"
            )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = bytes(data)
        if len(data) < 8 or len(data) % 2 or len(data) > _CVM_LIST_MAX:
            raise BitfieldError(
                cls.NAME, f"expected 8 + 2n bytes (8..{_CVM_LIST_MAX}), got {len(data)}"
            )
        rules = tuple(CvRule.from_bytes(data[i : i + 2]) for i in range(8, len(data), 2))
        return cls(
            amount_x=int.from_bytes(data[0:4], "big"),
            amount_y=int.from_bytes(data[4:8], "big"),
            rules=rules,
        )

    def to_bytes(self) -> bytes:
        amounts = self.amount_x.to_bytes(4, "big") + self.amount_y.to_bytes(4, "big")
        return amounts + b"".join(rule.to_bytes() for rule in self.rules)

    def describe(self) -> list[str]:
        """Both amounts, then one line per rule: ``Rule 1: CVM: ...; Condition: ...``."""
        lines = [f"Amount X: {self.amount_x}", f"Amount Y: {self.amount_y}"]
        lines += [
            f"Rule {number}: " + "; ".join(rule.describe())
            for number, rule in enumerate(self.rules, 1)
        ]
        return lines


KERNEL_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0: "international kernel",
        1: "RFU",
        2: "domestic kernel with EMVCo format",
        3: "domestic kernel with proprietary format",
    }
)
"""Kernel Identifier byte 1 bits 8-7 (Book B §3, Kernel Identifier)."""

INTERNATIONAL_KERNELS: Mapping[int, str] = MappingProxyType(
    {
        1: "Kernel 1 (some JCB and Visa cards)",
        2: "Kernel 2 (Mastercard)",
        3: "Kernel 3 (Visa)",
        4: "Kernel 4 (American Express)",
        5: "Kernel 5 (JCB)",
        6: "Kernel 6 (Discover)",
        7: "Kernel 7 (UnionPay)",
        8: "Kernel 8 (EMVCo)",
    }
)
"""Short Kernel IDs of the international kernels (Book B; Books C-1 to C-8)."""

_DOMESTIC = (2, 3)
_KERNEL_ID_MAX = 8


@dataclass(frozen=True, kw_only=True)
class KernelIdentifier:
    """Kernel Identifier (9F2A), 1 to 8 bytes: EMV Contactless Book B §3.

    Byte 1 bits 8-7 are the kernel type, bits 6-1 the Short Kernel ID. For a
    domestic kernel (type 2 or 3) bytes 2-3 are the Extended Kernel ID. ``rest``
    keeps bytes 2 onward exactly as read, so every value encodes back unchanged.
    """

    NAME: ClassVar[str] = "Kernel Identifier (9F2A)"

    kernel_type: int = 0
    short_kernel_id: int = 0
    rest: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.kernel_type <= 3:
            raise BitfieldError(self.NAME, f"kernel_type must be 0..3, got {self.kernel_type}")
        if not 0 <= self.short_kernel_id <= 0x3F:
            raise BitfieldError(
                self.NAME, f"short_kernel_id must be 0..63, got {self.short_kernel_id}"
            )
        object.__setattr__(self, "rest", bytes(self.rest))
        if len(self.rest) > _KERNEL_ID_MAX - 1:
            raise BitfieldError(
                self.NAME, f"rest must be 0..{_KERNEL_ID_MAX - 1} bytes, got {len(self.rest)}"
            )

    @property
    def domestic(self) -> bool:
        return self.kernel_type in _DOMESTIC

    @property
    def extended_kernel_id(self) -> bytes | None:
        """Bytes 2-3 of a domestic Kernel Identifier, None when absent or not applicable."""
        return self.rest[:2] if self.domestic and len(self.rest) >= 2 else None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = bytes(data)
        if not 1 <= len(data) <= _KERNEL_ID_MAX:
            raise BitfieldError(cls.NAME, f"expected 1..{_KERNEL_ID_MAX} bytes, got {len(data)}")
        return cls(kernel_type=data[0] >> 6, short_kernel_id=data[0] & 0x3F, rest=data[1:])

    def to_bytes(self) -> bytes:
        return bytes((self.kernel_type << 6 | self.short_kernel_id,)) + self.rest

    def describe(self) -> list[str]:
        kernel = self.short_kernel_id
        if self.kernel_type == 0:
            words = INTERNATIONAL_KERNELS.get(kernel, f"{kernel} (no international kernel)")
        else:
            words = str(kernel)
        lines = [f"Kernel type: {KERNEL_TYPES[self.kernel_type]}", f"Short kernel ID: {words}"]
        extended = self.extended_kernel_id
        if extended is not None:
            lines.append(f"Extended kernel ID: {extended.hex().upper()}")
        unused = self.rest[2:] if extended is not None else self.rest
        if unused:
            lines.append(f"Further bytes not used: {unused.hex().upper()}")
        return lines


BITFIELDS: Mapping[int, type[BitField]] = MappingProxyType(
    {
        0x82: AIP,
        0x8E: CvmList,
        0x95: TVR,
        0x9B: TSI,
        0x9F07: AUC,
        0x9F27: CID,
        0x9F2A: KernelIdentifier,
        0x9F33: TerminalCapabilities,
        0x9F34: CvmResults,
        0x9F40: AdditionalTerminalCapabilities,
        0x9F66: TTQ,
        0x9F6C: CTQ,
    }
)
"""Tag -> class, for ``BITFIELDS[tag].from_bytes(value).describe()`` (read-only)."""
