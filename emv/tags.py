"""The EMV tag dictionary and a pretty printer for TLV trees.

Every data element emvtap meets has a :class:`TagInfo`: its name, format, length
range, where it comes from and the templates it travels in. The facts come from

* EMV 4.4 Book 3, Annex A1 "Data Elements Dictionary" (and Book 1 for the
  directory and FCI objects),
* EMV Contactless Book A/B (Entry Point: TTQ, Kernel Identifier, Extended Selection),
* EMV Contactless Book C-2 (Kernel 2, Mastercard) Annex A,
* EMV Contactless Book C-3 (Kernel 3, Visa) Annex A,

as quoted in public tables (the EMVCo books themselves, the Book 3 table
reproduced by open-source EMV libraries, and published tag references).

Formats are Book 3's (§4.3): ``a`` alphabetic, ``an`` alphanumeric, ``ans``
alphanumeric special, ``b`` binary, ``cn`` compressed numeric (left justified,
padded with 'F'), ``n`` numeric (BCD, right justified, padded with leading
zeros) and ``var`` where the spec gives no single format. Lengths are in bytes;
where Annex A writes "var." with no bound the maximum is :data:`UNBOUNDED`.

A few contactless tags mean different things to different kernels (``9F6B`` is
Track 2 Data for Kernel 2 but the Card CVM Limit for Kernel 3). The default
dictionary gives the meaning most readers expect, or both names where no
meaning dominates; ``tag_info(tag, kernel=2)`` gives the kernel's own meaning.

:func:`render` prints a TLV tree for people and :func:`to_json` gives the same
for tools. Both mask PANs by default (see :mod:`emv.masking`) and never raise on
a parsed tree, whatever its values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from emv import dol, tlv
from emv.bitfields import BITFIELDS
from emv.masking import mask_tlv, mask_value

__all__ = [
    "FORMATS",
    "SOURCES",
    "UNBOUNDED",
    "TagInfo",
    "aid_name",
    "all_tags",
    "country",
    "currency",
    "render",
    "tag_info",
    "to_json",
]

Format = Literal["a", "an", "ans", "b", "cn", "n", "var"]
Source = Literal["ICC", "Terminal", "Issuer", "Kernel"]
FORMATS: frozenset[str] = frozenset({"a", "an", "ans", "b", "cn", "n", "var"})
SOURCES: frozenset[str] = frozenset({"ICC", "Terminal", "Issuer", "Kernel"})
UNBOUNDED = 0xFFFF
"""Maximum length used where the spec writes "var." without a bound."""


@dataclass(frozen=True, slots=True)
class TagInfo:
    """What the dictionary knows of one tag. ``spec`` names the book that defines it."""

    tag: int
    name: str
    fmt: Format
    min_len: int
    max_len: int
    source: Source
    templates: tuple[int, ...] = ()
    spec: str = "Book 3"

    @property
    def constructed(self) -> bool:
        return tlv.is_constructed(self.tag)

    def length_ok(self, length: int) -> bool:
        return self.min_len <= length <= self.max_len

    def expected_length(self) -> str:
        """``"2 bytes"`` or ``"5-16 bytes"``, for notes on wrong-length values."""
        if self.min_len == self.max_len:
            return f"{self.min_len} byte{'s' if self.min_len != 1 else ''}"
        return f"{self.min_len}-{self.max_len} bytes"


# --- the dictionary ------------------------------------------------------------------------

_Row = tuple[int, str, Format, int, int, Source, tuple[int, ...]]

_NONE: tuple[int, ...] = ()
_T61 = (0x61,)
_T6F = (0x6F,)
_T70 = (0x70,)
_T77 = (0x77,)
_TA5 = (0xA5,)
_T61_A5 = (0x61, 0xA5)
_T70_77 = (0x70, 0x77)
_T71_72 = (0x71, 0x72)
_T77_80 = (0x77, 0x80)
_TBF0C_73 = (0xBF0C, 0x73)
_NCA = 248  # the largest CA / issuer / ICC key modulus, in bytes (Book 2, Annex A2.1)

# fmt: off
# EMV 4.4 Book 3 Annex A1 (with the Book 1 directory and FCI objects).
_BOOK3: tuple[_Row, ...] = (
    (0x42, "Issuer Identification Number (IIN)", "n", 3, 3, "ICC", _TBF0C_73),
    (0x4F, "Application Identifier (ADF Name)", "b", 5, 16, "ICC", _T61),
    (0x50, "Application Label", "ans", 1, 16, "ICC", _T61_A5),
    (0x56, "Track 1 Data", "ans", 1, 76, "ICC", _T70),
    (0x57, "Track 2 Equivalent Data", "b", 1, 19, "ICC", _T70_77),
    (0x5A, "Application Primary Account Number (PAN)", "cn", 1, 10, "ICC", _T70_77),
    (0x5F20, "Cardholder Name", "ans", 2, 26, "ICC", _T70_77),
    (0x5F24, "Application Expiration Date", "n", 3, 3, "ICC", _T70_77),
    (0x5F25, "Application Effective Date", "n", 3, 3, "ICC", _T70_77),
    (0x5F28, "Issuer Country Code", "n", 2, 2, "ICC", _T70_77),
    (0x5F2A, "Transaction Currency Code", "n", 2, 2, "Terminal", _NONE),
    (0x5F2D, "Language Preference", "an", 2, 8, "ICC", _TA5),
    (0x5F30, "Service Code", "n", 2, 2, "ICC", _T70_77),
    (0x5F34, "Application PAN Sequence Number", "n", 1, 1, "ICC", _T70_77),
    (0x5F36, "Transaction Currency Exponent", "n", 1, 1, "Terminal", _NONE),
    (0x5F50, "Issuer URL", "ans", 1, UNBOUNDED, "ICC", _TBF0C_73),
    (0x5F53, "International Bank Account Number (IBAN)", "an", 1, 34, "ICC", _TBF0C_73),
    (0x5F54, "Bank Identifier Code (BIC)", "an", 8, 11, "ICC", _TBF0C_73),
    (0x5F55, "Issuer Country Code (alpha2 format)", "a", 2, 2, "ICC", _TBF0C_73),
    (0x5F56, "Issuer Country Code (alpha3 format)", "a", 3, 3, "ICC", _TBF0C_73),
    (0x5F57, "Account Type", "n", 1, 1, "Terminal", _NONE),
    (0x61, "Application Template", "b", 0, 252, "ICC", _T70),
    (0x6F, "File Control Information (FCI) Template", "b", 0, 252, "ICC", _NONE),
    (0x70, "READ RECORD Response Message Template", "b", 0, 252, "ICC", _NONE),
    (0x71, "Issuer Script Template 1", "b", 0, UNBOUNDED, "Issuer", _NONE),
    (0x72, "Issuer Script Template 2", "b", 0, UNBOUNDED, "Issuer", _NONE),
    (0x73, "Directory Discretionary Template", "b", 0, 252, "ICC", _T61),
    (0x77, "Response Message Template Format 2", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0x80, "Response Message Template Format 1", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0x81, "Amount, Authorised (Binary)", "b", 4, 4, "Terminal", _NONE),
    (0x82, "Application Interchange Profile (AIP)", "b", 2, 2, "ICC", _T77_80),
    (0x83, "Command Template", "b", 0, UNBOUNDED, "Terminal", _NONE),
    (0x84, "Dedicated File (DF) Name", "b", 5, 16, "ICC", _T6F),
    (0x86, "Issuer Script Command", "b", 5, 261, "Issuer", _T71_72),
    (0x87, "Application Priority Indicator", "b", 1, 1, "ICC", _T61_A5),
    (0x88, "Short File Identifier (SFI)", "b", 1, 1, "ICC", _TA5),
    (0x89, "Authorisation Code", "ans", 6, 6, "Issuer", _NONE),
    (0x8A, "Authorisation Response Code", "an", 2, 2, "Issuer", _NONE),
    (0x8C, "Card Risk Management Data Object List 1 (CDOL1)", "b", 0, 252, "ICC", _T70_77),
    (0x8D, "Card Risk Management Data Object List 2 (CDOL2)", "b", 0, 252, "ICC", _T70_77),
    (0x8E, "Cardholder Verification Method (CVM) List", "b", 10, 252, "ICC", _T70_77),
    (0x8F, "Certification Authority Public Key Index", "b", 1, 1, "ICC", _T70_77),
    (0x90, "Issuer Public Key Certificate", "b", 1, _NCA, "ICC", _T70_77),
    (0x91, "Issuer Authentication Data", "b", 8, 16, "Issuer", _NONE),
    (0x92, "Issuer Public Key Remainder", "b", 0, _NCA, "ICC", _T70_77),
    (0x93, "Signed Static Application Data", "b", 1, _NCA, "ICC", _T70_77),
    (0x94, "Application File Locator (AFL)", "b", 4, 252, "ICC", _T77_80),
    (0x95, "Terminal Verification Results (TVR)", "b", 5, 5, "Terminal", _NONE),
    (0x97, "Transaction Certificate Data Object List (TDOL)", "b", 0, 252, "ICC", _T70_77),
    (0x98, "Transaction Certificate (TC) Hash Value", "b", 20, 20, "Terminal", _NONE),
    (0x99, "Transaction PIN Data", "b", 0, UNBOUNDED, "Terminal", _NONE),
    (0x9A, "Transaction Date", "n", 3, 3, "Terminal", _NONE),
    (0x9B, "Transaction Status Information (TSI)", "b", 2, 2, "Terminal", _NONE),
    (0x9C, "Transaction Type", "n", 1, 1, "Terminal", _NONE),
    (0x9D, "Directory Definition File (DDF) Name", "b", 5, 16, "ICC", _T61),
    (0xA5, "File Control Information (FCI) Proprietary Template", "b", 0, UNBOUNDED, "ICC", _T6F),
    (0xBF0C, "FCI Issuer Discretionary Data", "b", 0, 222, "ICC", _TA5),
    (0x9F01, "Acquirer Identifier", "n", 6, 6, "Terminal", _NONE),
    (0x9F02, "Amount, Authorised (Numeric)", "n", 6, 6, "Terminal", _NONE),
    (0x9F03, "Amount, Other (Numeric)", "n", 6, 6, "Terminal", _NONE),
    (0x9F04, "Amount, Other (Binary)", "b", 4, 4, "Terminal", _NONE),
    (0x9F05, "Application Discretionary Data", "b", 1, 32, "ICC", _T70_77),
    (0x9F06, "Application Identifier (AID) - terminal", "b", 5, 16, "Terminal", _NONE),
    (0x9F07, "Application Usage Control (AUC)", "b", 2, 2, "ICC", _T70_77),
    (0x9F08, "Application Version Number (card)", "b", 2, 2, "ICC", _T70_77),
    (0x9F09, "Application Version Number (terminal)", "b", 2, 2, "Terminal", _NONE),
    (0x9F0A, "Application Selection Registered Proprietary Data", "b", 0, UNBOUNDED, "ICC",
     _TBF0C_73),
    (0x9F0B, "Cardholder Name Extended", "ans", 27, 45, "ICC", _T70_77),
    (0x9F0D, "Issuer Action Code - Default", "b", 5, 5, "ICC", _T70_77),
    (0x9F0E, "Issuer Action Code - Denial", "b", 5, 5, "ICC", _T70_77),
    (0x9F0F, "Issuer Action Code - Online", "b", 5, 5, "ICC", _T70_77),
    (0x9F10, "Issuer Application Data (IAD)", "b", 0, 32, "ICC", _T77_80),
    (0x9F11, "Issuer Code Table Index", "n", 1, 1, "ICC", _TA5),
    (0x9F12, "Application Preferred Name", "ans", 1, 16, "ICC", _T61_A5),
    (0x9F13, "Last Online ATC Register", "b", 2, 2, "ICC", _NONE),
    (0x9F14, "Lower Consecutive Offline Limit", "b", 1, 1, "ICC", _T70_77),
    (0x9F15, "Merchant Category Code", "n", 2, 2, "Terminal", _NONE),
    (0x9F16, "Merchant Identifier", "ans", 15, 15, "Terminal", _NONE),
    (0x9F17, "PIN Try Counter", "b", 1, 1, "ICC", _NONE),
    (0x9F18, "Issuer Script Identifier", "b", 4, 4, "Issuer", _T71_72),
    (0x9F19, "Token Requestor ID", "n", 6, 6, "ICC", _T70_77),
    (0x9F1A, "Terminal Country Code", "n", 2, 2, "Terminal", _NONE),
    (0x9F1B, "Terminal Floor Limit", "b", 4, 4, "Terminal", _NONE),
    (0x9F1C, "Terminal Identification", "an", 8, 8, "Terminal", _NONE),
    (0x9F1D, "Terminal Risk Management Data", "b", 1, 8, "Terminal", _NONE),
    (0x9F1E, "Interface Device (IFD) Serial Number", "an", 8, 8, "Terminal", _NONE),
    (0x9F1F, "Track 1 Discretionary Data", "ans", 0, UNBOUNDED, "ICC", _T70_77),
    (0x9F20, "Track 2 Discretionary Data", "cn", 0, UNBOUNDED, "ICC", _T70_77),
    (0x9F21, "Transaction Time", "n", 3, 3, "Terminal", _NONE),
    (0x9F22, "Certification Authority Public Key Index (terminal)", "b", 1, 1, "Terminal",
     _NONE),
    (0x9F23, "Upper Consecutive Offline Limit", "b", 1, 1, "ICC", _T70_77),
    (0x9F24, "Payment Account Reference (PAR)", "an", 29, 29, "ICC", _T70_77),
    (0x9F25, "Last 4 Digits of PAN", "n", 2, 2, "ICC", _T70_77),
    (0x9F26, "Application Cryptogram", "b", 8, 8, "ICC", _T77_80),
    (0x9F27, "Cryptogram Information Data (CID)", "b", 1, 1, "ICC", _T77_80),
    (0x9F2D, "ICC PIN Encipherment Public Key Certificate", "b", 1, _NCA, "ICC", _T70_77),
    (0x9F2E, "ICC PIN Encipherment Public Key Exponent", "b", 1, 3, "ICC", _T70_77),
    (0x9F2F, "ICC PIN Encipherment Public Key Remainder", "b", 0, _NCA, "ICC", _T70_77),
    (0x9F30, "Biometric Terminal Capabilities", "b", 3, 3, "Terminal", _NONE),
    (0x9F32, "Issuer Public Key Exponent", "b", 1, 3, "ICC", _T70_77),
    (0x9F33, "Terminal Capabilities", "b", 3, 3, "Terminal", _NONE),
    (0x9F34, "Cardholder Verification Method (CVM) Results", "b", 3, 3, "Terminal", _NONE),
    (0x9F35, "Terminal Type", "n", 1, 1, "Terminal", _NONE),
    (0x9F36, "Application Transaction Counter (ATC)", "b", 2, 2, "ICC", _T77_80),
    (0x9F37, "Unpredictable Number", "b", 4, 4, "Terminal", _NONE),
    (0x9F38, "Processing Options Data Object List (PDOL)", "b", 0, 252, "ICC", _TA5),
    (0x9F39, "Point-of-Service (POS) Entry Mode", "n", 1, 1, "Terminal", _NONE),
    (0x9F3A, "Amount, Reference Currency", "b", 4, 4, "Terminal", _NONE),
    (0x9F3B, "Application Reference Currency", "n", 2, 8, "ICC", _T70_77),
    (0x9F3C, "Transaction Reference Currency Code", "n", 2, 2, "Terminal", _NONE),
    (0x9F3D, "Transaction Reference Currency Exponent", "n", 1, 1, "Terminal", _NONE),
    (0x9F40, "Additional Terminal Capabilities", "b", 5, 5, "Terminal", _NONE),
    (0x9F41, "Transaction Sequence Counter", "n", 2, 4, "Terminal", _NONE),
    (0x9F42, "Application Currency Code", "n", 2, 2, "ICC", _T70_77),
    (0x9F43, "Application Reference Currency Exponent", "n", 1, 4, "ICC", _T70_77),
    (0x9F44, "Application Currency Exponent", "n", 1, 1, "ICC", _T70_77),
    (0x9F45, "Data Authentication Code", "b", 2, 2, "ICC", _NONE),
    (0x9F46, "ICC Public Key Certificate", "b", 1, _NCA, "ICC", _T70_77),
    (0x9F47, "ICC Public Key Exponent", "b", 1, 3, "ICC", _T70_77),
    (0x9F48, "ICC Public Key Remainder", "b", 0, _NCA, "ICC", _T70_77),
    (0x9F49, "Dynamic Data Authentication Data Object List (DDOL)", "b", 0, 252, "ICC", _T70_77),
    (0x9F4A, "Static Data Authentication Tag List", "b", 0, UNBOUNDED, "ICC", _T70_77),
    (0x9F4B, "Signed Dynamic Application Data", "b", 1, _NCA, "ICC", _T77_80),
    (0x9F4C, "ICC Dynamic Number", "b", 2, 8, "ICC", _NONE),
    (0x9F4D, "Log Entry", "b", 2, 2, "ICC", _TBF0C_73),
    (0x9F4E, "Merchant Name and Location", "ans", 0, UNBOUNDED, "Terminal", _NONE),
    (0x9F4F, "Log Format", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0x7F60, "Biometric Information Template (BIT)", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0xBF4C, "Biometric Try Counters Template", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0xBF4E, "Biometric Verification Data Template", "b", 0, UNBOUNDED, "Terminal", _NONE),
)

# EMV Contactless Book A/B: Entry Point.
_ENTRY_POINT: tuple[_Row, ...] = (
    (0x9F29, "Extended Selection", "b", 1, UNBOUNDED, "ICC", _T61),
    (0x9F2A, "Kernel Identifier", "b", 1, 8, "ICC", _T61),
    (0x9F66, "Terminal Transaction Qualifiers (TTQ)", "b", 4, 4, "Terminal", _NONE),
)

# EMV Contactless Book C-2 (Kernel 2), Annex A: tags with one meaning across kernels.
_C2: tuple[_Row, ...] = (
    (0x9F50, "Offline Accumulator Balance", "n", 6, 6, "ICC", _NONE),
    (0x9F51, "DRDOL", "b", 0, 252, "ICC", _T70),
    (0x9F53, "Transaction Category Code", "an", 1, 1, "Terminal", _NONE),
    (0x9F54, "DS ODS Card", "b", 0, 160, "ICC", _NONE),
    (0x9F5C, "DS Requested Operator ID", "b", 8, 8, "Terminal", _NONE),
    (0x9F5E, "DS ID", "n", 8, 11, "ICC", _NONE),
    (0x9F5F, "DS Slot Availability", "b", 1, 1, "ICC", _NONE),
    (0x9F60, "CVC3 (Track1)", "b", 2, 2, "ICC", _T77),
    (0x9F61, "CVC3 (Track2)", "b", 2, 2, "ICC", _T77),
    (0x9F62, "PCVC3 (Track1)", "b", 6, 6, "ICC", _T70),
    (0x9F63, "PUNATC (Track1)", "b", 6, 6, "ICC", _T70),
    (0x9F64, "NATC (Track1)", "b", 1, 1, "ICC", _T70),
    (0x9F65, "PCVC3 (Track2)", "b", 2, 2, "ICC", _T70),
    (0x9F67, "NATC (Track2)", "b", 1, 1, "ICC", _T70),
    (0x9F6A, "Unpredictable Number (Numeric)", "n", 4, 4, "Kernel", _NONE),
    (0x9F6D, "Mag-stripe Application Version Number (Reader)", "b", 2, 2, "Terminal", _NONE),
    (0x9F6F, "DS Slot Management Control", "b", 1, 1, "ICC", _NONE),
    (0x9F70, "Protected Data Envelope 1", "b", 0, 192, "ICC", _NONE),
    (0x9F71, "Protected Data Envelope 2", "b", 0, 192, "ICC", _NONE),
    (0x9F72, "Protected Data Envelope 3", "b", 0, 192, "ICC", _NONE),
    (0x9F73, "Protected Data Envelope 4", "b", 0, 192, "ICC", _NONE),
    (0x9F74, "Protected Data Envelope 5", "b", 0, 192, "ICC", _NONE),
    (0x9F75, "Unprotected Data Envelope 1", "b", 0, 192, "ICC", _NONE),
    (0x9F76, "Unprotected Data Envelope 2", "b", 0, 192, "ICC", _NONE),
    (0x9F77, "Unprotected Data Envelope 3", "b", 0, 192, "ICC", _NONE),
    (0x9F78, "Unprotected Data Envelope 4", "b", 0, 192, "ICC", _NONE),
    (0x9F79, "Unprotected Data Envelope 5", "b", 0, 192, "ICC", _NONE),
    (0x9F7D, "DS Summary 1", "b", 8, 16, "ICC", _NONE),
    (0x9F7E, "Mobile Support Indicator", "b", 1, 1, "Terminal", _NONE),
    (0x9F7F, "DS Unpredictable Number", "b", 4, 4, "ICC", _NONE),
    (0xDF4B, "POS Cardholder Interaction Information", "b", 3, 3, "ICC", _NONE),
    (0xDF60, "DS Input (Card)", "b", 8, 8, "Terminal", _NONE),
    (0xDF61, "DS Digest H", "b", 8, 8, "Kernel", _NONE),
    (0xDF62, "DS ODS Info", "b", 1, 1, "Terminal", _NONE),
    (0xDF63, "DS ODS Term", "b", 0, 160, "Terminal", _NONE),
    (0xDF8101, "DS Summary 2", "b", 8, 16, "ICC", _NONE),
    (0xDF8102, "DS Summary 3", "b", 8, 16, "ICC", _NONE),
    (0xDF8104, "Balance Read Before Gen AC", "n", 6, 6, "Kernel", _NONE),
    (0xDF8105, "Balance Read After Gen AC", "n", 6, 6, "Kernel", _NONE),
    (0xDF8106, "Data Needed", "b", 0, UNBOUNDED, "Kernel", _NONE),
    (0xDF8107, "CDOL1 Related Data", "b", 0, UNBOUNDED, "Kernel", _NONE),
    (0xDF8108, "DS AC Type", "b", 1, 1, "Terminal", _NONE),
    (0xDF8109, "DS Input (Term)", "b", 8, 8, "Terminal", _NONE),
    (0xDF810A, "DS ODS Info For Reader", "b", 1, 1, "Terminal", _NONE),
    (0xDF810B, "DS Summary Status", "b", 1, 1, "Kernel", _NONE),
    (0xDF810C, "Kernel ID", "b", 1, 1, "Terminal", _NONE),
    (0xDF810D, "DSVN Term", "b", 0, UNBOUNDED, "Terminal", _NONE),
    (0xDF810E, "Post-Gen AC Put Data Status", "b", 1, 1, "Kernel", _NONE),
    (0xDF810F, "Pre-Gen AC Put Data Status", "b", 1, 1, "Kernel", _NONE),
    (0xDF8110, "Proceed To First Write Flag", "b", 1, 1, "Terminal", _NONE),
    (0xDF8111, "PDOL Related Data", "b", 0, UNBOUNDED, "Kernel", _NONE),
    (0xDF8112, "Tags To Read", "b", 0, UNBOUNDED, "Terminal", _NONE),
    (0xDF8113, "DRDOL Related Data", "b", 0, UNBOUNDED, "Kernel", _NONE),
    (0xDF8114, "Reference Control Parameter", "b", 1, 1, "Kernel", _NONE),
    (0xDF8115, "Error Indication", "b", 6, 6, "Kernel", _NONE),
    (0xDF8116, "User Interface Request Data", "b", 22, 22, "Kernel", _NONE),
    (0xDF8117, "Card Data Input Capability", "b", 1, 1, "Terminal", _NONE),
    (0xDF8118, "CVM Capability - CVM Required", "b", 1, 1, "Terminal", _NONE),
    (0xDF8119, "CVM Capability - No CVM Required", "b", 1, 1, "Terminal", _NONE),
    (0xDF811A, "Default UDOL", "b", 3, 3, "Terminal", _NONE),
    (0xDF811B, "Kernel Configuration", "b", 1, 1, "Terminal", _NONE),
    (0xDF811C, "Max Lifetime of Torn Transaction Log Record", "b", 2, 2, "Terminal", _NONE),
    (0xDF811D, "Max Number of Torn Transaction Log Records", "b", 1, 1, "Terminal", _NONE),
    (0xDF811E, "Mag-stripe CVM Capability - CVM Required", "b", 1, 1, "Terminal", _NONE),
    (0xDF811F, "Security Capability", "b", 1, 1, "Terminal", _NONE),
    (0xDF8120, "Terminal Action Code - Default", "b", 5, 5, "Terminal", _NONE),
    (0xDF8121, "Terminal Action Code - Denial", "b", 5, 5, "Terminal", _NONE),
    (0xDF8122, "Terminal Action Code - Online", "b", 5, 5, "Terminal", _NONE),
    (0xDF8123, "Reader Contactless Floor Limit", "n", 6, 6, "Terminal", _NONE),
    (0xDF8124, "Reader Contactless Transaction Limit (No On-device CVM)", "n", 6, 6,
     "Terminal", _NONE),
    (0xDF8125, "Reader Contactless Transaction Limit (On-device CVM)", "n", 6, 6, "Terminal",
     _NONE),
    (0xDF8126, "Reader CVM Required Limit", "n", 6, 6, "Terminal", _NONE),
    (0xDF8127, "Time Out Value", "b", 2, 2, "Terminal", _NONE),
    (0xDF8128, "IDS Status", "b", 1, 1, "Kernel", _NONE),
    (0xDF8129, "Outcome Parameter Set", "b", 8, 8, "Kernel", _NONE),
    (0xDF812A, "DD Card (Track1)", "ans", 0, 56, "Kernel", _NONE),
    (0xDF812B, "DD Card (Track2)", "b", 0, 8, "Kernel", _NONE),
    (0xDF812C, "Mag-stripe CVM Capability - No CVM Required", "b", 1, 1, "Terminal", _NONE),
    (0xDF812D, "Message Hold Time", "n", 3, 3, "Terminal", _NONE),
    (0xDF8130, "Hold Time Value", "b", 1, 1, "Terminal", _NONE),
    (0xDF8131, "Phone Message Table", "b", 0, UNBOUNDED, "Terminal", _NONE),
    (0xDF8132, "Minimum Relay Resistance Grace Period", "b", 2, 2, "Terminal", _NONE),
    (0xDF8133, "Maximum Relay Resistance Grace Period", "b", 2, 2, "Terminal", _NONE),
    (0xDF8134, "Terminal Expected Transmission Time For Relay Resistance C-APDU", "b", 2, 2,
     "Terminal", _NONE),
    (0xDF8135, "Terminal Expected Transmission Time For Relay Resistance R-APDU", "b", 2, 2,
     "Terminal", _NONE),
    (0xDF8136, "Relay Resistance Accuracy Threshold", "b", 2, 2, "Terminal", _NONE),
    (0xDF8137, "Relay Resistance Transmission Time Mismatch Threshold", "b", 1, 1, "Terminal",
     _NONE),
    (0xDF8301, "Terminal Relay Resistance Entropy", "b", 4, 4, "Kernel", _NONE),
    (0xDF8302, "Device Relay Resistance Entropy", "b", 4, 4, "ICC", _NONE),
    (0xDF8303, "Min Time For Processing Relay Resistance APDU", "b", 2, 2, "ICC", _NONE),
    (0xDF8304, "Max Time For Processing Relay Resistance APDU", "b", 2, 2, "ICC", _NONE),
    (0xDF8305, "Device Estimated Transmission Time For Relay Resistance R-APDU", "b", 2, 2,
     "ICC", _NONE),
    (0xDF8306, "Measured Relay Resistance Processing Time", "b", 2, 2, "Kernel", _NONE),
    (0xDF8307, "RRP Counter", "b", 1, 1, "Kernel", _NONE),
)

# EMV Contactless Book C-3 (Kernel 3), Annex A: tags with one meaning across kernels.
_C3: tuple[_Row, ...] = (
    (0x9F5A, "Application Program Identifier (Program ID)", "b", 1, 16, "ICC", (0xBF0C,)),
    (0x9F68, "Card Additional Processes", "b", 4, 4, "ICC", _NONE),
    (0x9F6C, "Card Transaction Qualifiers (CTQ)", "b", 2, 2, "ICC", _NONE),
)

# Tags whose meaning depends on the kernel: the default view names both (or the
# meaning most readers expect), and each kernel has its own entry below.
_SHARED: tuple[_Row, ...] = (
    (0x9F5B, "DSDOL (C-2) / Issuer Script Results (C-3)", "b", 0, UNBOUNDED, "ICC", _NONE),
    (0x9F5D, "Application Capabilities Information (C-2) / Available Offline Spending "
     "Amount (C-3)", "b", 3, 6, "ICC", _NONE),
    (0x9F69, "UDOL (C-2) / Card Authentication Related Data (C-3)", "b", 0, 252, "ICC", _T70),
    (0x9F6B, "Track 2 Data", "b", 1, 19, "ICC", _T70),
    (0x9F6E, "Third Party Data (C-2) / Form Factor Indicator (C-3)", "b", 4, 32, "ICC", _NONE),
    (0x9F7C, "Customer Exclusive Data (C-3) / Merchant Custom Data (C-2)", "b", 0, 32, "ICC",
     _NONE),
)

_KERNEL_ROWS: dict[int, tuple[_Row, ...]] = {
    2: (
        (0x9F5B, "DSDOL", "b", 0, UNBOUNDED, "ICC", _NONE),
        (0x9F5D, "Application Capabilities Information", "b", 3, 3, "ICC", _NONE),
        (0x9F66, "PUNATC (Track2)", "b", 2, 2, "ICC", _T70),
        (0x9F69, "UDOL", "b", 0, 252, "ICC", _T70),
        (0x9F6B, "Track 2 Data", "b", 1, 19, "ICC", _T70),
        (0x9F6C, "Mag-stripe Application Version Number (Card)", "b", 2, 2, "ICC", _T70),
        (0x9F6E, "Third Party Data", "b", 5, 32, "ICC", (0x70, 0xBF0C)),
        (0x9F7C, "Merchant Custom Data", "b", 20, 20, "Terminal", _NONE),
    ),
    3: (
        (0x9F5B, "Issuer Script Results", "b", 0, UNBOUNDED, "Terminal", _NONE),
        (0x9F5D, "Available Offline Spending Amount (AOSA)", "n", 6, 6, "ICC", _NONE),
        (0x9F69, "Card Authentication Related Data", "b", 5, 16, "ICC", _T70),
        (0x9F6B, "Card CVM Limit", "n", 6, 6, "ICC", _NONE),
        (0x9F6E, "Form Factor Indicator (FFI)", "b", 4, 4, "ICC", _NONE),
        (0x9F7C, "Customer Exclusive Data (CED)", "b", 0, 32, "ICC", _NONE),
    ),
}

# fmt: on


def _index(rows: tuple[_Row, ...], spec: str) -> dict[int, TagInfo]:
    return {row[0]: TagInfo(*row, spec=spec) for row in rows}


_TAGS: Mapping[int, TagInfo] = MappingProxyType(
    _index(_BOOK3, "Book 3")
    | _index(_ENTRY_POINT, "Book B")
    | _index(_C2, "C-2")
    | _index(_C3, "C-3")
    | _index(_SHARED, "C-2/C-3")
)
_BY_KERNEL: Mapping[int, Mapping[int, TagInfo]] = MappingProxyType(
    {k: MappingProxyType(_index(rows, f"C-{k}")) for k, rows in _KERNEL_ROWS.items()}
)


def tag_info(tag: int, *, kernel: int | None = None) -> TagInfo | None:
    """The dictionary entry for ``tag``, as ``kernel`` (2 or 3) reads it if given."""
    if kernel is not None and tag in _BY_KERNEL.get(kernel, {}):
        return _BY_KERNEL[kernel][tag]
    return _TAGS.get(tag)


def all_tags() -> Mapping[int, TagInfo]:
    """The default dictionary, read-only, by tag."""
    return _TAGS


# --- reference tables: currencies, countries, AIDs ---------------------------------------------


def _load(name: str, key: str) -> Mapping[str, Mapping[str, Any]]:
    """A table from ``emv/data``: its ``key`` object (each file names its ``source``)."""
    text = resources.files("emv").joinpath("data", name).read_text(encoding="utf-8")
    table: dict[str, dict[str, Any]] = json.loads(text)[key]
    return MappingProxyType({code: MappingProxyType(row) for code, row in table.items()})


_CURRENCIES = _load("iso4217.json", "currencies")
_COUNTRIES = _load("iso3166.json", "countries")

# fmt: off
# Application identifiers by prefix (RID, or RID + PIX), as the schemes register them
# (ISO/IEC 7816-5 RIDs; scheme AIDs as published by the schemes and EMVCo).
_AIDS: Mapping[str, str] = MappingProxyType({
    "A000000003": "Visa",
    "A0000000031010": "Visa Credit/Debit",
    "A0000000032010": "Visa Electron",
    "A0000000032020": "V PAY",
    "A0000000033010": "Visa Interlink",
    "A0000000038010": "Visa Plus",
    "A0000000980840": "Visa US Common Debit",
    "A000000004": "Mastercard",
    "A0000000041010": "Mastercard Credit/Debit",
    "A0000000042203": "Mastercard US Maestro",
    "A0000000043060": "Maestro",
    "A0000000046000": "Cirrus",
    "A000000025": "American Express",
    "A00000002501": "American Express",
    "A000000029": "LINK",
    "A000000065": "JCB",
    "A0000000651010": "JCB",
    "A000000152": "Discover",
    "A0000001523010": "Discover",
    "A0000001524010": "Discover US Common Debit",
    "A000000277": "Interac",
    "A0000002771010": "Interac",
    "A000000324": "Discover",
    "A000000333": "UnionPay",
    "A000000333010101": "UnionPay Debit",
    "A000000333010102": "UnionPay Credit",
    "A000000333010103": "UnionPay Quasi-credit",
})

# fmt: on


def currency(code: bytes) -> tuple[str, str, int | None] | None:
    """ISO 4217: a numeric currency code as EMV holds it (n 3, e.g. ``0978``) ->
    ``("EUR", "Euro", 2)`` (alpha code, name, minor units), or None if unknown."""
    row = _CURRENCIES.get(code.hex()[-3:]) if len(code) == 2 else None
    return None if row is None else (row["alpha"], row["name"], row["exponent"])


def country(code: bytes) -> tuple[str, str] | None:
    """ISO 3166-1: a numeric country code (n 3, e.g. ``0826``) -> ``("GB", "United Kingdom")``."""
    row = _COUNTRIES.get(code.hex()[-3:]) if len(code) == 2 else None
    return None if row is None else (row["alpha2"], row["name"])


def aid_name(aid: bytes) -> str | None:
    """The scheme product an AID (or its RID) belongs to, by longest known prefix."""
    text = aid.hex().upper()
    for end in range(len(text), 9, -2):
        name = _AIDS.get(text[:end])
        if name is not None:
            return name
    return None


# --- decoding values ---------------------------------------------------------------------------

_DATE_TAGS = frozenset({0x5F24, 0x5F25, 0x9A})
_TIME_TAGS = frozenset({0x9F21})
_NUMERIC_AMOUNT_TAGS = frozenset(
    {
        0x9F02,
        0x9F03,
        0x9F50,
        0x9F5D,
        0x9F6B,
        0xDF8104,
        0xDF8105,
        0xDF8123,
        0xDF8124,
        0xDF8125,
        0xDF8126,
    }
)
_BINARY_AMOUNT_TAGS = frozenset({0x81, 0x9F04, 0x9F1B, 0x9F3A})
_CURRENCY_TAGS = frozenset({0x5F2A, 0x9F42, 0x9F3C, 0x9F3B})
_COUNTRY_TAGS = frozenset({0x5F28, 0x9F1A})
_AID_TAGS = frozenset({0x4F, 0x84, 0x9D, 0x9F06})
_TRACK2_TAGS = frozenset({0x57, 0x9F6B})
_COUNTER_TAGS = frozenset({0x9F13, 0x9F14, 0x9F17, 0x9F23, 0x9F36})
_DOL_TAGS = frozenset({0x8C, 0x8D, 0x97, 0x9F38, 0x9F49, 0x9F4F, 0x9F51, 0xDF811A})
_C2_DOL_TAGS = frozenset({0x9F5B, 0x9F69})  # DSDOL and UDOL, for Kernel 2 only


@dataclass(frozen=True, slots=True)
class _Money:
    """How to show amounts in one tree: decimals and, if known, the currency code."""

    exponent: int
    alpha: str | None

    @classmethod
    def of(cls, objects: Sequence[tlv.Tlv]) -> _Money:
        """Currency from 5F2A (else 9F42); exponent from 5F36 (else 9F44), else the
        currency's ISO 4217 minor units, else 2 (Book 3 Annex A: 5F36, 9F44)."""
        found = tlv.index(objects)
        known = currency(found.get(0x5F2A, b"")) or currency(found.get(0x9F42, b""))
        for tag in (0x5F36, 0x9F44):
            digits = _bcd(found.get(tag, b""))
            if digits is not None and len(digits) == 2:
                return cls(int(digits), known[0] if known else None)
        if known is not None and known[2] is not None:
            return cls(known[2], known[0])
        return cls(2, known[0] if known else None)

    def format(self, minor_units: int) -> str:
        units, minor = divmod(minor_units, 10**self.exponent)
        text = f"{units:,}" + (f".{minor:0{self.exponent}d}" if self.exponent else "")
        return f"{text} {self.alpha}" if self.alpha else text


def _bcd(value: bytes) -> str | None:
    """The digits of a BCD value, or None if a nibble is not a digit."""
    digits = value.hex()
    return digits if digits.isdigit() else None


def _text(value: bytes) -> str:
    """a / an / ans values: ISO/IEC 8859 text, unprintable characters shown as '.'."""
    chars = value.decode("latin-1")
    return '"' + "".join(c if c.isprintable() else "." for c in chars) + '"'


def _year(yy: str) -> int:
    """A two-digit year: 00-49 is 20YY, 50-99 is 19YY (Book 4 §6.7.3)."""
    return 2000 + int(yy) if int(yy) < 50 else 1900 + int(yy)


def _date(value: bytes) -> str | None:
    """YYMMDD (n 6) -> ISO 8601, or None if it is no date."""
    digits = _bcd(value)
    if digits is None or len(digits) != 6:
        return None
    mm, dd = int(digits[2:4]), int(digits[4:])
    if not (1 <= mm <= 12 and 1 <= dd <= 31):
        return None
    return f"{_year(digits[:2])}-{mm:02d}-{dd:02d}"


def _time(value: bytes) -> str | None:
    digits = _bcd(value)
    if digits is None or len(digits) != 6:
        return None
    return f"{digits[:2]}:{digits[2:4]}:{digits[4:]}"


def _compressed(value: bytes) -> str:
    """cn: digits left justified, trailing 'F' padding dropped; an inner 'F' (a masked
    digit, see :mod:`emv.masking`) shows as '*'."""
    return value.hex().upper().rstrip("F").replace("F", "*")


def _track2(value: bytes) -> str:
    """Track 2 (ISO/IEC 7813): PAN 'D' YYMM service-code discretionary-data ['F']."""
    digits = value.hex().upper().rstrip("F")
    pan, sep, rest = digits.partition("D")
    if not sep or len(rest) < 7 or not rest[:7].isdigit():
        return f"PAN {pan.replace('F', '*')}"
    expiry = f"{_year(rest[:2])}-{rest[2:4]}"
    return f"PAN {pan.replace('F', '*')}, expiry {expiry}, service code {rest[4:7]}" + (
        f", discretionary {rest[7:]}" if rest[7:] else ""
    )


def _afl(value: bytes) -> list[str]:
    """AFL entries (Book 3 §10.2): SFI, first and last record, records for ODA."""
    if len(value) % 4:
        return []
    entries = [value[i : i + 4] for i in range(0, len(value), 4)]
    return [f"SFI {e[0] >> 3} records {e[1]}-{e[2]} ({e[3]} for ODA)" for e in entries]


def _dol_lines(value: bytes, kernel: int | None) -> list[str]:
    try:
        entries = dol.parse_dol(value)
    except dol.DolError as err:
        return [f"not a valid DOL: {err}"]
    return [f"{tlv.tag_hex(e.tag)} {_name(e.tag, kernel)} [{e.length}]" for e in entries]


def _name(tag: int, kernel: int | None) -> str:
    info = tag_info(tag, kernel=kernel)
    return info.name if info else "Unknown tag"


def _bitfield_lines(tag: int, value: bytes) -> tuple[list[str], str | None]:
    try:
        return BITFIELDS[tag].from_bytes(value).describe(), None
    except ValueError as err:
        return [], str(err)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A primitive value read for people: one line of meaning, detail lines, a note."""

    text: str | None = None
    details: tuple[str, ...] = ()
    note: str | None = None


def _numeric(tag: int, value: bytes, money: _Money) -> _Decoded:
    digits = _bcd(value)
    if digits is None:
        return _Decoded(note="not BCD")
    if tag in _DATE_TAGS:
        date = _date(value)
        return _Decoded(date) if date else _Decoded(note="not a valid date")
    if tag in _TIME_TAGS:
        return _Decoded(_time(value))
    if tag in _NUMERIC_AMOUNT_TAGS:
        return _Decoded(money.format(int(digits)))
    if tag in _CURRENCY_TAGS:
        codes = [value[i : i + 2] for i in range(0, len(value), 2)]
        return _Decoded(", ".join(_currency_text(code) for code in codes))
    if tag in _COUNTRY_TAGS:
        known = country(value)
        return _Decoded(f"{known[0]} ({known[1]})" if known else "unknown country")
    return _Decoded(digits)


def _currency_text(code: bytes) -> str:
    known = currency(code)
    return f"{known[0]} ({known[1]})" if known else f"unknown currency {code.hex()}"


def _binary(info: TagInfo, value: bytes, money: _Money, kernel: int | None) -> _Decoded:
    tag = info.tag
    if tag in _BINARY_AMOUNT_TAGS:
        return _Decoded(money.format(int.from_bytes(value, "big")))
    if tag in _COUNTER_TAGS:
        return _Decoded(str(int.from_bytes(value, "big")))
    if tag in _TRACK2_TAGS:
        return _Decoded(_track2(value))
    if tag in _AID_TAGS:
        if value.isascii() and value.decode("ascii").isprintable():
            return _Decoded(_text(value))
        return _Decoded(aid_name(value))
    if tag == 0x94:
        return _Decoded(details=tuple(_afl(value)))
    if tag in _DOL_TAGS or (info.spec == "C-2" and tag in _C2_DOL_TAGS):
        return _Decoded(details=tuple(_dol_lines(value, kernel)))
    return _Decoded()


def _decode(info: TagInfo | None, value: bytes, money: _Money, kernel: int | None) -> _Decoded:
    """Read one primitive value according to its dictionary entry."""
    if info is None:
        return _Decoded()
    if not info.length_ok(len(value)):
        return _Decoded(note=f"expected {info.expected_length()}")
    if info.tag in BITFIELDS and _generic_meaning(info):
        lines, problem = _bitfield_lines(info.tag, value)
        return _Decoded(details=tuple(lines), note=problem)
    if info.fmt in ("a", "an", "ans"):
        return _Decoded(_text(value))
    if info.fmt == "cn":
        return _Decoded(_compressed(value))
    if info.fmt == "n":
        return _numeric(info.tag, value, money)
    return _binary(info, value, money, kernel)


# --- rendering ---------------------------------------------------------------------------------

_INDENT = "  "


def _generic_meaning(info: TagInfo) -> bool:
    """Whether ``info`` (perhaps a kernel's reading) means what the default dictionary
    means: bit-field decoding and PAN masking are keyed on the default meanings."""
    generic = _TAGS.get(info.tag)
    return generic is not None and generic.name == info.name


def _shown(obj: tlv.Tlv, info: TagInfo | None, mask: bool) -> bytes:
    """The value as printed: PANs masked (Kernel 3's 9F6B, Card CVM Limit, is no PAN)."""
    if not mask or (info is not None and not _generic_meaning(info)):
        return obj.value
    if obj.children is not None:
        return mask_tlv(obj.value)
    return mask_value(obj.tag, obj.value)


def _lines(obj: tlv.Tlv, depth: int, money: _Money, mask: bool, kernel: int | None) -> list[str]:
    info = tag_info(obj.tag, kernel=kernel)
    pad = _INDENT * depth
    head = f"{pad}{tlv.tag_hex(obj.tag)} {info.name if info else 'Unknown tag'} [{len(obj.value)}]"
    if obj.children is not None:
        lines = [head]
        for child in obj.children:
            lines.extend(_lines(child, depth + 1, money, mask, kernel))
        return lines
    value = _shown(obj, info, mask)
    decoded = _decode(info, value, money, kernel)
    line = f"{head} {value.hex().upper()}"
    if decoded.text:
        line += f" = {decoded.text}"
    if decoded.note:
        line += f" ({decoded.note})"
    return [line] + [f"{pad}{_INDENT}- {detail}" for detail in decoded.details]


def render(objects: Sequence[tlv.Tlv], *, mask: bool = True, kernel: int | None = None) -> str:
    """A TLV tree for people: one line per object (tag, name, [length], value in hex
    and ``= meaning``), templates with their children indented, bit fields and
    lists one item per line below their object. PANs are masked unless
    ``mask=False``; ``kernel`` chooses the meaning of kernel-specific tags."""
    money = _Money.of(objects)
    return "\n".join(line for obj in objects for line in _lines(obj, 0, money, mask, kernel))


def _json(obj: tlv.Tlv, money: _Money, mask: bool, kernel: int | None) -> dict[str, Any]:
    info = tag_info(obj.tag, kernel=kernel)
    value = _shown(obj, info, mask)
    out: dict[str, Any] = {
        "tag": tlv.tag_hex(obj.tag),
        "name": info.name if info else "Unknown tag",
        "length": len(obj.value),
        "value": value.hex().upper(),
    }
    if obj.children is not None:
        out["children"] = [_json(child, money, mask, kernel) for child in obj.children]
        return out
    decoded = _decode(info, value, money, kernel)
    out["decoded"] = decoded.text
    out["details"] = list(decoded.details)
    out["note"] = decoded.note
    return out


def to_json(
    objects: Sequence[tlv.Tlv], *, mask: bool = True, kernel: int | None = None
) -> list[dict[str, Any]]:
    """The same as :func:`render`, for tools: per object ``tag``, ``name``, ``length``,
    ``value`` (hex) and either ``children`` (templates) or ``decoded``, ``details``
    and ``note`` (primitives; None / [] when there is nothing to say)."""
    money = _Money.of(objects)
    return [_json(obj, money, mask, kernel) for obj in objects]
