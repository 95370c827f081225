"""Processing restrictions (Book 3 §10.4, Book C-2 §7.7): application versions, effective and
expiry dates (including malformed ones), and Application Usage Control for ATMs, other
terminals, domestic and international cash, goods, services and cashback."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from emv.bitfields import AUC, TVR
from terminal.restrictions import RestrictionContext, parse_yymmdd, processing_restrictions

US = bytes.fromhex("0840")
UK = bytes.fromhex("0826")
CTX = RestrictionContext(
    terminal_version=bytes.fromhex("0002"),
    transaction_date=bytes.fromhex("260315"),
    transaction_type=0x00,
    amount_other=0,
    terminal_country=US,
    terminal_type=0x22,
    additional_capabilities=bytes.fromhex("6000A0F001"),
)
CARD = {
    0x9F08: bytes.fromhex("0002"),
    0x5F25: bytes.fromhex("240101"),
    0x5F24: bytes.fromhex("291231"),
    0x9F07: bytes.fromhex("FF00"),
    0x5F28: US,
}
ATM = replace(CTX, terminal_type=0x14, additional_capabilities=bytes.fromhex("8000000000"))


def check(card: dict[int, bytes], ctx: RestrictionContext = CTX) -> TVR:
    return processing_restrictions(card, ctx).tvr


def test_a_current_card_of_the_same_version_passes() -> None:
    result = processing_restrictions(CARD, CTX)
    assert result.tvr == TVR()
    assert result.words == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (bytes.fromhex("491231"), date(2049, 12, 31)),
        (bytes.fromhex("500101"), date(1950, 1, 1)),
        (bytes.fromhex("240229"), date(2024, 2, 29)),
        (bytes.fromhex("250229"), None),
        (bytes.fromhex("2413"), None),
        (bytes.fromhex("24AB01"), None),
        (None, None),
    ],
)
def test_yymmdd_dates(value: bytes | None, expected: date | None) -> None:
    assert parse_yymmdd(value) == expected


def test_different_application_versions() -> None:
    assert check({**CARD, 0x9F08: bytes.fromhex("0001")}) == TVR(
        different_application_versions=True
    )


def test_no_card_version_is_no_check() -> None:
    card = dict(CARD)
    del card[0x9F08]
    assert check(card) == TVR()


def test_an_expired_card() -> None:
    assert check({**CARD, 0x5F24: bytes.fromhex("260314")}) == TVR(expired_application=True)


def test_the_expiry_day_itself_is_still_valid() -> None:
    assert check({**CARD, 0x5F24: bytes.fromhex("260315")}) == TVR()


def test_a_card_not_yet_effective() -> None:
    tvr = check({**CARD, 0x5F25: bytes.fromhex("260316")})
    assert tvr == TVR(application_not_yet_effective=True)


@pytest.mark.parametrize("bad", [b"", bytes.fromhex("2913"), bytes.fromhex("291332")])
def test_malformed_dates_fail_their_checks(bad: bytes) -> None:
    tvr = check({**CARD, 0x5F24: bad, 0x5F25: bad})
    assert tvr == TVR(expired_application=True, application_not_yet_effective=True)


def test_a_missing_expiry_date_fails_its_check() -> None:
    card = dict(CARD)
    del card[0x5F24]
    assert check(card) == TVR(expired_application=True)


def test_no_auc_is_no_usage_check() -> None:
    card = dict(CARD)
    del card[0x9F07]
    assert check(card, replace(CTX, transaction_type=0x01)) == TVR()


def auc(**flags: bool) -> bytes:
    return AUC(**flags).to_bytes()


SERVICE_NOT_ALLOWED = TVR(service_not_allowed=True)


FLAGS = {
    "other": "valid_at_non_atm_terminals",
    "atm": "valid_at_atms",
    "dom_cash": "valid_for_domestic_cash",
    "int_cash": "valid_for_international_cash",
    "dom_goods": "valid_for_domestic_goods",
    "int_goods": "valid_for_international_goods",
    "dom_services": "valid_for_domestic_services",
    "dom_cashback": "domestic_cashback_allowed",
    "int_cashback": "international_cashback_allowed",
}
CASH, CASHBACK, DISBURSEMENT = 0x01, 0x09, 0x17


@pytest.mark.parametrize(
    ("flags", "ctx", "allowed"),
    [
        ("other dom_goods", CTX, True),
        ("dom_goods", CTX, False),  # not valid at terminals other than ATMs
        ("atm dom_cash", replace(ATM, transaction_type=CASH), True),
        ("other dom_cash", replace(ATM, transaction_type=CASH), False),
        # a Terminal Type 14 without the cash capability is not an ATM
        ("other dom_goods", replace(ATM, additional_capabilities=bytes(5)), True),
        # purchases: goods or services, domestic or international
        ("other dom_services", CTX, True),
        ("other int_goods", CTX, False),
        ("other int_goods", replace(CTX, terminal_country=UK), True),
        ("other dom_goods", replace(CTX, terminal_country=UK), False),
        # cash at a merchant
        ("other dom_cash", replace(CTX, transaction_type=CASH), True),
        ("other dom_goods", replace(CTX, transaction_type=DISBURSEMENT), False),
        ("other dom_cash", replace(CTX, transaction_type=CASH, terminal_country=UK), False),
        ("other int_cash", replace(CTX, transaction_type=CASH, terminal_country=UK), True),
        # cashback: a non-zero Amount, Other
        (
            "other dom_goods dom_cashback",
            replace(CTX, transaction_type=CASHBACK, amount_other=5),
            True,
        ),
        ("other dom_goods", replace(CTX, transaction_type=CASHBACK, amount_other=5), False),
        (
            "other dom_goods dom_cashback",
            replace(CTX, transaction_type=CASHBACK, amount_other=5, terminal_country=UK),
            False,
        ),
        (
            "other int_goods int_cashback",
            replace(CTX, transaction_type=CASHBACK, amount_other=5, terminal_country=UK),
            True,
        ),
    ],
)
def test_application_usage_control(flags: str, ctx: RestrictionContext, allowed: bool) -> None:
    value = auc(**{FLAGS[flag]: True for flag in flags.split()})
    assert check({**CARD, 0x9F07: value}, ctx) == (TVR() if allowed else SERVICE_NOT_ALLOWED)


def test_without_an_issuer_country_only_the_terminal_kind_is_checked() -> None:
    card = {**CARD, 0x9F07: auc(valid_at_non_atm_terminals=True)}
    del card[0x5F28]
    assert check(card, replace(CTX, transaction_type=0x01)) == TVR()


@pytest.mark.parametrize("bad", [b"", b"\xff", b"\xff\x00\x00"])
def test_an_auc_of_the_wrong_length_allows_nothing(bad: bytes) -> None:
    assert check({**CARD, 0x9F07: bad}) == SERVICE_NOT_ALLOWED


def test_the_words_name_every_failed_check() -> None:
    card = {**CARD, 0x9F08: b"\x00\x01", 0x5F24: bytes.fromhex("200101"), 0x9F07: auc()}
    result = processing_restrictions(card, CTX)
    assert result.tvr == TVR(
        different_application_versions=True, expired_application=True, service_not_allowed=True
    )
    assert result.words == (
        "ICC and terminal have different application versions (9F08, 9F09)",
        "expired application (5F24)",
        "not valid at terminals other than ATMs (AUC)",
    )
