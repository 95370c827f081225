"""BER-TLV per EMV Book 3 Annex B: structure, strictness, lenient mode, properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv import tlv
from emv.tlv import Tlv, TlvError

# A PPSE FCI as a Visa card returns it (SELECT 2PAY.SYS.DDF01), EMV Book B §3.3.
PPSE_FCI = bytes.fromhex(
    "6F33840E325041592E5359532E4444463031A521BF0C1E611C4F07A0000000031010"
    "500A566973612044656269748701019F2A0103"
)


def test_decodes_nested_templates_with_offsets() -> None:
    (fci,) = tlv.decode(PPSE_FCI)
    assert fci.tag == 0x6F and fci.constructed
    df_name, proprietary = fci.children or ()
    assert df_name == Tlv.primitive(0x84, b"2PAY.SYS.DDF01")
    assert df_name.offset == 2
    entry = tlv.find(fci.children or (), 0x61)
    assert entry is not None and entry.offset == 23
    assert tlv.index([fci])[0x4F] == bytes.fromhex("A0000000031010")
    assert tlv.index([fci])[0x9F2A] == b"\x03"
    assert proprietary.tag == 0xA5


def test_decoding_the_same_bytes_again_gives_equal_objects_in_a_new_list() -> None:
    first = tlv.decode(PPSE_FCI)
    first.append(Tlv.primitive(0x5A, b"\x12"))  # the caller's list is the caller's own
    again = tlv.decode(bytearray(PPSE_FCI))
    assert again == tlv.decode(PPSE_FCI, strict=False) == first[:1]
    assert len(again) == 1 and again is not first


def test_multi_byte_tags_and_long_lengths() -> None:
    value = bytes(range(256)) * 2
    encoded = bytes.fromhex("DF8101820200") + value
    (obj,) = tlv.decode(encoded)
    assert obj.tag == 0xDF8101 and obj.value == value
    assert obj.to_bytes() == encoded
    assert tlv.decode(bytes.fromhex("9F0206000000001234"))[0].tag == 0x9F02


def test_length_forms_81_to_84_accepted_and_minimal_on_encode() -> None:
    for field in ("8103", "820003", "83000003", "8400000003"):
        (obj,) = tlv.decode(bytes.fromhex("5A" + field + "112233"))
        assert obj.value == bytes.fromhex("112233")
        assert obj.to_bytes() == bytes.fromhex("5A03112233")
    assert tlv.encode_length(0x7F) == b"\x7f"
    assert tlv.encode_length(0x80) == b"\x81\x80"
    assert tlv.encode_length(0x100) == b"\x82\x01\x00"
    assert tlv.encode_length(0xFFFFFFFF) == b"\x84\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="more than 4"):
        tlv.encode_length(1 << 32)


def test_padding_between_objects_is_skipped() -> None:
    data = bytes.fromhex("00005A0112FF00FF9F360200017000FF")
    objects = tlv.decode(data)
    assert [o.tag for o in objects] == [0x5A, 0x9F36, 0x70]
    assert objects[1].offset == 8
    padded_template = bytes.fromhex("7008 00 5A0112 FF 8A01 00".replace(" ", ""))
    # the last 00 is the value of 8A; the 00 and FF inside 70 are padding
    (template,) = tlv.decode(padded_template)
    assert [c.tag for c in template.children or ()] == [0x5A, 0x8A]


def test_ff_tags_of_kernel_data_with_ff_padding_off() -> None:
    # EMV Contactless Book C-2 Torn Record (FF8101) holding a PAN and an ATC
    torn = Tlv.template(0xFF8101, Tlv.primitive(0x5A, b"\x12"), Tlv.primitive(0x9F36, b"\x00\x07"))
    data = torn.to_bytes()
    assert tlv.decode(data, ff_padding=False) == [torn]
    # on the card interface FF is padding: the same bytes are no longer one template
    assert tlv.decode(data, strict=False) != [torn]
    assert tlv.decode(b"\x00" + data + b"\x00", ff_padding=False) == [torn]


def test_duplicates_preserved_in_order() -> None:
    data = bytes.fromhex("9F100201029F100203049F1001FF")
    objects = tlv.decode(data)
    assert [o.value.hex() for o in objects] == ["0102", "0304", "ff"]
    assert [o.value.hex() for o in tlv.find_all(objects, 0x9F10)] == ["0102", "0304", "ff"]
    assert tlv.index(objects)[0x9F10] == b"\x01\x02"
    assert tlv.encode(objects) == data


@pytest.mark.parametrize(
    ("hex_data", "offset", "problem"),
    [
        ("5A", 1, "no length field"),
        ("9F", 0, "cut off by the end of data"),
        ("9F80", 1, "leading zero"),
        ("9F818181818101", 0, "longer than 4 bytes"),
        ("5A80", 1, "indefinite length"),
        ("5A85000000000001", 1, "announces 5 bytes"),
        ("5A8200", 1, "length field is cut off"),
        ("5A0301", 0, "declares length 3 but only 1"),
        ("9F3602000170035A0212", 7, "declares length 2 but only 1"),
        ("70045A030102", 2, "declares length 3 but only 2"),
        ("6F05A5055A0101", 2, "declares length 5 but only 3"),
    ],
)
def test_malformed_input_names_offset(hex_data: str, offset: int, problem: str) -> None:
    with pytest.raises(TlvError) as caught:
        tlv.decode(bytes.fromhex(hex_data))
    assert caught.value.offset == offset
    assert problem in caught.value.problem
    assert f"offset {offset}" in str(caught.value)


def test_error_inside_template_names_the_template() -> None:
    with pytest.raises(TlvError, match=r"\(in template 70\)"):
        tlv.decode(bytes.fromhex("70045A030102"))


def test_lenient_mode_keeps_what_it_can() -> None:
    # last object's length runs past the end: clipped
    objects = tlv.decode(bytes.fromhex("9F360200015A08476173"), strict=False)
    assert objects[0].value == b"\x00\x01"
    assert objects[1].tag == 0x5A and objects[1].value == bytes.fromhex("476173")
    # a trailing byte that is not an object is dropped
    assert tlv.decode(bytes.fromhex("5A01019F"), strict=False) == [Tlv.primitive(0x5A, b"\x01")]
    # a template with garbage at its end keeps the good children
    (template,) = tlv.decode(bytes.fromhex("70055A0101DF"), strict=False)
    assert template.children == (Tlv.primitive(0x5A, b"\x01"),)


def test_builders_check_the_constructed_bit() -> None:
    with pytest.raises(ValueError, match="constructed"):
        Tlv.primitive(0x70, b"")
    with pytest.raises(ValueError, match="primitive"):
        Tlv.template(0x5A)
    template = Tlv.template(
        0x77, Tlv.primitive(0x9F27, b"\x80"), Tlv.primitive(0x9F36, b"\x00\x01")
    )
    assert template.to_bytes().hex().upper() == "77099F2701809F36020001"


def test_tag_helpers() -> None:
    assert tlv.parse_tag("9f 02") == 0x9F02
    assert tlv.tag_hex(0xBF0C) == "BF0C"
    assert tlv.is_constructed(0xBF0C) and not tlv.is_constructed(0x9F02)
    for bad, message in [("9F", "cut off"), ("5A5A", "after the tag"), ("zz", "not hex")]:
        with pytest.raises(ValueError, match=message):
            tlv.parse_tag(bad)
    with pytest.raises(ValueError, match="positive"):
        tlv.tag_bytes(0)
    for invalid in (0x9F8101FF, 0x9F0201, 0x1F):
        with pytest.raises(ValueError, match="not a valid tag"):
            Tlv.primitive(invalid, b"")
        with pytest.raises(ValueError, match="not a valid tag"):
            tlv.encode_primitive(invalid, b"")
    with pytest.raises(ValueError, match="constructed"):
        tlv.encode_primitive(0x70, b"")


# --- properties ----------------------------------------------------------------------------

_FIRST_PRIMITIVE = [b for b in range(1, 0xFF) if not b & 0x20 and b & 0x1F != 0x1F]
_FIRST_CONSTRUCTED = [b for b in range(1, 0xFF) if b & 0x20 and b & 0x1F != 0x1F]


@st.composite
def _tags(draw: st.DrawFn, constructed: bool) -> int:
    if draw(st.booleans()):
        return draw(st.sampled_from(_FIRST_CONSTRUCTED if constructed else _FIRST_PRIMITIVE))
    first = 0x3F if constructed else 0x1F
    first |= draw(st.sampled_from([0x00, 0x40, 0x80] if constructed else [0x00, 0x40, 0x80, 0xC0]))
    middle = draw(st.lists(st.integers(0x81, 0xFF), max_size=2))
    last = draw(st.integers(0x01, 0x7F))
    tag = first
    for byte in [*middle, last]:
        tag = (tag << 8) | byte
    return tag


def _objects(max_leaves: int = 12) -> st.SearchStrategy[list[Tlv]]:
    leaf = st.builds(Tlv.primitive, _tags(constructed=False), st.binary(max_size=300))
    tree = st.recursive(
        leaf,
        lambda kids: st.builds(
            lambda tag, children: Tlv.template(tag, *children),
            _tags(constructed=True),
            st.lists(kids, max_size=4),
        ),
        max_leaves=max_leaves,
    )
    return st.lists(tree, max_size=5)


@given(_objects())
def test_encode_decode_round_trip(objects: list[Tlv]) -> None:
    data = tlv.encode(objects)
    assert tlv.decode(data) == objects
    assert tlv.decode(data, strict=False) == objects
    assert tlv.encode(tlv.decode(data)) == data


@given(_tags(constructed=False), st.binary(max_size=300))
def test_encode_primitive_is_the_primitive_objects_encoding(tag: int, value: bytes) -> None:
    assert tlv.encode_primitive(tag, value) == Tlv.primitive(tag, value).to_bytes()


def _depth_first(obj: Tlv, depth: int = 0) -> list[tuple[int, Tlv]]:
    """The order walk() promises, written the plain recursive way."""
    found = [(depth, obj)]
    for child in obj.children or ():
        found += _depth_first(child, depth + 1)
    return found


@given(_objects())
def test_walk_is_depth_first_with_the_nesting_depth(objects: list[Tlv]) -> None:
    for top in objects:
        walked = list(top.walk())
        expected = _depth_first(top)
        assert [d for d, _ in walked] == [d for d, _ in expected]
        assert all(a is b for (_, a), (_, b) in zip(walked, expected, strict=True))
    everything = [obj for top in objects for _, obj in _depth_first(top)]
    assert list(tlv.find_all(objects, 0x9F10)) == [o for o in everything if o.tag == 0x9F10]


@given(_objects(), st.lists(st.sampled_from([b"\x00", b"\xff"]), max_size=3))
def test_padding_does_not_change_the_parse(objects: list[Tlv], pad: list[bytes]) -> None:
    padded = b"".join(pad) + b"".join(o.to_bytes() + b"".join(pad) for o in objects)
    assert tlv.decode(padded) == objects


@given(st.binary(max_size=200))
def test_random_bytes_hypothesis(data: bytes) -> None:
    _decode_or_tlv_error(data)
    tlv.decode(data, strict=False)  # the lenient mode never raises


def _decode_or_tlv_error(data: bytes) -> None:
    try:
        objects = tlv.decode(data)
    except TlvError as err:
        assert 0 <= err.offset <= len(data)
    else:
        # a valid parse re-encodes to the input less padding and length-form slack
        assert tlv.decode(tlv.encode(objects)) == objects


def test_100k_random_byte_strings_only_tlv_error_or_parse() -> None:
    rng = random.Random(20261126)
    tlvish = [b"\x5a", b"\x70", b"\x9f", b"\x81", b"\x82", b"\x00", b"\xff", b"\xbf\x0c"]
    for _ in range(100_000):
        size = rng.randrange(0, 48)
        if rng.random() < 0.5:
            data = rng.randbytes(size)
        else:  # biased towards TLV-looking bytes, to reach deeper paths
            data = b"".join(
                rng.choice(tlvish) + rng.randbytes(rng.randrange(3)) for _ in range(size // 3)
            )
        _decode_or_tlv_error(data)
        tlv.decode(data, strict=False)
