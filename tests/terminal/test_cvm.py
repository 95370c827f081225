"""CVM selection (Book C-2 §7.5, Book 3 §10.5 and Annex C3): on-device CVM, the AIP and CVM
List preconditions, each CV Rule condition, the CVMs a contactless kernel performs, the
"apply succeeding CV Rule" bit, unrecognised CVMs and the CVM Results that go with them."""

from __future__ import annotations

import pytest

from emv.bitfields import TVR, CvmList, CvRule
from terminal.cvm import (
    CvmContext,
    condition_met,
    cvm_supported,
    on_device_cvm,
    process_cvm_list,
    select_cvm,
)
from terminal.outcome import Cvm

USD = bytes.fromhex("0840")
EUR = bytes.fromhex("0978")
ONLINE_PIN_SIGNATURE = 0x60
NO_CVM_ONLY = 0x08
ALL = 0xF8


def ctx(
    amount: int = 1000,
    *,
    capability: int = ONLINE_PIN_SIGNATURE,
    application_currency: bytes | None = USD,
    transaction_type: int = 0x00,
    terminal_type: int = 0x22,
) -> CvmContext:
    return CvmContext(
        amount=amount,
        transaction_currency=USD,
        application_currency=application_currency,
        transaction_type=transaction_type,
        terminal_type=terminal_type,
        capability=capability,
    )


def rules(text: str, x: int = 0, y: int = 0) -> CvmList:
    raw = bytes.fromhex(text)
    return CvmList(
        amount_x=x,
        amount_y=y,
        rules=tuple(CvRule.from_bytes(raw[i : i + 2]) for i in range(0, len(raw), 2)),
    )


def rule(method: int, condition: int, *, apply_next: bool = False) -> CvRule:
    return CvRule(method=method, condition=condition, apply_next_if_unsuccessful=apply_next)


# --- on-device CVM and the preconditions (CVM.1-CVM.8) -------------------------------------------


def test_on_device_cvm_above_the_limit_is_confirmation_code_verified() -> None:
    selection = on_device_cvm(cvm_required=True)
    assert selection.cvm == Cvm.CONFIRMATION_CODE_VERIFIED
    assert selection.results == bytes.fromhex("010002")
    assert selection.tvr == TVR()


def test_on_device_cvm_within_the_limit_is_no_cvm() -> None:
    selection = on_device_cvm(cvm_required=False)
    assert selection.cvm == Cvm.NO_CVM
    assert selection.results == bytes.fromhex("3F0002")


def test_on_device_cvm_wins_over_the_cvm_list() -> None:
    selection = select_cvm(
        card_supports_cv=True,
        on_device=True,
        cvm_required=True,
        cvm_list=rules("1E00").to_bytes(),
        ctx=ctx(),
    )
    assert selection.cvm == Cvm.CONFIRMATION_CODE_VERIFIED


def test_a_card_without_cardholder_verification_gets_no_cvm_with_unknown_result() -> None:
    selection = select_cvm(
        card_supports_cv=False, on_device=False, cvm_required=True, cvm_list=None, ctx=ctx()
    )
    assert (selection.cvm, selection.results, selection.tvr) == (
        Cvm.NO_CVM,
        bytes.fromhex("3F0000"),
        TVR(),
    )


@pytest.mark.parametrize("cvm_list", [None, b"", b"\x00\x00\x00", bytes(9)])
def test_a_missing_or_malformed_cvm_list_is_icc_data_missing(cvm_list: bytes | None) -> None:
    selection = select_cvm(
        card_supports_cv=True, on_device=False, cvm_required=True, cvm_list=cvm_list, ctx=ctx()
    )
    assert selection.cvm == Cvm.NO_CVM
    assert selection.results == bytes.fromhex("3F0000")
    assert selection.tvr == TVR(icc_data_missing=True)


# --- performing a CVM (CVM.17-CVM.18) ------------------------------------------------------------


def test_online_pin_is_performed_with_result_unknown_and_online_cvm_captured() -> None:
    selection = process_cvm_list(rules("4203 1E03 1F03"), ctx(capability=ONLINE_PIN_SIGNATURE))
    assert selection.cvm == Cvm.ONLINE_PIN
    assert selection.results == bytes.fromhex("420300")
    assert selection.tvr == TVR(online_cvm_captured=True)
    assert not selection.receipt


def test_signature_is_performed_with_a_receipt() -> None:
    selection = process_cvm_list(rules("4203 1E03 1F03"), ctx(capability=0x20))
    assert selection.cvm == Cvm.SIGNATURE
    assert selection.results == bytes.fromhex("1E0300")
    assert selection.receipt
    assert selection.tvr == TVR()


def test_no_cvm_required_is_successful() -> None:
    selection = process_cvm_list(rules("4203 1E03 1F03"), ctx(capability=NO_CVM_ONLY))
    assert selection.cvm == Cvm.NO_CVM
    assert selection.results == bytes.fromhex("1F0302")
    assert selection.tvr == TVR()


@pytest.mark.parametrize("offline_pin", [0x01, 0x03, 0x04, 0x05])
def test_offline_pin_is_never_performed_contactless(offline_pin: int) -> None:
    assert not cvm_supported(offline_pin, 0xFF)
    selection = process_cvm_list(rules(f"{0x40 | offline_pin:02X}00 1F00"), ctx(capability=ALL))
    assert selection.cvm == Cvm.NO_CVM
    assert selection.results == bytes.fromhex("1F0002")


@pytest.mark.parametrize(
    ("method", "bit"), [(0x02, 0x40), (0x1E, 0x20), (0x1F, 0x08)], ids=["pin", "sign", "nocvm"]
)
def test_each_contactless_cvm_needs_its_capability_bit(method: int, bit: int) -> None:
    assert cvm_supported(method, bit)
    assert not cvm_supported(method, 0xFF & ~bit)


def test_fail_cvm_processing_is_always_supported() -> None:
    assert cvm_supported(0x00, 0x00)


# --- failing (CVM.14, CVM.19-CVM.25) -------------------------------------------------------------


def test_an_unsupported_cvm_without_the_next_rule_bit_fails_with_3f0001() -> None:
    selection = process_cvm_list(rules("0200 1F00"), ctx(capability=NO_CVM_ONLY))
    assert selection.cvm == Cvm.NO_CVM
    assert selection.results == bytes.fromhex("3F0001")
    assert selection.tvr == TVR(cardholder_verification_not_successful=True)


def test_an_unsupported_cvm_with_the_next_rule_bit_moves_on() -> None:
    selection = process_cvm_list(rules("4200 1F00"), ctx(capability=NO_CVM_ONLY))
    assert selection.results == bytes.fromhex("1F0002")
    assert selection.tvr == TVR()


def test_fail_cvm_processing_fails_with_its_rule_in_the_results() -> None:
    selection = process_cvm_list(rules("0000 1F00"), ctx())
    assert selection.results == bytes.fromhex("000001")
    assert selection.tvr == TVR(cardholder_verification_not_successful=True)


def test_fail_cvm_processing_with_the_next_rule_bit_moves_on() -> None:
    selection = process_cvm_list(rules("4000 1F00"), ctx(capability=NO_CVM_ONLY))
    assert selection.results == bytes.fromhex("1F0002")


def test_an_unrecognised_cvm_sets_its_bit_and_fails_without_the_next_rule_bit() -> None:
    selection = process_cvm_list(rules("1000 1F00"), ctx(capability=NO_CVM_ONLY))
    assert selection.results == bytes.fromhex("3F0001")
    assert selection.tvr == TVR(unrecognised_cvm=True, cardholder_verification_not_successful=True)


def test_an_unrecognised_cvm_with_the_next_rule_bit_keeps_its_bit_and_moves_on() -> None:
    selection = process_cvm_list(rules("5000 1F00"), ctx(capability=NO_CVM_ONLY))
    assert selection.results == bytes.fromhex("1F0002")
    assert selection.tvr == TVR(unrecognised_cvm=True)


def test_no_applicable_rule_fails_with_3f0001() -> None:
    selection = process_cvm_list(rules("1E03 0203"), ctx(capability=NO_CVM_ONLY))
    assert selection.results == bytes.fromhex("3F0001")
    assert selection.tvr == TVR(cardholder_verification_not_successful=True)


def test_an_empty_rule_list_fails() -> None:
    selection = process_cvm_list(rules(""), ctx())
    assert selection.results == bytes.fromhex("3F0001")


def test_words_say_which_rule_was_used() -> None:
    selection = process_cvm_list(rules("4203 1E03 1F03"), ctx(capability=NO_CVM_ONLY))
    assert selection.words[-1] == "CV Rule 3: No CVM required"


# --- conditions (Book 3 Annex C3 Table 44) -------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "context", "met"),
    [
        (0x00, ctx(), True),
        (0x01, ctx(transaction_type=0x01, terminal_type=0x14), True),
        (0x01, ctx(transaction_type=0x01, terminal_type=0x22), False),
        (0x01, ctx(transaction_type=0x00, terminal_type=0x14), False),
        (0x02, ctx(transaction_type=0x00), True),
        (0x02, ctx(transaction_type=0x01), False),
        (0x02, ctx(transaction_type=0x09), False),
        (0x04, ctx(transaction_type=0x17, terminal_type=0x22), True),
        (0x04, ctx(transaction_type=0x01, terminal_type=0x25), False),
        (0x05, ctx(transaction_type=0x09), True),
        (0x05, ctx(transaction_type=0x00), False),
    ],
)
def test_transaction_conditions(condition: int, context: CvmContext, met: bool) -> None:
    assert condition_met(rule(0x1F, condition), 0, 0, context) is met


def test_terminal_supports_the_cvm_condition_looks_at_the_capability() -> None:
    assert condition_met(rule(0x1E, 0x03), 0, 0, ctx(capability=0x20)) is True
    assert condition_met(rule(0x1E, 0x03), 0, 0, ctx(capability=0x40)) is False


@pytest.mark.parametrize(
    ("condition", "amount", "met"),
    [
        (0x06, 999, True),  # under X (1000)
        (0x06, 1000, False),
        (0x07, 1001, True),  # over X
        (0x07, 1000, False),
        (0x08, 4999, True),  # under Y (5000)
        (0x08, 5000, False),
        (0x09, 5001, True),  # over Y
        (0x09, 5000, False),
    ],
)
def test_amount_conditions_compare_with_x_and_y(condition: int, amount: int, met: bool) -> None:
    assert condition_met(rule(0x1F, condition), 1000, 5000, ctx(amount)) is met


def test_amount_conditions_in_another_currency_are_not_met() -> None:
    assert condition_met(rule(0x1F, 0x06), 1000, 0, ctx(1, application_currency=EUR)) is False


def test_amount_conditions_without_the_application_currency_are_passed_over() -> None:
    assert condition_met(rule(0x1F, 0x06), 1000, 0, ctx(1, application_currency=None)) is None
    selection = process_cvm_list(
        rules("1E06 1F00", x=1000), ctx(1, capability=0x28, application_currency=None)
    )
    assert selection.results == bytes.fromhex("1F0002")


@pytest.mark.parametrize("condition", [0x0A, 0x7F, 0x80, 0xFF])
def test_conditions_not_understood_pass_the_rule_over(condition: int) -> None:
    assert condition_met(rule(0x1F, condition), 0, 0, ctx()) is None
    selection = process_cvm_list(
        CvmList(rules=(rule(0x1E, condition), rule(0x1F, 0x00))), ctx(capability=0x28)
    )
    assert selection.results == bytes.fromhex("1F0002")


def test_amount_rules_choose_signature_above_x_and_no_cvm_below() -> None:
    cvm_list = rules("1E07 1F06", x=3000)
    above = process_cvm_list(cvm_list, ctx(3001, capability=0x28))
    below = process_cvm_list(cvm_list, ctx(2999, capability=0x28))
    assert (above.cvm, above.results) == (Cvm.SIGNATURE, bytes.fromhex("1E0700"))
    assert (below.cvm, below.results) == (Cvm.NO_CVM, bytes.fromhex("1F0602"))
