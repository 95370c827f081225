"""Kernel 2 (Book C-2) against the emulated Mastercard M/Chip plastic card: every exit of the
kernel, the cryptograms and CVC3s recomputed from the issuer's keys, CDA passing and
failing, CVM and processing restrictions as the card and terminal configuration make
them, mag-stripe mode and its track data, torn GENERATE AC and RECOVER AC on the next
tap, status words, malformed answers and lost cards, and a seeded garbage-card run."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import plastic as pl
import pytest

from emv import apdu, dol, tlv
from emv.apdu import CryptogramType
from emv.bitfields import TVR
from emv.crypto import cvc3, kd
from emv.crypto.oda import CaKeyStore
from emv.link import CardRemoved
from hce.card import Card, CardProfile, MemoryCounterStore, SoftIssuer, load_profile
from terminal.config import AidConfig, Kernel2Settings, Tacs, TerminalConfig, default_config
from terminal.kernels import DATA_RECORD_TAGS, Indicators, KernelResult, Selected
from terminal.kernels.mastercard import (
    Kernel2,
    TornLog,
    TrackInputs,
    build_track1,
    build_track2,
    mag_stripe_cvm,
    number_of_un_digits,
    transaction_time,
    unpredictable_number_numeric,
)
from terminal.outcome import Cvm, Message, ReaderStatus, Start, Status
from terminal.session import CardSession
from terminal.transaction import Transaction, TransactionType, terminal_data

MASTERCARD = bytes.fromhex("A0000000041010")
WHEN = datetime(2026, 3, 15, 12, 0, 0)
UN = bytes.fromhex("1A2B3C4D")
USD = bytes.fromhex("0840")
CONTACTLESS_ONLY = bytes.fromhex("0068C8")  # 9F33: no contact interface; CDA
WITH_CONTACT = bytes.fromhex("E0F8C8")  # 9F33: IC with contacts too
FLOOR_LIMIT, CVM_LIMIT = 2000, 3000  # USD 20.00, USD 30.00
AAC, TC, ARQC = CryptogramType.AAC, CryptogramType.TC, CryptogramType.ARQC
INS_GPO, INS_READ_RECORD, INS_GENERATE_AC, INS_RECOVER_AC, INS_CCC = 0xA8, 0xB2, 0xAE, 0xD0, 0x2A


# --- the bench: card, configuration, a wire between them -----------------------------------------


@pytest.fixture(scope="module")
def issuer() -> SoftIssuer:
    return SoftIssuer()


@pytest.fixture(scope="module")
def profile() -> CardProfile:
    return load_profile("mastercard_mchip_plastic")


MakeCard = Callable[..., Card]


@pytest.fixture(scope="module")
def make_card(issuer: SoftIssuer, profile: CardProfile) -> MakeCard:
    """A personalised plastic card; keyword arguments change the application (``aip=...``),
    ``profile_changes`` the profile and ``store`` shares a counter store between cards."""

    def make(
        *,
        profile_changes: dict[str, object] | None = None,
        store: MemoryCounterStore | None = None,
        **app_changes: object,
    ) -> Card:
        app = dataclasses.replace(profile.applications[0], **app_changes)
        changed = dataclasses.replace(profile, applications=(app,), **(profile_changes or {}))
        return pl.make_plastic(issuer, changed, store).card

    return make


@pytest.fixture(scope="module")
def card_without_drdol(make_card: MakeCard, profile: CardProfile) -> Card:
    app = profile.applications[0]
    records = tuple(
        dataclasses.replace(record, tags=tuple(tag for tag in record.tags if tag != 0x9F51))
        for record in app.records
    )
    data = {tag: value for tag, value in app.data.items() if tag != 0x9F51}
    return make_card(records=records, data=data)


def aid_config(**changes: object) -> AidConfig:
    base = AidConfig(MASTERCARD, 2, floor_limit=FLOOR_LIMIT, cvm_required_limit=CVM_LIMIT)
    return dataclasses.replace(base, **changes)


def with_kernel2(**changes: object) -> AidConfig:
    """The AID configuration with these Kernel 2 settings changed."""
    return aid_config(kernel2=dataclasses.replace(Kernel2Settings(), **changes))


@pytest.fixture(scope="module")
def ca_keys(issuer: SoftIssuer, profile: CardProfile) -> CaKeyStore:
    return CaKeyStore([issuer.ca_public_key(profile)])


MakeConfig = Callable[..., TerminalConfig]


@pytest.fixture(scope="module")
def config(ca_keys: CaKeyStore) -> MakeConfig:
    """A US terminal (country and currency 0840, the card's) for one AID configuration."""

    def make(
        aid: AidConfig | None = None,
        *,
        capabilities: bytes = CONTACTLESS_ONLY,
        terminal_type: int = 0x22,
        keys: CaKeyStore | None = None,
    ) -> TerminalConfig:
        return TerminalConfig(
            name="kernel 2 test terminal",
            terminal_type=terminal_type,
            capabilities=capabilities,
            additional_capabilities=bytes.fromhex("6000A0F001"),
            country=USD,
            currency=USD,
            currency_exponent=2,
            aids=(aid or aid_config(),),
            ca_keys=ca_keys if keys is None else keys,
        )

    return make


Rewrite = Callable[[bytes, bytes], bytes]


class Wire(pl.Relay):
    """The link between kernel and card: records every command, can rewrite a command or
    an answer, and can lose the card before or after the card processes a command."""

    def __init__(
        self,
        card: Card,
        *,
        command: Callable[[bytes], bytes] | None = None,
        answer: Rewrite | None = None,
        lose_before: int | None = None,
        lose_after: int | None = None,
    ) -> None:
        super().__init__(card)
        self.rewrite_command = command
        self.rewrite_answer = answer
        self.lose_before = lose_before
        self.lose_after = lose_after
        self.commands: list[bytes] = []

    def transceive(self, command: bytes) -> bytes:
        if self.rewrite_command is not None:
            command = self.rewrite_command(command)
        self.commands.append(command)
        if command[1] == self.lose_before:
            raise CardRemoved("card left the field")
        answer = self.card.transceive(command)
        if command[1] == self.lose_after:
            raise CardRemoved("card left the field before its answer arrived")
        if self.rewrite_answer is not None:
            answer = self.rewrite_answer(command, answer)
        return answer

    def sent(self, ins: int) -> list[bytes]:
        """The commands with instruction ``ins``, as sent."""
        return [command for command in self.commands if command[1] == ins]


def tap(
    kernel: Kernel2,
    link: Card | Wire,
    terminal: TerminalConfig,
    amount: int = 1000,
    *,
    un: bytes = UN,
    when: datetime = WHEN,
    kind: TransactionType = TransactionType.PURCHASE,
    amount_other: int = 0,
) -> KernelResult:
    """Power on, SELECT the PPSE and the application as Entry Point would, run Kernel 2."""
    link.power_on()
    session = CardSession(link)
    assert session.exchange(apdu.select_ppse()).ok
    selected = session.exchange(apdu.select(MASTERCARD))
    assert selected.ok
    aid = terminal.aids[0]
    transaction = Transaction(amount, "0840", when, un, amount_other, kind)
    indicators = Indicators(
        cvm_required_limit_exceeded=aid.cvm_required_limit is not None
        and amount > aid.cvm_required_limit,
        floor_limit_exceeded=aid.floor_limit is not None and amount > aid.floor_limit,
    )
    data = terminal_data(transaction, terminal.constants())
    return kernel.run(session, Selected(MASTERCARD, selected.data, aid, terminal, indicators, data))


def only(ins: int) -> Callable[[Rewrite], Rewrite]:
    """Apply an answer rewrite to the commands with instruction ``ins`` only."""

    def wrap(rewrite: Rewrite) -> Rewrite:
        return lambda command, answer: rewrite(command, answer) if command[1] == ins else answer

    return wrap


def template(answer: bytes) -> list[tlv.Tlv]:
    """The children of the single template of a '9000' answer."""
    return list(tlv.decode(answer[:-2])[0].children or ())


def rebuild(children: list[tlv.Tlv], tag: int = 0x77) -> bytes:
    return tlv.Tlv.template(tag, *children).to_bytes() + b"\x90\x00"


def drop_from_record(tag: int) -> Rewrite:
    """A READ RECORD answer rewrite: the record template '70' without data object ``tag``."""

    def rewrite(command: bytes, answer: bytes) -> bytes:
        return rebuild([obj for obj in template(answer) if obj.tag != tag], 0x70)

    return only(INS_READ_RECORD)(rewrite)


def assert_pan_free(result: KernelResult, pan: str) -> None:
    texts = [result.outcome.reason, *result.decisions]
    assert not any(pan in text for text in texts)


# --- M/Chip exits --------------------------------------------------------------------------------


def test_online_request_with_cda_and_a_data_record_the_issuer_verifies(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    result = tap(Kernel2(), make_card(), config(), amount=2500)  # above the floor limit
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.AUTHORISING
    assert (result.kernel, result.path) == ("C-2", "M/Chip")
    assert (result.oda.method, result.oda.result) == ("CDA", "passed")
    assert result.cryptogram_type == ARQC
    record = result.data_record
    assert record[0x9F27] == b"\x80"
    assert record[0x9F26] == pl.issuer_ac(issuer, profile, record)
    assert record[0x82] == bytes.fromhex("1980")
    assert record[0x5A] == bytes.fromhex(profile.pan)
    assert record[0x84] == MASTERCARD
    assert TVR.from_bytes(record[0x95]).floor_limit_exceeded
    assert set(record) <= set(DATA_RECORD_TAGS)
    assert_pan_free(result, profile.pan)


def test_the_data_record_carries_exactly_what_the_cdol1_data_sent(
    make_card: MakeCard, config: MakeConfig, profile: CardProfile
) -> None:
    wire = Wire(make_card())
    result = tap(Kernel2(), wire, config(), amount=2500)
    (command,) = wire.sent(INS_GENERATE_AC)
    cdol1 = dol.parse_dol(profile.applications[0].cdol1 or b"")
    sent = dol.split_dol_data(cdol1, apdu.CommandApdu.parse(command).data)
    for tag in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x9F34, 0x9F35):
        assert result.data_record[tag] == sent[tag], hex(tag)
    assert result.tvr == sent[0x95]  # nothing changed the TVR after GENERATE AC


def test_cda_is_requested_for_an_arqc(make_card: MakeCard, config: MakeConfig) -> None:
    wire = Wire(make_card())
    tap(Kernel2(), wire, config(), amount=2500)
    (command,) = wire.sent(INS_GENERATE_AC)
    assert command[2] == ARQC | 0x10


def test_offline_approval_within_the_floor_limit_and_the_card_offline_limit(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    result = tap(Kernel2(), make_card(), config(), amount=1000)
    assert result.outcome.status == Status.APPROVED
    assert result.outcome.cvm == Cvm.NO_CVM
    assert not result.outcome.receipt
    assert result.cryptogram_type == TC
    assert result.oda.result == "passed"
    assert result.data_record[0x9F27] == b"\x40"
    assert result.data_record[0x9F26] == pl.issuer_ac(issuer, profile, result.data_record)
    assert result.tvr == TVR(relay_resistance_performed=1).to_bytes()  # RRP not performed


def test_a_tc_asked_above_the_card_offline_limit_comes_back_an_arqc(
    make_card: MakeCard, config: MakeConfig
) -> None:
    terminal = config(aid_config(floor_limit=100_000, cvm_required_limit=100_000))
    result = tap(Kernel2(), make_card(), terminal, amount=6000)  # card offline limit 5000
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.cryptogram_type == ARQC


def test_tac_denial_declines(make_card: MakeCard, config: MakeConfig) -> None:
    floor_limit_denial = Tacs(denial=bytes.fromhex("0000008000"))
    wire = Wire(make_card())
    result = tap(Kernel2(), wire, config(aid_config(tacs=floor_limit_denial)), amount=2500)
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.NOT_AUTHORISED
    assert result.cryptogram_type == AAC
    assert wire.sent(INS_GENERATE_AC)[0][2] == AAC  # an AAC is not signed
    assert result.data_record[0x9F27] == b"\x00"
    assert result.oda.result == "not performed"


def test_iac_denial_declines(make_card: MakeCard, config: MakeConfig) -> None:
    card = make_card(iac_denial=bytes.fromhex("0000000001"))  # RRP not performed
    result = tap(Kernel2(), card, config(), amount=1000)
    assert result.outcome.status == Status.DECLINED
    assert result.cryptogram_type == AAC
    assert any("denial action codes match" in words for words in result.decisions)


def test_an_offline_only_terminal_declines_what_it_cannot_approve(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), make_card(), config(terminal_type=0x23), amount=2500)
    assert result.outcome.status == Status.DECLINED  # floor limit in IAC-Default


def test_an_online_only_terminal_always_asks_for_an_arqc(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), make_card(), config(terminal_type=0x21), amount=100)
    assert result.outcome.status == Status.ONLINE_REQUEST


def downgrade_to_aac(command: bytes) -> bytes:
    """The card is asked for an AAC whatever the kernel asked: the card declines."""
    if command[1] != INS_GENERATE_AC:
        return command
    return command[:2] + b"\x00" + command[3:]


def test_the_card_declining_with_an_aac_is_declined(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), Wire(make_card(), command=downgrade_to_aac), config(), amount=2500)
    assert result.outcome.status == Status.DECLINED
    assert result.cryptogram_type == AAC
    assert result.data_record[0x9F27] == b"\x00"
    assert result.oda.result == "not performed"


def test_the_card_declining_on_a_terminal_with_a_contact_interface_is_try_another_interface(
    make_card: MakeCard, config: MakeConfig
) -> None:
    terminal = config(capabilities=WITH_CONTACT)
    result = tap(Kernel2(), Wire(make_card(), command=downgrade_to_aac), terminal, amount=2500)
    assert result.outcome.status == Status.TRY_ANOTHER_INTERFACE
    assert result.outcome.alternate_interface == "contact chip"


def test_the_card_declining_a_refund_ends_the_application(
    make_card: MakeCard, config: MakeConfig
) -> None:
    card = Wire(make_card(), command=downgrade_to_aac)
    result = tap(Kernel2(), card, config(), amount=2500, kind=TransactionType.REFUND)
    assert result.outcome.status == Status.END_APPLICATION
    assert result.cryptogram_type == AAC


# --- CDA failures --------------------------------------------------------------------------------


def test_an_unknown_ca_key_fails_cda_before_generate_ac_and_goes_online_without_it(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    wire = Wire(make_card())
    result = tap(Kernel2(), wire, config(keys=CaKeyStore()), amount=1000)
    assert TVR.from_bytes(result.tvr).cda_failed
    assert (result.oda.method, result.oda.result) == ("CDA", "failed")
    assert "no CA public key A000000004 index F1" in result.oda.reason
    assert wire.sent(INS_GENERATE_AC)[0][2] == ARQC  # IAC-Online: CDA failed; no CDA asked
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.data_record[0x9F26] == pl.issuer_ac(issuer, profile, result.data_record)


def test_an_unknown_ca_key_on_an_offline_only_terminal_declines(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), make_card(), config(keys=CaKeyStore(), terminal_type=0x23))
    assert result.outcome.status == Status.DECLINED


def flip_sdad_bit(command: bytes, answer: bytes) -> bytes:
    children = [
        tlv.Tlv.primitive(0x9F4B, bytes((obj.value[0], obj.value[1] ^ 0x01)) + obj.value[2:])
        if obj.tag == 0x9F4B
        else obj
        for obj in template(answer)
    ]
    return rebuild(children)


def test_a_flipped_sdad_bit_is_cda_failed_and_ends_the_application(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=only(INS_GENERATE_AC)(flip_sdad_bit))
    result = tap(Kernel2(), wire, config(), amount=2500)
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.start == Start.NA
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.TRY_ANOTHER_CARD
    assert TVR.from_bytes(result.tvr).cda_failed
    assert (result.oda.method, result.oda.result) == ("CDA", "failed")
    assert result.data_record == {}


def test_a_tc_without_the_sdad_it_was_asked_to_sign_is_a_card_data_error(
    make_card: MakeCard, config: MakeConfig
) -> None:
    def strip_sdad(command: bytes, answer: bytes) -> bytes:
        kept = [obj for obj in template(answer) if obj.tag != 0x9F4B]
        return rebuild([*kept, tlv.Tlv.primitive(0x9F26, bytes(8))])

    wire = Wire(make_card(), answer=only(INS_GENERATE_AC)(strip_sdad))
    result = tap(Kernel2(), wire, config(), amount=1000)
    assert result.outcome.status == Status.END_APPLICATION
    assert TVR.from_bytes(result.tvr).cda_failed


def test_missing_cda_data_is_icc_data_missing_and_cda_failed(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=drop_from_record(0x90))  # Issuer Public Key Certificate
    result = tap(Kernel2(), wire, config(), amount=1000)
    tvr = TVR.from_bytes(result.tvr)
    assert tvr.icc_data_missing and tvr.cda_failed
    assert result.outcome.status == Status.ONLINE_REQUEST


def test_without_cda_in_the_reader_oda_is_not_performed(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card())
    result = tap(Kernel2(), wire, config(with_kernel2(cda=False)), amount=1000)
    assert TVR.from_bytes(result.tvr).offline_data_authentication_not_performed
    assert wire.sent(INS_GENERATE_AC)[0][2] == ARQC  # IAC-Online: ODA not performed
    assert result.oda.method == "none"
    assert result.outcome.status == Status.ONLINE_REQUEST


# --- CVM -----------------------------------------------------------------------------------------


def test_above_the_cvm_limit_online_pin_comes_first(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), make_card(), config(), amount=4000)
    assert result.outcome.cvm == Cvm.ONLINE_PIN
    assert result.data_record[0x9F34] == bytes.fromhex("420300")
    assert result.data_record[0x9F33][1] == 0x60  # CVM Capability - CVM Required
    assert TVR.from_bytes(result.tvr).online_cvm_captured


def test_above_the_cvm_limit_a_signature_terminal_gets_a_signature_and_a_receipt(
    make_card: MakeCard, config: MakeConfig
) -> None:
    terminal = config(with_kernel2(cvm_capability_cvm_required=b"\x20"))
    result = tap(Kernel2(), make_card(), terminal, amount=4000)
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.outcome.cvm == Cvm.SIGNATURE
    assert result.outcome.receipt
    assert result.data_record[0x9F34] == bytes.fromhex("1E0300")


def test_an_offline_approval_with_a_signature_says_approved_please_sign(
    make_card: MakeCard, config: MakeConfig
) -> None:
    terminal = config(
        aid_config(
            floor_limit=10_000,
            cvm_required_limit=500,
            kernel2=Kernel2Settings(cvm_capability_cvm_required=b"\x20"),
        )
    )
    result = tap(Kernel2(), make_card(), terminal, amount=1000)
    assert result.outcome.status == Status.APPROVED
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.APPROVED_SIGN
    assert result.outcome.receipt


def test_below_the_cvm_limit_no_cvm(make_card: MakeCard, config: MakeConfig) -> None:
    result = tap(Kernel2(), make_card(), config(), amount=1000)
    assert result.outcome.cvm == Cvm.NO_CVM
    assert result.data_record[0x9F34] == bytes.fromhex("1F0302")
    assert result.data_record[0x9F33][1] == 0x08  # CVM Capability - No CVM Required


def test_on_device_cvm_for_a_phone_like_aip(make_card: MakeCard, config: MakeConfig) -> None:
    card = make_card(aip=bytes.fromhex("1BC0"))  # the HCE profile's AIP
    above = tap(Kernel2(), card, config(), amount=4000)
    below = tap(Kernel2(), card, config(), amount=1000)
    assert above.outcome.cvm == Cvm.CONFIRMATION_CODE_VERIFIED
    assert above.data_record[0x9F34] == bytes.fromhex("010002")
    assert below.outcome.cvm == Cvm.NO_CVM
    assert below.data_record[0x9F34] == bytes.fromhex("3F0002")


def test_on_device_cvm_off_in_the_reader_uses_the_cvm_list(
    make_card: MakeCard, config: MakeConfig
) -> None:
    card = make_card(aip=bytes.fromhex("1BC0"))
    result = tap(Kernel2(), card, config(with_kernel2(on_device_cvm=False)), amount=4000)
    assert result.outcome.cvm == Cvm.ONLINE_PIN


def test_a_cvm_list_that_fails_sets_cardholder_verification_not_successful(
    make_card: MakeCard, config: MakeConfig
) -> None:
    card = make_card(cvm_list=bytes.fromhex("00000000000000000200"))  # online PIN, no fallback
    terminal = config(with_kernel2(cvm_capability_cvm_required=b"\x20"))
    result = tap(Kernel2(), card, terminal, amount=4000)
    assert result.data_record[0x9F34] == bytes.fromhex("3F0001")
    assert TVR.from_bytes(result.tvr).cardholder_verification_not_successful
    assert result.outcome.status == Status.ONLINE_REQUEST  # IAC-Online byte 3 'FC'


# --- processing restrictions ---------------------------------------------------------------------


def test_an_expired_card_goes_online_with_expired_application(
    make_card: MakeCard, config: MakeConfig
) -> None:
    card = make_card(profile_changes={"expiry": bytes.fromhex("260314")})
    result = tap(Kernel2(), card, config(), amount=1000)
    assert TVR.from_bytes(result.tvr).expired_application
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.oda.result == "passed"


def test_a_card_not_valid_at_this_terminal_has_service_not_allowed(
    make_card: MakeCard, config: MakeConfig
) -> None:
    card = make_card(auc=bytes.fromhex("FE00"))  # not valid at terminals other than ATMs
    result = tap(Kernel2(), card, config(), amount=1000)
    assert TVR.from_bytes(result.tvr).service_not_allowed
    assert result.outcome.status == Status.ONLINE_REQUEST


def test_cashback_the_card_does_not_allow_has_service_not_allowed(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(
        Kernel2(),
        make_card(),
        config(),
        amount=1000,
        kind=TransactionType.PURCHASE_WITH_CASHBACK,
        amount_other=500,
    )
    assert TVR.from_bytes(result.tvr).service_not_allowed


def test_a_different_application_version_is_flagged(
    make_card: MakeCard, config: MakeConfig
) -> None:
    result = tap(Kernel2(), make_card(), config(aid_config(application_version=b"\x00\x01")))
    assert TVR.from_bytes(result.tvr).different_application_versions


# --- mag-stripe mode -----------------------------------------------------------------------------


def track2_discretionary(track2: bytes) -> str:
    return track2.hex().upper().rstrip("F").partition("D")[2][7:]


def test_mag_stripe_mode_builds_the_tracks_with_the_cvc3_un_and_atc(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    card = make_card()
    wire = Wire(card)
    result = tap(Kernel2(), wire, config(with_kernel2(emv_mode=False)), amount=1000)
    assert (result.path, result.outcome.status) == ("mag-stripe", Status.ONLINE_REQUEST)
    assert result.outcome.cvm == Cvm.NO_CVM  # Mag-stripe CVM Capability - No CVM Required '00'
    assert wire.sent(INS_GENERATE_AC) == []
    (ccc,) = wire.sent(INS_CCC)
    record = result.data_record
    un_numeric = record[0x9F6A]
    assert apdu.CommandApdu.parse(ccc).data == un_numeric  # UDOL 9F6A04
    assert un_numeric == bytes.fromhex(f"{int.from_bytes(UN, 'big') % 1000:08d}")  # nUN 3
    atc = record[0x9F36]
    kd_cvc3 = kd.derive_icc_mk_a(issuer.imk(profile.keys["imk_cvc3"]), profile.pan, profile.psn)
    image = card.image.applications[0].data
    expected2 = cvc3.generate_cvc3(kd_cvc3, image[0x9F6B], atc, un_numeric)
    expected1 = cvc3.generate_cvc3(kd_cvc3, image[0x56], atc, un_numeric)
    assert int.from_bytes(record[0x9F61], "big") == int(expected2)
    assert int.from_bytes(record[0x9F60], "big") == int(expected1)
    # PUNATC(Track2) 0E70, NATC 3: ATC at positions 1-3, UN at 6-8; PCVC3 000E: CVC3 at 9-11
    dd = track2_discretionary(record[0x9F6B])
    atc_digits = f"{int.from_bytes(atc, 'big'):03d}"[-3:]
    assert dd == f"0{atc_digits}00{un_numeric.hex()[-3:]}{expected2[-3:]}3"
    assert record[0x9F6B].hex().upper().startswith(f"{profile.pan}D2912201")
    track1 = record[0x56].decode("ascii")  # 12 discretionary characters: ATC at 0-2, UN 5-7
    assert track1.split("^")[2] == f"2912201{atc_digits}00{un_numeric.hex()[-3:]}{expected1[-3:]}3"
    assert result.oda.method == "none"
    assert 0x95 not in record and 0x5A not in record


def test_mag_stripe_cvm_above_the_limit_follows_the_mag_stripe_cvm_capability(
    make_card: MakeCard, config: MakeConfig
) -> None:
    terminal = config(with_kernel2(emv_mode=False, mag_stripe_cvm_required=b"\x20"))
    result = tap(Kernel2(), make_card(), terminal, amount=4000)
    assert result.outcome.cvm == Cvm.ONLINE_PIN
    signature = config(with_kernel2(emv_mode=False, mag_stripe_cvm_required=b"\x10"))
    signed = tap(Kernel2(), make_card(), signature, amount=4000)
    assert (signed.outcome.cvm, signed.outcome.receipt) == (Cvm.SIGNATURE, True)


def test_a_card_without_emv_mode_runs_mag_stripe(make_card: MakeCard, config: MakeConfig) -> None:
    result = tap(Kernel2(), make_card(aip=bytes.fromhex("1900")), config(), amount=1000)
    assert result.path == "mag-stripe"
    assert result.outcome.status == Status.ONLINE_REQUEST


def test_no_mode_in_common_ends_the_application(make_card: MakeCard, config: MakeConfig) -> None:
    terminal = config(with_kernel2(emv_mode=False, mag_stripe_mode=False))
    result = tap(Kernel2(), make_card(), terminal)
    assert result.outcome.status == Status.END_APPLICATION


def test_mag_stripe_data_missing_ends_the_application(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=drop_from_record(0x9F67))  # NATC(Track2)
    result = tap(Kernel2(), wire, config(with_kernel2(emv_mode=False)))
    assert result.outcome.status == Status.END_APPLICATION
    assert "NATC(Track2) (9F67)" in result.outcome.reason


def test_mag_stripe_with_a_ccc_error_ends_the_application(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=only(INS_CCC)(lambda command, answer: b"\x69\x85"))
    result = tap(Kernel2(), wire, config(with_kernel2(emv_mode=False)))
    assert result.outcome.status == Status.END_APPLICATION


def test_track_building_pure() -> None:
    inputs = TrackInputs(
        pcvc3=bytes.fromhex("000E"),
        punatc=bytes.fromhex("0E70"),
        natc=3,
        cvc3=(12345).to_bytes(2, "big"),
        un_digits="678",
        atc=(7).to_bytes(2, "big"),
        last_digit=3,
    )
    track2 = build_track2(bytes.fromhex("5413330089020011D29122010000000000000F"), inputs)
    assert track2 == bytes.fromhex("5413330089020011D29122010007006783453F")
    track1 = build_track1(b"B5413330089020011^A/B^2912201000000000000", inputs)
    assert track1 == b"B5413330089020011^A/B^2912201007006783453"
    assert build_track2(b"\x12\x34", inputs) is None
    assert build_track2(bytes.fromhex("5413D291220100"), inputs) is None  # no room for the bits
    assert build_track1(b"\xff^^", inputs) is None


@pytest.mark.parametrize(
    ("punatc", "natc", "nun"),
    [
        ("0E70", "03", 3),
        ("0000", "00", 0),
        ("FFFF", "08", 8),
        ("FFFF", "07", None),
        ("0001", "02", None),
    ],
)
def test_number_of_un_digits(punatc: str, natc: str, nun: int | None) -> None:
    assert number_of_un_digits(bytes.fromhex(punatc), bytes.fromhex(natc)) == nun


def test_unpredictable_number_numeric_keeps_nun_digits() -> None:
    assert unpredictable_number_numeric(bytes.fromhex("1A2B3C4D"), 3) == bytes.fromhex("00000101")
    assert unpredictable_number_numeric(bytes.fromhex("FFFFFFFF"), 8) == bytes.fromhex("94967295")
    assert unpredictable_number_numeric(bytes.fromhex("FFFFFFFF"), 0) == bytes(4)


@pytest.mark.parametrize(
    ("capability", "cvm"),
    [
        ("00", Cvm.NO_CVM),
        ("10", Cvm.SIGNATURE),
        ("20", Cvm.ONLINE_PIN),
        ("F0", Cvm.NA),
        ("", Cvm.NA),
    ],
)
def test_mag_stripe_cvm_capability_coding(capability: str, cvm: Cvm) -> None:
    assert mag_stripe_cvm(bytes.fromhex(capability)) == cvm


def test_the_default_mag_stripe_cvm_capability_cvm_required_is_online_pin() -> None:
    """DF811E '20' (bits 8-5 0010), in the settings and the shipped default configuration."""
    assert mag_stripe_cvm(Kernel2Settings().mag_stripe_cvm_required) == Cvm.ONLINE_PIN
    shipped = default_config().aid(MASTERCARD)
    assert shipped is not None
    assert mag_stripe_cvm(shipped.kernel2.mag_stripe_cvm_required) == Cvm.ONLINE_PIN


# --- torn transactions ---------------------------------------------------------------------------


def test_a_torn_generate_ac_is_logged_and_recovered_with_recover_ac_on_the_next_tap(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    kernel, card, terminal = Kernel2(), make_card(), config()
    torn = tap(kernel, Wire(card, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    assert (torn.outcome.status, torn.outcome.start) == (Status.TRY_AGAIN, Start.B)
    assert torn.outcome.ui_request_on_restart is not None
    assert torn.outcome.ui_request_on_restart.message == Message.PRESENT_CARD_AGAIN
    assert torn.outcome.ui_request_on_restart.status == ReaderStatus.READY_TO_READ
    assert len(kernel.torn) == 1
    atc_after_tear = card.keys.atc

    retap = Wire(card)
    result = tap(kernel, retap, terminal, amount=2500, un=bytes.fromhex("99999999"))
    assert len(retap.sent(INS_RECOVER_AC)) == 1
    assert retap.sent(INS_GENERATE_AC) == []
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert (result.oda.method, result.oda.result) == ("CDA", "passed")
    record = result.data_record
    assert record[0x9F37] == UN  # the torn transaction's, which the cryptogram covers
    assert record[0x9F26] == pl.issuer_ac(issuer, profile, record)
    assert int.from_bytes(record[0x9F36], "big") == atc_after_tear == card.keys.atc
    assert len(kernel.torn) == 0
    assert_pan_free(result, profile.pan)


def test_recover_ac_sends_the_drdol_data_of_the_torn_transaction(
    make_card: MakeCard, config: MakeConfig
) -> None:
    kernel, card, terminal = Kernel2(), make_card(), config()
    tap(kernel, Wire(card, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    retap = Wire(card)
    tap(kernel, retap, terminal, amount=2500)
    (recover,) = retap.sent(INS_RECOVER_AC)
    drdol_data = apdu.CommandApdu.parse(recover).data
    assert drdol_data == UN + bytes.fromhex("000000002500") + USD + bytes.fromhex("260315")


def test_a_tear_of_a_card_without_drdol_is_not_logged(
    card_without_drdol: Card, config: MakeConfig
) -> None:
    kernel = Kernel2()
    torn = tap(kernel, Wire(card_without_drdol, lose_after=INS_GENERATE_AC), config(), amount=2500)
    assert (torn.outcome.status, torn.outcome.start) == (Status.TRY_AGAIN, Start.B)
    assert len(kernel.torn) == 0
    retap = Wire(card_without_drdol)
    result = tap(kernel, retap, config(), amount=2500)
    assert retap.sent(INS_RECOVER_AC) == []
    assert result.outcome.status == Status.ONLINE_REQUEST


def test_a_card_that_cannot_recover_gets_a_new_generate_ac(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    kernel, store, terminal = Kernel2(), MemoryCounterStore(), config()
    tap(kernel, Wire(make_card(store=store), lose_after=INS_GENERATE_AC), terminal, amount=2500)
    fresh = Wire(make_card(store=store))  # same card data and counters, no remembered answer
    result = tap(kernel, fresh, terminal, amount=2500)
    assert len(fresh.sent(INS_RECOVER_AC)) == 1
    assert len(fresh.sent(INS_GENERATE_AC)) == 1
    assert len(kernel.torn) == 0
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.data_record[0x9F26] == pl.issuer_ac(issuer, profile, result.data_record)


def test_a_torn_record_past_its_lifetime_is_dropped(
    make_card: MakeCard, config: MakeConfig
) -> None:
    kernel, card, terminal = Kernel2(), make_card(), config()
    tap(kernel, Wire(card, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    later = Wire(card)
    result = tap(kernel, later, terminal, amount=2500, when=WHEN + timedelta(seconds=301))
    assert later.sent(INS_RECOVER_AC) == []
    assert len(kernel.torn) == 0
    assert result.outcome.status == Status.ONLINE_REQUEST


def test_a_card_lost_during_recover_ac_keeps_its_torn_record(
    make_card: MakeCard, config: MakeConfig
) -> None:
    kernel, card, terminal = Kernel2(), make_card(), config()
    tap(kernel, Wire(card, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    lost = tap(kernel, Wire(card, lose_before=INS_RECOVER_AC), terminal, amount=2500)
    assert (lost.outcome.status, lost.outcome.start) == (Status.TRY_AGAIN, Start.B)
    assert len(kernel.torn) == 1
    assert tap(kernel, Wire(card), terminal, amount=2500).outcome.status == Status.ONLINE_REQUEST


def test_the_torn_log_keeps_at_most_its_maximum_records(
    make_card: MakeCard, config: MakeConfig
) -> None:
    kernel, terminal = Kernel2(), config()
    first = make_card(profile_changes={"psn": b"\x02"})
    second = make_card(profile_changes={"psn": b"\x03"})
    tap(kernel, Wire(first, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    tap(kernel, Wire(second, lose_after=INS_GENERATE_AC), terminal, amount=2500)
    assert len(kernel.torn) == 1  # DF811D = 1: the first card's record was displaced
    retap = Wire(first)
    tap(kernel, retap, terminal, amount=2500)
    assert retap.sent(INS_RECOVER_AC) == []


def test_torn_log_bookkeeping() -> None:
    log = TornLog()
    assert log.find(None, None) is None
    assert log.clean(None, 0) == []
    assert (
        transaction_time({0x9A: bytes.fromhex("260315"), 0x9F21: bytes.fromhex("120000")}) == WHEN
    )
    assert (
        transaction_time({0x9A: bytes.fromhex("260315"), 0x9F21: bytes.fromhex("250000")}) is None
    )
    assert transaction_time({}) is None


# --- status words, malformed answers, lost cards -------------------------------------------------


@pytest.mark.parametrize("sw", ["6984", "6985", "6A81", "6D00", "6F00"])
def test_gpo_status_words_select_the_next_application(
    make_card: MakeCard, config: MakeConfig, sw: str
) -> None:
    wire = Wire(make_card(), answer=only(INS_GPO)(lambda command, answer: bytes.fromhex(sw)))
    result = tap(Kernel2(), wire, config())
    assert (result.outcome.status, result.outcome.start) == (Status.SELECT_NEXT, Start.C)
    assert result.path == ""


def test_a_format_1_gpo_answer_works(make_card: MakeCard, config: MakeConfig) -> None:
    def to_format_1(command: bytes, answer: bytes) -> bytes:
        found = {obj.tag: obj.value for obj in template(answer)}
        return tlv.Tlv.primitive(0x80, found[0x82] + found[0x94]).to_bytes() + b"\x90\x00"

    wire = Wire(make_card(), answer=only(INS_GPO)(to_format_1))
    assert tap(Kernel2(), wire, config(), amount=1000).outcome.status == Status.APPROVED


def test_a_format_1_generate_ac_answer_works_without_cda(
    make_card: MakeCard, config: MakeConfig, issuer: SoftIssuer, profile: CardProfile
) -> None:
    def to_format_1(command: bytes, answer: bytes) -> bytes:
        found = {obj.tag: obj.value for obj in template(answer)}
        value = found[0x9F27] + found[0x9F36] + found[0x9F26] + found[0x9F10]
        return tlv.Tlv.primitive(0x80, value).to_bytes() + b"\x90\x00"

    wire = Wire(make_card(), answer=only(INS_GENERATE_AC)(to_format_1))
    result = tap(Kernel2(), wire, config(with_kernel2(cda=False)), amount=2500)
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert result.data_record[0x9F26] == pl.issuer_ac(issuer, profile, result.data_record)


@pytest.mark.parametrize(
    ("ins", "answer"),
    [
        (INS_GPO, "7703820119" + "9000"),  # malformed TLV
        (INS_GPO, "770482021980" + "9000"),  # no AFL
        (INS_GPO, "8003198008" + "9000"),  # Format 1 too short
        (INS_GPO, "6F00" + "9000"),  # another template
        (INS_READ_RECORD, "7005" + "9000"),
        (INS_READ_RECORD, "9000"),
        (INS_READ_RECORD, "6A83"),
        (INS_GENERATE_AC, "6985"),
        (INS_GENERATE_AC, "77035F2A01" + "9000"),
        (INS_GENERATE_AC, "77089F2701809F360200" + "9000"),  # ATC cut short
        (INS_GENERATE_AC, "770A9F2701C09F36020001" + "9000"),  # an AAR
        (INS_GENERATE_AC, "77"),
    ],
)
def test_malformed_answers_end_the_application(
    make_card: MakeCard, config: MakeConfig, ins: int, answer: str
) -> None:
    wire = Wire(make_card(), answer=only(ins)(lambda command, _: bytes.fromhex(answer)))
    result = tap(Kernel2(), wire, config(), amount=1000)
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.start == Start.NA
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.TRY_ANOTHER_CARD


def test_more_than_was_asked_for_is_a_card_data_error(
    make_card: MakeCard, config: MakeConfig
) -> None:
    def tc_for_arqc(command: bytes, answer: bytes) -> bytes:
        changed = [
            tlv.Tlv.primitive(0x9F27, b"\x40") if obj.tag == 0x9F27 else obj
            for obj in template(answer)
        ]
        return rebuild(changed)

    wire = Wire(make_card(), answer=only(INS_GENERATE_AC)(tc_for_arqc))
    result = tap(Kernel2(), wire, config(with_kernel2(cda=False)), amount=2500)
    assert result.outcome.status == Status.END_APPLICATION
    assert "TC returned for ARQC" in result.outcome.reason


def test_missing_mandatory_data_ends_the_application_with_icc_data_missing(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=drop_from_record(0x5A))  # the PAN
    result = tap(Kernel2(), wire, config())
    assert result.outcome.status == Status.END_APPLICATION
    assert TVR.from_bytes(result.tvr).icc_data_missing
    assert "PAN (5A)" in result.outcome.reason
    assert wire.sent(INS_GENERATE_AC) == []


@pytest.mark.parametrize("fci", ["", "6F00", "6F038401A0", "A5009000", "6F0A8407A00000000410"])
def test_an_unusable_fci_selects_the_next_application(
    make_card: MakeCard, config: MakeConfig, fci: str
) -> None:
    card = make_card()
    card.power_on()
    session = CardSession(card)
    terminal = config()
    transaction = Transaction(1000, "0840", WHEN, UN)
    selected = Selected(
        MASTERCARD,
        bytes.fromhex(fci),
        terminal.aids[0],
        terminal,
        Indicators(),
        terminal_data(transaction, terminal.constants()),
    )
    result = Kernel2().run(session, selected)
    assert (result.outcome.status, result.outcome.start) == (Status.SELECT_NEXT, Start.C)


@pytest.mark.parametrize("ins", [INS_GPO, INS_READ_RECORD, INS_CCC])
def test_a_card_lost_before_generate_ac_is_present_card_again(
    make_card: MakeCard, config: MakeConfig, ins: int
) -> None:
    kernel = Kernel2()
    terminal = config(with_kernel2(emv_mode=ins != INS_CCC))
    result = tap(kernel, Wire(make_card(), lose_before=ins), terminal)
    assert (result.outcome.status, result.outcome.start) == (Status.TRY_AGAIN, Start.B)
    assert result.outcome.ui_request_on_restart is not None
    assert result.outcome.ui_request_on_restart.message == Message.PRESENT_CARD_AGAIN
    assert not result.outcome.final
    assert len(kernel.torn) == 0


def test_a_card_answer_without_status_word_is_a_card_data_error(
    make_card: MakeCard, config: MakeConfig
) -> None:
    wire = Wire(make_card(), answer=only(INS_READ_RECORD)(lambda command, answer: b"\x90"))
    result = tap(Kernel2(), wire, config())
    assert result.outcome.status == Status.END_APPLICATION


# --- garbage -------------------------------------------------------------------------------------


class Garbage(pl.Relay):
    """The real card behind a wire that mutates its answers (seeded)."""

    def __init__(self, card: Card, rng: random.Random, rate: float) -> None:
        super().__init__(card)
        self.rng, self.rate = rng, rate

    def transceive(self, command: bytes) -> bytes:
        rng = self.rng
        if command[1] == 0xA4:  # the test's own SELECTs stay clean
            return self.card.transceive(command)
        if rng.random() < 0.02:
            raise CardRemoved("gone")
        answer = bytearray(self.card.transceive(command))
        if rng.random() < self.rate and answer:
            choice = rng.randrange(4)
            if choice == 0:
                answer[rng.randrange(len(answer))] ^= 1 << rng.randrange(8)
            elif choice == 1:
                del answer[rng.randrange(len(answer)) :]
            elif choice == 2:
                answer[-2:-2] = rng.randbytes(rng.randrange(1, 20))
            else:
                answer = bytearray(rng.randbytes(rng.randrange(40)))
        return bytes(answer)


def test_garbage_answers_always_end_in_an_outcome(
    make_card: MakeCard, config: MakeConfig, profile: CardProfile
) -> None:
    rng = random.Random(20260315)
    kernel = Kernel2()
    terminals = (config(), config(with_kernel2(emv_mode=False)), config(terminal_type=0x23))
    seen: set[Status] = set()
    real = make_card()
    for number in range(1000):
        if number % 250 == 249:
            real = make_card()  # a fresh card now and then: the ATC and offline totals reset
        card = Garbage(real, rng, rng.choice((0.1, 0.5)))
        amount = rng.choice((0, 1000, 2500, 4000))
        result = tap(kernel, card, rng.choice(terminals), amount, un=rng.randbytes(4))
        assert isinstance(result.outcome.status, Status)
        assert_pan_free(result, profile.pan)
        seen.add(result.outcome.status)
    assert {Status.ONLINE_REQUEST, Status.END_APPLICATION, Status.SELECT_NEXT} <= seen
