"""The POS around Entry Point: the host step after an Online Request, and what it ends with.

Most tests put a canned Entry Point result in front of a fake host, so that each
rule of terminal.pos is checked on its own: approved (with and without signature),
declined, host down, no host, unusable answers (no ARPC on an approval, an ARC
that is not 2 bytes), offline outcomes that never reach the host, and the data
record encoding (DE 55 in DATA_RECORD_TAGS order), and the report of the result
(terminal.report). Two tests run the real Entry Point and kernels over an
emulated plastic card.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime

import plastic as pl
import pytest

from emv import tlv
from emv.apdu import CryptogramType
from hce.card import Card, SoftIssuer, load_profile
from terminal.config import AidConfig, default_config, with_ca_keys
from terminal.entry import EntryResult
from terminal.host import HostResponse, HostUnavailable
from terminal.kernels import DATA_RECORD_TAGS, KernelResult
from terminal.kernels.mastercard import Kernel2
from terminal.kernels.visa import Kernel3
from terminal.outcome import Cvm, Message, Outcome, ReaderStatus, Status, UiRequest
from terminal.pos import Terminal, TransactionResult, icc_data
from terminal.report import render, to_dict
from terminal.transaction import Transaction

CONFIG = pl.terminal_config("test", AidConfig(bytes.fromhex("A0000000031010"), 3))
TRANSACTION = Transaction(1234, "0826", datetime(2026, 11, 26, 12, 0), bytes.fromhex("01020304"))
ARQC = bytes.fromhex("1122334455667788")
RECORD = {  # deliberately not in DATA_RECORD_TAGS order, and one tag that is not in it
    0x9F37: bytes.fromhex("01020304"),
    0xDF01: b"\x01",
    0x9F26: ARQC,
    0x5A: bytes.fromhex("4761739001010010"),
    0x9F27: b"\x80",
    0x9F02: bytes.fromhex("000000001234"),
    0x82: bytes.fromhex("2000"),
}
APPROVED = HostResponse(True, "approved", b"00", arpc=bytes.fromhex("A1B2C3D4E5F60708"))
DECLINED = HostResponse(False, "replay", b"05")


def _online(cvm: Cvm = Cvm.NO_CVM) -> EntryResult:
    outcome = Outcome(
        Status.ONLINE_REQUEST,
        cvm=cvm,
        ui_request=UiRequest(Message.AUTHORISING, ReaderStatus.NOT_READY),
    )
    kernel = KernelResult(
        outcome,
        "C-3",
        "qVSDC",
        cryptogram_type=CryptogramType.ARQC,
        data_record=dict(RECORD),
    )
    return EntryResult(outcome, kernel, ui=[UiRequest(Message.AUTHORISING)], taps=1)


@dataclass
class CannedEntryPoint:
    """Stands in for Entry Point: hands back one result, counts the calls."""

    result: EntryResult
    calls: int = 0

    def process(self, _link: object, _transaction: Transaction) -> EntryResult:
        self.calls += 1
        return self.result


@dataclass
class FakeHost:
    """Answers (or raises) what the test says; keeps what it was sent."""

    answer: HostResponse | Exception = APPROVED
    sent: list[bytes] = field(default_factory=list)

    def authorise(self, data: bytes) -> HostResponse:
        self.sent.append(data)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _transact(entry: EntryResult, host: FakeHost | None) -> TransactionResult:
    terminal = Terminal(CONFIG, host, kernels={})
    terminal.entry_point = CannedEntryPoint(entry)  # type: ignore[assignment]
    return terminal.transact(object(), TRANSACTION)  # type: ignore[arg-type]


# --- online: the host decides ----------------------------------------------------------------


def test_an_online_approval_ends_approved_with_the_approved_message() -> None:
    host = FakeHost(APPROVED)
    result = _transact(_online(), host)
    assert result.approved and result.online
    assert result.outcome.status == Status.APPROVED
    assert result.outcome.ui_request == UiRequest(Message.APPROVED, ReaderStatus.NOT_READY)
    assert (result.host, result.host_error) == (APPROVED, None)
    assert host.sent == [result.icc_data]
    assert [r.message for r in result.ui] == [Message.AUTHORISING, Message.APPROVED]


def test_an_online_approval_with_signature_asks_for_a_signature_and_a_receipt() -> None:
    result = _transact(_online(Cvm.SIGNATURE), FakeHost(APPROVED))
    assert result.outcome.status == Status.APPROVED
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.APPROVED_SIGN
    assert result.outcome.cvm == Cvm.SIGNATURE and result.outcome.receipt


def test_an_online_decline_ends_declined_with_the_hosts_reason() -> None:
    result = _transact(_online(), FakeHost(DECLINED))
    assert not result.approved
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host declined: replay"
    assert result.outcome.ui_request == UiRequest(Message.NOT_AUTHORISED, ReaderStatus.NOT_READY)
    assert (result.host, result.host_error) == (DECLINED, None)


def test_a_host_that_is_down_ends_declined_as_unable_to_go_online() -> None:
    result = _transact(_online(), FakeHost(HostUnavailable("host 127.0.0.1:9: connection refused")))
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host unavailable: host 127.0.0.1:9: connection refused"
    assert result.host is None
    assert result.host_error == "host 127.0.0.1:9: connection refused"
    assert result.outcome.ui_request is not None
    assert result.outcome.ui_request.message == Message.NOT_AUTHORISED


def test_a_terminal_without_a_host_declines_an_online_request() -> None:
    result = _transact(_online(), None)
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host unavailable: no host configured"
    assert result.icc_data, "the data record is still built, for the report"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (HostResponse(True, "approved", b"00", arpc=None), "an approval without an ARPC"),
        (HostResponse(True, "approved", b"0", arpc=b"\x01" * 8), "has 1 byte(s), expected 2"),
        (HostResponse(False, "declined", b"005"), "has 3 byte(s), expected 2"),
    ],
    ids=["approval-without-arpc", "arc-1-byte", "arc-3-bytes"],
)
def test_an_unusable_host_answer_is_treated_as_host_unavailable(
    answer: HostResponse, problem: str
) -> None:
    result = _transact(_online(), FakeHost(answer))
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason.startswith("host unavailable: unusable answer")
    assert result.host_error is not None and problem in result.host_error
    assert result.host == answer, "the answer is kept for the report"


@pytest.mark.parametrize(
    "status", [Status.APPROVED, Status.DECLINED, Status.TRY_AGAIN, Status.END_APPLICATION]
)
def test_an_outcome_other_than_online_request_never_reaches_the_host(status: Status) -> None:
    outcome = Outcome(status, reason="offline")
    host = FakeHost()
    result = _transact(EntryResult(outcome, None), host)
    assert result.outcome == outcome
    assert host.sent == [] and result.icc_data == b""
    assert not result.online and result.host is None


def test_an_online_request_without_a_kernel_result_is_declined() -> None:
    entry = _online()
    entry.kernel = None
    host = FakeHost()
    result = _transact(entry, host)
    assert result.outcome.status == Status.DECLINED and host.sent == []


# --- the data record -------------------------------------------------------------------------


def test_the_data_record_is_encoded_in_data_record_tags_order_and_only_those() -> None:
    result = _transact(_online(), FakeHost())
    objects = tlv.decode(result.icc_data)
    assert [o.tag for o in objects] == [t for t in DATA_RECORD_TAGS if t in RECORD]
    assert 0xDF01 not in [o.tag for o in objects]
    assert tlv.index(objects) == {t: v for t, v in RECORD.items() if t != 0xDF01}


def test_icc_data_is_the_kernels_data_record_as_ber_tlv() -> None:
    kernel = KernelResult(Outcome(Status.ONLINE_REQUEST), "C-2", data_record={0x9F27: b"\x80"})
    assert icc_data(kernel) == bytes.fromhex("9F270180")


# --- the real Entry Point and kernels ----------------------------------------------------------


def test_the_default_kernels_are_made_once_per_terminal() -> None:
    terminal = Terminal(CONFIG, None)
    assert isinstance(terminal.kernels[2], Kernel2) and isinstance(terminal.kernels[3], Kernel3)
    assert terminal.entry_point.kernels is terminal.kernels


def _plastic_terminal(host: FakeHost | None) -> tuple[Terminal, Card]:
    plastic = pl.make_plastic(SoftIssuer(), load_profile("visa_qvsdc_plastic"))
    config = with_ca_keys(default_config(), [plastic.ca_key])
    return Terminal(config, host), plastic.card


def test_a_real_kernel_online_request_sends_the_arqc_to_the_host() -> None:
    host = FakeHost(APPROVED)
    terminal, card = _plastic_terminal(host)
    transaction = Transaction(99_999, terminal.config.currency.hex(), datetime.now(), os.urandom(4))
    result = terminal.transact(card, transaction)
    assert result.entry.outcome.status == Status.ONLINE_REQUEST, result.entry.outcome
    sent = tlv.index(tlv.decode(host.sent[0]))
    assert sent[0x9F27] == b"\x80" and len(sent[0x9F26]) == 8
    assert sent[0x9F37] == transaction.unpredictable_number
    assert result.outcome.status == Status.APPROVED


def test_a_real_kernel_online_request_with_the_host_down_is_declined() -> None:
    terminal, card = _plastic_terminal(FakeHost(HostUnavailable("down")))
    transaction = Transaction(99_999, terminal.config.currency.hex(), datetime.now(), os.urandom(4))
    result = terminal.transact(card, transaction)
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host unavailable: down"


# --- the report --------------------------------------------------------------------------------


def test_the_report_masks_the_pan_unless_clear_and_says_what_the_host_did() -> None:
    result = _transact(_online(Cvm.SIGNATURE), FakeHost(APPROVED))
    text = render(result)
    assert "PAN:          476173******0010" in text and "4761739001010010" not in text
    assert "Outcome:      Approved (host approved)" in text
    assert "Host:         approved (approved), ARC '00', ARPC received" in text
    assert "Transaction:  purchase 12.34 GBP" in text
    assert "CVM:          Obtain Signature" in text
    assert "  - Approved Please Sign (Not Ready)" in text
    assert "4761739001010010" in render(result, clear=True)


def test_the_report_puts_the_tvr_in_words_and_the_host_error() -> None:
    entry = _online()
    assert entry.kernel is not None
    entry.kernel.tvr = bytes.fromhex("0400008000")
    result = _transact(entry, FakeHost(HostUnavailable("host 127.0.0.1:9: connection refused")))
    text = render(result)
    assert "TVR:          0400008000" in text
    assert "  - CDA failed" in text and "  - Transaction exceeds floor limit" in text
    assert "Host:         unavailable: host 127.0.0.1:9: connection refused" in text


def test_the_report_as_a_dict_is_json_and_masks_the_pan() -> None:
    result = _transact(_online(), FakeHost(DECLINED))
    document = json.loads(json.dumps(to_dict(result)))
    assert document["pan"] == "476173******0010"
    assert document["outcome"]["status"] == "Declined"
    assert document["kernel_outcome"]["status"] == "Online Request"
    assert document["host"] == {
        "asked": True,
        "decision": "declined",
        "reason": "replay",
        "arc": "3035",
        "arpc": False,
        "authorisation_id": "",
        "error": None,
    }
    assert document["kernel"]["cryptogram"] == "ARQC"
    assert to_dict(result, clear=True)["pan"] == "4761739001010010"


def test_the_report_of_a_transaction_that_never_reached_a_kernel() -> None:
    outcome = Outcome(Status.END_APPLICATION, reason="no application in common")
    result = _transact(EntryResult(outcome, None), None)
    text = render(result)
    assert "Outcome:      End Application (no application in common)" in text
    assert "Application:  none selected" in text and "Kernel:" not in text
    assert "Host:         not asked" in text
