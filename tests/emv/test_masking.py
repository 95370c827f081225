"""PAN masking: what is shown, what is hidden, and that structure survives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emv import tlv
from emv.masking import mask_pan, mask_tlv, mask_value
from emv.tlv import Tlv

PAN = "4761739001010010"


def test_mask_pan_keeps_at_most_first_six_and_last_four() -> None:
    assert mask_pan(PAN) == "476173******0010"
    assert mask_pan("5413330089010012345") == "541333*********2345"
    assert mask_pan("123456789012") == "123******012"  # 12 digits: six stay hidden


@given(st.text(alphabet="0123456789", min_size=8, max_size=19))
def test_at_least_six_digits_or_half_hidden(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked.count("*") >= min(6, len(pan) // 2)
    shown = [c for c in masked if c != "*"]
    assert len(shown) <= 10


def test_bcd_tags_keep_length_and_padding() -> None:
    assert mask_value(0x5A, bytes.fromhex("5413330089010012345F")).hex().upper() == (
        "541333FFFFFFFFF2345F"
    )
    track2 = bytes.fromhex("4761739001010010D29122011143878089")
    assert mask_value(0x57, track2).hex().upper() == "476173FFFFFF0010D29122011143878089"
    assert mask_value(0x9F6B, track2) == mask_value(0x57, track2)


def test_track1_masks_only_the_pan() -> None:
    masked = mask_value(0x56, b"B4761739001010010^VISA TEST/CARD^2912201")
    assert masked == b"B476173******0010^VISA TEST/CARD^2912201"


def test_other_tags_untouched() -> None:
    assert mask_value(0x9F02, bytes.fromhex("000000001500")) == bytes.fromhex("000000001500")


def test_mask_tlv_masks_in_place_in_nested_templates() -> None:
    record = Tlv.template(
        0x70,
        Tlv.primitive(0x5F20, b"VISA TEST/CARD"),
        Tlv.template(0xA5, Tlv.primitive(0x5A, bytes.fromhex(PAN))),
        Tlv.primitive(0x57, bytes.fromhex(PAN + "D29122")),
    )
    data = record.to_bytes()
    masked = mask_tlv(data)
    assert len(masked) == len(data)
    assert PAN.encode() not in masked and bytes.fromhex(PAN) not in masked
    values = tlv.index(tlv.decode(masked))
    assert values[0x5A].hex().upper() == "476173FFFFFF0010"
    assert values[0x5F20] == b"VISA TEST/CARD"


def test_mask_tlv_handles_long_length_forms_and_garbage() -> None:
    data = bytes.fromhex("5A8108" + PAN)
    assert mask_tlv(data).hex().upper() == "5A8108476173FFFFFF0010"
    assert mask_tlv(b"\x01\x02\x03") == b"\x01\x02\x03"


@given(st.binary(max_size=80))
def test_mask_tlv_never_raises_keeps_length_and_is_idempotent(data: bytes) -> None:
    masked = mask_tlv(data)
    assert len(masked) == len(data)
    assert mask_tlv(masked) == masked


@given(
    st.sampled_from([0x5A, 0x57, 0x9F6B, 0x56]),
    st.text(alphabet="0123456789", min_size=12, max_size=19),
)
def test_masking_twice_changes_nothing(tag: int, pan: str) -> None:
    if tag == 0x56:
        value = f"B{pan}^TEST/CARD^2912".encode()
    else:
        suffix = "D2912201" if tag != 0x5A else ""
        digits = pan + suffix
        value = bytes.fromhex(digits + "F" * (len(digits) % 2))
    once = mask_value(tag, value)
    assert mask_value(tag, once) == once
    assert pan not in once.hex() and pan.encode() not in once
