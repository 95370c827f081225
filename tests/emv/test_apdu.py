"""APDUs per ISO/IEC 7816-4 §5.1 and §5.6, EMV command builders per Book 3 §6.5."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv import apdu
from emv.apdu import ApduError, CommandApdu, CryptogramType, ResponseApdu

VISA_AID = bytes.fromhex("A0000000031010")

bytes_ = st.integers(min_value=0, max_value=255)
short_data = st.binary(min_size=1, max_size=255)
extended_data = st.binary(min_size=1, max_size=700)
short_le = st.integers(min_value=1, max_value=256)
extended_le = st.integers(min_value=1, max_value=65536)


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    data = draw(st.one_of(st.just(b""), short_data, extended_data))
    le = draw(st.one_of(st.none(), short_le, extended_le))
    return CommandApdu(draw(bytes_), draw(bytes_), draw(bytes_), draw(bytes_), data, le)


@given(commands())
def test_command_round_trips_in_every_form(c: CommandApdu) -> None:
    assert CommandApdu.parse(c.to_bytes()) == c
    assert CommandApdu.parse(c.to_bytes(extended=True)) == c
    if c.fits_short:
        assert c.to_bytes() == c.to_bytes(extended=False)
    else:
        with pytest.raises(ApduError, match="short form"):
            c.to_bytes(extended=False)


# Raw encodings written out byte by byte from ISO/IEC 7816-4 §5.1, independently of to_bytes.
def _short_le(le: int) -> bytes:
    return bytes((le % 256,))


def _ext_le(le: int) -> bytes:
    return (le % 65536).to_bytes(2, "big")


@given(st.binary(min_size=4, max_size=4), short_data, short_le, extended_data, extended_le)
def test_raw_encodings_of_each_case_parse_and_encode_back(
    header: bytes, sdata: bytes, sle: int, edata: bytes, ele: int
) -> None:
    lc_s, lc_e = bytes((len(sdata),)), b"\x00" + len(edata).to_bytes(2, "big")
    forms = [
        (header, 1, False, b"", None),
        (header + _short_le(sle), 2, False, b"", sle),
        (header + lc_s + sdata, 3, False, sdata, None),
        (header + lc_s + sdata + _short_le(sle), 4, False, sdata, sle),
        (header + b"\x00" + _ext_le(ele), 2, True, b"", ele),
        (header + lc_e + edata, 3, True, edata, None),
        (header + lc_e + edata + _ext_le(ele), 4, True, edata, ele),
    ]
    for raw, case, extended, data, le in forms:
        c = CommandApdu.parse(raw)
        assert (c.case, c.data, c.le) == (case, data, le)
        assert (c.cla, c.ins, c.p1, c.p2) == tuple(header)
        assert c.to_bytes(extended=extended) == raw


def test_le_zero_means_256_short_and_65536_extended() -> None:
    assert CommandApdu.parse(bytes.fromhex("00B2010C00")).le == 256
    assert CommandApdu.parse(bytes.fromhex("0084000000")).le == 256
    assert CommandApdu.parse(bytes.fromhex("00B00000000000")).le == 65536
    assert CommandApdu.parse(bytes.fromhex("00D60000000001AA0000")).le == 65536


def test_default_form_is_short_until_it_does_not_fit() -> None:
    assert len(CommandApdu(0, 0xB0, 0, 0, b"", 256).to_bytes()) == 5
    assert CommandApdu(0, 0xB0, 0, 0, b"", 257).to_bytes().hex() == "00b00000000101"
    big = CommandApdu(0x80, 0xAE, 0x80, 0, b"\x11" * 256, 256)
    assert big.to_bytes()[4:7] == bytes.fromhex("000100") and big.to_bytes()[-2:] == b"\x01\x00"
    assert CommandApdu(0, 0xA4, 0, 0).to_bytes(extended=True) == bytes.fromhex("00A40000")


@pytest.mark.parametrize(
    ("raw", "offset", "words"),
    [
        ("", 0, "header needs 4 bytes"),
        ("00A404", 3, "header needs 4 bytes"),
        ("00A404000E3250", 4, "announces 14 data bytes but only 2"),  # truncated data
        ("00A404000201", 4, "announces 2 data bytes but only 1"),
        ("00A4040002010200FF", 7, "leave 2 bytes"),  # Lc mismatch: too many bytes
        ("00A404000001", 5, "needs two length bytes"),  # extended marker, Le cut short
        ("00A4040000000001", 5, "Lc=0000"),  # extended Lc 0 followed by data
        ("00A40400000000000000", 5, "Lc=0000"),
        ("00A404000000030102", 5, "announces 3 data bytes but only 2"),
        ("00A40400000002010200", 9, "leave 1 bytes"),  # one byte where Le needs two
        ("00A4040000000201020000FF", 9, "leave 3 bytes"),
        ("00A40400000002010200000000", 9, "leave 4 bytes"),
    ],
)
def test_malformed_commands_are_rejected_with_offset(raw: str, offset: int, words: str) -> None:
    with pytest.raises(ApduError, match=words) as err:
        CommandApdu.parse(bytes.fromhex(raw))
    assert err.value.offset == offset
    assert f"offset {offset}" in str(err.value)


def test_extended_lc_beyond_the_data_is_rejected() -> None:
    raw = bytes.fromhex("80E2000000FFFF") + bytes(65534)
    with pytest.raises(ApduError, match="announces 65535 data bytes but only 65534"):
        CommandApdu.parse(raw)
    assert CommandApdu.parse(raw + b"\x00").case == 3


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"cla": 256}, "cla must be a byte"),
        ({"p2": -1}, "p2 must be a byte"),
        ({"data": bytes(65536)}, "at most 65535"),
        ({"le": 0}, "le must be None or 1..65536"),
        ({"le": 65537}, "le must be None or 1..65536"),
    ],
)
def test_invalid_fields_are_rejected(kwargs: dict[str, Any], words: str) -> None:
    fields: dict[str, Any] = {"cla": 0, "ins": 0xA4, "p1": 4, "p2": 0} | kwargs
    with pytest.raises(ApduError, match=words):
        CommandApdu(**fields)


def _looks_extended(raw: bytes | bytearray) -> bool:
    return len(raw) > 5 and raw[4] == 0


def test_random_bytes_give_a_valid_parse_or_apdu_error() -> None:
    rng = random.Random(7816)
    parsed = 0
    for _ in range(100_000):
        raw = bytearray(rng.randbytes(rng.choice((rng.randrange(12), rng.randrange(12, 300)))))
        if len(raw) > 5 and rng.random() < 0.5:  # aim Lc at the actual length now and then
            raw[4] = (len(raw) - rng.choice((5, 6))) & 0xFF
        try:
            c = CommandApdu.parse(bytes(raw))
        except ApduError as err:
            assert err.offset is not None and 0 <= err.offset <= len(raw)
            continue
        parsed += 1
        assert c.to_bytes(extended=_looks_extended(raw)) == raw
    assert parsed > 10_000


# --- responses and status words ---------------------------------------------------------------


@given(st.binary(max_size=300), bytes_, bytes_)
def test_response_round_trip(data: bytes, sw1: int, sw2: int) -> None:
    r = ResponseApdu.parse(data + bytes((sw1, sw2)))
    assert r == ResponseApdu(data, sw1, sw2)
    assert r.to_bytes() == data + bytes((sw1, sw2))
    assert r.sw == sw1 * 256 + sw2
    assert r.ok == (sw1 == 0x90 and sw2 == 0)


def test_response_needs_status_bytes() -> None:
    assert ResponseApdu.parse(b"\x90\x00").ok
    assert not ResponseApdu.parse(bytes.fromhex("6A82")).ok
    for raw in (b"", b"\x90"):
        with pytest.raises(ApduError, match=r"needs SW1 SW2 \(2 bytes\)"):
            ResponseApdu.parse(raw)
    with pytest.raises(ApduError, match="sw1 must be a byte"):
        ResponseApdu(b"", 0x900, 0)


@pytest.mark.parametrize(
    ("sw", "words"),
    [
        (0x9000, "normal processing"),
        (0x6283, "selected file invalidated"),
        (0x6985, "conditions of use not satisfied"),
        (0x6984, "referenced data invalidated"),
        (0x6A81, "function not supported"),
        (0x6A82, "file or application not found"),
        (0x6A83, "record not found"),
        (0x6A86, "incorrect parameters P1-P2"),
        (0x6A88, "referenced data or reference data not found"),
        (0x6700, "wrong length"),
        (0x6B00, "wrong parameters P1-P2"),
        (0x6D00, "instruction code not supported"),
        (0x6E00, "class not supported"),
        (0x6110, "16 bytes still available"),
        (0x6100, "256 bytes still available"),
        (0x6C20, "wrong Le field; exact length 32"),
        (0x63C2, "counter 2"),
        (0x63C0, "counter 0"),
        (0x6210, "triggering by the card"),
        (0x6A99, "wrong parameters P1-P2: SW2 99 not defined"),
        (0x6999, "command not allowed: SW2 99"),
        (0x9123, "proprietary"),
        (0x6012, "invalid status word 6012"),
        (0x1234, "invalid status word 1234"),
    ],
)
def test_sw_meaning(sw: int, words: str) -> None:
    assert words in apdu.sw_meaning(sw)


def test_sw_meaning_rejects_non_status_words() -> None:
    with pytest.raises(ApduError, match="status word must be"):
        apdu.sw_meaning(0x10000)


# --- builders: the bytes the specifications and published traces show ------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (apdu.select_ppse(), "00A404000E325041592E5359532E444446303100"),
        (apdu.select(VISA_AID), "00A4040007A000000003101000"),
        (apdu.select(bytes.fromhex("A000000004"), first=False), "00A4040205A00000000400"),
        (apdu.get_processing_options(b""), "80A8000002830000"),
        (
            apdu.get_processing_options(bytes.fromhex("3600C000000000001000")),
            "80A800000C830A3600C00000000000100000",
        ),
        (apdu.read_record(1, 1), "00B2010C00"),
        (apdu.read_record(2, 1), "00B2011400"),
        (apdu.read_record(30, 254), "00B2FEF400"),
        (apdu.generate_ac(CryptogramType.ARQC, bytes.fromhex("0102")), "80AE800002010200"),
        (apdu.generate_ac(0x40, b"\x01", cda=True), "80AE5000010100"),
        (apdu.generate_ac(CryptogramType.AAC, b"\x01"), "80AE0000010100"),
        (apdu.get_data(0x9F36), "80CA9F3600"),
        (apdu.get_data(0x9F17), "80CA9F1700"),
        (apdu.compute_cryptographic_checksum(bytes.fromhex("00000899")), "802A8E80040000089900"),
        (apdu.exchange_relay_resistance_data(bytes.fromhex("01020304")), "80EA0000040102030400"),
        (apdu.get_challenge(), "0084000000"),
        (apdu.internal_authenticate(bytes.fromhex("11223344")), "00880000041122334400"),
    ],
)
def test_builders_produce_published_bytes(command: CommandApdu, expected: str) -> None:
    assert command.to_bytes().hex().upper() == expected


def test_gpo_long_pdol_data_uses_two_byte_template_length() -> None:
    command = apdu.get_processing_options(bytes(200))
    assert command.data[:3] == bytes.fromhex("8381C8") and len(command.data) == 203


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: apdu.select(b""), "aid_or_name must be 1..16 bytes, got 0"),
        (lambda: apdu.select(bytes(17)), "aid_or_name must be 1..16 bytes, got 17"),
        (lambda: apdu.read_record(0, 1), "sfi must be 1..30, got 0"),
        (lambda: apdu.read_record(31, 1), "sfi must be 1..30, got 31"),
        (lambda: apdu.read_record(1, 0), "record must be 1..254, got 0"),
        (lambda: apdu.read_record(1, 255), "record must be 1..254, got 255"),
        (lambda: apdu.generate_ac(0x90, b"\x01"), "reference_control must be .* got 90"),
        (lambda: apdu.generate_ac(0xC0, b"\x01"), "got C0"),
        (lambda: apdu.generate_ac(CryptogramType.TC, b""), "cdol_data must not be empty"),
        (lambda: apdu.get_data(0x10000), "tag must fit P1 P2"),
        (lambda: apdu.get_data(0), "tag must fit P1 P2"),
        (lambda: apdu.compute_cryptographic_checksum(b""), "udol_data must not be empty"),
        (lambda: apdu.exchange_relay_resistance_data(bytes(3)), "must be 4 bytes, got 3"),
        (lambda: apdu.internal_authenticate(b""), "ddol_data must not be empty"),
    ],
)
def test_builders_validate_their_parameters(build: Callable[[], object], words: str) -> None:
    with pytest.raises(ApduError, match=words):
        build()


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("00A404000E325041592E5359532E444446303100", "SELECT 2PAY.SYS.DDF01"),
        ("00A4040007A000000003101000", "SELECT A0000000031010"),
        ("00A4040207A000000003101000", "SELECT A0000000031010 (next)"),
        ("80A8000002830000", "GET PROCESSING OPTIONS"),
        ("00B2021400", "READ RECORD SFI 2 record 2"),
        ("00B2010400", "READ RECORD SFI 0 record 1"),
        ("00B2010500", "READ RECORD P1 01 P2 05"),
        ("80AE900002010200", "GENERATE AC ARQC+CDA"),
        ("80AE400002010200", "GENERATE AC TC"),
        ("80AE000002010200", "GENERATE AC AAC"),
        ("80AEC00002010200", "GENERATE AC RFU"),
        ("80CA9F3600", "GET DATA 9F36"),
        ("80CA005A00", "GET DATA 5A"),
        ("802A8E80040000089900", "COMPUTE CRYPTOGRAPHIC CHECKSUM"),
        ("80EA0000040102030400", "EXCHANGE RELAY RESISTANCE DATA"),
        ("0084000000", "GET CHALLENGE"),
        ("00880000041122334400", "INTERNAL AUTHENTICATE"),
        ("0020008008241234FFFFFFFFFF", "VERIFY"),
        ("00C0000010", "GET RESPONSE"),
        ("00A4000000", "SELECT"),
        ("8012000000", "UNKNOWN (CLA 80 INS 12)"),
    ],
)
def test_command_names_for_traces(raw: str, name: str) -> None:
    assert apdu.command_name(CommandApdu.parse(bytes.fromhex(raw))) == name
