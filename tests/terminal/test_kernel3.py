"""Kernel 3 (Book C-3, qVSDC) against the real emulated Visa card, one test per exit.

Each tap does what Entry Point would before kernel activation (power on, SELECT
PPSE, SELECT the AID) and hands the kernel a hand-made Selected. Misbehaviour is
scripted by a Link around the real card that rewrites one chosen response.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plastic as pl
import pytest
import yaml

from emv import apdu, tlv
from emv.apdu import CryptogramType
from emv.bitfields import CTQ, TTQ, TVR
from emv.crypto import oda
from emv.link import CardRemoved, Link
from emv.tlv import Tlv
from hce.card import SoftIssuer, load_profile
from hce.card.profile import PROFILES_DIR, CardProfile
from terminal.config import AidConfig, Kernel3Settings
from terminal.kernels import Indicators, KernelResult, Selected
from terminal.kernels.visa import (
    Kernel3,
    after_oda_failure,
    cryptogram_type_from_iad,
    parse_track2,
    select_cvm,
)
from terminal.outcome import Cvm, Message, ReaderStatus, Start, Status
from terminal.session import CardDataError, CardSession
from terminal.transaction import Transaction, terminal_data

Plastic = pl.Plastic

WHEN = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)
UN = bytes.fromhex("5A1B3C4D")
AID = bytes.fromhex("A0000000031010")
READER = TTQ(
    emv_mode_supported=True,
    emv_contact_chip_supported=True,
    online_pin_supported=True,
    signature_supported=True,
    oda_for_online_authorizations_supported=True,
    consumer_device_cvm_supported=True,
)
ONLINE_REQUIRED = replace(READER, online_cryptogram_required=True)
OFFLINE_ONLY = replace(READER, offline_only_reader=True)
LOW = 1_000  # within the plastic card's offline limit (2500) and CVM limit (5000)
HIGH = 6_000  # above both


# --- the card ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> SoftIssuer:
    return SoftIssuer()


@pytest.fixture
def plastic(issuer: SoftIssuer) -> Plastic:
    return pl.make_plastic(issuer, load_profile("visa_qvsdc_plastic"))


def variant(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> CardProfile:
    """The shipped plastic profile with ``change`` made to its YAML document."""
    document = yaml.safe_load((PROFILES_DIR / "visa_qvsdc_plastic.yaml").read_text("utf-8"))
    change(document)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(document), "utf-8")
    return load_profile(path)


# --- scripted misbehaviour --------------------------------------------------------------------


@dataclass
class Rule:
    """Rewrite the answer to commands with this INS (and P1 P2 when given)."""

    ins: int
    rewrite: Callable[[bytes], bytes]
    p1: int | None = None
    p2: int | None = None

    def matches(self, command: bytes) -> bool:
        return (
            command[1] == self.ins
            and self.p1 in (None, command[2])
            and self.p2 in (None, command[3])
        )


@dataclass
class Script(pl.Relay):
    """A Link around the real card that rewrites chosen responses."""

    card: Link
    rules: Sequence[Rule]
    commands: list[bytes] = field(default_factory=list)

    def transceive(self, command: bytes) -> bytes:
        self.commands.append(command)
        answer = self.card.transceive(command)
        for rule in self.rules:
            if rule.matches(command):
                answer = rule.rewrite(answer)
        return answer


def on_gpo(rewrite: Callable[[bytes], bytes]) -> Rule:
    return Rule(0xA8, rewrite)


def on_record(sfi: int, number: int, rewrite: Callable[[bytes], bytes]) -> Rule:
    return Rule(0xB2, rewrite, p1=number, p2=sfi << 3 | 0x04)


def edit(tag: int, value: bytes | None) -> Callable[[bytes], bytes]:
    """Replace (or with None drop) data object ``tag`` inside the response's template."""

    def rewrite(answer: bytes) -> bytes:
        top = tlv.decode(answer[:-2])[0]
        children = [
            child if child.tag != tag or value is None else Tlv.primitive(tag, value)
            for child in top.children or ()
            if child.tag != tag or value is not None
        ]
        return Tlv.template(top.tag, *children).to_bytes() + answer[-2:]

    return rewrite


def add(obj: Tlv) -> Callable[[bytes], bytes]:
    def rewrite(answer: bytes) -> bytes:
        top = tlv.decode(answer[:-2])[0]
        return Tlv.template(top.tag, *(top.children or ()), obj).to_bytes() + answer[-2:]

    return rewrite


def flip(tag: int) -> Callable[[bytes], bytes]:
    """Flip one bit in the middle of data object ``tag``."""

    def rewrite(answer: bytes) -> bytes:
        value = bytearray(tlv.index(tlv.decode(answer[:-2]))[tag])
        value[len(value) // 2] ^= 0x01
        return edit(tag, bytes(value))(answer)

    return rewrite


def status(sw: int) -> Callable[[bytes], bytes]:
    return lambda _answer: sw.to_bytes(2, "big")


def removed(_answer: bytes) -> bytes:
    raise CardRemoved("the card left the field")


# --- a tap: Entry Point's part by hand, then the kernel -------------------------------------


def exchange(link: Link, command: apdu.CommandApdu) -> apdu.ResponseApdu:
    answer = apdu.ResponseApdu.parse(link.transceive(command.to_bytes()))
    assert answer.ok, f"{apdu.command_name(command)}: {answer.sw:04X}"
    return answer


def selected_for(
    fci: bytes,
    ttq: TTQ,
    ca_keys: oda.CaKeyStore,
    amount: int,
    *,
    when: datetime = WHEN,
    kernel3: Kernel3Settings | None = None,
) -> Selected:
    config = AidConfig(
        aid=AID, kernel_id=3, ttq=ttq.to_bytes(), kernel3=kernel3 or Kernel3Settings()
    )
    terminal = pl.terminal_config("kernel 3 tests", config, ca_keys=ca_keys)
    data = terminal_data(Transaction(amount, "0826", when, UN), terminal.constants())
    data[0x9F66] = ttq.to_bytes()
    return Selected(AID, fci, config, terminal, Indicators(ttq=ttq.to_bytes()), data)


def tap(
    link: Link,
    plastic: Plastic,
    amount: int = LOW,
    ttq: TTQ = READER,
    *,
    ca_keys: oda.CaKeyStore | None = None,
    when: datetime = WHEN,
    kernel3: Kernel3Settings | None = None,
) -> KernelResult:
    link.power_on()
    ppse = tlv.decode(exchange(link, apdu.select_ppse()).data)
    aid = tlv.find(ppse, 0x4F)
    assert aid is not None and aid.value == AID
    fci = exchange(link, apdu.select(AID)).data
    keys = plastic.ca_keys if ca_keys is None else ca_keys
    selected = selected_for(fci, ttq, keys, amount, when=when, kernel3=kernel3)
    result = Kernel3().run(CardSession(link), selected)
    link.power_off()
    texts = [result.outcome.reason, *result.decisions]
    assert not any(plastic.profile.pan in text for text in texts), "a PAN in a message"
    return result


def tvr(result: KernelResult) -> TVR:
    return TVR.from_bytes(result.tvr)


# --- approvals, online requests, declines ---------------------------------------------------


def test_offline_approval_after_fdda_passed(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic)
    outcome = result.outcome
    assert (outcome.status, outcome.cvm, outcome.start) == (Status.APPROVED, Cvm.NO_CVM, Start.NA)
    assert outcome.ui_request is not None and outcome.ui_request.message == Message.APPROVED
    assert (result.kernel, result.path, result.cryptogram_type) == (
        "C-3",
        "qVSDC",
        CryptogramType.TC,
    )
    assert (result.oda.method, result.oda.result) == ("fDDA", "passed")
    assert result.tvr == bytes(5)
    assert [ui.message for ui in result.ui] == [Message.CARD_READ_OK]
    assert "card returned TC" in result.decisions and "fDDA passed" in result.decisions
    assert {0x8F, 0x90, 0x9F46, 0x9F4B, 0x9F69, 0x5A} <= set(result.card_data)


def test_the_sdad_is_really_verified_without_the_ca_key_the_tc_goes_online(
    plastic: Plastic,
) -> None:
    result = tap(plastic.card, plastic, ca_keys=oda.CaKeyStore())
    assert result.outcome.status == Status.ONLINE_REQUEST  # plastic CTQ: go online if ODA fails
    assert result.cryptogram_type == CryptogramType.TC
    assert (result.oda.result, tvr(result).dda_failed) == ("failed", True)
    assert "no CA public key A000000003 index 92" in result.oda.reason


def test_online_request_data_record_recomputes_the_arqc(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic, ttq=ONLINE_REQUIRED)
    outcome = result.outcome
    assert (outcome.status, outcome.cvm, result.cryptogram_type) == (
        Status.ONLINE_REQUEST,
        Cvm.NO_CVM,
        CryptogramType.ARQC,
    )
    assert outcome.ui_request is not None and outcome.ui_request.message == Message.AUTHORISING
    assert result.oda.result == "passed"  # the reader does ODA for online authorisations
    record = result.data_record
    assert record[0x9F66] == ONLINE_REQUIRED.to_bytes()
    assert record[0x5A] == bytes.fromhex(plastic.profile.pan)
    assert record[0x84] == AID and record[0x9F27] == b"\x80"
    assert pl.issuer_ac(plastic.issuer, plastic.profile, record) == record[0x9F26]


def test_the_data_record_keeps_the_tvr_sent_not_the_kernels(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic, ttq=ONLINE_REQUIRED, ca_keys=oda.CaKeyStore())
    assert result.outcome.status == Status.ONLINE_REQUEST  # ODA for online failed: still online
    assert tvr(result).dda_failed
    record = result.data_record
    assert record[0x95] == bytes(5)
    assert pl.issuer_ac(plastic.issuer, plastic.profile, record) == record[0x9F26]


def test_offline_only_reader_above_the_offline_limit_is_declined(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic, amount=HIGH, ttq=OFFLINE_ONLY)
    outcome = result.outcome
    assert (outcome.status, result.cryptogram_type) == (Status.DECLINED, CryptogramType.AAC)
    assert outcome.ui_request is not None and outcome.ui_request.message == Message.NOT_AUTHORISED
    assert tvr(result).offline_data_authentication_not_performed
    assert result.data_record[0x9F27] == b"\x00"


def test_an_arqc_on_an_offline_only_reader_is_declined(plastic: Plastic) -> None:
    script = Script(plastic.card, [on_gpo(edit(0x9F27, b"\x80"))])
    result = tap(script, plastic, ttq=OFFLINE_ONLY)
    assert (result.outcome.status, result.cryptogram_type) == (
        Status.DECLINED,
        CryptogramType.ARQC,
    )
    assert "offline-only" in result.outcome.reason


def test_a_transaction_date_that_is_no_date_stops_before_gpo(plastic: Plastic) -> None:
    plastic.card.power_on()
    fci = exchange(plastic.card, apdu.select(AID)).data
    selected = selected_for(fci, READER, plastic.ca_keys, LOW)
    selected.terminal_data[0x9A] = bytes.fromhex("261345")
    session = CardSession(plastic.card)
    result = Kernel3().run(session, selected)
    assert result.outcome.status == Status.END_APPLICATION
    assert (result.outcome.reason, session.commands) == (
        "reader data: Transaction Date (9A) is not a date",
        0,
    )


# --- fDDA failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (on_record(3, 1, edit(0x8F, b"\x99")), "no CA public key A000000003 index 99"),
        (on_record(3, 1, flip(0x90)), "issuer"),
        (on_gpo(flip(0x9F4B)), "signed dynamic data"),
    ],
    ids=["unknown CA index", "issuer certificate bit", "SDAD bit"],
)
def test_a_failed_fdda_sends_the_tc_online_and_sets_dda_failed(
    plastic: Plastic, rule: Rule, reason: str
) -> None:
    result = tap(Script(plastic.card, [rule]), plastic)
    assert result.outcome.status == Status.ONLINE_REQUEST
    assert (result.oda.method, result.oda.result) == ("fDDA", "failed")
    assert reason.lower() in result.oda.reason.lower()
    assert tvr(result) == TVR(dda_failed=True)
    assert any(d.startswith("TC not approved offline") for d in result.decisions)


@pytest.mark.parametrize(
    ("ctq", "ttq", "expected", "message"),
    [
        ("2000", OFFLINE_ONLY, Status.DECLINED, Message.NOT_AUTHORISED),
        ("1000", READER, Status.TRY_ANOTHER_INTERFACE, Message.INSERT_CARD),
        ("1000", replace(READER, emv_contact_chip_supported=False), Status.DECLINED, None),
        ("0000", READER, Status.DECLINED, Message.NOT_AUTHORISED),
    ],
    ids=["offline-only reader", "switch interface", "no contact chip", "no CTQ rule"],
)
def test_a_failed_fdda_follows_the_ctq(
    plastic: Plastic, ctq: str, ttq: TTQ, expected: Status, message: Message | None
) -> None:
    script = Script(plastic.card, [on_gpo(flip(0x9F4B)), on_gpo(edit(0x9F6C, bytes.fromhex(ctq)))])
    result = tap(script, plastic, ttq=ttq)
    assert (result.outcome.status, result.cryptogram_type) == (expected, CryptogramType.TC)
    assert tvr(result).dda_failed
    if message is not None:
        assert result.outcome.ui_request is not None
        assert result.outcome.ui_request.message == message


def test_a_tc_without_a_signature_is_not_approved(plastic: Plastic) -> None:
    result = tap(Script(plastic.card, [on_gpo(edit(0x9F4B, None))]), plastic, ttq=OFFLINE_ONLY)
    assert result.outcome.status == Status.DECLINED
    assert tvr(result) == TVR(icc_data_missing=True, dda_failed=True)
    assert "Signed Dynamic Application Data (9F4B)" in result.oda.reason


# --- expiry ----------------------------------------------------------------------------------


def test_an_expired_card_fails_fdda_and_is_marked_expired(
    issuer: SoftIssuer, tmp_path: Path
) -> None:
    expired = pl.make_plastic(issuer, variant(tmp_path, lambda d: d.update(expiry="250131")))
    result = tap(expired.card, expired)
    # the ICC certificate expired with the card: fDDA fails, and the CTQ (2000) sends a
    # failed fDDA online but not an expired application
    assert result.outcome.status == Status.DECLINED
    assert tvr(result) == TVR(expired_application=True, dda_failed=True)
    assert "application expired on 2025-01-31" in " ".join(result.decisions)


def _expiry_unsigned(document: dict[str, Any]) -> None:
    """5F24 in the unsigned record SFI 1, so it can be rewritten with fDDA still passing."""
    records = document["applications"][0]["records"]
    records[0]["tags"].append("5F24")
    records[1]["tags"].remove("5F24")


@pytest.mark.parametrize(
    ("ctq", "expected"),
    [("2000", Status.DECLINED), ("2800", Status.ONLINE_REQUEST)],
    ids=["declined", "go online if expired"],
)
def test_an_expired_application_is_declined_unless_the_ctq_sends_it_online(
    issuer: SoftIssuer, tmp_path: Path, ctq: str, expected: Status
) -> None:
    card = pl.make_plastic(issuer, variant(tmp_path, _expiry_unsigned))
    script = Script(
        card.card,
        [
            on_record(1, 1, edit(0x5F24, bytes.fromhex("260314"))),
            on_gpo(edit(0x9F6C, bytes.fromhex(ctq))),
        ],
    )
    result = tap(script, card)
    assert result.oda.result == "passed"
    assert result.outcome.status == expected
    assert tvr(result) == TVR(expired_application=True)


def test_an_expiry_that_is_no_date_ends_the_application(issuer: SoftIssuer, tmp_path: Path) -> None:
    card = pl.make_plastic(issuer, variant(tmp_path, _expiry_unsigned))
    script = Script(card.card, [on_record(1, 1, edit(0x5F24, bytes.fromhex("2613AA")))])
    result = tap(script, card)
    assert result.outcome.status == Status.END_APPLICATION
    assert "Application Expiration Date (5F24) is not a date" in result.outcome.reason


# --- CVM ---------------------------------------------------------------------------------------


def test_cvm_online_pin_when_the_ctq_asks_above_the_cvm_limit(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic, amount=HIGH)
    assert (result.outcome.status, result.outcome.cvm) == (Status.ONLINE_REQUEST, Cvm.ONLINE_PIN)
    assert "CVM: online PIN: the CTQ asks for it" in result.decisions


def test_cvm_signature_when_the_reader_has_no_online_pin(plastic: Plastic) -> None:
    result = tap(
        plastic.card, plastic, amount=HIGH, ttq=replace(READER, online_pin_supported=False)
    )
    outcome = result.outcome
    assert (outcome.status, outcome.cvm, outcome.receipt) == (
        Status.ONLINE_REQUEST,
        Cvm.SIGNATURE,
        True,
    )


def test_cvm_signature_on_an_offline_approval_asks_to_sign(plastic: Plastic) -> None:
    script = Script(plastic.card, [on_gpo(edit(0x9F6C, bytes.fromhex("6000")))])
    result = tap(script, plastic)
    assert (result.outcome.status, result.outcome.cvm) == (Status.APPROVED, Cvm.SIGNATURE)
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.APPROVED_SIGN


def test_cvm_none_below_the_limits(plastic: Plastic) -> None:
    result = tap(plastic.card, plastic, ttq=ONLINE_REQUIRED)
    assert result.outcome.cvm == Cvm.NO_CVM
    assert "CVM: no CVM: none asked for" in result.decisions


def test_cvm_cdcvm_from_the_ctq(plastic: Plastic) -> None:
    script = Script(plastic.card, [on_gpo(edit(0x9F6C, bytes.fromhex("2080")))])
    result = tap(script, plastic, ttq=ONLINE_REQUIRED)
    assert (result.outcome.status, result.outcome.cvm) == (
        Status.ONLINE_REQUEST,
        Cvm.CONFIRMATION_CODE_VERIFIED,
    )


def test_cvm_cdcvm_is_ignored_by_a_reader_without_cdcvm(plastic: Plastic) -> None:
    script = Script(plastic.card, [on_gpo(edit(0x9F6C, bytes.fromhex("2080")))])
    no_cdcvm = replace(ONLINE_REQUIRED, consumer_device_cvm_supported=False)
    result = tap(script, plastic, ttq=no_cdcvm)
    assert result.outcome.cvm == Cvm.NO_CVM


def test_cvm_cdcvm_offline_needs_the_signed_ctq_to_agree(plastic: Plastic) -> None:
    script = Script(plastic.card, [on_gpo(edit(0x9F6C, bytes.fromhex("2080")))])
    result = tap(script, plastic)  # 9F69, which fDDA signed, carries CTQ 2000
    assert result.oda.result == "passed"
    assert result.outcome.status == Status.DECLINED


def test_cvm_required_by_the_reader_but_none_possible_declines(plastic: Plastic) -> None:
    reader = replace(
        READER, cvm_required=True, signature_supported=False, online_pin_supported=False
    )
    result = tap(plastic.card, plastic, ttq=reader)
    assert (result.outcome.status, result.cryptogram_type) == (Status.DECLINED, CryptogramType.TC)
    assert result.outcome.reason == "no acceptable CVM"


# --- GPO status words, a card that leaves --------------------------------------------------


@pytest.mark.parametrize(
    ("sw", "expected", "message"),
    [
        (0x6984, Status.TRY_ANOTHER_INTERFACE, Message.TRY_ANOTHER_CARD),
        (0x6985, Status.TRY_ANOTHER_INTERFACE, Message.TRY_ANOTHER_CARD),
        (0x6986, Status.TRY_AGAIN, Message.SEE_PHONE),
        (0x6A81, Status.END_APPLICATION, Message.TRY_ANOTHER_CARD),
        (0x6D00, Status.END_APPLICATION, Message.TRY_ANOTHER_CARD),
    ],
)
def test_gpo_status_words(plastic: Plastic, sw: int, expected: Status, message: Message) -> None:
    result = tap(Script(plastic.card, [on_gpo(status(sw))]), plastic)
    outcome = result.outcome
    assert outcome.status == expected
    assert outcome.ui_request is not None and outcome.ui_request.message == message
    assert f"{sw:04X}" in outcome.reason
    assert (result.path, result.data_record) == ("", {})


def test_gpo_6986_restarts_at_b_with_present_card_again(plastic: Plastic) -> None:
    outcome = tap(Script(plastic.card, [on_gpo(status(0x6986))]), plastic).outcome
    assert outcome.start == Start.B
    assert outcome.ui_request_on_restart is not None
    assert outcome.ui_request_on_restart.message == Message.PRESENT_CARD_AGAIN


@pytest.mark.parametrize(
    ("rule", "step"),
    [(on_gpo(removed), "GET PROCESSING OPTIONS"), (on_record(3, 2, removed), "READ RECORD")],
    ids=["during GPO", "during READ RECORD"],
)
def test_a_card_removed_gets_try_again(plastic: Plastic, rule: Rule, step: str) -> None:
    result = tap(Script(plastic.card, [rule]), plastic)
    outcome = result.outcome
    assert (outcome.status, outcome.start) == (Status.TRY_AGAIN, Start.B)
    assert outcome.ui_request_on_restart is not None
    assert outcome.ui_request_on_restart.message == Message.PRESENT_CARD_AGAIN
    assert outcome.ui_request_on_restart.status == ReaderStatus.READY_TO_READ
    assert step in outcome.reason


# --- malformed, missing, duplicated --------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (on_gpo(lambda a: a[:-12] + a[-2:]), "GET PROCESSING OPTIONS: "),
        (on_gpo(lambda _a: bytes.fromhex("800620000801010090 00".replace(" ", ""))), "Format 1"),
        (on_gpo(lambda _a: bytes.fromhex("6F0284009000")), "is not Format 2 (77)"),
        (on_gpo(edit(0x9F27, b"\x80\x00")), "Cryptogram Information Data (9F27) has 2 bytes"),
        (on_gpo(edit(0x9F36, b"\x01")), "Application Transaction Counter (9F36) has 1 bytes"),
        (on_gpo(edit(0x57, bytes.fromhex("4761739001010010"))), "no field separator"),
        (on_record(1, 1, lambda _a: bytes.fromhex("5F2001419000")), "not a record template"),
        (on_record(2, 1, status(0x6A83)), "READ RECORD SFI 2 record 1: status 6A83"),
    ],
    ids=["truncated", "format 1", "other template", "CID length", "ATC length", "track 2",
         "not 70", "record status"],
)  # fmt: skip
def test_malformed_card_data_ends_the_application(plastic: Plastic, rule: Rule, words: str) -> None:
    result = tap(Script(plastic.card, [rule]), plastic)
    assert result.outcome.status == Status.END_APPLICATION
    assert words in result.outcome.reason
    assert result.data_record == {}


@pytest.mark.parametrize("tag", [0x82, 0x57, 0x9F26, 0x9F36, 0x9F10])
def test_missing_mandatory_data_ends_the_application(plastic: Plastic, tag: int) -> None:
    result = tap(Script(plastic.card, [on_gpo(edit(tag, None))]), plastic)
    assert result.outcome.status == Status.END_APPLICATION
    assert f"({tlv.tag_hex(tag)})" in result.outcome.reason
    assert tvr(result).icc_data_missing


def test_without_a_cid_the_cryptogram_type_comes_from_the_iad(plastic: Plastic) -> None:
    result = tap(Script(plastic.card, [on_gpo(edit(0x9F27, None))]), plastic, ttq=ONLINE_REQUIRED)
    assert (result.outcome.status, result.cryptogram_type) == (
        Status.ONLINE_REQUEST,
        CryptogramType.ARQC,
    )
    assert "card returned ARQC (CID absent: the type from the IAD)" in result.decisions
    assert result.data_record[0x9F27] == b"\x80"


def test_a_data_object_given_twice_ends_the_application(plastic: Plastic) -> None:
    repeat = add(Tlv.primitive(0x57, _track2(plastic.profile)))  # the GPO gave 57 already
    script = Script(plastic.card, [on_record(1, 1, repeat)])
    result = tap(script, plastic)
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.reason == "READ RECORD SFI 1 record 1: tag 57 given twice"


def _track2(profile: CardProfile) -> bytes:
    text = f"{profile.pan}D{profile.expiry.hex()[:4]}{profile.service_code}"
    return bytes.fromhex(text + "F" * (len(text) % 2))


def test_no_pdol_means_no_qvsdc_and_no_gpo(plastic: Plastic) -> None:
    fci = Tlv.template(
        0x6F,
        Tlv.primitive(0x84, AID),
        Tlv.template(0xA5, Tlv.primitive(0x50, b"VISA CREDIT")),
    ).to_bytes()
    session = CardSession(plastic.card)
    result = Kernel3().run(session, selected_for(fci, READER, plastic.ca_keys, LOW))
    assert result.outcome.status == Status.END_APPLICATION
    assert "no PDOL (9F38)" in result.outcome.reason
    assert session.commands == 0


def test_a_pdol_without_the_ttq_means_no_qvsdc(plastic: Plastic) -> None:
    fci = Tlv.template(
        0x6F,
        Tlv.primitive(0x84, AID),
        Tlv.template(0xA5, Tlv.primitive(0x9F38, bytes.fromhex("9F0206"))),
    ).to_bytes()
    session = CardSession(plastic.card)
    result = Kernel3().run(session, selected_for(fci, READER, plastic.ca_keys, LOW))
    assert result.outcome.status == Status.END_APPLICATION
    assert session.commands == 0


# --- the pure rules ----------------------------------------------------------------------------


def test_oda_failure_rules_prefer_going_online_then_switching_interface() -> None:
    both = CTQ(go_online_if_oda_fails=True, switch_interface_if_oda_fails=True)
    assert after_oda_failure(both, READER)[0] == Status.ONLINE_REQUEST
    assert after_oda_failure(both, OFFLINE_ONLY)[0] == Status.TRY_ANOTHER_INTERFACE
    assert after_oda_failure(None, READER)[0] == Status.DECLINED


def test_cvm_without_a_ctq_takes_a_signature_only_when_the_reader_requires_a_cvm() -> None:
    assert select_cvm(None, READER, online=True)[0] == Cvm.NO_CVM
    assert select_cvm(None, replace(READER, cvm_required=True), online=True)[0] == Cvm.SIGNATURE


def test_online_pin_is_only_for_online_outcomes() -> None:
    ctq = CTQ(online_pin_required=True)
    assert select_cvm(ctq, READER, online=True)[0] == Cvm.ONLINE_PIN
    assert select_cvm(ctq, READER, online=False)[0] == Cvm.NO_CVM


def test_iad_cryptogram_types() -> None:
    """CVR byte 1 bits 6-5, in IAD byte 5 (formats 0/1/3) or byte 4 (format 2)."""
    assert cryptogram_type_from_iad(bytes.fromhex("06011203A00000")) == CryptogramType.ARQC
    assert cryptogram_type_from_iad(bytes.fromhex("06011203900000")) == CryptogramType.TC
    assert cryptogram_type_from_iad(bytes.fromhex("06011203800000")) == CryptogramType.AAC
    assert cryptogram_type_from_iad(bytes.fromhex("06011203B00000")) is None  # '11': RFU
    assert cryptogram_type_from_iad(bytes.fromhex("1F2201A00000")) == CryptogramType.ARQC
    assert cryptogram_type_from_iad(bytes.fromhex("C1")) is None


def test_track2_errors_never_show_the_digits() -> None:
    with pytest.raises(CardDataError) as error:
        parse_track2(bytes.fromhex("4761739001010010"))
    assert "4761" not in str(error.value)
    assert repr(parse_track2(bytes.fromhex("4761739001010010D2912201"))) == "Track2(...)"


# --- garbage -----------------------------------------------------------------------------------


@dataclass
class Recorder(pl.Relay):
    """A Link around the real card that keeps its answers by command header."""

    card: Link
    answers: dict[bytes, list[bytes]] = field(default_factory=dict)

    def transceive(self, command: bytes) -> bytes:
        answer = self.card.transceive(command)
        self.answers.setdefault(command[:4], []).append(answer)
        return answer


class Garbage:
    """A Link answering recorded responses, half of them mutated: a bit or a byte
    changed, cut short, another status word, random bytes, an object doubled or
    dropped, or the card leaves the field."""

    def __init__(self, rng: random.Random, answers: Mapping[bytes, list[bytes]]) -> None:
        self.rng = rng
        self.answers = answers

    def power_on(self) -> bytes:
        return b""

    def power_off(self) -> None:
        pass

    def transceive(self, command: bytes) -> bytes:
        recorded = self.answers.get(command[:4])
        answer = self.rng.choice(recorded) if recorded else b"\x6a\x82"
        return self.mutate(answer) if self.rng.random() < 0.5 else answer

    def mutate(self, answer: bytes) -> bytes:
        rng = self.rng
        body, sw = answer[:-2], answer[-2:]
        choice = rng.randrange(8)
        if choice < 2 and body:
            out = bytearray(body)
            at = rng.randrange(len(out))
            out[at] = out[at] ^ 1 << rng.randrange(8) if choice == 0 else rng.randrange(256)
            return bytes(out) + sw
        if choice == 2:
            return body[: rng.randrange(len(body) + 1)] + sw
        if choice == 3:
            return body + rng.choice((b"\x69\x84", b"\x69\x86", b"\x6a\x80", b"\x61\x10"))
        if choice == 4:
            return rng.randbytes(rng.randrange(0, 80))
        if choice == 5:
            raise CardRemoved("gone")
        objects = [o for top in tlv.decode(body, strict=False) for _, o in top.walk()]
        if not objects:
            return answer
        obj = rng.choice(objects).to_bytes()
        at = body.find(obj)
        if at < 0:
            return answer
        if choice == 6:
            return body[: at + len(obj)] + obj + body[at + len(obj) :] + sw
        return body[:at] + body[at + len(obj) :] + sw


def _mutated_fci(garbage: Garbage, fci: bytes) -> bytes:
    try:
        return garbage.mutate(fci)[:-2]
    except CardRemoved:
        return fci[:-2]


def test_garbage_cards_always_end_in_an_outcome(plastic: Plastic) -> None:
    recorder = Recorder(plastic.card)
    for amount, ttq in (
        (LOW, READER),
        (HIGH, READER),
        (HIGH, OFFLINE_ONLY),
        (LOW, ONLINE_REQUIRED),
    ):
        tap(recorder, plastic, amount, ttq)
    fci = recorder.answers[apdu.select(AID).to_bytes()[:4]][-1]
    rng = random.Random(20260315)
    garbage = Garbage(rng, recorder.answers)
    seen: set[Status] = set()
    for _ in range(2_000):
        card_fci = _mutated_fci(garbage, fci) if rng.random() < 0.1 else fci[:-2]
        ttq = rng.choice((READER, OFFLINE_ONLY, ONLINE_REQUIRED))
        selected = selected_for(card_fci, ttq, plastic.ca_keys, rng.choice((LOW, HIGH)))
        result = Kernel3().run(CardSession(garbage), selected)
        assert isinstance(result.outcome.status, Status)
        assert not any(plastic.profile.pan in d for d in result.decisions)
        seen.add(result.outcome.status)
    assert {Status.END_APPLICATION, Status.TRY_AGAIN, Status.ONLINE_REQUEST} <= seen
