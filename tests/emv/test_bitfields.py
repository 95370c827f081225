"""Bit-field data elements: Book 3 Annex C, Book 4 Annex A, Contactless Books B, C-2, C-3."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv.bitfields import (
    AIP,
    AUC,
    BITFIELDS,
    CID,
    CTQ,
    TSI,
    TTQ,
    TVR,
    AdditionalTerminalCapabilities,
    BitfieldError,
    CvmList,
    CvmResults,
    CvRule,
    KernelIdentifier,
    TerminalCapabilities,
)
from emv.tlv import tag_hex

BITMAPS = [
    AIP,
    AUC,
    TVR,
    TSI,
    TTQ,
    CTQ,
    CID,
    CvRule,
    CvmResults,
    TerminalCapabilities,
    AdditionalTerminalCapabilities,
]
LENGTHS = {
    AIP: 2,
    AUC: 2,
    TVR: 5,
    TSI: 2,
    TTQ: 4,
    CTQ: 2,
    CID: 1,
    CvRule: 2,
    CvmResults: 3,
    TerminalCapabilities: 3,
    AdditionalTerminalCapabilities: 5,
}


def _words(cls: Any, hex_value: str) -> list[str]:
    described: list[str] = cls.from_bytes(bytes.fromhex(hex_value)).describe()
    return described


@pytest.mark.parametrize("cls", BITMAPS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_bitmaps_round_trip_every_byte_value(cls: Any, data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=LENGTHS[cls], max_size=LENGTHS[cls]))
    value = cls.from_bytes(raw)
    assert value.to_bytes() == raw
    assert cls.from_bytes(value.to_bytes()) == value
    rebuilt = cls(**asdict(value))  # construction from keyword arguments
    assert rebuilt == value and hash(rebuilt) == hash(value)


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.binary(min_size=2, max_size=2), max_size=122),
)
def test_cvm_list_round_trips(x: int, y: int, rules: list[bytes]) -> None:
    raw = x.to_bytes(4, "big") + y.to_bytes(4, "big") + b"".join(rules)
    cvm_list = CvmList.from_bytes(raw)
    assert (cvm_list.amount_x, cvm_list.amount_y, len(cvm_list.rules)) == (x, y, len(rules))
    assert cvm_list.to_bytes() == raw
    assert CvmList.from_bytes(cvm_list.to_bytes()) == cvm_list
    assert CvmList(amount_x=x, amount_y=y, rules=cvm_list.rules) == cvm_list


@given(st.binary(min_size=1, max_size=8))
def test_kernel_identifier_round_trips(raw: bytes) -> None:
    kernel_id = KernelIdentifier.from_bytes(raw)
    assert kernel_id.to_bytes() == raw
    assert KernelIdentifier.from_bytes(kernel_id.to_bytes()) == kernel_id
    assert (kernel_id.kernel_type, kernel_id.short_kernel_id) == (raw[0] >> 6, raw[0] & 0x3F)


@pytest.mark.parametrize("cls", BITMAPS, ids=lambda cls: cls.__name__)
def test_bitmaps_reject_wrong_lengths(cls: Any) -> None:
    length = LENGTHS[cls]
    for wrong in {0, length - 1, length + 1}:
        with pytest.raises(BitfieldError, match=rf"expected {length} bytes, got {wrong}") as err:
            cls.from_bytes(bytes(wrong))
        assert cls.NAME in str(err.value)


@pytest.mark.parametrize(
    ("cls", "raw", "words"),
    [
        (CvmList, "", r"CVM List \(8E\): expected 8 \+ 2n bytes \(8..252\), got 0"),
        (CvmList, "00000000000000", "got 7"),
        (CvmList, "000000000000000042", "got 9"),
        (CvmList, "00" * 254, "got 254"),
        (KernelIdentifier, "", r"Kernel Identifier \(9F2A\): expected 1..8 bytes, got 0"),
        (KernelIdentifier, "00" * 9, "got 9"),
    ],
)
def test_variable_objects_reject_wrong_lengths(cls: Any, raw: str, words: str) -> None:
    with pytest.raises(BitfieldError, match=words):
        cls.from_bytes(bytes.fromhex(raw))


def test_registry_maps_each_tag_to_its_class() -> None:
    assert set(BITFIELDS) == {
        0x82, 0x8E, 0x95, 0x9B, 0x9F07, 0x9F27, 0x9F2A, 0x9F33, 0x9F34, 0x9F40, 0x9F66, 0x9F6C
    }  # fmt: skip
    for tag, cls in BITFIELDS.items():
        assert f"({tag_hex(tag)})" in cls.NAME
        assert isinstance(cls.from_bytes(bytes(LENGTHS.get(cls, 8))).describe(), list)


# --- published values in words ------------------------------------------------------------------


def test_ttq_of_real_visa_readers() -> None:
    # 36000000: qVSDC reader with contact chip, online PIN and signature (Book C-3 Annex A.2).
    assert _words(TTQ, "36000000") == [
        "EMV mode supported",
        "EMV contact chip supported",
        "Online PIN supported",
        "Signature supported",
    ]
    ttq = TTQ.from_bytes(bytes.fromhex("3600C000"))
    assert ttq.issuer_update_processing_supported and ttq.consumer_device_cvm_supported
    assert not ttq.mag_stripe_mode_supported and not ttq.offline_only_reader
    assert ttq.describe()[-2:] == [
        "Issuer Update Processing supported",
        "Consumer Device CVM supported",
    ]
    assert TTQ.from_bytes(bytes.fromhex("B6208000")).describe() == [
        "Mag-stripe mode supported",
        "EMV mode supported",
        "EMV contact chip supported",
        "Online PIN supported",
        "Signature supported",
        "(Contact chip) offline PIN supported",
        "Issuer Update Processing supported",
    ]
    assert TTQ(emv_mode_supported=True, cvm_required=True).to_bytes().hex() == "20400000"


def test_aip_values() -> None:
    mastercard = AIP.from_bytes(bytes.fromhex("1980"))
    assert mastercard.cda_supported and mastercard.emv_mode_supported
    assert mastercard.cardholder_verification_supported
    assert mastercard.terminal_risk_management_required and not mastercard.dda_supported
    assert _words(AIP, "5800") == [
        "SDA supported",
        "Cardholder verification is supported",
        "Terminal risk management is to be performed",
    ]
    assert _words(AIP, "2000") == ["DDA supported"]
    assert _words(AIP, "0001") == ["Relay Resistance Protocol supported"]
    assert _words(AIP, "001E") == [f"RFU bit b{bit} of byte 2 set" for bit in (5, 4, 3, 2)]


def test_cvm_list_of_a_real_card() -> None:
    cvm_list = CvmList.from_bytes(bytes.fromhex("000000000000000042031E031F03"))
    assert (cvm_list.amount_x, cvm_list.amount_y) == (0, 0)
    online_pin, signature, no_cvm = cvm_list.rules
    assert (online_pin.method, online_pin.condition) == (0x02, 0x03)
    assert online_pin.apply_next_if_unsuccessful
    assert (signature.method, signature.apply_next_if_unsuccessful) == (0x1E, False)
    assert (no_cvm.method, no_cvm.condition) == (0x1F, 0x03)
    assert cvm_list.describe() == [
        "Amount X: 0",
        "Amount Y: 0",
        "Rule 1: CVM: Enciphered PIN verified online; Condition: If terminal supports the CVM;"
        " Apply succeeding CV Rule if this CVM is unsuccessful",
        "Rule 2: CVM: Signature (paper); Condition: If terminal supports the CVM",
        "Rule 3: CVM: No CVM required; Condition: If terminal supports the CVM",
    ]


def test_cv_rule_codes_and_reserved_ranges() -> None:
    assert CvRule(method=0x02, condition=0x03, apply_next_if_unsuccessful=True).to_bytes() == (
        bytes.fromhex("4203")
    )
    assert _words(CvRule, "0106")[1].endswith("under X value")
    assert _words(CvRule, "2500") == ["CVM: payment system-specific CVM 25", "Condition: Always"]
    assert _words(CvRule, "3109")[0] == "CVM: issuer-specific CVM 31"
    assert _words(CvRule, "3F0A") == [
        "CVM: 3F (not available for use)",
        "Condition: RFU condition 0A",
    ]
    assert _words(CvRule, "1080") == [
        "CVM: RFU CVM 10",
        "Condition: payment system-specific condition 80",
    ]
    assert _words(CvRule, "8000")[-1] == "RFU bit b8 of byte 1 set"


def test_cvm_results() -> None:
    assert _words(CvmResults, "1F0302") == [
        "CVM performed: No CVM required",
        "CVM condition: If terminal supports the CVM",
        "CVM result: successful",
    ]
    assert _words(CvmResults, "420300")[0] == "CVM performed: Enciphered PIN verified online"
    assert _words(CvmResults, "420300")[2] == "CVM result: unknown"
    assert _words(CvmResults, "3F0000")[0] == "CVM performed: No CVM performed"
    assert _words(CvmResults, "1E0301")[2] == "CVM result: failed"
    assert _words(CvmResults, "1E0307")[2] == "CVM result: RFU result 07"


def test_tvr_values() -> None:
    tvr = TVR.from_bytes(bytes.fromhex("8000008000"))
    assert tvr.offline_data_authentication_not_performed and tvr.floor_limit_exceeded
    assert tvr.describe() == [
        "Offline data authentication was not performed",
        "Transaction exceeds floor limit",
    ]
    assert TVR(cda_failed=True).to_bytes().hex() == "0400000000"
    assert TVR(relay_resistance_performed=2).to_bytes().hex() == "0000000002"
    assert _words(TVR, "0000000002") == ["Relay resistance protocol: performed"]
    assert _words(TVR, "0000000001") == ["Relay resistance protocol: not performed"]
    assert _words(TVR, "0004000000") == ["RFU bit b3 of byte 2 set"]
    assert TVR.from_bytes(bytes.fromhex("0004000000")).rfu == 0x0004000000
    assert _words(TVR, "0000000000") == []


def test_tsi_auc_ctq_cid() -> None:
    assert _words(TSI, "E800") == [
        "Offline data authentication was performed",
        "Cardholder verification was performed",
        "Card risk management was performed",
        "Terminal risk management was performed",
    ]
    assert _words(TSI, "0380")[-1] == "RFU bit b8 of byte 2 set"
    auc = AUC.from_bytes(bytes.fromhex("FF00"))
    assert auc.valid_at_atms and auc.valid_for_international_goods
    assert not auc.domestic_cashback_allowed
    assert len(_words(AUC, "FFC0")) == 10
    assert _words(CTQ, "8000") == ["Online PIN required"]
    assert _words(CTQ, "0080") == ["Consumer Device CVM performed"]
    assert _words(CID, "80") == ["Cryptogram type: ARQC"]
    assert _words(CID, "40") == ["Cryptogram type: TC"]
    assert _words(CID, "00") == ["Cryptogram type: AAC"]
    assert CID.from_bytes(b"\x80").cryptogram_type == 2
    assert _words(CID, "0A") == [
        "Cryptogram type: AAC",
        "Advice required",
        "Reason/advice code: PIN Try Limit exceeded",
    ]
    assert _words(CID, "97") == [
        "Cryptogram type: ARQC",
        "Payment system-specific cryptogram: 1",
        "Reason/advice code: RFU reason 07",
    ]


def test_terminal_capabilities() -> None:
    caps = TerminalCapabilities.from_bytes(bytes.fromhex("E0F8C8"))
    assert caps.ic_with_contacts and caps.no_cvm_required and caps.cda and not caps.card_capture
    assert len(caps.describe()) == 3 + 5 + 3
    assert _words(TerminalCapabilities, "000010") == ["RFU bit b5 of byte 3 set"]
    additional = AdditionalTerminalCapabilities.from_bytes(bytes.fromhex("6000F0A001"))
    assert additional.describe() == [
        "Transaction type: goods",
        "Transaction type: services",
        "Data input: numeric keys",
        "Data input: alphabetic and special characters keys",
        "Data input: command keys",
        "Data input: function keys",
        "Data output: print, attendant",
        "Data output: display, attendant",
        "Data output: code table 1",
    ]


def test_kernel_identifier_kinds() -> None:
    assert _words(KernelIdentifier, "02") == [
        "Kernel type: international kernel",
        "Short kernel ID: Kernel 2 (Mastercard)",
    ]
    visa = KernelIdentifier.from_bytes(b"\x03")
    assert (visa.kernel_type, visa.short_kernel_id, visa.extended_kernel_id) == (0, 3, None)
    domestic = KernelIdentifier.from_bytes(bytes.fromhex("830528"))
    assert domestic.domestic and domestic.extended_kernel_id == bytes.fromhex("0528")
    assert domestic.describe() == [
        "Kernel type: domestic kernel with EMVCo format",
        "Short kernel ID: 3",
        "Extended kernel ID: 0528",
    ]
    assert _words(KernelIdentifier, "C1AABBCC")[2:] == [
        "Extended kernel ID: AABB",
        "Further bytes not used: CC",
    ]
    assert _words(KernelIdentifier, "430528") == [
        "Kernel type: RFU",
        "Short kernel ID: 3",
        "Further bytes not used: 0528",
    ]
    assert _words(KernelIdentifier, "2A")[1] == "Short kernel ID: 42 (no international kernel)"
    assert KernelIdentifier(kernel_type=2, short_kernel_id=1, rest=b"\x00\x01").to_bytes() == (
        bytes.fromhex("810001")
    )


# --- construction from keyword arguments is checked -----------------------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (
            lambda: TVR(relay_resistance_performed=4),
            r"Terminal Verification Results \(95\): relay_resistance_performed must be 0..3, got 4",
        ),
        (lambda: AIP(sda_supported=1), r"sda_supported must be a bool, got 1"),  # type: ignore[arg-type]
        (lambda: CID(reason_code=-1), r"reason_code must be 0..7, got -1"),
        (lambda: TVR(rfu=0x8000000000), r"rfu 8000000000 sets bits outside the RFU mask 4000000"),
        (lambda: TSI(rfu=-1), "rfu"),
        (lambda: CvmList(amount_x=1 << 32), r"amount_x must be 0..4294967295"),
        (lambda: CvmList(rules=(CvRule(),) * 123), "123 rules do not fit in 252 bytes"),
        (lambda: KernelIdentifier(kernel_type=4), "kernel_type must be 0..3, got 4"),
        (lambda: KernelIdentifier(short_kernel_id=64), "short_kernel_id must be 0..63, got 64"),
        (lambda: KernelIdentifier(rest=bytes(8)), "rest must be 0..7 bytes, got 8"),
    ],
)
def test_invalid_field_values_are_rejected(build: Callable[[], object], words: str) -> None:
    with pytest.raises(BitfieldError, match=words):
        build()


def test_value_equality_and_keyword_construction() -> None:
    assert TVR(cda_failed=True) == TVR.from_bytes(bytes.fromhex("0400000000"))
    assert TVR(cda_failed=True) != TVR(dda_failed=True)
    assert TSI().to_bytes() == AUC().to_bytes()
    assert TSI() != AUC()  # type: ignore[comparison-overlap]  # different data objects
    assert len({TVR(cda_failed=True), TVR.from_bytes(bytes.fromhex("0400000000"))}) == 1


def test_keyword_construction_takes_only_the_fields_by_name() -> None:
    with pytest.raises(
        TypeError, match=r"TVR.__init__\(\) got an unexpected keyword argument 'cda'"
    ):
        TVR(cda=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        TVR(True)  # type: ignore[call-arg]
    assert TVR(cda_failed=True, rfu=0).cda_failed
    assert TVR(cda_failed=True).dda_failed is False  # the others keep their defaults
    both = TVR.from_bytes(bytes.fromhex("0C00000000"))
    assert replace(TVR(cda_failed=True), dda_failed=True) == both
    with pytest.raises(BitfieldError, match="dda_failed must be a bool, got 1"):
        replace(TVR(), dda_failed=1)  # type: ignore[arg-type]  # replace() checks too


@pytest.mark.parametrize("cls", BITMAPS, ids=lambda cls: cls.__name__)
def test_a_bitmap_built_with_every_field_equals_its_decoding(cls: Any) -> None:
    raw = bytes(range(0x5A, 0x5A + LENGTHS[cls]))
    value = cls.from_bytes(raw)
    assert cls(**{f.name: getattr(value, f.name) for f in fields(cls)}) == value
    assert vars(cls(**asdict(value))) == vars(value)
