"""Cardholder verification method selection for a contactless kernel (Book C-2 §7.5 "CVM
Selection", EMV 4.4 Book 3 §10.5 and Annex C3, Book 4 Annex A4).

Kernel 2 chooses the CVM in this order (Book C-2 §7.5, CVM.1-CVM.25):

* on-device cardholder verification (CVM.2-CVM.4): when the AIP (82) says the card
  supports it and the reader's configuration allows it, the CVM is "Confirmation Code
  Verified" (the phone verified its user) when the amount is above the Reader CVM
  Required Limit, else "No CVM"; CVM Results '01 00 02' and '3F 00 02';
* a card whose AIP does not say "cardholder verification supported" (CVM.5-CVM.6):
  No CVM, CVM Results '3F 00 00';
* no CVM List (8E) (CVM.7-CVM.8): No CVM, CVM Results '3F 00 00' and the TVR bit "ICC
  data missing";
* else the CVM List (CVM.9-CVM.25, Book 3 §10.5): the CV Rules in order; a rule whose
  condition code is not understood, whose data is not available (the X/Y conditions
  need the Application Currency Code 9F42) or whose condition is not met is passed
  over; the first rule that applies is tried. An unrecognised CVM sets "Unrecognised
  CVM"; a recognised CVM the terminal supports is performed: Online PIN (02), Signature
  (1E), No CVM (1F). A CVM that cannot be performed (unsupported, unrecognised, or
  "Fail CVM processing" 00) moves on to the next rule when the rule says "apply
  succeeding CV Rule if unsuccessful" (byte 1 bit 7), else cardholder verification
  fails: "Cardholder verification was not successful", CVM Results the rule with
  result '01' for a Fail CVM rule, '3F 00 01' otherwise. No applicable rule at all is
  '3F 00 01' and "Cardholder verification was not successful".

The terminal's CVM capability is a byte coded as Terminal Capabilities (9F33) byte 2:
'80' plaintext PIN for ICC verification, '40' enciphered PIN online, '20' signature,
'10' enciphered PIN offline, '08' No CVM required. A contactless kernel performs no
offline PIN (Book C-2 §7.5: only online PIN, signature and No CVM), whatever the byte.

Everything here is a pure function of its arguments; :class:`CvmSelection` says what
was chosen, in words as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from emv.bitfields import CVM_METHODS, TVR, BitfieldError, CvmList, CvRule
from terminal.outcome import Cvm

__all__ = [
    "CASH_TRANSACTION_TYPES",
    "CvmContext",
    "CvmSelection",
    "condition_met",
    "cvm_supported",
    "merge_tvr",
    "on_device_cvm",
    "process_cvm_list",
    "select_cvm",
]

FAIL_CVM = 0x00
ONLINE_PIN = 0x02
SIGNATURE = 0x1E
NO_CVM = 0x1F
CVM_NOT_PERFORMED = 0x3F  # CVM Results byte 1: no CVM performed (Book 4 Annex A4)
ON_DEVICE_CVM = 0x01  # CVM Results byte 1 when the device verified its user (Book C-2 CVM.4)

RESULT_UNKNOWN, RESULT_FAILED, RESULT_SUCCESSFUL = 0x00, 0x01, 0x02

_CAPABILITY_BIT = {ONLINE_PIN: 0x40, SIGNATURE: 0x20, NO_CVM: 0x08}
"""The Terminal Capabilities byte 2 bit of each CVM a contactless kernel can perform."""

CASH_TRANSACTION_TYPES = frozenset({0x01, 0x17})  # cash, cash disbursement (ISO 8583 :3)
PURCHASE_WITH_CASHBACK = 0x09
_UNATTENDED = frozenset({0x4, 0x5, 0x6})  # Terminal Type second digit (Book 4 Annex A1)


@dataclass(frozen=True)
class CvmContext:
    """What the CV Rule conditions look at (Book 3 Annex C3 Table 44).

    ``amount`` is Amount, Authorised (9F02) in minor units; ``transaction_currency``
    the Transaction Currency Code (5F2A); ``application_currency`` the card's
    Application Currency Code (9F42), None when the card did not give it;
    ``capability`` the terminal's CVM capability (coded as 9F33 byte 2)."""

    amount: int
    transaction_currency: bytes
    application_currency: bytes | None
    transaction_type: int
    terminal_type: int
    capability: int


@dataclass(frozen=True)
class CvmSelection:
    """The outcome of CVM selection: the CVM for the Outcome, CVM Results (9F34), the
    TVR bits to set, whether a receipt is wanted, and what happened in words."""

    cvm: Cvm
    results: bytes
    tvr: TVR = field(default_factory=TVR)
    receipt: bool = False
    words: tuple[str, ...] = ()


def on_device_cvm(cvm_required: bool) -> CvmSelection:
    """Book C-2 CVM.2-CVM.4: the device verifies its user above the CVM Required Limit."""
    if cvm_required:
        return CvmSelection(
            Cvm.CONFIRMATION_CODE_VERIFIED,
            bytes((ON_DEVICE_CVM, 0x00, RESULT_SUCCESSFUL)),
            words=("on-device cardholder verification: amount above the CVM Required Limit",),
        )
    return CvmSelection(
        Cvm.NO_CVM,
        bytes((CVM_NOT_PERFORMED, 0x00, RESULT_SUCCESSFUL)),
        words=("on-device cardholder verification: amount within the CVM Required Limit",),
    )


def cvm_supported(method: int, capability: int) -> bool:
    """Whether a contactless terminal with CVM ``capability`` can perform CVM ``method``:
    online PIN, signature and No CVM by their 9F33 byte 2 bit; Fail CVM always; offline
    PIN and the rest never (Book C-2 §7.5)."""
    if method == FAIL_CVM:
        return True
    bit = _CAPABILITY_BIT.get(method)
    return bit is not None and bool(capability & bit)


def condition_met(rule: CvRule, amount_x: int, amount_y: int, ctx: CvmContext) -> bool | None:
    """Whether the rule's condition is satisfied (Book 3 Annex C3 Table 44); None when the
    condition code is not understood or the data it needs is missing (Book C-2 CVM.10-CVM.11):
    the rule is then passed over."""
    code = rule.condition
    cash = ctx.transaction_type in CASH_TRANSACTION_TYPES
    unattended = ctx.terminal_type & 0x0F in _UNATTENDED
    if code == 0x00:
        return True
    if code == 0x01:
        return unattended and cash
    if code == 0x02:
        cashback = ctx.transaction_type == PURCHASE_WITH_CASHBACK
        return not cash and not cashback
    if code == 0x03:
        return cvm_supported(rule.method, ctx.capability)
    if code == 0x04:
        return cash and not unattended
    if code == 0x05:
        return ctx.transaction_type == PURCHASE_WITH_CASHBACK
    if 0x06 <= code <= 0x09:
        if ctx.application_currency is None:
            return None
        if ctx.application_currency != ctx.transaction_currency:
            return False
        limit = amount_x if code in (0x06, 0x07) else amount_y
        return ctx.amount < limit if code in (0x06, 0x08) else ctx.amount > limit
    return None


def _performed(rule: CvRule, number: int) -> CvmSelection:
    """Book C-2 CVM.17-CVM.18: perform a supported CVM and say so in CVM Results."""
    byte1, byte2 = rule.to_bytes()
    method = rule.method
    if method == ONLINE_PIN:
        return CvmSelection(
            Cvm.ONLINE_PIN,
            bytes((byte1, byte2, RESULT_UNKNOWN)),
            TVR(online_cvm_captured=True),
            words=(f"CV Rule {number}: online PIN",),
        )
    if method == SIGNATURE:
        return CvmSelection(
            Cvm.SIGNATURE,
            bytes((byte1, byte2, RESULT_UNKNOWN)),
            receipt=True,
            words=(f"CV Rule {number}: signature",),
        )
    return CvmSelection(
        Cvm.NO_CVM,
        bytes((byte1, byte2, RESULT_SUCCESSFUL)),
        words=(f"CV Rule {number}: No CVM required",),
    )


def _failed(rule: CvRule | None, tvr: TVR, words: list[str]) -> CvmSelection:
    """Book C-2 CVM.14 and CVM.22-CVM.25: cardholder verification was not successful."""
    failed = replace(tvr, cardholder_verification_not_successful=True)
    if rule is not None and rule.method == FAIL_CVM:
        byte1, byte2 = rule.to_bytes()
        results = bytes((byte1, byte2, RESULT_FAILED))
    else:
        results = bytes((CVM_NOT_PERFORMED, 0x00, RESULT_FAILED))
    words.append("cardholder verification was not successful")
    return CvmSelection(Cvm.NO_CVM, results, failed, words=tuple(words))


def merge_tvr(tvr: TVR, other: TVR) -> TVR:
    """Both TVRs' bits."""
    first, second = tvr.to_bytes(), other.to_bytes()
    return TVR.from_bytes(bytes(a | b for a, b in zip(first, second, strict=True)))


def process_cvm_list(cvm_list: CvmList, ctx: CvmContext) -> CvmSelection:
    """Book C-2 CVM.9-CVM.25 (Book 3 §10.5): the first applicable CV Rule whose CVM can be
    performed, with the "apply succeeding CV Rule if unsuccessful" bit honoured."""
    tvr = TVR()
    words: list[str] = []
    for number, rule in enumerate(cvm_list.rules, start=1):
        met = condition_met(rule, cvm_list.amount_x, cvm_list.amount_y, ctx)
        if not met:
            why = "condition not understood or its data missing" if met is None else "not met"
            words.append(f"CV Rule {number} ({rule.to_bytes().hex().upper()}): condition {why}")
            continue
        recognised = rule.method in CVM_METHODS
        if not recognised:
            tvr = replace(tvr, unrecognised_cvm=True)
            words.append(f"CV Rule {number}: unrecognised CVM {rule.method:02X}")
        elif rule.method != FAIL_CVM and cvm_supported(rule.method, ctx.capability):
            done = _performed(rule, number)
            merged = merge_tvr(tvr, done.tvr)
            return CvmSelection(done.cvm, done.results, merged, done.receipt, (*words, *done.words))
        else:
            words.append(f"CV Rule {number}: {CVM_METHODS[rule.method]} cannot be performed")
        if not rule.apply_next_if_unsuccessful:
            return _failed(rule, tvr, words)
    words.append("no CV Rule applies")
    return _failed(None, tvr, words)


def select_cvm(
    *,
    card_supports_cv: bool,
    on_device: bool,
    cvm_required: bool,
    cvm_list: bytes | None,
    ctx: CvmContext,
) -> CvmSelection:
    """Kernel 2 CVM selection (Book C-2 §7.5): ``on_device`` when the AIP and the reader
    both support on-device cardholder verification; ``card_supports_cv`` the AIP's
    "cardholder verification is supported"; ``cvm_list`` the card's 8E value."""
    if on_device:
        return on_device_cvm(cvm_required)
    if not card_supports_cv:
        return CvmSelection(
            Cvm.NO_CVM,
            bytes((CVM_NOT_PERFORMED, 0x00, RESULT_UNKNOWN)),
            words=("the card does not support cardholder verification (AIP)",),
        )
    parsed: CvmList | None = None
    if cvm_list:
        try:
            parsed = CvmList.from_bytes(cvm_list)
        except BitfieldError:
            parsed = None
    if parsed is None:
        return CvmSelection(
            Cvm.NO_CVM,
            bytes((CVM_NOT_PERFORMED, 0x00, RESULT_UNKNOWN)),
            TVR(icc_data_missing=True),
            words=("no usable CVM List (8E)",),
        )
    return process_cvm_list(parsed, ctx)
