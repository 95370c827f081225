"""Scripted qVSDC conversations with the Visa applet (Book C-3): PPSE, SELECT, GPO and
READ RECORD checked field by field, the cryptograms recomputed with ``emv.crypto``,
the fDDA signature verified from the CA key down, the card's decisions, the ATC."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from emv import apdu, tlv
from emv.bitfields import CTQ, TTQ
from emv.crypto import ac, cbp, kd, oda
from hce.card import Card, CardProfile, Counters, FileCounterStore, SoftIssuer, personalise
from hce.card.keys import MAX_ATC

HCE_IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # conftest's wallet batch
TODAY = date(2026, 3, 15)
UN = bytes.fromhex("1A2B3C4D")
ONLINE = TTQ(
    emv_mode_supported=True,
    online_pin_supported=True,
    signature_supported=True,
    oda_for_online_authorizations_supported=True,
)
ONLINE_REQUIRED = dataclasses.replace(ONLINE, online_cryptogram_required=True)
ONLINE_NO_ODA = TTQ(emv_mode_supported=True, online_pin_supported=True)
OFFLINE_ONLY = TTQ(emv_mode_supported=True, offline_only_reader=True, signature_supported=True)
GPO_TAGS = [0x82, 0x94, 0x57, 0x5F34, 0x9F10, 0x9F26, 0x9F27, 0x9F36, 0x9F6C]
FDDA_TAGS = [0x9F4B, 0x9F69]


def cryptogram_data(gpo: dict[int, bytes], amount: int) -> ac.CryptogramData:
    """Table 26 as the terminal sent it (conftest's TERMINAL values) and the card's AIP, ATC."""
    return ac.CryptogramData(
        amount_authorised=bytes.fromhex(f"{amount:012d}"),
        amount_other=bytes(6),
        terminal_country_code=bytes.fromhex("0840"),
        tvr=bytes(5),
        transaction_currency_code=bytes.fromhex("0840"),
        transaction_date=bytes.fromhex("260315"),
        transaction_type=b"\x00",
        unpredictable_number=UN,
        aip=gpo[0x82],
        atc=gpo[0x9F36],
    )


def issuer_ac(
    issuer: SoftIssuer, profile: CardProfile, gpo: dict[int, bytes], amount: int
) -> bytes:
    """The AC as the issuer checks it: MK-AC option A from the IMK, the common session
    key of the ATC, the CVN 18/22 input (Table 26 || IAD)."""
    mk = kd.derive_icc_mk_a(issuer.imk(profile.keys["imk_ac"]), profile.pan, profile.psn)
    session_key = kd.derive_common_sk(mk, gpo[0x9F36] + bytes(6))
    data = ac.visa_cvn18_input(cryptogram_data(gpo, amount), gpo[0x9F10])
    return ac.generate_ac(session_key, data)


def verify_fdda(
    issuer: SoftIssuer,
    profile: CardProfile,
    records: list[tuple[int, bytes, bool]],
    gpo: dict[int, bytes],
    amount: int,
) -> bytes:
    """The terminal's fDDA (Book C-3 Annex C): the issuer key from the CA key, the ICC
    key over the static data read, then the SDAD over the terminal data; the IDN."""
    data = tlv.index(obj for _, record, _ in records for obj in tlv.decode(record))
    static = b"".join(tlv.decode(record)[0].value for _, record, signed in records if signed)
    assert data[0x9F4A] == b"\x82"
    static += gpo[0x82]
    ca = issuer.ca_public_key(profile)
    assert data[0x8F] == bytes((ca.index,))
    issuer_key = oda.recover_issuer_public_key(
        ca.public_key,
        oda.PublicKeyCertificate(data[0x90], data.get(0x92, b""), data[0x9F32]),
        profile.pan,
        TODAY,
    ).public_key
    icc = oda.recover_icc_public_key(
        issuer_key,
        oda.PublicKeyCertificate(data[0x9F46], data.get(0x9F48, b""), data[0x9F47]),
        pan=profile.pan,
        static_data=static,
        today=TODAY,
    )
    amount_bytes = bytes.fromhex(f"{amount:012d}")
    terminal = oda.fdda_terminal_data(UN, amount_bytes, bytes.fromhex("0840"), gpo[0x9F69])
    return oda.verify_dda(icc.public_key, gpo[0x9F4B], terminal)


# --- plastic: CVN 18 / 22 ------------------------------------------------------------------------


def test_plastic_online_tap_field_by_field(plastic, issuer, plastic_profile) -> None:
    gpo = plastic.tap(amount=1500, ttq=ONLINE_REQUIRED)
    app = plastic_profile.applications[0]
    assert list(gpo) == GPO_TAGS + FDDA_TAGS
    assert gpo[0x82] == app.aip
    assert gpo[0x94] == app.afl == bytes.fromhex("080101001001010118010200")
    assert gpo[0x57].hex().upper().startswith("4761739001010010D2912201")
    assert gpo[0x5F34] == b"\x01"
    assert gpo[0x9F27] == b"\x80"
    assert gpo[0x9F36] == b"\x00\x01"
    assert gpo[0x9F10] == bytes.fromhex("06011203A00000")  # '06' DKI CVN '03' CVR: ARQC
    assert gpo[0x9F26] == issuer_ac(issuer, plastic_profile, gpo, 1500)
    assert gpo[0x9F6C] == app.ctq
    assert gpo[0x9F69][:1] == b"\x01" and gpo[0x9F69][5:] == app.ctq
    records = plastic.read_records(gpo[0x94])
    assert [(sfi, signed) for sfi, _, signed in records] == [
        (1, False),
        (2, True),
        (3, False),
        (3, False),
    ]
    for _, record, _ in records:
        assert [obj.tag for obj in tlv.decode(record)] == [0x70]
    assert verify_fdda(issuer, plastic_profile, records, gpo, 1500) == gpo[0x9F36]


def test_a_flipped_bit_in_the_signature_fails_fdda(plastic, issuer, plastic_profile) -> None:
    gpo = plastic.tap(amount=1500, ttq=ONLINE_REQUIRED)
    records = plastic.read_records(gpo[0x94])
    gpo[0x9F4B] = bytes([gpo[0x9F4B][0] ^ 0x01]) + gpo[0x9F4B][1:]
    with pytest.raises(oda.OdaError):
        verify_fdda(issuer, plastic_profile, records, gpo, 1500)


def test_cvn_22_has_the_format_2_iad(make_plastic, connect, issuer, plastic_profile) -> None:
    gpo = connect(make_plastic(cryptogram_version="22")).tap(amount=1500, ttq=ONLINE_REQUIRED)
    iad = gpo[0x9F10]
    assert len(iad) == 32
    assert iad[:3] == bytes.fromhex("1F2201") and iad[3:6] == bytes.fromhex("A00000")
    assert gpo[0x9F26] == issuer_ac(issuer, plastic_profile, gpo, 1500)


def test_the_atc_advances_by_one_per_cryptogram_and_is_persisted(
    make_plastic, connect, counter_file
) -> None:
    card = make_plastic()
    first = connect(card).tap(ttq=ONLINE_REQUIRED)
    second = connect(card).tap(ttq=ONLINE_REQUIRED)
    assert (first[0x9F36], second[0x9F36]) == (b"\x00\x01", b"\x00\x02")
    assert FileCounterStore(counter_file).load().atc == 2
    reopened = connect(make_plastic())
    assert reopened.tap(ttq=ONLINE_REQUIRED)[0x9F36] == b"\x00\x03"
    assert reopened.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020003")


@pytest.mark.parametrize(
    "case",
    [(1500, ONLINE_REQUIRED), (1500, ONLINE), (100, ONLINE), (100, OFFLINE_ONLY)],
    ids=["online required", "online", "offline approval", "offline-only reader"],
)
def test_a_gpo_reads_the_counters_once_and_saves_them_once(
    issuer, plastic_profile, counting_store, connect, case
) -> None:
    amount, ttq = case
    image = personalise(plastic_profile, issuer.signer(plastic_profile))
    reader = connect(Card(image, issuer.plastic_keys(plastic_profile, counting_store)))
    assert reader.tap(amount=amount, ttq=ttq)[0x9F36] == b"\x00\x01"
    assert counting_store.calls == ["load", "save"]


def gpo_sw(reader, ttq: TTQ, amount: int = 1500) -> int:
    """PPSE, SELECT, then the status word of GET PROCESSING OPTIONS."""
    reader.send(apdu.select_ppse())
    fci = reader.select(bytes.fromhex("A0000000031010"))
    return reader.sw(apdu.get_processing_options(reader.pdol_data(fci, amount, ttq)))


@pytest.mark.parametrize("ttq", [ONLINE_REQUIRED, ONLINE, OFFLINE_ONLY])
@pytest.mark.parametrize("damage", ["no valid record", "unreadable"])
def test_counters_that_cannot_be_read_are_6f00_whatever_the_path(
    make_plastic, connect, counter_file, ttq, damage
) -> None:
    card = make_plastic()
    connect(card).tap(ttq=ONLINE_REQUIRED)
    if damage == "unreadable":
        counter_file.unlink()
        counter_file.mkdir()
    else:
        counter_file.write_bytes(b"\xa5" * 100)
    reader = connect(card)
    assert gpo_sw(reader, ttq, amount=100) == 0x6F00
    assert reader.sw(apdu.read_record(2, 1)) == 0x6985  # no processing options given
    assert reader.sw(apdu.get_data(0x9F36)) == 0x6F00


@pytest.mark.parametrize("ttq", [ONLINE_REQUIRED, ONLINE, OFFLINE_ONLY])
def test_an_atc_at_ffff_is_6985(make_plastic, connect, counter_file, ttq) -> None:
    FileCounterStore(counter_file).save(Counters(MAX_ATC))
    reader = connect(make_plastic())
    assert gpo_sw(reader, ttq, amount=100) == 0x6985
    assert reader.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F3602FFFF")
    assert FileCounterStore(counter_file).load() == Counters(MAX_ATC)


def test_no_oda_for_online_when_the_reader_does_not_ask(plastic) -> None:
    gpo = plastic.tap(
        amount=1500, ttq=dataclasses.replace(ONLINE_NO_ODA, online_cryptogram_required=True)
    )
    assert list(gpo) == GPO_TAGS
    assert gpo[0x9F27] == b"\x80"


def test_offline_approval_within_the_card_limits(plastic, issuer, plastic_profile) -> None:
    gpo = plastic.tap(amount=1000, ttq=ONLINE_NO_ODA)
    assert gpo[0x9F27] == b"\x40"  # TC
    assert gpo[0x9F10] == bytes.fromhex("06011203900000")  # CVR: TC returned
    assert gpo[0x9F26] == issuer_ac(issuer, plastic_profile, gpo, 1000)
    records = plastic.read_records(gpo[0x94])
    assert verify_fdda(issuer, plastic_profile, records, gpo, 1000) == gpo[0x9F36]
    assert plastic.send(apdu.get_data(0x9F5D)).data == bytes.fromhex("9F5D06000000009000")


def test_above_the_offline_limit_goes_online(plastic) -> None:
    assert plastic.tap(amount=2501, ttq=ONLINE_NO_ODA)[0x9F27] == b"\x80"


def test_offline_only_reader_above_the_limit_is_declined(plastic, issuer, plastic_profile) -> None:
    gpo = plastic.tap(amount=3000, ttq=OFFLINE_ONLY)
    assert gpo[0x9F27] == b"\x00"  # AAC
    assert gpo[0x9F10] == bytes.fromhex("06011203810000")  # CVR: AAC, unable to go online
    assert gpo[0x9F26] == issuer_ac(issuer, plastic_profile, gpo, 3000)
    assert 0x9F4B not in gpo


def test_consecutive_offline_limit_sends_the_fourth_tap_online(make_plastic, connect) -> None:
    card = make_plastic()
    kinds = [connect(card).tap(amount=100, ttq=ONLINE_NO_ODA)[0x9F27] for _ in range(4)]
    assert kinds == [b"\x40", b"\x40", b"\x40", b"\x80"]
    last = connect(card).tap(amount=100, ttq=ONLINE_NO_ODA)
    assert last[0x9F10][5] & 0x20  # CVR byte 2: exceeded velocity checking counters


def test_cumulative_offline_limit(make_plastic, connect) -> None:
    card = make_plastic()
    assert connect(card).tap(amount=2500, ttq=OFFLINE_ONLY)[0x9F27] == b"\x40"
    assert connect(card).tap(amount=2500, ttq=OFFLINE_ONLY)[0x9F27] == b"\x40"
    assert connect(card).tap(amount=2500, ttq=OFFLINE_ONLY)[0x9F27] == b"\x40"
    assert connect(card).tap(amount=2501, ttq=OFFLINE_ONLY)[0x9F27] == b"\x00"


def test_above_the_card_cvm_limit_the_card_asks_for_online_pin(plastic) -> None:
    gpo = plastic.tap(amount=6000, ttq=ONLINE_REQUIRED)
    assert CTQ.from_bytes(gpo[0x9F6C]).online_pin_required


def test_cvm_below_the_limit_and_signature_for_offline(plastic, connect, make_plastic) -> None:
    assert not CTQ.from_bytes(
        plastic.tap(amount=4000, ttq=ONLINE_REQUIRED)[0x9F6C]
    ).online_pin_required
    cvm_reader = dataclasses.replace(OFFLINE_ONLY, cvm_required=True)
    ctq = CTQ.from_bytes(connect(make_plastic()).tap(amount=100, ttq=cvm_reader)[0x9F6C])
    assert ctq.signature_required and not ctq.online_pin_required


# --- HCE: CBP-V ----------------------------------------------------------------------------------


def test_hce_tap_uses_a_luk_from_the_wallet(make_hce, connect, wallet, issuer, hce_profile) -> None:
    reader = connect(make_hce())
    gpo = reader.tap(amount=1500, ttq=ONLINE)
    assert list(gpo) == [*GPO_TAGS, 0x9F6E, *FDDA_TAGS]
    assert gpo[0x9F27] == b"\x80"
    assert gpo[0x9F36] == wallet.atc.to_bytes(2, "big") == b"\x00\x01"
    iad = cbp.CbpVIad.from_bytes(gpo[0x9F10])
    assert (iad.key_index, iad.use_count) == (cbp.KeyIndex(60_000, 1), 1)
    assert iad.cvr == bytes(4)  # two taps left: not yet low
    luk = cbp.derive_luk(
        kd.derive_icc_mk_a(HCE_IMK, hce_profile.pan, hce_profile.psn), iad.key_index.to_bytes()
    )
    data = dataclasses.replace(
        cryptogram_data(gpo, 1500), transaction_currency_code=bytes.fromhex("0840")
    )
    assert gpo[0x9F26] == cbp.cbp_v_arqc(luk, data, iad)
    assert (
        verify_fdda(issuer, hce_profile, reader.read_records(gpo[0x94]), gpo, 1500) == gpo[0x9F36]
    )


def test_hce_never_approves_offline(make_hce, connect) -> None:
    card = make_hce()
    assert connect(card).tap(amount=100, ttq=ONLINE_NO_ODA)[0x9F27] == b"\x80"
    assert connect(card).tap(amount=100, ttq=OFFLINE_ONLY)[0x9F27] == b"\x00"


def test_hce_consumer_device_cvm(make_hce, connect) -> None:
    card = make_hce(cdcvm=True)
    cdcvm_reader = dataclasses.replace(ONLINE, consumer_device_cvm_supported=True)
    gpo = connect(card).tap(amount=6000, ttq=cdcvm_reader)
    ctq = CTQ.from_bytes(gpo[0x9F6C])
    assert ctq.consumer_device_cvm_performed and not ctq.online_pin_required
    legacy = CTQ.from_bytes(connect(card).tap(amount=6000, ttq=ONLINE)[0x9F6C])
    assert legacy.online_pin_required and not legacy.consumer_device_cvm_performed
    assert gpo[0x9F10][5] == cbp.CVR_CDCVM_PERFORMED | cbp.CVR_CDCVM_SUCCESSFUL


def test_hce_cvr_says_keys_low_on_the_last_taps(make_hce, connect) -> None:
    card = make_hce()
    cvrs = [connect(card).tap(ttq=ONLINE)[0x9F10][5] for _ in range(3)]
    assert cvrs == [0, cbp.CVR_KEYS_LOW, cbp.CVR_KEYS_LOW]


def test_hce_without_keys_refuses_gpo_and_reads(make_hce, connect) -> None:
    card = make_hce()
    for _ in range(3):
        connect(card).tap(ttq=ONLINE)
    reader = connect(card)
    reader.send(apdu.select_ppse())
    fci = reader.select(bytes.fromhex("A0000000031010"))
    gpo = apdu.get_processing_options(reader.pdol_data(fci, 100, ONLINE))
    assert reader.sw(gpo) == 0x6985
    assert reader.sw(apdu.read_record(2, 1)) == 0x6985
