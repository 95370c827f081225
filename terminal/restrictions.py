"""Processing restrictions (EMV 4.4 Book 3 §10.4, as Book C-2 §7.7 PRE.1-PRE.29 does them).

Three checks, each setting TVR bits and never stopping the transaction:

* application versions (PRE.1-PRE.3): when the card gives its Application Version
  Number (9F08) and it differs from the terminal's (9F09), "ICC and terminal have
  different application versions";
* dates (PRE.4-PRE.8): a transaction date (9A) before the Application Effective Date
  (5F25) is "Application not yet effective", after the Application Expiration Date
  (5F24) "Expired application"; dates are YYMMDD with YY < 50 in the 2000s (Book 3
  §10.4.3). A date that is not a valid YYMMDD counts as failing its check;
* Application Usage Control (PRE.9-PRE.29, Book 3 §10.4.2): at an ATM (Terminal Type
  14, 15, 16 with the cash capability of 9F40) the card must be "valid at ATMs", elsewhere
  "valid at terminals other than ATMs"; then, when the card gives its Issuer Country
  Code (5F28), a domestic transaction (5F28 = 9F1A) or an international one must be
  valid for domestic / international cash (cash transactions), for domestic /
  international goods or services (purchases, with or without cashback), and a non-zero
  Amount, Other must be allowed as domestic / international cashback. Any failure sets
  "Requested service not allowed for card product". An AUC that is not 2 bytes is taken
  as allowing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from emv.bitfields import AUC, TVR, AdditionalTerminalCapabilities, BitfieldError
from terminal.cvm import CASH_TRANSACTION_TYPES

__all__ = ["RestrictionContext", "RestrictionResult", "parse_yymmdd", "processing_restrictions"]

_ATM_TERMINAL_TYPES = frozenset({0x14, 0x15, 0x16})
_PURCHASE_TYPES = frozenset({0x00, 0x09})
_CENTURY_PIVOT = 50


@dataclass(frozen=True)
class RestrictionContext:
    """The terminal's side: its version (9F09), the transaction date (9A), type (9C), Amount,
    Other (9F03, minor units), Terminal Country Code (9F1A), Terminal Type (9F35) and
    Additional Terminal Capabilities (9F40)."""

    terminal_version: bytes
    transaction_date: bytes
    transaction_type: int
    amount_other: int
    terminal_country: bytes
    terminal_type: int
    additional_capabilities: bytes


@dataclass(frozen=True)
class RestrictionResult:
    """The TVR bits the checks set, and what they found in words."""

    tvr: TVR
    words: tuple[str, ...]


def parse_yymmdd(value: bytes | None) -> date | None:
    """A YYMMDD date (n 6, 3 bytes BCD) with YY < 50 in the 2000s (Book 3 §10.4.3); None when
    it is absent or not a valid date."""
    if value is None or len(value) != 3:
        return None
    digits = value.hex()
    if not digits.isdigit():
        return None
    yy, mm, dd = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    year = 2000 + yy if yy < _CENTURY_PIVOT else 1900 + yy
    try:
        return date(year, mm, dd)
    except ValueError:
        return None


def _versions(card: dict[int, bytes], ctx: RestrictionContext) -> tuple[TVR, list[str]]:
    """PRE.1-PRE.3."""
    version = card.get(0x9F08)
    if version is None or version == ctx.terminal_version:
        return TVR(), []
    return TVR(different_application_versions=True), [
        "ICC and terminal have different application versions (9F08, 9F09)"
    ]


def _dates(card: dict[int, bytes], ctx: RestrictionContext) -> tuple[TVR, list[str]]:
    """PRE.4-PRE.8."""
    tvr, words = TVR(), []
    today = parse_yymmdd(ctx.transaction_date)
    if 0x5F25 in card:
        effective = parse_yymmdd(card[0x5F25])
        if effective is None or today is None or today < effective:
            tvr = replace(tvr, application_not_yet_effective=True)
            words.append("application not yet effective (5F25)")
    expiry = parse_yymmdd(card.get(0x5F24))
    if expiry is None or today is None or today > expiry:
        tvr = replace(tvr, expired_application=True)
        words.append("expired application (5F24)")
    return tvr, words


def _at_atm(ctx: RestrictionContext) -> bool:
    """PRE.10: an ATM is Terminal Type 14, 15 or 16 with the cash transaction capability."""
    if ctx.terminal_type not in _ATM_TERMINAL_TYPES:
        return False
    try:
        return AdditionalTerminalCapabilities.from_bytes(ctx.additional_capabilities).cash
    except BitfieldError:
        return False


def _usage_allowed(auc: AUC, card: dict[int, bytes], ctx: RestrictionContext) -> list[str]:
    """PRE.10-PRE.29: the reasons the AUC refuses this transaction (none: allowed)."""
    if _at_atm(ctx):
        if not auc.valid_at_atms:
            return ["not valid at ATMs (AUC)"]
    elif not auc.valid_at_non_atm_terminals:
        return ["not valid at terminals other than ATMs (AUC)"]
    country = card.get(0x5F28)
    if country is None:
        return []
    domestic = country == ctx.terminal_country
    scope = "domestic" if domestic else "international"
    refusals = []
    if ctx.transaction_type in CASH_TRANSACTION_TYPES:
        cash = auc.valid_for_domestic_cash if domestic else auc.valid_for_international_cash
        if not cash:
            refusals.append(f"not valid for {scope} cash (AUC)")
    if ctx.transaction_type in _PURCHASE_TYPES:
        goods = auc.valid_for_domestic_goods if domestic else auc.valid_for_international_goods
        services = (
            auc.valid_for_domestic_services if domestic else auc.valid_for_international_services
        )
        if not (goods or services):
            refusals.append(f"not valid for {scope} goods or services (AUC)")
    if ctx.amount_other:
        cashback = auc.domestic_cashback_allowed if domestic else auc.international_cashback_allowed
        if not cashback:
            refusals.append(f"{scope} cashback not allowed (AUC)")
    return refusals


def _usage_control(card: dict[int, bytes], ctx: RestrictionContext) -> tuple[TVR, list[str]]:
    """PRE.9-PRE.29."""
    value = card.get(0x9F07)
    if value is None:
        return TVR(), []
    try:
        refusals = _usage_allowed(AUC.from_bytes(value), card, ctx)
    except BitfieldError:
        refusals = ["Application Usage Control (9F07) is not 2 bytes"]
    if not refusals:
        return TVR(), []
    return TVR(service_not_allowed=True), refusals


def processing_restrictions(card: dict[int, bytes], ctx: RestrictionContext) -> RestrictionResult:
    """Book C-2 §7.7 (Book 3 §10.4): the TVR bits for versions, dates and usage control."""
    bits = bytearray(5)
    words: list[str] = []
    for check in (_versions, _dates, _usage_control):
        tvr, found = check(card, ctx)
        bits = bytearray(a | b for a, b in zip(bits, tvr.to_bytes(), strict=True))
        words += found
    return RestrictionResult(TVR.from_bytes(bytes(bits)), tuple(words))
