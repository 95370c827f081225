"""Entry Point (EMV Contactless Book B §3.1-§3.5) against scripted cards and fake kernels:
pre-processing indicators and the TTQ around every limit, combination selection from
the PPSE (priorities, kernel identifiers, partial selection), final selection, kernel
activation, outcome processing (Select Next, Try Again and retaps, final outcomes,
lost cards) and the UI requests on the way; then once against the emulated Visa card."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import plastic as pl
import pytest
import scripted_card as sc

from emv import apdu, dol, tlv
from emv.apdu import PPSE
from emv.bitfields import TTQ
from emv.link import CardRemoved, LinkError
from hce.card import SoftIssuer, load_profile
from terminal.config import AidConfig, TerminalConfig, default_config
from terminal.entry import (
    DEFAULT_KERNELS,
    PRESENT_CARD,
    Candidate,
    EntryPoint,
    PpseError,
    directory_entries,
    pre_process,
    requested_kernel_id,
)
from terminal.kernels import KernelResult, Selected
from terminal.outcome import Cvm, Message, Outcome, ReaderStatus, Start, Status, UiRequest
from terminal.session import CardSession
from terminal.transaction import Transaction

WHEN = datetime(2026, 11, 26, 12, 30, 15, tzinfo=UTC)
UN = bytes.fromhex("A1B2C3D4")
VISA = bytes.fromhex("A0000000031010")
VISA_ELECTRON = bytes.fromhex("A0000000032010")
MASTERCARD = bytes.fromhex("A0000000041010")
TTQ_CONFIGURED = bytes.fromhex("37204000")
APPROVED = Outcome(Status.APPROVED, cvm=Cvm.NO_CVM, ui_request=UiRequest(Message.APPROVED))
ONLINE = Outcome(Status.ONLINE_REQUEST, ui_request=UiRequest(Message.AUTHORISING))
SELECT_NEXT = Outcome(Status.SELECT_NEXT, start=Start.C, field_off=False)
PRESENT_AGAIN = UiRequest(Message.PRESENT_CARD_AGAIN, ReaderStatus.READY_TO_READ)
TRY_AGAIN = Outcome(
    Status.TRY_AGAIN,
    start=Start.B,
    ui_request=UiRequest(Message.PROCESSING_ERROR, ReaderStatus.PROCESSING_ERROR),
    ui_request_on_restart=PRESENT_AGAIN,
)
TRY_ANOTHER_CARD = UiRequest(Message.TRY_ANOTHER_CARD, ReaderStatus.READY_TO_READ)


@dataclass
class FakeKernel:
    """A kernel that records what it was given and returns the next of ``outcomes``
    (the last one repeated)."""

    name: str
    outcomes: list[Outcome] = field(default_factory=lambda: [ONLINE])
    seen: list[Selected] = field(default_factory=list)
    ui: list[UiRequest] = field(default_factory=list)  # sent on the way, before the outcome

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        self.seen.append(selected)
        outcome = self.outcomes[min(len(self.seen) - 1, len(self.outcomes) - 1)]
        return KernelResult(outcome, self.name, ui=list(self.ui))


@dataclass
class GpoKernel(FakeKernel):
    """A fake kernel that also sends GET PROCESSING OPTIONS with the card's PDOL filled
    from the terminal data it was given, and records the status word."""

    gpo_sw: list[int] = field(default_factory=list)

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        pdol = tlv.find(tlv.decode(selected.fci), 0x9F38)
        assert pdol is not None
        data = dol.build_dol_data(dol.parse_dol(pdol.value), selected.terminal_data)
        command = apdu.get_processing_options(data)
        self.gpo_sw.append(session.exchange(command).sw)
        return super().run(session, selected)


class BrokenKernel:
    name = "broken"

    def run(self, session: CardSession, selected: Selected) -> KernelResult:
        raise RuntimeError("kernel bug")


def _aid(aid: bytes, kernel: int, **changes: Any) -> AidConfig:
    base = AidConfig(
        aid=aid,
        kernel_id=kernel,
        transaction_limit=10_000,
        floor_limit=1_000,
        cvm_required_limit=3_000,
        ttq=TTQ_CONFIGURED if kernel == 3 else None,
    )
    return replace(base, **changes)


def _config(*aids: AidConfig, retaps: int = 1) -> TerminalConfig:
    aids = aids or (_aid(VISA, 3), _aid(MASTERCARD, 2))
    return replace(default_config(), aids=aids, retaps=retaps)


def _tx(amount: int = 1234) -> Transaction:
    return Transaction(amount, "0826", WHEN, UN)


def _two_brand_card() -> Any:
    return sc.ppse_card(
        sc.directory_entry(VISA, label="VISA", priority=1, kernel_id=b"\x03"),
        sc.directory_entry(MASTERCARD, label="MASTERCARD", priority=2, kernel_id=b"\x02"),
    )


def _entry(config: TerminalConfig | None = None, **kernels: FakeKernel) -> EntryPoint:
    table = {int(k.removeprefix("k")): v for k, v in kernels.items()}
    return EntryPoint(config or _config(), table)


# --- pre-processing (Book B §3.1.1) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "not_allowed"), [(9_999, False), (10_000, True), (10_001, True)]
)
def test_contactless_not_allowed_at_or_above_the_transaction_limit(
    amount: int, not_allowed: bool
) -> None:
    indicators = pre_process(_aid(VISA, 3), amount, 2)
    assert indicators.contactless_application_not_allowed is not_allowed


@pytest.mark.parametrize(("amount", "exceeded"), [(999, False), (1_000, False), (1_001, True)])
def test_floor_limit_exceeded_only_above_it_and_then_ttq_asks_online(
    amount: int, exceeded: bool
) -> None:
    indicators = pre_process(_aid(VISA, 3), amount, 2)
    assert indicators.floor_limit_exceeded is exceeded
    assert indicators.ttq is not None
    assert TTQ.from_bytes(indicators.ttq).online_cryptogram_required is exceeded


@pytest.mark.parametrize(("amount", "exceeded"), [(2_999, False), (3_000, True), (3_001, True)])
def test_cvm_required_limit_exceeded_at_or_above_it_and_then_ttq_asks_cvm(
    amount: int, exceeded: bool
) -> None:
    indicators = pre_process(_aid(VISA, 3), amount, 2)
    assert indicators.cvm_required_limit_exceeded is exceeded
    assert indicators.ttq is not None
    assert TTQ.from_bytes(indicators.ttq).cvm_required is exceeded


def test_ttq_copy_clears_the_transient_bits_and_keeps_the_others() -> None:
    config = _aid(VISA, 3, ttq=bytes.fromhex("37E04000"), floor_limit=None)
    indicators = pre_process(config, 500, 2)
    assert indicators.ttq == bytes.fromhex("37204000")


def test_absent_limits_set_no_indicator() -> None:
    config = _aid(VISA, 3, transaction_limit=None, floor_limit=None, cvm_required_limit=None)
    indicators = pre_process(config, 999_999_999, 2)
    assert not indicators.contactless_application_not_allowed
    assert not indicators.floor_limit_exceeded
    assert not indicators.cvm_required_limit_exceeded
    assert indicators.ttq == TTQ_CONFIGURED


@pytest.mark.parametrize(
    ("status_check", "amount", "requested"),
    [(True, 100, True), (True, 101, False), (True, 99, False), (False, 100, False)],
)
def test_status_check_requested_for_one_unit_of_currency(
    status_check: bool, amount: int, requested: bool
) -> None:
    config = _aid(VISA, 3, status_check=status_check, floor_limit=None)
    indicators = pre_process(config, amount, 2)
    assert indicators.status_check_requested is requested
    assert indicators.ttq is not None
    assert TTQ.from_bytes(indicators.ttq).online_cryptogram_required is requested


def test_status_check_unit_follows_the_currency_exponent() -> None:
    config = _aid(VISA, 3, status_check=True, floor_limit=None)
    assert pre_process(config, 1, 0).status_check_requested
    assert not pre_process(config, 100, 0).status_check_requested


def test_zero_amount_allowed_asks_for_an_online_cryptogram() -> None:
    indicators = pre_process(_aid(VISA, 3, floor_limit=None), 0, 2)
    assert indicators.zero_amount
    assert not indicators.contactless_application_not_allowed
    assert indicators.ttq is not None
    assert TTQ.from_bytes(indicators.ttq).online_cryptogram_required


def test_zero_amount_not_allowed_makes_the_combination_not_allowed() -> None:
    indicators = pre_process(_aid(MASTERCARD, 2, zero_amount_allowed=False), 0, 2)
    assert indicators.contactless_application_not_allowed
    assert not indicators.zero_amount


def test_zero_amount_on_an_offline_only_reader_is_not_allowed() -> None:
    config = _aid(VISA, 3, ttq=bytes.fromhex("3A204000"))
    indicators = pre_process(config, 0, 2)
    assert indicators.zero_amount
    assert indicators.contactless_application_not_allowed


def test_a_kernel_without_a_configured_ttq_gets_no_ttq() -> None:
    indicators = pre_process(_aid(MASTERCARD, 2), 5_000, 2)
    assert indicators.ttq is None
    assert indicators.floor_limit_exceeded and indicators.cvm_required_limit_exceeded


def test_no_combination_allowed_gives_try_another_interface_without_a_tap() -> None:
    card = _two_brand_card()
    result = _entry(k3=FakeKernel("C-3"), k2=FakeKernel("C-2")).process(card, _tx(10_000))
    assert result.outcome.status == Status.TRY_ANOTHER_INTERFACE
    assert result.outcome.ui_request == UiRequest(
        Message.INSERT_OR_SWIPE_CARD, ReaderStatus.PROCESSING_ERROR
    )
    assert result.ui == [result.outcome.ui_request]
    assert result.taps == 0 and card.taps == 0
    assert all(i.contactless_application_not_allowed for i in result.indicators.values())


def test_one_combination_not_allowed_leaves_the_other_to_select() -> None:
    config = _config(_aid(VISA, 3, transaction_limit=1_000), _aid(MASTERCARD, 2))
    k2 = FakeKernel("C-2")
    result = _entry(config, k3=FakeKernel("C-3"), k2=k2).process(_two_brand_card(), _tx(1_000))
    assert [c.aid for c in result.candidates] == [MASTERCARD]
    assert result.kernel is not None and result.kernel.kernel == "C-2"


# --- combination selection (Book B §3.3.2) --------------------------------------------------


@pytest.mark.parametrize(
    "ppse_reply",
    [
        sc.answer(sw=0x6A82),
        sc.answer(sc.ppse_fci(sc.directory_entry(VISA)), sw=0x6283),
        b"\x90",
        sc.answer(bytes.fromhex("6F1084")),
        sc.answer(bytes.fromhex("6F0A840E")),
        sc.answer(tlv.Tlv.primitive(0x84, PPSE).to_bytes()),
        sc.answer(sc.ppse_fci()),
        sc.answer(sc.ppse_fci(sc.directory_entry(None, label="NO ADF NAME"))),
        sc.answer(sc.ppse_fci(sc.directory_entry(bytes.fromhex("A00000")))),
    ],
    ids=[
        "6A82",
        "6283",
        "no status word",
        "truncated TLV",
        "length past the end",
        "no FCI template",
        "no directory entry",
        "entry without ADF name",
        "ADF name too short",
    ],
)
def test_unusable_ppse_ends_application_with_try_another_card(ppse_reply: bytes) -> None:
    card = sc.ScriptedCard({sc.select(PPSE): ppse_reply})
    kernel = FakeKernel("C-3")
    result = _entry(k3=kernel).process(card, _tx())
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.ui_request == TRY_ANOTHER_CARD
    assert result.ui == [PRESENT_CARD, TRY_ANOTHER_CARD]
    assert result.candidates == [] and kernel.seen == []
    assert card.taps == 1 and not card.powered


def test_directory_entries_read_label_priority_and_kernel_identifier() -> None:
    fci = sc.ppse_fci(
        sc.directory_entry(VISA, label="VISA CREDIT", priority=0x81, kernel_id=b"\x03"),
        sc.directory_entry(None, label="SKIPPED"),
        sc.directory_entry(MASTERCARD, priority=b"\x01\x02"),
    )
    entries = directory_entries(fci)
    assert [
        (e.adf_name, e.label, e.priority, e.kernel_identifier, e.position) for e in entries
    ] == [
        (VISA, "VISA CREDIT", 1, b"\x03", 0),
        (MASTERCARD, "", None, None, 1),
    ]


def test_directory_entries_of_malformed_tlv_raise_ppse_error() -> None:
    with pytest.raises(PpseError, match="not BER-TLV"):
        directory_entries(bytes.fromhex("6F05A503BF0C"))


def test_candidates_by_priority_ties_keep_ppse_order_and_no_priority_comes_last() -> None:
    aids = [bytes.fromhex(f"A00000000310{n:02X}") for n in range(1, 7)]
    config = _config(_aid(bytes.fromhex("A000000003"), 3))
    card = sc.ppse_card(
        sc.directory_entry(aids[0]),  # no priority: lowest
        sc.directory_entry(aids[1], priority=2),
        sc.directory_entry(aids[2], priority=0),  # 0: lowest, like none
        sc.directory_entry(aids[3], priority=1),
        sc.directory_entry(aids[4], priority=2),
        sc.directory_entry(aids[5], priority=0xF1),  # bits 8-5 are not the priority
    )
    result = _entry(config, k3=FakeKernel("C-3")).process(card, _tx())
    assert [c.aid for c in result.candidates] == [
        aids[3],
        aids[5],
        aids[1],
        aids[4],
        aids[0],
        aids[2],
    ]
    assert [c.priority for c in result.candidates] == [1, 1, 2, 2, None, 0]


def test_highest_priority_candidate_is_selected_and_activated() -> None:
    card = sc.ppse_card(
        sc.directory_entry(MASTERCARD, priority=2),
        sc.directory_entry(VISA, priority=1),
    )
    k3, k2 = FakeKernel("C-3"), FakeKernel("C-2")
    result = _entry(k3=k3, k2=k2).process(card, _tx())
    assert card.selected() == [PPSE, VISA]
    assert len(k3.seen) == 1 and k2.seen == []
    assert result.outcome == ONLINE


@pytest.mark.parametrize(
    ("rid", "kernel"),
    [
        ("A000000004", 2),
        ("A000000003", 3),
        ("A000000025", 4),
        ("A000000065", 5),
        ("A000000152", 6),
        ("A000000333", 7),
    ],
)
def test_kernel_defaults_by_rid_when_9f2a_is_absent_or_empty(rid: str, kernel: int) -> None:
    aid = bytes.fromhex(rid + "1010")
    assert requested_kernel_id(None, aid) == kernel
    assert requested_kernel_id(b"", aid) == kernel
    assert DEFAULT_KERNELS[bytes.fromhex(rid)] == kernel


def test_requested_kernel_from_9f2a_by_kernel_type() -> None:
    assert requested_kernel_id(b"\x02", VISA) == 2  # international: the short kernel id
    assert requested_kernel_id(bytes.fromhex("0300000000"), MASTERCARD) == 3
    assert requested_kernel_id(b"\x43", VISA) == 0x43  # type 01b: byte 1 as it is
    assert requested_kernel_id(bytes.fromhex("8105"), VISA) == -1  # domestic, < 3 bytes
    assert requested_kernel_id(bytes.fromhex("810512"), VISA) == 0x810512
    assert requested_kernel_id(bytes.fromhex("C0051234"), VISA) == 0xC0051234  # short id 0
    assert requested_kernel_id(bytes(9), VISA) == -1  # longer than 8 bytes
    assert requested_kernel_id(None, bytes.fromhex("A0000009991010")) is None


def test_kernel_identifier_in_the_ppse_overrides_the_default_for_the_rid() -> None:
    card = sc.ppse_card(
        sc.directory_entry(VISA, priority=1, kernel_id=b"\x02"),  # Visa AID asking for C-2
        sc.directory_entry(MASTERCARD, priority=2, kernel_id=b"\x03"),  # and the reverse
        sc.directory_entry(VISA_ELECTRON, priority=3),  # default for A000000003: C-3
    )
    config = _config(_aid(bytes.fromhex("A000000003"), 3), _aid(MASTERCARD, 2))
    result = _entry(config, k3=FakeKernel("C-3"), k2=FakeKernel("C-2")).process(card, _tx())
    assert [(c.aid, c.kernel_id) for c in result.candidates] == [(VISA_ELECTRON, 3)]


def test_kernel_identifier_zero_accepts_the_combination_kernel() -> None:
    card = sc.ppse_card(sc.directory_entry(MASTERCARD, kernel_id=b"\x00"))
    result = _entry(k2=FakeKernel("C-2")).process(card, _tx())
    assert [(c.aid, c.kernel_id) for c in result.candidates] == [(MASTERCARD, 2)]


def test_an_aid_whose_kernel_the_reader_lacks_is_no_candidate() -> None:
    k3 = FakeKernel("C-3")
    result = _entry(k3=k3).process(_two_brand_card(), _tx())
    assert [c.aid for c in result.candidates] == [VISA]
    config = _config(_aid(MASTERCARD, 2))
    result = _entry(config, k3=k3).process(_two_brand_card(), _tx())
    assert result.candidates == []
    assert result.outcome.status == Status.END_APPLICATION


@pytest.mark.parametrize(("partial", "matches"), [(True, True), (False, False)])
def test_partial_selection_matches_adf_names_that_begin_with_the_aid(
    partial: bool, matches: bool
) -> None:
    longer = VISA + b"\x01\x02"
    card = sc.ppse_card(sc.directory_entry(longer, kernel_id=b"\x03"))
    config = _config(_aid(VISA, 3, partial_selection=partial))
    result = _entry(config, k3=FakeKernel("C-3")).process(card, _tx())
    assert [c.aid for c in result.candidates] == ([longer] if matches else [])


def test_an_adf_name_shorter_than_the_aid_never_matches() -> None:
    card = sc.ppse_card(sc.directory_entry(VISA[:6], kernel_id=b"\x03"))
    result = _entry(k3=FakeKernel("C-3")).process(card, _tx())
    assert result.candidates == []


def test_candidate_carries_label_priority_kernel_and_configuration() -> None:
    config = _config(_aid(VISA, 3))
    card = sc.ppse_card(sc.directory_entry(VISA, label="VISA DEBIT", priority=3, kernel_id=b"\x03"))
    result = _entry(config, k3=FakeKernel("C-3")).process(card, _tx())
    assert result.candidates == [Candidate(VISA, "VISA DEBIT", 3, 3, config.aids[0])]


# --- final selection (Book B §3.3.3) --------------------------------------------------------


@pytest.mark.parametrize(
    "visa_reply",
    [
        sc.answer(sw=0x6A82),
        sc.answer(sc.application_fci(VISA), sw=0x6283),
        sc.answer(bytes.fromhex("A5035001")),
        sc.answer(bytes.fromhex("6F0584")),
        b"",
    ],
    ids=["6A82", "6283 with FCI", "no 6F template", "malformed TLV", "no status word"],
)
def test_final_selection_failure_removes_the_candidate_and_selects_the_next(
    visa_reply: bytes,
) -> None:
    card = sc.ppse_card(
        sc.directory_entry(VISA, priority=1),
        sc.directory_entry(MASTERCARD, priority=2),
        apps={VISA: visa_reply},
    )
    k3, k2 = FakeKernel("C-3"), FakeKernel("C-2")
    result = _entry(k3=k3, k2=k2).process(card, _tx())
    assert card.selected() == [PPSE, VISA, MASTERCARD]
    assert k3.seen == [] and [s.aid for s in k2.seen] == [MASTERCARD]
    assert [(a.aid, a.kernel is None, a.outcome.status) for a in result.attempts] == [
        (VISA, True, Status.SELECT_NEXT),
        (MASTERCARD, False, Status.ONLINE_REQUEST),
    ]
    assert result.outcome == ONLINE


def test_every_candidate_failing_final_selection_ends_application() -> None:
    card = sc.ppse_card(
        sc.directory_entry(VISA, priority=1),
        sc.directory_entry(MASTERCARD, priority=2),
        apps={VISA: sc.answer(sw=0x6A82), MASTERCARD: sc.answer(sw=0x6999)},
    )
    result = _entry(k3=FakeKernel("C-3"), k2=FakeKernel("C-2")).process(card, _tx())
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.ui_request == TRY_ANOTHER_CARD
    assert result.kernel is None and len(result.attempts) == 2
    assert result.ui == [PRESENT_CARD, TRY_ANOTHER_CARD]


def test_visa_kernel_3_card_whose_pdol_lacks_the_ttq_needs_kernel_1() -> None:
    fci = sc.answer(sc.application_fci(VISA, pdol=bytes.fromhex("9F02069F3704")))
    card = sc.ppse_card(sc.directory_entry(VISA), apps={VISA: fci})
    k3 = FakeKernel("C-3")
    result = _entry(k3=k3).process(card, _tx())
    assert k3.seen == [] and result.outcome.status == Status.END_APPLICATION
    assert "Kernel 1" in result.attempts[0].outcome.reason
    k1 = FakeKernel("C-1")
    result = _entry(k3=k3, k1=k1).process(card, _tx())
    assert len(k1.seen) == 1 and k3.seen == []


# --- kernel activation (Book B §3.4) --------------------------------------------------------


def test_kernel_gets_the_fci_indicators_and_terminal_data() -> None:
    config = _config(_aid(VISA, 3, application_version=b"\x00\x96"))
    card = sc.ppse_card(sc.directory_entry(VISA, kernel_id=b"\x03"))
    k3 = FakeKernel("C-3")
    _entry(config, k3=k3).process(card, _tx(3_500))
    (selected,) = k3.seen
    assert selected.aid == VISA
    assert selected.fci == sc.application_fci(VISA)
    assert selected.config == config.aids[0] and selected.terminal == config
    assert selected.indicators == pre_process(config.aids[0], 3_500, 2)
    data = selected.terminal_data
    assert data[0x9F66] == bytes.fromhex("37E04000")  # online cryptogram and CVM required
    assert data[0x9F02] == bytes.fromhex("000000003500")
    assert data[0x5F2A] == bytes.fromhex("0826") and data[0x9F1A] == config.country
    assert data[0x9F37] == UN and data[0x9A] == bytes.fromhex("261126")
    assert data[0x9F09] == b"\x00\x96" and data[0x9F06] == VISA
    assert data[0x9F1B] == (1_000).to_bytes(4, "big")
    assert data[0x9F35] == b"\x22"


def test_kernel_2_gets_no_ttq() -> None:
    card = sc.ppse_card(sc.directory_entry(MASTERCARD))
    k2 = FakeKernel("C-2")
    _entry(k2=k2).process(card, _tx())
    assert 0x9F66 not in k2.seen[0].terminal_data


def test_selected_aid_is_the_df_name_of_the_fci() -> None:
    df_name = VISA + b"\x99"
    card = sc.ppse_card(
        sc.directory_entry(VISA),
        apps={VISA: sc.answer(sc.application_fci(df_name))},
    )
    k3 = FakeKernel("C-3")
    result = _entry(k3=k3).process(card, _tx())
    assert k3.seen[0].aid == df_name
    assert result.attempts[0].aid == df_name


def test_a_kernel_that_raises_is_a_bug_surfaced_to_the_caller() -> None:
    card = sc.ppse_card(sc.directory_entry(VISA))
    with pytest.raises(RuntimeError, match="kernel bug"):
        EntryPoint(_config(), {3: BrokenKernel()}).process(card, _tx())


# --- outcome processing (Book B §3.5) -------------------------------------------------------


def test_final_outcome_switches_the_field_off_and_sends_its_ui_request() -> None:
    card = _two_brand_card()
    result = _entry(k3=FakeKernel("C-3", [APPROVED])).process(card, _tx())
    assert result.outcome == APPROVED
    assert result.kernel is not None and result.kernel.outcome == APPROVED
    assert result.ui == [PRESENT_CARD, UiRequest(Message.APPROVED)]
    assert card.taps == 1 and card.power_offs == 1 and not card.powered


def test_ui_requests_the_kernel_sent_come_before_its_outcome_ui_request() -> None:
    read_ok = UiRequest(Message.CARD_READ_OK, ReaderStatus.CARD_READ_SUCCESSFULLY)
    kernel = FakeKernel("C-3", [APPROVED], ui=[read_ok])
    result = _entry(k3=kernel).process(_two_brand_card(), _tx())
    assert result.ui == [PRESENT_CARD, read_ok, UiRequest(Message.APPROVED)]


def test_select_next_from_the_kernel_activates_the_next_candidate() -> None:
    card = _two_brand_card()
    k3, k2 = FakeKernel("C-3", [SELECT_NEXT]), FakeKernel("C-2", [APPROVED])
    result = _entry(k3=k3, k2=k2).process(card, _tx())
    assert card.selected() == [PPSE, VISA, MASTERCARD]
    assert [a.outcome.status for a in result.attempts] == [Status.SELECT_NEXT, Status.APPROVED]
    assert result.kernel is not None and result.kernel.kernel == "C-2"
    assert card.taps == 1


def test_select_next_from_the_last_candidate_ends_application() -> None:
    card = sc.ppse_card(sc.directory_entry(VISA))
    result = _entry(k3=FakeKernel("C-3", [SELECT_NEXT])).process(card, _tx())
    assert result.outcome.status == Status.END_APPLICATION
    assert result.outcome.ui_request == TRY_ANOTHER_CARD


def test_try_again_is_a_new_tap_with_the_restart_ui_request() -> None:
    card = _two_brand_card()
    k3 = FakeKernel("C-3", [TRY_AGAIN, APPROVED])
    result = _entry(k3=k3).process(card, _tx())
    assert result.outcome == APPROVED
    assert result.taps == 2 and card.taps == 2
    assert card.power_offs == 2  # after the Try Again, and at the end
    assert [tap for tap, _ in card.log] == [1, 1, 2, 2]  # PPSE and SELECT on each tap
    assert result.ui == [
        PRESENT_CARD,
        TRY_AGAIN.ui_request,
        PRESENT_AGAIN,
        UiRequest(Message.APPROVED),
    ]


@pytest.mark.parametrize("retaps", [0, 1, 3])
def test_try_again_until_retaps_are_exhausted_ends_application(retaps: int) -> None:
    card = _two_brand_card()
    k3 = FakeKernel("C-3", [TRY_AGAIN])
    result = _entry(_config(retaps=retaps), k3=k3).process(card, _tx())
    assert result.taps == card.taps == retaps + 1
    assert len(k3.seen) == retaps + 1
    assert result.outcome.status == Status.END_APPLICATION
    assert "tap" in result.outcome.reason
    assert result.ui[-1] == TRY_ANOTHER_CARD
    assert result.ui.count(PRESENT_AGAIN) == retaps
    assert not card.powered


def test_card_removed_during_ppse_selection_is_a_retap() -> None:
    ppse = sc.answer(sc.ppse_fci(sc.directory_entry(VISA)))
    card = sc.ppse_card(sc.directory_entry(VISA))
    card.script[sc.select(PPSE)] = [CardRemoved("tear"), ppse]
    k3 = FakeKernel("C-3")
    result = _entry(k3=k3).process(card, _tx())
    assert result.outcome == ONLINE and result.taps == 2
    assert result.attempts[0].aid is None and result.attempts[0].kernel is None
    assert result.attempts[0].outcome.status == Status.TRY_AGAIN
    assert result.ui[:2] == [PRESENT_CARD, PRESENT_CARD]


def test_link_error_during_final_selection_is_a_retap() -> None:
    card = sc.ppse_card(sc.directory_entry(VISA))
    card.script[sc.select(VISA)] = [LinkError("time-out"), sc.answer(sc.application_fci(VISA))]
    result = _entry(k3=FakeKernel("C-3")).process(card, _tx())
    assert result.outcome == ONLINE and result.taps == 2
    assert result.attempts[0].aid == VISA and result.attempts[0].outcome.start == Start.B


def test_no_card_at_power_on_asks_again_and_then_gives_up() -> None:
    card = sc.ppse_card(sc.directory_entry(VISA), absent_taps=1)
    result = _entry(k3=FakeKernel("C-3")).process(card, _tx())
    assert result.outcome == ONLINE and result.taps == 2
    card = sc.ppse_card(sc.directory_entry(VISA), absent_taps=5)
    result = _entry(k3=FakeKernel("C-3")).process(card, _tx())
    assert result.outcome.status == Status.END_APPLICATION and result.taps == 2
    assert "no card" in result.outcome.reason


def test_reader_error_at_power_on_asks_for_one_card_only() -> None:
    class Collision:
        def power_on(self) -> bytes:
            raise LinkError("collision")

        def power_off(self) -> None:
            pass

        def transceive(self, command: bytes) -> bytes:
            raise AssertionError("never powered")

    result = _entry(_config(retaps=0), k3=FakeKernel("C-3")).process(Collision(), _tx())
    assert UiRequest(Message.PRESENT_ONE_CARD_ONLY, ReaderStatus.PROCESSING_ERROR) in result.ui
    assert result.outcome.status == Status.END_APPLICATION


def test_candidate_list_is_rebuilt_on_each_tap() -> None:
    card = _two_brand_card()
    card.script[sc.select(PPSE)] = [
        sc.answer(sc.ppse_fci(sc.directory_entry(VISA), sc.directory_entry(MASTERCARD))),
        sc.answer(sc.ppse_fci(sc.directory_entry(MASTERCARD))),
    ]
    k3, k2 = FakeKernel("C-3", [TRY_AGAIN]), FakeKernel("C-2")
    result = _entry(k3=k3, k2=k2).process(card, _tx())
    assert [c.aid for c in result.candidates] == [MASTERCARD]
    assert result.outcome == ONLINE


# --- the emulated card ----------------------------------------------------------------------


def test_entry_point_selects_the_emulated_visa_card_and_activates_kernel_3() -> None:
    card = pl.make_plastic(SoftIssuer(), load_profile("visa_qvsdc_plastic")).card
    config = default_config()
    k3, k2 = GpoKernel("C-3"), FakeKernel("C-2")
    result = EntryPoint(config, {3: k3, 2: k2}).process(card, _tx(1234))
    visa = config.aid(VISA)
    assert visa is not None
    assert result.candidates == [Candidate(VISA, "VISA CREDIT", 1, 3, visa)]
    (selected,) = k3.seen
    assert selected.aid == VISA and k2.seen == []
    fci = tlv.decode(selected.fci)
    assert fci[0].tag == 0x6F and tlv.find(fci, 0x9F38) is not None
    ttq = TTQ.from_bytes(selected.terminal_data[0x9F66])
    assert ttq.online_cryptogram_required and not ttq.cvm_required  # 12.34 > floor limit 0
    assert selected.indicators.floor_limit_exceeded
    assert result.outcome == ONLINE and not card.powered
    assert k3.gpo_sw == [0x9000]  # the application stayed selected for the kernel
