"""A transaction as a tester reads it: :func:`render` (text) and :func:`to_dict` (JSON-able).

What is shown, from a :class:`terminal.pos.TransactionResult`: the final outcome
and its reason (Book A §6.2, Table 6-1), the transaction (type 9C, amount 9F02 in
the currency 5F2A), the kernel and the path it took (Book C-2 EMV mode or
mag-stripe, Book C-3 qVSDC), the application selected (AID 84 / 4F, label 50), the
PAN, offline data authentication, the CVM, the cryptogram type (CID 9F27, Book 3
§6.5.5.4), the host's decision and reason and whether an ARPC came (Book 2 §8.2),
the TVR in words (Book 3 Annex C5), the kernel's decisions and the user interface
requests (Book A §7.1).

PANs are masked (first six and last four digits at most, :mod:`emv.masking`)
unless ``clear`` is given; no key is ever part of a result.
"""

from __future__ import annotations

from typing import Any

from emv import tags
from emv.bitfields import TVR
from emv.masking import mask_pan
from terminal.outcome import Outcome
from terminal.pos import TransactionResult

__all__ = ["format_amount", "pan", "render", "to_dict"]


def format_amount(amount: int, currency: str, exponent: int | None = None) -> str:
    """``1234`` in ``"0826"`` -> ``"12.34 GBP"``; the exponent is the currency's ISO 4217
    minor units unless given (else 2)."""
    known = tags.currency(bytes.fromhex(currency)) if len(currency) == 4 else None
    if exponent is None:
        exponent = known[2] if known is not None and known[2] is not None else 2
    units, minor = divmod(amount, 10**exponent)
    text = f"{units:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    return f"{text} {known[0] if known else currency}"


def pan(result: TransactionResult, *, clear: bool = False) -> str | None:
    """The PAN the kernel read (5A, else track 2 equivalent data 57), masked unless ``clear``."""
    kernel = result.kernel
    if kernel is None:
        return None
    digits = None
    for source in (kernel.data_record, kernel.card_data):
        if 0x5A in source:
            digits = source[0x5A].hex().upper().rstrip("F")
            break
        if 0x57 in source:
            digits = source[0x57].hex().upper().split("D")[0]
            break
    if not digits:
        return None
    return digits if clear else mask_pan(digits)


def _selected(result: TransactionResult) -> tuple[str | None, str | None]:
    """The AID of the last kernel activation and its label from the candidate list."""
    aid = next((a.aid for a in reversed(result.entry.attempts) if a.aid is not None), None)
    if aid is None:
        return None, None
    label = next((c.label for c in result.entry.candidates if c.aid == aid), "")
    return aid.hex().upper(), label or tags.aid_name(aid) or ""


def _host(result: TransactionResult) -> dict[str, Any] | None:
    if not result.online:
        return None
    answer = result.host
    return {
        "asked": answer is not None,
        "decision": None if answer is None else ("approved" if answer.approved else "declined"),
        "reason": None if answer is None else answer.reason,
        "arc": None if answer is None else answer.arc.hex().upper(),
        "arpc": answer is not None and answer.arpc is not None,
        "authorisation_id": None if answer is None else answer.authorisation_id,
        "error": result.host_error,
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": str(outcome.status),
        "reason": outcome.reason,
        "cvm": str(outcome.cvm),
        "receipt": outcome.receipt,
        "ui": None if outcome.ui_request is None else str(outcome.ui_request),
    }


def to_dict(result: TransactionResult, *, clear: bool = False) -> dict[str, Any]:
    """The result as JSON-able data (module docstring); PAN masked unless ``clear``."""
    transaction = result.transaction
    kernel = result.kernel
    aid, label = _selected(result)
    return {
        "outcome": _outcome(result.outcome),
        "kernel_outcome": _outcome(result.entry.outcome),
        "approved": result.approved,
        "transaction": {
            "type": transaction.type.name.lower(),
            "amount": transaction.amount,
            "amount_other": transaction.amount_other,
            "currency": transaction.currency,
            "when": transaction.when.isoformat(),
            "unpredictable_number": transaction.unpredictable_number.hex().upper(),
        },
        "application": {"aid": aid, "label": label},
        "pan": pan(result, clear=clear),
        "kernel": None
        if kernel is None
        else {
            "name": kernel.kernel,
            "path": kernel.path,
            "oda": {
                "method": kernel.oda.method,
                "result": kernel.oda.result,
                "reason": kernel.oda.reason,
            },
            "cryptogram": None if kernel.cryptogram_type is None else kernel.cryptogram_type.name,
            "tvr": kernel.tvr.hex().upper(),
            "tvr_bits": _tvr_words(kernel.tvr),
            "decisions": list(kernel.decisions),
        },
        "host": _host(result),
        "ui": [str(request) for request in result.ui],
        "taps": result.entry.taps,
    }


def _tvr_words(tvr: bytes) -> list[str]:
    try:
        return TVR.from_bytes(tvr).describe()
    except ValueError as err:  # a kernel always gives 5 bytes; say so if it did not
        return [f"(TVR not decodable: {err})"]


def render(result: TransactionResult, *, clear: bool = False, exponent: int | None = None) -> str:
    """The result as readable text (module docstring); PAN masked unless ``clear``.
    ``exponent`` is the currency's number of decimals (the terminal's 5F36)."""
    data = to_dict(result, clear=clear)
    transaction = result.transaction
    outcome = result.outcome
    lines = [f"Outcome:      {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else "")]
    amount = format_amount(transaction.amount, transaction.currency, exponent)
    other = ""
    if transaction.amount_other:
        other = f", other {format_amount(transaction.amount_other, transaction.currency, exponent)}"
    lines.append(f"Transaction:  {data['transaction']['type']} {amount}{other}")
    aid, label = data["application"]["aid"], data["application"]["label"]
    lines.append(f"Application:  {aid} {label}".rstrip() if aid else "Application:  none selected")
    if data["pan"]:
        lines.append(f"PAN:          {data['pan']}")
    kernel = result.kernel
    if kernel is not None:
        lines.append(f"Kernel:       {kernel.kernel}" + (f", {kernel.path}" if kernel.path else ""))
        lines.append(f"ODA:          {kernel.oda}")
        lines.append(f"CVM:          {outcome.cvm}")
        cryptogram = kernel.cryptogram_type.name if kernel.cryptogram_type is not None else "none"
        lines.append(f"Cryptogram:   {cryptogram}")
    lines.append(f"Host:         {_host_line(result)}")
    if kernel is not None:
        words = data["kernel"]["tvr_bits"]
        lines.append(
            f"TVR:          {kernel.tvr.hex().upper()}" + ("" if words else " (no bit set)")
        )
        lines += [f"  - {word}" for word in words]
        if kernel.decisions:
            lines.append("Decisions:")
            lines += [f"  - {decision}" for decision in kernel.decisions]
    if result.ui:
        lines.append("Reader says:")
        lines += [f"  - {request}" for request in result.ui]
    return "\n".join(lines) + "\n"


def _arc(arc: bytes) -> str:
    """The Authorisation Response Code (8A, an 2) as text when printable, else hex."""
    if len(arc) == 2 and all(0x20 < byte < 0x7F for byte in arc):
        return f"'{arc.decode('ascii')}'"
    return arc.hex().upper()


def _host_line(result: TransactionResult) -> str:
    if not result.online:
        return "not asked (the kernel ended offline)"
    answer = result.host
    if answer is None:
        return f"unavailable: {result.host_error}"
    decision = "approved" if answer.approved else "declined"
    arpc = "ARPC received" if answer.arpc else "no ARPC"
    line = f"{decision} ({answer.reason}), ARC {_arc(answer.arc)}, {arpc}"
    if answer.authorisation_id:
        line += f", id {answer.authorisation_id}"
    if result.host_error:
        line += f"; unusable: {result.host_error}"
    return line
