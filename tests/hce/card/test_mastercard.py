"""Scripted M/Chip conversations with the Mastercard applet (Book C-2): PPSE, SELECT, GPO,
READ RECORD, GENERATE AC (first and second), RECOVER AC of a torn GENERATE AC and COMPUTE
CRYPTOGRAPHIC CHECKSUM checked field by field; the cryptograms and CVC3s recomputed with
``emv.crypto`` from the issuer's keys, CDA verified from the CA key down, the card's
decisions, the ATC, every status word, state reset."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from emv import apdu, dol, tlv
from emv.apdu import CryptogramType
from emv.crypto import ac, cbp, cvc3, kd, oda
from hce.card import (
    Card,
    CardProfile,
    Counters,
    FileCounterStore,
    ProfileError,
    SoftIssuer,
    personalise,
)
from hce.card.keys import MAX_ATC
from hce.card.mastercard import Velocity, mchip_cvr
from hce.card.profile import parse_profile

MASTERCARD = bytes.fromhex("A0000000041010")
TODAY = date(2026, 3, 15)
UN = bytes.fromhex("1A2B3C4D")
UN2 = bytes.fromhex("55667788")
DRDOL = bytes.fromhex("9F37049F02065F2A029A03")  # UN, amount, currency, date
AAC, TC, ARQC = CryptogramType.AAC, CryptogramType.TC, CryptogramType.ARQC
CLEAR_TAGS = [0x9F27, 0x9F36, 0x9F26, 0x9F10]
CDA_TAGS = [0x9F27, 0x9F36, 0x9F4B, 0x9F10]
TERMINAL = {  # what this test's terminal sends in the DOLs (amount apart)
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0840"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0840"),
    0x9A: bytes.fromhex("260315"),
    0x9C: b"\x00",
    0x9F37: UN,
    0x9F35: b"\x22",
    0x9F45: bytes(2),
    0x9F4C: bytes(8),
    0x9F34: bytes.fromhex("1F0302"),
}


# --- a Kernel 2 terminal's side ------------------------------------------------------------------


@dataclasses.dataclass
class Tap:
    """One M/Chip transaction as the terminal keeps it (the CDA hash needs every part)."""

    reader: Any  # conftest's Reader
    gpo: dict[int, bytes]
    pdol_data: bytes = b""
    cdol1_data: bytes = b""
    cdol2_data: bytes = b""

    def first_ac(self, kind: CryptogramType, amount: int = 1500, *, cda: bool = False) -> dict:
        return answer(self.send_first_ac(kind, amount, cda=cda))

    def send_first_ac(
        self, kind: CryptogramType, amount: int = 1500, *, cda: bool = False, un: bytes = UN
    ) -> apdu.ResponseApdu:
        cdol1 = tlv.index(self.records_data())[0x8C]
        self.cdol1_data = dol.build_dol_data(dol.parse_dol(cdol1), terminal(amount, un))
        return self.reader.send(apdu.generate_ac(kind, self.cdol1_data, cda=cda))

    def second_ac(
        self, kind: CryptogramType, arc: bytes = b"00", *, cda: bool = False, un: bytes = UN
    ) -> dict:
        cdol2 = tlv.index(self.records_data())[0x8D]
        values = {0x8A: arc, 0x91: bytes(10), 0x95: bytes(5), 0x9F37: un, 0x9F4C: bytes(8)}
        self.cdol2_data = dol.build_dol_data(dol.parse_dol(cdol2), values)
        return answer(self.reader.send(apdu.generate_ac(kind, self.cdol2_data, cda=cda)))

    def records(self) -> list[tuple[int, bytes, bool]]:
        return self.reader.read_records(self.gpo[0x94])

    def records_data(self) -> list[tlv.Tlv]:
        return [obj for _, record, _ in self.records() for obj in tlv.decode(record)[0].children]


def terminal(amount: int, un: bytes = UN) -> dict[int, bytes]:
    """The values this test's terminal has for the DOLs of one transaction."""
    return {**TERMINAL, 0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F37: un}


def drdol_data(amount: int = 1500, un: bytes = UN) -> bytes:
    """The DRDOL related data of a first GENERATE AC with this amount and UN (the
    shipped Mastercard profiles' DRDOL, as their records give it)."""
    return dol.build_dol_data(dol.parse_dol(DRDOL), terminal(amount, un))


def answer(response: apdu.ResponseApdu) -> dict[int, bytes]:
    """A Format 2 response ('77') as data objects by tag, in order (asserting 9000)."""
    assert response.sw == 0x9000, f"{response.sw:04X}"
    template = tlv.decode(response.data)
    assert [obj.tag for obj in template] == [0x77]
    return tlv.index(template)


def start(reader: Any, pdol_values: dict[int, bytes] | None = None) -> Tap:
    """PPSE, SELECT, GET PROCESSING OPTIONS with the PDOL data the FCI asks for."""
    ppse = reader.send(apdu.select_ppse())
    assert ppse.sw == 0x9000
    fci = reader.select(MASTERCARD)
    pdol = tlv.find(fci, 0x9F38)
    pdol_data = b""
    if pdol is not None:
        pdol_data = dol.build_dol_data(dol.parse_dol(pdol.value), pdol_values or TERMINAL)
    gpo = answer(reader.send(apdu.get_processing_options(pdol_data)))
    return Tap(reader, gpo, pdol_data)


def table26(tap: Tap, response: dict[int, bytes], amount: int, un: bytes = UN) -> ac.CryptogramData:
    """The cryptogram data as the terminal sent it, with the card's AIP and ATC."""
    return ac.CryptogramData(
        amount_authorised=bytes.fromhex(f"{amount:012d}"),
        amount_other=bytes(6),
        terminal_country_code=TERMINAL[0x9F1A],
        tvr=bytes(5),
        transaction_currency_code=TERMINAL[0x5F2A],
        transaction_date=TERMINAL[0x9A],
        transaction_type=TERMINAL[0x9C],
        unpredictable_number=un,
        aip=tap.gpo[0x82],
        atc=response[0x9F36],
    )


def issuer_ac(
    issuer: SoftIssuer, profile: CardProfile, data: ac.CryptogramData, iad: bytes
) -> bytes:
    """The M/Chip AC as the issuer checks it: MK-AC option A from the IMK, the session key
    and input of the IAD's cryptogram version (CVR and counters from the IAD)."""
    mk = kd.derive_icc_mk_a(issuer.imk(profile.keys["imk_ac"]), profile.pan, profile.psn)
    cvr, counters = iad[2:8], iad[10:18]
    if iad[1] in (0x10, 0x11):
        session_key = kd.derive_mastercard_sk(mk, data.atc, data.unpredictable_number)
    else:
        session_key = kd.derive_common_sk(mk, data.atc + bytes(6))
    if iad[1] in (0x11, 0x15):
        return ac.generate_ac(session_key, ac.mastercard_cvn17_input(data, cvr, counters))
    return ac.generate_ac(session_key, ac.mastercard_cvn16_input(data, cvr))


def icc_public_key(issuer: SoftIssuer, profile: CardProfile, tap: Tap) -> oda.RsaPublicKey:
    """The terminal's ODA (Book 2 §6): the issuer key from the CA key, then the ICC key
    over the static data read (the records signed, then the AIP as 9F4A says)."""
    records = tap.records()
    data = tlv.index(tap.records_data())
    static = b"".join(tlv.decode(record)[0].value for _, record, signed in records if signed)
    assert data[0x9F4A] == b"\x82"
    ca = issuer.ca_public_key(profile)
    assert data[0x8F] == bytes((ca.index,)) and ca.rid == MASTERCARD[:5]
    issuer_key = oda.recover_issuer_public_key(
        ca.public_key,
        oda.PublicKeyCertificate(data[0x90], data.get(0x92, b""), data[0x9F32]),
        profile.pan,
        TODAY,
    ).public_key
    return oda.recover_icc_public_key(
        issuer_key,
        oda.PublicKeyCertificate(data[0x9F46], data.get(0x9F48, b""), data[0x9F47]),
        pan=profile.pan,
        static_data=static + tap.gpo[0x82],
        today=TODAY,
    ).public_key


def verify_cda(
    icc_key: oda.RsaPublicKey,
    tap: Tap,
    response: dict[int, bytes],
    *,
    second: bool = False,
    un: bytes = UN,
) -> oda.CdaDynamicData:
    """Book 2 §6.6.2 over the response's data objects except the SDAD, in order."""
    others = b"".join(
        tlv.Tlv(tag, value).to_bytes() for tag, value in response.items() if tag != 0x9F4B
    )
    return oda.verify_cda(
        icc_key,
        response[0x9F4B],
        unpredictable_number=un,
        cid=response[0x9F27][0],
        pdol_data=tap.pdol_data,
        cdol1_data=tap.cdol1_data,
        response_tlvs=others,
        cdol2_data=tap.cdol2_data if second else b"",
    )


# --- SELECT, GPO, READ RECORD --------------------------------------------------------------------


def test_ppse_select_gpo_and_records_field_by_field(mc, mc_plastic_profile) -> None:
    ppse = mc.send(apdu.select_ppse())
    entry = tlv.index(tlv.find_all(tlv.decode(ppse.data), 0x61))
    assert entry == {0x4F: MASTERCARD, 0x50: b"MASTERCARD", 0x87: b"\x01", 0x9F2A: b"\x02"}
    fci = mc.select(MASTERCARD)
    assert tlv.find(fci, 0x84).value == MASTERCARD and tlv.find(fci, 0x9F38) is None
    gpo = answer(mc.send(apdu.get_processing_options(b"")))
    app = mc_plastic_profile.applications[0]
    assert list(gpo) == [0x82, 0x94]
    assert gpo[0x82] == app.aip == bytes.fromhex("1980")
    assert gpo[0x94] == bytes.fromhex("080102001001010118010200")
    tap = Tap(mc, gpo)
    assert [(sfi, signed) for sfi, _, signed in tap.records()] == [
        (1, False),
        (1, False),
        (2, True),
        (3, False),
        (3, False),
    ]
    data = tlv.index(tap.records_data())
    assert data[0x8C] == app.cdol1 and data[0x8D] == app.cdol2
    assert data[0x8E] == app.cvm_list and data[0x9F69] == bytes.fromhex("9F6A04")
    (signed,) = [record for _, record, is_signed in tap.records() if is_signed]
    signed_data = tlv.index(tlv.decode(signed)[0].children)
    assert signed_data[0x9F51] == DRDOL and 0x8C in signed_data  # the DRDOL, by the CDOLs
    assert data[0x9F6B].hex().upper().startswith("5413330089020011D2912201")
    assert {0x56, 0x57, 0x5A, 0x90, 0x9F46, 0x9F32, 0x9F47} <= set(data)


# --- the first GENERATE AC: plastic, CVN 16 ------------------------------------------------------


def test_arqc_with_cda_verified_from_the_ca_key(mc, issuer, mc_plastic_profile) -> None:
    tap = start(mc)
    first = tap.first_ac(ARQC, cda=True)
    assert list(first) == CDA_TAGS
    assert first[0x9F27] == b"\x80" and first[0x9F36] == b"\x00\x01"
    iad = first[0x9F10]
    # DKI 01, CVN '10' (16), CVR: ARQC in the first AC, second not requested, CDA in the first.
    assert iad == bytes.fromhex("0110A04000000000000000000000000000FF")
    recovered = verify_cda(icc_public_key(issuer, mc_plastic_profile, tap), tap, first)
    assert len(recovered.icc_dynamic_number) == 8
    data = table26(tap, first, 1500)
    assert recovered.application_cryptogram == issuer_ac(issuer, mc_plastic_profile, data, iad)


@pytest.mark.parametrize("field", ["sdad", "iad", "cid"])
def test_a_flipped_bit_fails_cda(mc, issuer, mc_plastic_profile, field) -> None:
    tap = start(mc)
    first = tap.first_ac(ARQC, cda=True)
    key = icc_public_key(issuer, mc_plastic_profile, tap)
    tag = {"sdad": 0x9F4B, "iad": 0x9F10, "cid": 0x9F27}[field]
    first[tag] = bytes([first[tag][0] ^ 0x40]) + first[tag][1:]
    with pytest.raises(oda.OdaError):
        verify_cda(key, tap, first)


def test_without_cda_the_ac_is_in_clear(mc, issuer, mc_plastic_profile) -> None:
    tap = start(mc)
    first = tap.first_ac(ARQC, amount=7000)
    assert list(first) == CLEAR_TAGS
    assert first[0x9F10][2] == 0xA0 and first[0x9F10][3] == 0  # no CDA in the CVR
    data = table26(tap, first, 7000)
    assert first[0x9F26] == issuer_ac(issuer, mc_plastic_profile, data, first[0x9F10])


@pytest.mark.parametrize("version", ["17", "20", "21"])
def test_other_cryptogram_versions(make_mc, connect, issuer, mc_plastic_profile, version) -> None:
    card = make_mc(cryptogram_version=version)
    start(connect(card)).first_ac(TC, amount=100)  # an offline approval: counters to see
    tap = start(connect(card))
    first = tap.first_ac(ARQC, amount=1500)
    iad = first[0x9F10]
    assert iad[1] == int(version) and iad[10:18] == bytes.fromhex("00000000010001FF")
    data = table26(tap, first, 1500)
    assert first[0x9F26] == issuer_ac(issuer, mc_plastic_profile, data, iad)


def test_tc_within_the_offline_limits(mc, issuer, mc_plastic_profile, counter_file) -> None:
    tap = start(mc)
    first = tap.first_ac(TC, amount=5000, cda=True)
    assert first[0x9F27] == b"\x40"
    assert first[0x9F10][2] == 0x90  # CVR: TC in the first AC, second not requested
    recovered = verify_cda(icc_public_key(issuer, mc_plastic_profile, tap), tap, first)
    data = table26(tap, first, 5000)
    assert recovered.application_cryptogram == issuer_ac(
        issuer, mc_plastic_profile, data, first[0x9F10]
    )
    counters = FileCounterStore(counter_file).load()
    assert (counters.atc, counters.offline_count, counters.offline_amount) == (1, 1, 5000)
    assert mc.sw(apdu.generate_ac(ARQC, tap.cdol1_data)) == 0x6985  # the transaction is over


def test_tc_above_the_offline_limit_becomes_an_arqc(mc) -> None:
    first = start(mc).first_ac(TC, amount=5001)
    assert first[0x9F27] == b"\x80"


def test_the_card_never_upgrades(mc, connect, make_mc) -> None:
    card = make_mc()
    declined = start(connect(card)).first_ac(AAC, amount=100, cda=True)
    assert list(declined) == CLEAR_TAGS  # no CDA for an AAC
    assert declined[0x9F27] == b"\x00" and declined[0x9F10][2] == 0x80
    online = start(connect(card)).first_ac(ARQC, amount=100)
    assert online[0x9F27] == b"\x80"


def test_consecutive_offline_limit_sends_the_fourth_tap_online(make_mc, connect) -> None:
    card = make_mc()
    kinds = [start(connect(card)).first_ac(TC, amount=100) for _ in range(4)]
    assert [k[0x9F27] for k in kinds] == [b"\x40", b"\x40", b"\x40", b"\x80"]
    assert kinds[3][0x9F10][6] == 0x40  # CVR byte 5: upper consecutive offline limit exceeded


def test_cumulative_offline_limit(make_mc, connect) -> None:
    card = make_mc()
    assert start(connect(card)).first_ac(TC, amount=5000)[0x9F27] == b"\x40"
    assert start(connect(card)).first_ac(TC, amount=5000)[0x9F27] == b"\x40"
    last = start(connect(card)).first_ac(TC, amount=1)
    assert last[0x9F27] == b"\x80" and last[0x9F10][6] == 0x10


@pytest.mark.parametrize("version", ["16", "17"])
def test_a_transaction_reads_the_counters_once_and_saves_them_once(
    issuer, mc_plastic_profile, counting_store, connect, version
) -> None:
    app = dataclasses.replace(mc_plastic_profile.applications[0], cryptogram_version=version)
    profile = dataclasses.replace(mc_plastic_profile, applications=(app,))
    image = personalise(profile, issuer.signer(profile))
    card = Card(image, issuer.plastic_keys(profile, counting_store))
    start(connect(card)).first_ac(TC, amount=100)
    assert counting_store.calls == ["load", "save"]
    tap = start(connect(card))
    first = tap.first_ac(ARQC, amount=1500)
    second = tap.second_ac(TC)  # the counters the first persisted: no read
    assert counting_store.calls == ["load", "save"] * 2
    assert first[0x9F10][10:] == second[0x9F10][10:]  # CVN 17: the same counters
    data = table26(tap, second, 1500)
    assert second[0x9F26] == issuer_ac(issuer, profile, data, second[0x9F10])


def magstripe_sw(reader: Any) -> int:
    """GET PROCESSING OPTIONS, then the status word of COMPUTE CRYPTOGRAPHIC CHECKSUM."""
    tap = start(reader)
    udol = tlv.index(tap.records_data())[0x9F69]
    un = dol.build_dol_data(dol.parse_dol(udol), {0x9F6A: bytes.fromhex("00004321")})
    return reader.sw(apdu.compute_cryptographic_checksum(un))


@pytest.mark.parametrize("damage", ["no valid record", "unreadable"])
def test_counters_that_cannot_be_read_are_6f00(mc, counter_file, damage) -> None:
    start(mc).first_ac(ARQC)
    if damage == "unreadable":
        counter_file.unlink()
        counter_file.mkdir()
    else:
        counter_file.write_bytes(b"\xa5" * 100)
    for kind in (AAC, TC, ARQC):
        assert start(mc).send_first_ac(kind).sw == 0x6F00
    assert magstripe_sw(mc) == 0x6F00
    assert mc.sw(apdu.get_data(0x9F36)) == 0x6F00


def test_an_atc_at_ffff_is_6985(make_mc, connect, counter_file) -> None:
    FileCounterStore(counter_file).save(Counters(MAX_ATC))
    mc = connect(make_mc())
    for kind in (AAC, TC, ARQC):
        assert start(mc).send_first_ac(kind).sw == 0x6985
    assert magstripe_sw(mc) == 0x6985
    assert mc.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F3602FFFF")
    assert FileCounterStore(counter_file).load() == Counters(MAX_ATC)


def test_mchip_cvr_bits() -> None:
    cvr = mchip_cvr(ARQC, TC, cda_first=True, cda_second=True, velocity=Velocity(True, True))
    assert cvr == bytes.fromhex("606000005000")


# --- the second GENERATE AC ----------------------------------------------------------------------


def test_second_ac_approved_online_with_cda(mc, issuer, mc_plastic_profile) -> None:
    tap = start(mc)
    first = tap.first_ac(ARQC, cda=True)
    second = tap.second_ac(TC, arc=b"00", cda=True, un=UN2)
    assert list(second) == CDA_TAGS
    assert second[0x9F27] == b"\x40"
    assert second[0x9F36] == first[0x9F36] == b"\x00\x01"  # one ATC per transaction
    assert second[0x9F10][2:4] == bytes.fromhex("6060")  # TC second, ARQC first; CDA both
    key = icc_public_key(issuer, mc_plastic_profile, tap)
    recovered = verify_cda(key, tap, second, second=True, un=UN2)
    data = table26(tap, second, 1500, un=UN2)
    assert recovered.application_cryptogram == issuer_ac(
        issuer, mc_plastic_profile, data, second[0x9F10]
    )
    with pytest.raises(oda.OdaError):  # the hash covers the CDOL2 data
        verify_cda(
            key,
            dataclasses.replace(tap, cdol2_data=bytes(len(tap.cdol2_data))),
            second,
            second=True,
            un=UN2,
        )
    assert mc.sw(apdu.generate_ac(TC, tap.cdol2_data)) == 0x6985  # no third
    assert mc.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020001")


@pytest.mark.parametrize(
    "case",
    [(TC, b"05", b"\x00"), (AAC, b"00", b"\x00"), (TC, b"Z3", b"\x00"), (TC, b"11", b"\x40")],
)
def test_second_ac_decision(mc, issuer, mc_plastic_profile, case) -> None:
    requested, arc, cid = case  # asked for, the issuer's ARC, what the card returns
    tap = start(mc)
    tap.first_ac(ARQC)
    second = tap.second_ac(requested, arc=arc, cda=True)
    assert second[0x9F27] == cid
    if cid == b"\x00":
        assert list(second) == CLEAR_TAGS
        data = table26(tap, second, 1500)
        assert second[0x9F10][2] == 0x20  # AAC second, ARQC first
        assert second[0x9F26] == issuer_ac(issuer, mc_plastic_profile, data, second[0x9F10])


def test_second_ac_refusals(mc) -> None:
    tap = start(mc)
    tap.first_ac(ARQC)
    values = {0x8A: b"00", 0x9F37: UN}
    cdol2 = dol.build_dol_data(dol.parse_dol(tlv.index(tap.records_data())[0x8D]), values)
    assert mc.sw(apdu.generate_ac(ARQC, cdol2)) == 0x6985  # a second ARQC
    assert mc.sw(apdu.generate_ac(TC, cdol2 + b"\x00")) == 0x6700
    assert mc.sw(apdu.generate_ac(TC, cdol2)) == 0x9000


# --- the ATC -------------------------------------------------------------------------------------


def test_the_atc_advances_by_one_per_transaction_and_is_persisted(
    make_mc, connect, counter_file
) -> None:
    card = make_mc()
    reader = connect(card)
    tap = start(reader)
    assert reader.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020000")
    assert tap.first_ac(ARQC)[0x9F36] == b"\x00\x01"
    assert FileCounterStore(counter_file).load().atc == 1
    assert start(connect(card)).first_ac(AAC)[0x9F36] == b"\x00\x02"
    reopened = connect(make_mc())
    assert start(reopened).first_ac(ARQC)[0x9F36] == b"\x00\x03"
    assert reopened.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020003")


# --- RECOVER AC: a torn GENERATE AC recovered ----------------------------------------------------


def tear(
    card: Card, connect: Any, kind: CryptogramType = ARQC, amount: int = 1500, *, un: bytes = UN
) -> tuple[Tap, bytes]:
    """A first GENERATE AC (CDA asked) whose answer the terminal never got: the card left
    the field with it. Returns the transaction as the terminal kept it (its torn record)
    and the lost response data, for the test to compare with."""
    tap = start(connect(card))
    assert tlv.index(tap.records_data())[0x9F51] == DRDOL
    lost = tap.send_first_ac(kind, amount, cda=True, un=un)
    assert lost.sw == 0x9000
    card.power_off()
    return tap, lost.data


def test_recover_ac_answers_the_torn_generate_ac(
    make_mc, connect, issuer, mc_plastic_profile, counter_file
) -> None:
    card = make_mc()
    torn, lost = tear(card, connect)
    again = start(connect(card))  # power on, PPSE, SELECT, GPO
    recovered = again.reader.send(apdu.recover_ac(drdol_data()))
    assert recovered.sw == 0x9000 and recovered.data == lost
    response = answer(recovered)
    assert list(response) == CDA_TAGS and response[0x9F36] == b"\x00\x01"
    # The ATC did not move: the cryptogram was counted when it was made.
    assert again.reader.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020001")
    assert FileCounterStore(counter_file).load().atc == 1
    # The SDAD still verifies over the torn transaction's PDOL and CDOL1 data.
    key = icc_public_key(issuer, mc_plastic_profile, again)
    cda = verify_cda(key, torn, response)
    data = table26(torn, response, 1500)
    assert cda.application_cryptogram == issuer_ac(
        issuer, mc_plastic_profile, data, response[0x9F10]
    )
    # The recovery ends the transaction; the next tap may recover it again, then moves on.
    assert again.reader.sw(apdu.generate_ac(ARQC, torn.cdol1_data)) == 0x6985
    assert again.reader.sw(apdu.recover_ac(drdol_data())) == 0x6985
    card.power_off()
    once_more = start(connect(card))
    assert once_more.reader.send(apdu.recover_ac(drdol_data())).data == lost
    assert start(connect(card)).first_ac(ARQC)[0x9F36] == b"\x00\x02"


@pytest.mark.parametrize("case", [(TC, 100, 0x40), (AAC, 1500, 0x00)])
def test_recover_ac_of_an_offline_decision_leaves_the_counters(
    make_mc, connect, counter_file, case
) -> None:
    kind, amount, cid = case  # asked for, the amount, what the card returned
    card = make_mc()
    lost = tear(card, connect, kind, amount)[1]
    before = FileCounterStore(counter_file).load()
    reader = start(connect(card)).reader
    recovered = reader.send(apdu.recover_ac(drdol_data(amount)))
    assert recovered.data == lost and answer(recovered)[0x9F27] == bytes((cid,))
    assert FileCounterStore(counter_file).load() == before


def test_recover_ac_needs_the_torn_transactions_drdol_data(make_mc, connect) -> None:
    card = make_mc()
    lost = tear(card, connect, amount=1500)[1]
    reader = start(connect(card)).reader
    assert reader.sw(apdu.recover_ac(drdol_data(amount=1501))) == 0x6A88
    assert reader.sw(apdu.recover_ac(drdol_data(un=UN2))) == 0x6A88
    assert reader.sw(apdu.recover_ac(drdol_data() + b"\x00")) == 0x6700  # not the DRDOL's
    assert reader.sw(apdu.recover_ac(drdol_data()[:-1])) == 0x6700
    assert reader.sw(apdu.generate_ac(ARQC, bytes(42))) == 0x6700  # a refused GENERATE AC...
    assert reader.send(apdu.recover_ac(drdol_data())).data == lost  # ...forgets nothing


def test_recover_ac_with_nothing_torn_and_the_transaction_goes_on(mc) -> None:
    tap = start(mc)
    assert mc.sw(apdu.recover_ac(drdol_data())) == 0x6A88
    assert tap.first_ac(ARQC)[0x9F36] == b"\x00\x01"


def test_recover_ac_out_of_turn(make_mc, connect) -> None:
    card = make_mc()
    tear(card, connect)
    command = apdu.recover_ac(drdol_data())
    reader = connect(card)
    assert reader.sw(command) == 0x6985  # nothing selected
    reader.send(apdu.select_ppse())
    assert reader.sw(command) == 0x6985  # the PPSE
    reader.select(MASTERCARD)
    assert reader.sw(command) == 0x6985  # before GET PROCESSING OPTIONS
    tap = start(reader)
    tap.first_ac(ARQC)
    assert reader.sw(command) == 0x6985  # after a GENERATE AC of this transaction
    tap.second_ac(TC)
    assert reader.sw(command) == 0x6985  # and after the second
    magstripe = start(connect(card))
    udol_data = bytes.fromhex("00004321")
    assert magstripe.reader.sw(apdu.compute_cryptographic_checksum(udol_data)) == 0x9000
    assert magstripe.reader.sw(command) == 0x6985  # after a mag-stripe cryptogram


def test_the_next_first_generate_ac_replaces_what_is_remembered(make_mc, connect) -> None:
    card = make_mc()
    tear(card, connect, amount=1500)
    second_lost = tear(card, connect, amount=2500, un=UN2)[1]
    reader = start(connect(card)).reader
    assert reader.sw(apdu.recover_ac(drdol_data(1500))) == 0x6A88
    assert reader.send(apdu.recover_ac(drdol_data(2500, UN2))).data == second_lost


def test_a_card_without_a_drdol_does_not_know_recover_ac(
    make_mc, connect, mc_plastic_profile
) -> None:
    app = mc_plastic_profile.applications[0]
    card = make_mc(
        data={tag: value for tag, value in app.data.items() if tag != 0x9F51},
        records=tuple(
            dataclasses.replace(r, tags=tuple(t for t in r.tags if t != 0x9F51))
            for r in app.records
        ),
    )
    tap = start(connect(card))
    assert 0x9F51 not in tlv.index(tap.records_data())
    tap.send_first_ac(ARQC)
    card.power_off()
    reader = start(connect(card)).reader
    assert reader.sw(apdu.recover_ac(drdol_data())) == 0x6D00


def test_hce_recover_ac_spends_no_key(make_mc_hce, connect, suk_wallet, issuer, mc_hce_mk) -> None:
    card = make_mc_hce()
    torn, lost = tear(card, connect)
    assert suk_wallet.atc == 1
    again = start(connect(card))
    recovered = again.reader.send(apdu.recover_ac(drdol_data()))
    assert recovered.data == lost and suk_wallet.atc == 1
    response = answer(recovered)
    cda = verify_cda(icc_public_key(issuer, card.image.profile, again), torn, response)
    iad = cbp.CbpMIad.from_bytes(response[0x9F10])
    suk = cbp.derive_suk(mc_hce_mk, b"\x00\x01")
    assert cda.application_cryptogram == cbp.cbp_m_arqc(suk, table26(torn, response, 1500), iad)
    assert start(connect(card)).first_ac(ARQC)[0x9F36] == b"\x00\x02"


def test_a_drdol_that_is_not_a_dol_is_a_profile_error(mc_plastic_profile) -> None:
    text = mc_plastic_profile.path.read_text(encoding="utf-8")
    broken = text.replace('"9F51": "9F37049F02065F2A029A03"', '"9F51": "9F37049F"')
    assert broken != text
    with pytest.raises(ProfileError) as caught:
        parse_profile(broken, mc_plastic_profile.path)
    assert caught.value.field == "applications[0].data.9F51"


# --- mag-stripe mode -----------------------------------------------------------------------------


def test_mag_stripe_cvc3(mc, issuer, mc_plastic_profile) -> None:
    tap = start(mc)
    data = tlv.index(tap.records_data())
    un = bytes.fromhex("00004321")
    udol_data = dol.build_dol_data(dol.parse_dol(data[0x9F69]), {0x9F6A: un})
    response = answer(mc.send(apdu.compute_cryptographic_checksum(udol_data)))
    assert list(response) == [0x9F61, 0x9F60, 0x9F36]
    assert response[0x9F36] == b"\x00\x01"
    profile = mc_plastic_profile
    mk = kd.derive_icc_mk_a(issuer.imk(profile.keys["imk_cvc3"]), profile.pan, profile.psn)
    track2 = cvc3.generate_cvc3(mk, data[0x9F6B], b"\x00\x01", un)
    track1 = cvc3.generate_cvc3(mk, data[0x56], b"\x00\x01", un)
    assert int.from_bytes(response[0x9F61], "big") == int(track2)
    assert int.from_bytes(response[0x9F60], "big") == int(track1)
    assert mc.sw(apdu.compute_cryptographic_checksum(udol_data)) == 0x6985  # once
    assert mc.sw(apdu.generate_ac(ARQC, bytes(43))) == 0x6985  # and no GENERATE AC after it


def test_mag_stripe_refusals(mc) -> None:
    un = bytes.fromhex("00004321")
    assert mc.sw(apdu.compute_cryptographic_checksum(un)) == 0x6985  # nothing selected
    mc.select(MASTERCARD)
    assert mc.sw(apdu.compute_cryptographic_checksum(un)) == 0x6985  # before GPO
    start(mc).first_ac(ARQC)
    assert mc.sw(apdu.compute_cryptographic_checksum(un)) == 0x6985  # after GENERATE AC
    start(mc)
    assert mc.sw(bytes.fromhex("802A8E8100")) == 0x6A86
    assert mc.sw(bytes.fromhex("802A8E800300004300")) == 0x6700
    assert mc.sw(bytes.fromhex("002A8E800400004321")) == 0x6E00


# --- HCE: CBP-M ----------------------------------------------------------------------------------


def test_hce_arqc_under_the_suk_with_cda(
    make_mc_hce, connect, issuer, mc_hce_profile, mc_hce_mk
) -> None:
    tap = start(connect(make_mc_hce()))
    assert tap.gpo[0x82] == bytes.fromhex("1BC0")
    first = tap.first_ac(TC, cda=True)  # a phone never approves offline
    assert list(first) == CDA_TAGS and first[0x9F27] == b"\x80"
    assert first[0x9F36] == b"\x00\x01"
    iad = cbp.CbpMIad.from_bytes(first[0x9F10])
    assert iad.key_type == cbp.MKeyType.SUK and iad.cvr == bytes(4)  # two keys left
    recovered = verify_cda(icc_public_key(issuer, mc_hce_profile, tap), tap, first)
    suk = cbp.derive_suk(mc_hce_mk, first[0x9F36])
    assert recovered.application_cryptogram == cbp.cbp_m_arqc(suk, table26(tap, first, 1500), iad)
    second = tap.second_ac(TC, arc=b"00", un=UN2)
    assert second[0x9F27] == b"\x40" and second[0x9F36] == b"\x00\x01"
    data = table26(tap, second, 1500, un=UN2)
    assert second[0x9F26] == cbp.cbp_m_arqc(suk, data, cbp.CbpMIad.from_bytes(second[0x9F10]))


def test_hce_cdcvm_uses_the_suk_uv(make_mc_hce, connect, mc_hce_mk, mobile_pin) -> None:
    tap = start(connect(make_mc_hce(cdcvm=True, pin=mobile_pin)))
    first = tap.first_ac(ARQC, amount=9000)
    iad = cbp.CbpMIad.from_bytes(first[0x9F10])
    assert iad.key_type == cbp.MKeyType.SUK_UV
    assert iad.cvr[0] == cbp.CVR_CDCVM_PERFORMED | cbp.CVR_CDCVM_SUCCESSFUL
    suk_uv = cbp.derive_suk_uv(mc_hce_mk, first[0x9F36])
    assert first[0x9F26] == cbp.cbp_m_arqc(suk_uv, table26(tap, first, 9000), iad)


def test_hce_wrong_pin_gives_a_cryptogram_that_fails(make_mc_hce, connect, mc_hce_mk) -> None:
    tap = start(connect(make_mc_hce(cdcvm=True, pin="1111")))
    first = tap.first_ac(ARQC)
    iad = cbp.CbpMIad.from_bytes(first[0x9F10])
    suk_uv = cbp.derive_suk_uv(mc_hce_mk, first[0x9F36])
    assert first[0x9F26] != cbp.cbp_m_arqc(suk_uv, table26(tap, first, 1500), iad)


def test_hce_without_cdcvm_claims_nothing(make_mc_hce, connect, mobile_pin) -> None:
    first = start(connect(make_mc_hce(cdcvm=False, pin=mobile_pin))).first_ac(ARQC)
    assert cbp.CbpMIad.from_bytes(first[0x9F10]).key_type == cbp.MKeyType.SUK


def test_hce_keys_low_then_exhausted(make_mc_hce, connect, suk_wallet) -> None:
    card = make_mc_hce()
    cvrs = [start(connect(card)).first_ac(ARQC)[0x9F10][2] for _ in range(3)]
    assert cvrs == [0, cbp.CVR_KEYS_LOW, cbp.CVR_KEYS_LOW]
    assert suk_wallet.atc == 3
    tap = start(connect(card))
    assert tap.reader.sw(apdu.generate_ac(ARQC, bytes(43))) == 0x6985
    assert tap.reader.sw(apdu.compute_cryptographic_checksum(bytes(4))) == 0x6D00


# --- status words and state ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("80AE01002B" + "00" * 43 + "00", 0x6A86),  # GENERATE AC P2 01
        ("80AE81002B" + "00" * 43 + "00", 0x6A86),  # P1 RFU bit
        ("80AEC0002B" + "00" * 43 + "00", 0x6A86),  # P1 '11': AAR (RFU)
        ("80AE80002A" + "00" * 42 + "00", 0x6700),  # CDOL1 data one byte short
        ("80AE80002B" + "0000000000AA" + "00" * 37 + "00", 0x6A80),  # amount not BCD
        ("00AE80002B" + "00" * 43 + "00", 0x6E00),  # GENERATE AC in the ISO class
        ("80A8010002830000", 0x6A86),  # GPO P1 01
        ("80A8000002830000", 0x6985),  # GPO twice
        ("80CA9F1700", 0x6A88),  # GET DATA of what the card does not serve
        ("00B2012C00", 0x6A82),  # READ RECORD SFI 5
        ("00B2030C00", 0x6A83),  # READ RECORD SFI 1 record 3
        ("0084000008", 0x6D00),  # GET CHALLENGE
        ("80D001000F" + "00" * 15 + "00", 0x6A86),  # RECOVER AC P1 01
        ("80D000800F" + "00" * 15 + "00", 0x6A86),  # RECOVER AC P2 80
        ("00D000000F" + "00" * 15 + "00", 0x6E00),  # RECOVER AC in the ISO class
        ("80D000000F" + "00" * 15 + "00", 0x6A88),  # nothing to recover
        ("80D000000E" + "00" * 14 + "00", 0x6700),  # shorter than the DRDOL
        ("80D0000000", 0x6700),  # no data
    ],
)
def test_status_words_after_gpo(mc, command, sw) -> None:
    start(mc)
    assert mc.sw(bytes.fromhex(command)) == sw


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("80A8000000", 0x6700),  # GPO without data
        ("80A8000002840000", 0x6A80),  # not the Command Template '83'
        ("80A800000383010000", 0x6700),  # PDOL data for a card without a PDOL
        ("80AE80002B" + "00" * 43 + "00", 0x6985),  # GENERATE AC before GPO
        ("00B2010C00", 0x6985),  # READ RECORD before GPO
        ("80D000000F" + "00" * 15 + "00", 0x6985),  # RECOVER AC before GPO
    ],
)
def test_status_words_before_gpo(mc, command, sw) -> None:
    mc.select(MASTERCARD)
    assert mc.sw(bytes.fromhex(command)) == sw


def test_select_resets_the_transaction(mc) -> None:
    tap = start(mc)
    assert tap.first_ac(ARQC)[0x9F36] == b"\x00\x01"
    mc.select(MASTERCARD)
    assert mc.sw(apdu.generate_ac(TC, bytes(43))) == 0x6985  # GPO again first
    again = start(mc)
    again.first_ac(ARQC)  # a first GENERATE AC again, not a second one
    assert again.reader.send(apdu.get_data(0x9F36)).data == bytes.fromhex("9F36020002")


def test_a_pdol_is_offered_and_covered_by_cda(make_mc, connect, issuer, mc_plastic_profile) -> None:
    reader = connect(make_mc(pdol=bytes.fromhex("9F1A029F3501")))
    reader.send(apdu.select_ppse())
    assert tlv.find(reader.select(MASTERCARD), 0x9F38).value == bytes.fromhex("9F1A029F3501")
    tap = start(reader, {**TERMINAL})
    assert tap.pdol_data == bytes.fromhex("084022")
    first = tap.first_ac(ARQC, cda=True)
    key = icc_public_key(issuer, mc_plastic_profile, tap)
    verify_cda(key, tap, first)
    with pytest.raises(oda.OdaError):
        verify_cda(key, dataclasses.replace(tap, pdol_data=b""), first)
