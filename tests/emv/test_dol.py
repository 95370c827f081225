"""Data Object Lists per EMV 4.4 Book 3 §5.4: parsing, building (padding and
truncation by format), and the card's split of DOL related data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv import dol, tags, tlv
from emv.dol import DolEntry, DolError

# A Kernel 3 PDOL: TTQ, amounts, country, TVR, currency, date, type, UN (Book C-3 §5.2).
PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def test_parses_a_pdol() -> None:
    entries = dol.parse_dol(PDOL)
    assert entries == [
        DolEntry(0x9F66, 4),
        DolEntry(0x9F02, 6),
        DolEntry(0x9F03, 6),
        DolEntry(0x9F1A, 2),
        DolEntry(0x95, 5),
        DolEntry(0x5F2A, 2),
        DolEntry(0x9A, 3),
        DolEntry(0x9C, 1),
        DolEntry(0x9F37, 4),
    ]
    assert dol.encode_dol(entries) == PDOL
    assert dol.parse_dol(b"") == []


@pytest.mark.parametrize(
    ("data", "offset", "problem"),
    [
        ("9F02069F", 3, "tag starting 9F is cut off"),
        ("9F02069F37", 3, "tag 9F37 has no length byte"),
        ("9F02060004", 3, "byte 00 is padding"),
        ("9505000101", 2, "byte 00 is padding"),
        ("9F8080", 1, "leading zero"),
        ("9F81818101", 0, "longer than 4 bytes"),
    ],
)
def test_parse_errors_name_the_offset(data: str, offset: int, problem: str) -> None:
    with pytest.raises(DolError) as caught:
        dol.parse_dol(bytes.fromhex(data))
    assert caught.value.offset == offset
    assert problem in str(caught.value)
    assert f"offset {offset}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def _build(tag: int, length: int, value: str) -> str:
    return dol.build_dol_data([DolEntry(tag, length)], {tag: bytes.fromhex(value)}).hex().upper()


@pytest.mark.parametrize(
    ("tag", "length", "value", "sent"),
    [
        # n: leading zeroes / keep the rightmost bytes
        (0x9F02, 6, "123456", "000000123456"),
        (0x9F02, 2, "000000123456", "3456"),
        (0x9A, 3, "261126", "261126"),
        # cn: trailing 'F's / keep the leftmost bytes
        (0x5A, 10, "4761739001010010", "4761739001010010FFFF"),
        (0x5A, 4, "4761739001010010", "47617390"),
        # b: trailing zeroes / keep the leftmost bytes
        (0x9F37, 6, "11223344", "112233440000"),
        (0x9F37, 2, "11223344", "1122"),
        # an and ans: like b
        (0x9F1C, 10, "3132333435363738", "31323334353637380000"),
        (0x9F1C, 4, "3132333435363738", "31323334"),
        (0x9F4E, 3, "53484F50", "53484F"),
        # zero-length entry: nothing is sent
        (0x9F02, 0, "000000123456", ""),
        (0x5A, 0, "47", ""),
    ],
)
def test_build_pads_and_truncates_by_format(tag: int, length: int, value: str, sent: str) -> None:
    assert _build(tag, length, value) == sent


def test_build_fills_absent_unknown_and_constructed_objects_with_zeroes() -> None:
    entries = [DolEntry(0x9F37, 4), DolEntry(0xDF7F, 3), DolEntry(0xBF0C, 2), DolEntry(0x95, 5)]
    values = {0xDF7F: b"\x01\x02\x03\x04", 0xBF0C: b"\x11\x22", 0x95: bytes.fromhex("0000008000")}
    data = dol.build_dol_data(entries, values)
    assert data.hex().upper() == "0000000001020300000000008000"
    assert dol.build_dol_data([DolEntry(0x9F02, 6)], {}) == bytes(6)


def test_split_cuts_data_by_the_dol() -> None:
    entries = dol.parse_dol(PDOL)
    data = bytes.fromhex("360000000000000010000000000000000826000000000009782611260011223344")
    values = dol.split_dol_data(entries, data)
    assert values[0x9F02] == bytes.fromhex("000000001000")
    assert values[0x9F37] == bytes.fromhex("11223344")
    assert list(values) == [entry.tag for entry in entries]
    assert dol.build_dol_data(entries, values) == data


def test_split_rejects_data_of_the_wrong_length() -> None:
    entries = dol.parse_dol(PDOL)
    with pytest.raises(DolError, match="DOL related data is 32 bytes but the DOL asks for 33"):
        dol.split_dol_data(entries, bytes(32))
    with pytest.raises(DolError, match="is 34 bytes"):
        dol.split_dol_data(entries, bytes(34))


def test_split_keeps_the_first_value_of_a_repeated_tag() -> None:
    entries = [DolEntry(0x9F37, 1), DolEntry(0x9F37, 1)]
    assert dol.split_dol_data(entries, b"\x01\x02") == {0x9F37: b"\x01"}


# --- properties --------------------------------------------------------------------------------

_PRIMITIVE_TAGS = sorted(tag for tag in tags.all_tags() if not tlv.is_constructed(tag))
_random_tags = st.one_of(
    st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F),
    st.builds(lambda a, b: (a << 8) | b, st.sampled_from([0x5F, 0x9F, 0xDF]), st.integers(1, 0x7F)),
    st.builds(lambda b: 0xDF8100 | b, st.integers(0, 0x7F)),
)
_primitive_tags = st.one_of(st.sampled_from(_PRIMITIVE_TAGS), _random_tags).filter(
    lambda tag: not tlv.is_constructed(tag)
)
_entries = st.lists(
    st.builds(DolEntry, _primitive_tags, st.integers(0, 255)),
    max_size=12,
    unique_by=lambda entry: entry.tag,
)


@given(_entries)
def test_encode_parse_round_trip(entries: list[DolEntry]) -> None:
    assert dol.parse_dol(dol.encode_dol(entries)) == entries


@given(_entries, st.data())
def test_split_build_round_trip(entries: list[DolEntry], data: st.DataObject) -> None:
    values = {
        entry.tag: data.draw(st.binary(min_size=entry.length, max_size=entry.length))
        for entry in entries
    }
    related = dol.build_dol_data(entries, values)
    assert len(related) == sum(entry.length for entry in entries)
    assert dol.split_dol_data(entries, related) == values
    assert dol.build_dol_data(entries, dol.split_dol_data(entries, related)) == related


@given(_primitive_tags, st.binary(max_size=40), st.integers(0, 40))
def test_fitted_values_have_the_requested_length_and_keep_the_right_end(
    tag: int, value: bytes, length: int
) -> None:
    fitted = dol.fit_value(tag, value, length)
    assert len(fitted) == length
    info = tags.tag_info(tag)
    kept = min(length, len(value))
    if info is not None and info.fmt == "n":
        assert fitted[length - kept :] == value[len(value) - kept :]
    else:
        assert fitted[:kept] == value[:kept]
