"""The card as ISO/IEC 7816-4 asks: ATS, PPSE, SELECT, a status word for every command
whatever its bytes, state reset on SELECT and on a new tap; the card show printout;
personalisation through an HSM-held issuer key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emv import apdu, tlv
from emv.crypto import oda
from emv.link import CardRemoved, Link
from hce.card import Card, HsmSigner, MemoryCounterStore, personalise, show_profile
from hce.card.card import ATS
from hce.hsm.soft import SoftHsm

VISA = bytes.fromhex("A0000000031010")


@pytest.fixture
def selected(plastic):
    plastic.send(apdu.select_ppse())
    plastic.select(VISA)
    return plastic


def test_a_card_is_a_link_and_answers_rats_with_an_ats(make_plastic) -> None:
    card = make_plastic()
    assert isinstance(card, Link)
    with pytest.raises(CardRemoved):
        card.transceive(apdu.select_ppse().to_bytes())
    assert card.power_on() == ATS == bytes.fromhex("057880E000")
    card.power_off()
    with pytest.raises(CardRemoved):
        card.transceive(apdu.select_ppse().to_bytes())


def test_ppse_lists_each_application(plastic, plastic_profile) -> None:
    answer = plastic.send(apdu.select_ppse())
    assert answer.sw == 0x9000
    (fci,) = tlv.decode(answer.data)
    assert fci.tag == 0x6F and tlv.find([fci], 0x84).value == apdu.PPSE
    entries = list(tlv.find_all([fci], 0x61))
    assert len(entries) == 1
    entry = tlv.index(entries)
    app = plastic_profile.applications[0]
    assert entry == {0x4F: VISA, 0x50: b"VISA CREDIT", 0x87: b"\x01", 0x9F2A: b"\x03"}
    assert app.aid == VISA


def test_select_answers_the_fci_with_the_pdol(plastic, plastic_profile) -> None:
    fci = plastic.select(VISA)
    assert tlv.find(fci, 0x84).value == VISA
    assert tlv.find(fci, 0x9F38).value == plastic_profile.applications[0].pdol
    assert tlv.find(fci, 0x50).value == b"VISA CREDIT"


def test_partial_selection_by_rid(plastic) -> None:
    answer = plastic.send(apdu.select(VISA[:5]))
    assert answer.sw == 0x9000
    assert tlv.find(tlv.decode(answer.data), 0x84).value == VISA
    assert plastic.sw(apdu.select(VISA[:5], first=False)) == 0x6A82  # no next occurrence


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("B0A4040007A0000000031010", 0x6E00),  # unknown class
        ("80A4040007A000000003101000", 0x6E00),  # SELECT in the proprietary class
        ("00A4000007A000000003101000", 0x6A86),  # SELECT by file id: P1 00
        ("00A4040C07A000000003101000", 0x6A86),  # SELECT P2 0C
        ("00A4040000", 0x6700),  # SELECT with no name
        ("00A4040005A0000000", 0x6700),  # Lc longer than the data
        ("00A4040007A000000099999900", 0x6A82),  # no such application
        ("0012000000", 0x6D00),  # unknown instruction
        ("80A8000002830000", 0x6985),  # GPO with nothing selected
        ("00B2010C00", 0x6985),  # READ RECORD with nothing selected
        ("A4", 0x6700),  # not even a header
    ],
)
def test_status_words_before_an_application_is_selected(plastic, command: str, sw: int) -> None:
    assert plastic.sw(bytes.fromhex(command)) == sw


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("00B2011400", 0x6985),  # READ RECORD before GPO
        ("80AE80001D" + "00" * 29 + "00", 0x6985),  # GENERATE AC: not in qVSDC
        ("00A8000002830000", 0x6E00),  # GPO in the ISO class
        ("80A8010002830000", 0x6A86),  # GPO P1 01
        ("80A8000000", 0x6700),  # GPO with no data
        ("80A80000038300", 0x6700),  # Lc says 3, 2 data bytes follow
        ("80A8000002830000", 0x6700),  # PDOL data of the wrong length
        ("80A8000002840000", 0x6A80),  # not a Command Template
        ("80CA9F3600", 0x9000),  # GET DATA ATC
        ("80CA9F1700", 0x6A88),  # GET DATA PIN Try Counter: not served
        ("80CA000000", 0x6A88),
        ("00CA9F3600", 0x6E00),  # GET DATA in the ISO class
        ("80CA9F360101", 0x6700),  # GET DATA with data
        ("0020008000", 0x6D00),  # VERIFY: no offline PIN on this card
    ],
)
def test_status_words_of_the_visa_applet(selected, command: str, sw: int) -> None:
    assert selected.sw(bytes.fromhex(command)) == sw


def test_read_record_status_words_after_gpo(plastic) -> None:
    plastic.tap()
    assert plastic.sw(apdu.read_record(2, 1)) == 0x9000
    assert plastic.sw(apdu.read_record(2, 2)) == 0x6A83  # no such record
    assert plastic.sw(apdu.read_record(9, 1)) == 0x6A82  # no such file
    assert plastic.sw(bytes.fromhex("00B2011000")) == 0x6A86  # P2 not 'record number'
    assert plastic.sw(bytes.fromhex("00B2001400")) == 0x6A86  # record 00
    assert plastic.sw(bytes.fromhex("00B201140100")) == 0x6700  # with data


def test_a_second_gpo_in_one_transaction_is_refused(plastic, counter_file) -> None:
    plastic.tap()
    assert plastic.sw(apdu.get_processing_options(bytes(33))) == 0x6985
    assert plastic.card.keys.atc == 1


def test_select_and_a_new_tap_start_a_new_transaction(plastic) -> None:
    plastic.tap()
    plastic.select(VISA)
    assert plastic.sw(apdu.read_record(2, 1)) == 0x6985
    plastic.tap()
    assert plastic.sw(apdu.select(bytes.fromhex("A000000099"))) == 0x6A82
    assert plastic.sw(apdu.read_record(2, 1)) == 0x6985  # a failed SELECT selects nothing
    plastic.tap()
    plastic.card.power_on()
    assert plastic.sw(apdu.read_record(2, 1)) == 0x6985


@pytest.fixture(scope="module")
def fuzz_card(issuer, plastic_profile) -> Card:
    image = personalise(plastic_profile, issuer.signer(plastic_profile))
    return Card(image, issuer.plastic_keys(plastic_profile, MemoryCounterStore()))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_every_input_gets_a_status_word(fuzz_card: Card, raw: bytes) -> None:
    fuzz_card.power_on()
    fuzz_card.transceive(apdu.select(VISA).to_bytes())
    answer = fuzz_card.transceive(raw)
    assert len(answer) >= 2
    assert answer[-2] in (0x67, 0x69, 0x6A, 0x6D, 0x6E, 0x90)


def test_show_profile_decodes_and_masks() -> None:
    text = show_profile("visa_qvsdc_plastic")
    assert "Kernel 3 (Visa)" in text and "READ RECORD SFI 3 record 2" in text
    assert "476173******0010" in text and "4761739001010010" not in text
    assert "4761739001010010" in show_profile("visa_qvsdc_plastic", mask=False)


def test_an_hsm_held_issuer_key_signs_the_icc_certificate(tmp_path: Path, plastic_profile) -> None:
    hsm = SoftHsm.create(tmp_path / "keys.bin", bytes(range(32)))
    ca = hsm.generate_rsa_key("ca", 1408, 65537)
    issuer_public = hsm.generate_rsa_key("issuer", 1152, 65537)
    issuer_key = oda.RsaPublicKey(int.from_bytes(issuer_public.modulus, "big"), 65537)
    unsigned = oda.issuer_certificate_message(
        len(ca.modulus),
        issuer_key,
        issuer_identifier="476173",
        expiry="1249",
        serial_number=b"\x00\x00\x07",
    )
    certificate = unsigned.signed(hsm.rsa_sign_raw("ca", unsigned.message))
    image = personalise(plastic_profile, HsmSigner(hsm, "issuer", certificate))
    app = image.applications[0]
    recovered = oda.recover_icc_public_key(
        issuer_key,
        oda.PublicKeyCertificate(app.data[0x9F46], app.data[0x9F48], app.data[0x9F47]),
        pan=plastic_profile.pan,
        static_data=app.static_data,
        today=date(2026, 1, 1),
    )
    assert app.icc_key is not None and recovered.public_key == app.icc_key.public_key


def test_a_soft_issuer_can_be_given_its_issuer_master_keys() -> None:
    from hce.card import SoftIssuer  # noqa: PLC0415

    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert SoftIssuer({"issuer": imk}).imk("issuer") == imk
    assert SoftIssuer().imk("issuer") != imk
