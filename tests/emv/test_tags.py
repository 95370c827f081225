"""The tag dictionary (EMV 4.4 Book 3 Annex A1, Books B, C-2, C-3) and the TLV printer."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv import tags, tlv
from emv.tlv import Tlv

# A PPSE FCI as a Visa card returns it (SELECT 2PAY.SYS.DDF01), EMV Book B §3.3.
PPSE_FCI = bytes.fromhex(
    "6F33840E325041592E5359532E4444463031A521BF0C1E611C4F07A0000000031010"
    "500A566973612044656269748701019F2A0103"
)

# A Kernel 3 (qVSDC) GET PROCESSING OPTIONS response, format 2 (Book C-3 §5.2):
# AIP, AFL, ATC, Track 2, PSN, IAD, AC, CID, CTQ.
TRACK2 = bytes.fromhex("4761739001010010D26112010000012345678F")
GPO_RESPONSE = Tlv.template(
    0x77,
    Tlv.primitive(0x82, bytes.fromhex("2000")),
    Tlv.primitive(0x94, bytes.fromhex("18010100")),
    Tlv.primitive(0x9F36, bytes.fromhex("0011")),
    Tlv.primitive(0x57, TRACK2),
    Tlv.primitive(0x5F34, bytes.fromhex("01")),
    Tlv.primitive(0x9F10, bytes.fromhex("06011203A00000")),
    Tlv.primitive(0x9F26, bytes.fromhex("1122334455667788")),
    Tlv.primitive(0x9F27, bytes.fromhex("80")),
    Tlv.primitive(0x9F6C, bytes.fromhex("8000")),
).to_bytes()

# A READ RECORD response (Book 3 §6.5.11): record template with PAN, Track 2, name, dates.
READ_RECORD = Tlv.template(
    0x70,
    Tlv.primitive(0x5A, bytes.fromhex("4761739001010010")),
    Tlv.primitive(0x57, TRACK2),
    Tlv.primitive(0x5F20, b"CARDHOLDER/VISA"),
    Tlv.primitive(0x5F24, bytes.fromhex("261130")),
    Tlv.primitive(0x5F28, bytes.fromhex("0826")),
).to_bytes()


def _render(data: bytes, **kwargs: bool) -> list[str]:
    return tags.render(tlv.decode(data), **kwargs).splitlines()


# --- the dictionary ------------------------------------------------------------------------


def test_at_least_200_tags_with_valid_formats_ranges_and_sources() -> None:
    dictionary = tags.all_tags()
    assert len(dictionary) >= 200
    for tag, info in dictionary.items():
        assert info.tag == tag
        assert info.name and info.name != "Unknown tag"
        assert info.fmt in tags.FORMATS
        assert info.source in tags.SOURCES
        assert 0 <= info.min_len <= info.max_len <= tags.UNBOUNDED
        # templates are constructed, but for '80' (format 1: values with no tags, Book 3 §6.5)
        assert all(
            tlv.is_constructed(template) or template == 0x80 for template in info.templates
        ), tlv.tag_hex(tag)


def _kernel_entries() -> list[tags.TagInfo]:
    """Every meaning in the dictionary: the default one and each kernel's own."""
    meanings: dict[tuple[int, str], tags.TagInfo] = {}
    for kernel in (None, 2, 3):
        for tag in tags.all_tags():
            info = tags.tag_info(tag, kernel=kernel)
            assert info is not None
            meanings[(tag, info.name)] = info
    return list(meanings.values())


@pytest.mark.parametrize(
    "info", _kernel_entries(), ids=lambda info: f"{tlv.tag_hex(info.tag)}-{info.spec}"
)
def test_every_tag_is_well_formed_and_round_trips_through_tlv(info: tags.TagInfo) -> None:
    assert tlv.parse_tag(tlv.tag_hex(info.tag)) == info.tag
    obj = (
        Tlv.template(info.tag, Tlv.primitive(0x9F36, b"\x00\x01"))
        if info.constructed
        else Tlv.primitive(info.tag, bytes(max(info.min_len, 1)))
    )
    assert tlv.decode(obj.to_bytes()) == [obj]


def test_book3_facts() -> None:
    amount = tags.tag_info(0x9F02)
    assert amount is not None
    assert (amount.fmt, amount.min_len, amount.max_len, amount.source) == ("n", 6, 6, "Terminal")
    pan = tags.tag_info(0x5A)
    assert pan is not None and (pan.fmt, pan.max_len, pan.templates) == ("cn", 10, (0x70, 0x77))
    assert tags.tag_info(0xBF0C) is not None
    assert tags.tag_info(0x9F2A) is not None
    assert tags.tag_info(0xDF8129) is not None
    assert tags.tag_info(0xDF7F) is None


def test_kernel_specific_meanings() -> None:
    def name(tag: int, kernel: int | None = None) -> str | None:
        info = tags.tag_info(tag, kernel=kernel)
        return info.name if info else None

    assert name(0x9F6B) == "Track 2 Data"
    assert name(0x9F6B, 2) == "Track 2 Data"
    assert name(0x9F6B, 3) == "Card CVM Limit"
    assert name(0x9F66) == "Terminal Transaction Qualifiers (TTQ)"
    assert name(0x9F66, 2) == "PUNATC (Track2)"
    assert name(0x9F66, 3) == "Terminal Transaction Qualifiers (TTQ)"
    assert name(0x9F6E, 3) == "Form Factor Indicator (FFI)"
    assert name(0x9F6E) == "Third Party Data (C-2) / Form Factor Indicator (C-3)"
    assert name(0x9F02, 7) == "Amount, Authorised (Numeric)"


def test_reference_tables() -> None:
    assert tags.currency(bytes.fromhex("0978")) == ("EUR", "Euro", 2)
    assert tags.currency(bytes.fromhex("0392")) == ("JPY", "Yen", 0)
    assert tags.currency(bytes.fromhex("0001")) is None
    assert tags.country(bytes.fromhex("0826")) == ("GB", "United Kingdom")
    assert tags.country(bytes.fromhex("0250")) == ("FR", "France")
    assert tags.country(b"\x08") is None
    assert tags.aid_name(bytes.fromhex("A0000000031010")) == "Visa Credit/Debit"
    assert tags.aid_name(bytes.fromhex("A0000000041010")) == "Mastercard Credit/Debit"
    assert tags.aid_name(bytes.fromhex("A0000000039999")) == "Visa"
    assert tags.aid_name(bytes.fromhex("A0000009990101")) is None


@pytest.mark.parametrize("name", ["iso4217.json", "iso3166.json"])
def test_data_files_say_where_they_come_from(name: str) -> None:
    text = resources.files("emv").joinpath("data", name).read_text(encoding="utf-8")
    assert "iso-codes" in json.loads(text)["source"]


# --- rendering -----------------------------------------------------------------------------


def test_renders_a_ppse_fci() -> None:
    assert _render(PPSE_FCI) == [
        "6F File Control Information (FCI) Template [51]",
        '  84 Dedicated File (DF) Name [14] 325041592E5359532E4444463031 = "2PAY.SYS.DDF01"',
        "  A5 File Control Information (FCI) Proprietary Template [33]",
        "    BF0C FCI Issuer Discretionary Data [30]",
        "      61 Application Template [28]",
        "        4F Application Identifier (ADF Name) [7] A0000000031010 = Visa Credit/Debit",
        '        50 Application Label [10] 56697361204465626974 = "Visa Debit"',
        "        87 Application Priority Indicator [1] 01",
        "        9F2A Kernel Identifier [1] 03",
        "          - Kernel type: international kernel",
        "          - Short kernel ID: Kernel 3 (Visa)",
    ]


def test_renders_a_gpo_response() -> None:
    lines = _render(GPO_RESPONSE)
    assert lines[0] == "77 Response Message Template Format 2 [70]"
    assert "  82 Application Interchange Profile (AIP) [2] 2000" in lines
    assert "    - DDA supported" in lines
    assert "  94 Application File Locator (AFL) [4] 18010100" in lines
    assert "    - SFI 3 records 1-1 (0 for ODA)" in lines
    assert "  9F36 Application Transaction Counter (ATC) [2] 0011 = 17" in lines
    assert "  9F27 Cryptogram Information Data (CID) [1] 80" in lines
    assert "    - Cryptogram type: ARQC" in lines
    assert "    - Online PIN required" in lines
    assert "  5F34 Application PAN Sequence Number [1] 01 = 01" in lines


def test_read_record_masks_pans_by_default() -> None:
    text = "\n".join(_render(READ_RECORD))
    assert "4761739001010010" not in text
    assert (
        "5A Application Primary Account Number (PAN) [8] 476173FFFFFF0010 = 476173******0010"
        in text
    )
    assert "PAN 476173******0010, expiry 2026-11, service code 201" in text
    assert "5F24 Application Expiration Date [3] 261130 = 2026-11-30" in text
    assert "5F28 Issuer Country Code [2] 0826 = GB (United Kingdom)" in text
    assert '5F20 Cardholder Name [15] 43415244484F4C4445522F56495341 = "CARDHOLDER/VISA"' in text


def test_read_record_in_clear_with_mask_false() -> None:
    text = "\n".join(_render(READ_RECORD, mask=False))
    assert (
        "5A Application Primary Account Number (PAN) [8] 4761739001010010 = 4761739001010010"
        in text
    )
    assert (
        "57 Track 2 Equivalent Data [19] 4761739001010010D26112010000012345678F"
        " = PAN 4761739001010010, expiry 2026-11, service code 201,"
        " discretionary 0000012345678"
    ) in text


def test_tvr_and_ttq_in_words() -> None:
    objects = [
        Tlv.primitive(0x95, bytes.fromhex("8000008800")),
        Tlv.primitive(0x9F66, bytes.fromhex("36000000")),
    ]
    assert tags.render(objects).splitlines() == [
        "95 Terminal Verification Results (TVR) [5] 8000008800",
        "  - Offline data authentication was not performed",
        "  - Transaction exceeds floor limit",
        "  - Merchant forced transaction online",
        "9F66 Terminal Transaction Qualifiers (TTQ) [4] 36000000",
        "  - EMV mode supported",
        "  - EMV contact chip supported",
        "  - Online PIN supported",
        "  - Signature supported",
    ]


def test_cvm_list_rules_in_words() -> None:
    (line, *rules) = tags.render(
        [Tlv.primitive(0x8E, bytes.fromhex("000000000000000042031E031F00"))]
    ).splitlines()
    assert line.startswith("8E Cardholder Verification Method (CVM) List [14]")
    assert any("Enciphered PIN verified online" in rule for rule in rules)
    assert any("No CVM required" in rule for rule in rules)


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        ([], "1,234.56"),
        ([Tlv.primitive(0x5F2A, bytes.fromhex("0978"))], "1,234.56 EUR"),
        ([Tlv.primitive(0x5F2A, bytes.fromhex("0392"))], "123,456 JPY"),
        ([Tlv.primitive(0x5F2A, bytes.fromhex("0048"))], "123.456 BHD"),
        ([Tlv.primitive(0x5F36, b"\x03")], "123.456"),
        (
            [Tlv.primitive(0x9F44, b"\x00"), Tlv.primitive(0x9F42, bytes.fromhex("0826"))],
            "123,456 GBP",
        ),
    ],
)
def test_amounts_use_the_currency_exponent_in_the_tree(extra: list[Tlv], shown: str) -> None:
    amount = Tlv.primitive(0x9F02, bytes.fromhex("000000123456"))
    first = tags.render([amount, *extra]).splitlines()[0]
    assert first == f"9F02 Amount, Authorised (Numeric) [6] 000000123456 = {shown}"


@pytest.mark.parametrize(
    ("tag", "value", "shown"),
    [
        (0x9A, "261126", "2026-11-26"),
        (0x5F25, "991231", "1999-12-31"),
        (0x9F21, "235959", "23:59:59"),
        (0x5F2A, "0978", "EUR (Euro)"),
        (0x9F42, "0840", "USD (US Dollar)"),
        (0x9F1A, "0826", "GB (United Kingdom)"),
        (0x9F1A, "0276", "DE (Germany)"),
        (0x81, "0001E240", "1,234.56"),
        (0x9F35, "22", "22"),
        (0x9F1C, "3132333435363738", '"12345678"'),
        (0x84, "A0000000041010", "Mastercard Credit/Debit"),
    ],
)
def test_decodes_values(tag: int, value: str, shown: str) -> None:
    line = tags.render([Tlv.primitive(tag, bytes.fromhex(value))])
    assert line.endswith(f" {value.upper()} = {shown}")


@pytest.mark.parametrize(
    ("tag", "value", "note"),
    [
        (0x9F1A, "082600", "(expected 2 bytes)"),
        (0x95, "0000", "(expected 5 bytes)"),
        (0x9F02, "00000000123A", "(not BCD)"),
        (0x9A, "261326", "(not a valid date)"),
        (0x9F37, "0102", "(expected 4 bytes)"),
    ],
)
def test_bad_values_show_hex_and_a_note(tag: int, value: str, note: str) -> None:
    line = tags.render([Tlv.primitive(tag, bytes.fromhex(value))])
    assert f"[{len(value) // 2}] {value} " in line
    assert note in line


def test_unknown_tags_and_invalid_dols() -> None:
    lines = tags.render(
        [Tlv.primitive(0xDF7F, b"\x01\x02"), Tlv.primitive(0x8C, bytes.fromhex("9F02069F"))]
    ).splitlines()
    assert lines[0] == "DF7F Unknown tag [2] 0102"
    assert lines[2].startswith(
        "  - not a valid DOL: DOL error at offset 3: tag starting 9F is cut off"
    )


def test_dols_list_their_entries() -> None:
    lines = tags.render([Tlv.primitive(0x9F38, bytes.fromhex("9F66049F0206DF7F01"))]).splitlines()
    assert lines[1:] == [
        "  - 9F66 Terminal Transaction Qualifiers (TTQ) [4]",
        "  - 9F02 Amount, Authorised (Numeric) [6]",
        "  - DF7F Unknown tag [1]",
    ]


def test_kernel_choice_changes_decoding_and_masking() -> None:
    cvm_limit = [Tlv.primitive(0x9F6B, bytes.fromhex("000000005000"))]
    assert tags.render(cvm_limit, kernel=3) == ("9F6B Card CVM Limit [6] 000000005000 = 50.00")
    assert "000000005000" not in tags.render(cvm_limit)  # as Track 2 Data it is masked
    punatc = [Tlv.primitive(0x9F66, bytes.fromhex("00F0"))]
    assert tags.render(punatc, kernel=2) == "9F66 PUNATC (Track2) [2] 00F0"
    udol = [Tlv.primitive(0x9F69, bytes.fromhex("9F6A04"))]
    assert tags.render(udol, kernel=2).splitlines()[1] == (
        "  - 9F6A Unpredictable Number (Numeric) [4]"
    )


# --- JSON --------------------------------------------------------------------------------------


def test_to_json_structure() -> None:
    (fci,) = tags.to_json(tlv.decode(PPSE_FCI))
    assert set(fci) == {"tag", "name", "length", "value", "children"}
    assert (fci["tag"], fci["length"]) == ("6F", 51)
    df_name, proprietary = fci["children"]
    assert df_name == {
        "tag": "84",
        "name": "Dedicated File (DF) Name",
        "length": 14,
        "value": "325041592E5359532E4444463031",
        "decoded": '"2PAY.SYS.DDF01"',
        "details": [],
        "note": None,
    }
    entry = proprietary["children"][0]["children"][0]
    kernel = entry["children"][3]
    assert kernel["tag"] == "9F2A" and kernel["details"][1] == "Short kernel ID: Kernel 3 (Visa)"
    json.dumps(fci)  # plain JSON types only


def test_to_json_masks_primitives_and_template_values() -> None:
    (record,) = tags.to_json(tlv.decode(READ_RECORD))
    assert "4761739001010010" not in json.dumps(record)
    assert record["children"][0]["decoded"] == "476173******0010"
    (clear,) = tags.to_json(tlv.decode(READ_RECORD), mask=False)
    assert "4761739001010010" in clear["value"]


# --- never raises ------------------------------------------------------------------------------

_DICTIONARY_TAGS = sorted(tags.all_tags())
_PRIMITIVE_TAGS = [tag for tag in _DICTIONARY_TAGS if not tlv.is_constructed(tag)]
_TEMPLATE_TAGS = [tag for tag in _DICTIONARY_TAGS if tlv.is_constructed(tag)]
_values = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([bytes.fromhex(v) for v in ("0978", "0826", "261126", "FF", "")]),
)
_leaves = st.builds(Tlv.primitive, st.sampled_from([*_PRIMITIVE_TAGS, 0xDF7F, 0x5F7F]), _values)
_trees = st.recursive(
    _leaves,
    lambda children: st.builds(
        lambda tag, kids: Tlv.template(tag, *kids),
        st.sampled_from([*_TEMPLATE_TAGS, 0xE1]),
        st.lists(children, max_size=4),
    ),
    max_leaves=20,
)


@given(st.lists(_trees, max_size=4), st.booleans(), st.sampled_from([None, 2, 3]))
def test_render_and_to_json_never_raise_on_generated_trees(
    objects: list[Tlv], mask: bool, kernel: int | None
) -> None:
    text = tags.render(objects, mask=mask, kernel=kernel)
    assert len(text.splitlines()) >= sum(1 for obj in objects for _ in obj.walk())
    json.dumps(tags.to_json(objects, mask=mask, kernel=kernel))


@given(st.binary(max_size=300), st.booleans(), st.sampled_from([None, 2, 3]))
def test_render_never_raises_on_lenient_parses_of_random_bytes(
    data: bytes, mask: bool, kernel: int | None
) -> None:
    objects = tlv.decode(data, strict=False)
    tags.render(objects, mask=mask, kernel=kernel)
    json.dumps(tags.to_json(objects, mask=mask, kernel=kernel))
