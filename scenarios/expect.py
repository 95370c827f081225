"""Check what came out of a tap against what the scenario expects (docs/scenarios.md, ``expect``).

:func:`check_tap` makes one :class:`~scenarios.model.Check` per expectation given
(each tag is its own check), in the order of the format's table, each with the
expected and the actual value as readable text, and where the expectation was
written (:attr:`Expectation.sources <scenarios.model.Expectation.sources>`, else
the tap). What is compared:

=================  =================================================================
check              actual value
=================  =================================================================
``outcome``        the final outcome's status (shown with its reason)
``kernel``         the last kernel's name (``C-2``, ``C-3``; ``none``: no kernel ran)
``path``           the kernel's path (``qVSDC``, ``M/Chip``, ``mag-stripe``; ``none``)
``cvm``            the final outcome's CVM
``oda``            method and result (``fDDA passed``, ``CDA failed``, ``not
                   performed``); the reason is shown, not compared
``cryptogram``     the card's cryptogram type (``AAC``, ``TC``, ``ARQC``; ``none``)
``online``         whether the kernel asked to go online
``host.decision``  the host's answer: ``approved``, ``declined``, ``none`` (none came)
``host.reason``    the host's reason (``none``: no answer)
``tvr``            the named bits of the kernel's TVR set / clear (a multi-bit field
                   is "set" when not zero)
``tags.<TAG>``     the value in the card's data, else in the kernel's data record
``apdus``          the trace's command names against the pattern (:func:`match_apdus`)
``ui``             the UI message texts, in order (Clear Display is ``""``)
``taps``           how many times Entry Point activated the card
``reason``         the final outcome's reason must contain the text
=================  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields

from emv import apdu, tlv
from emv.bitfields import TVR
from emv.trace import Trace
from scenarios.model import Check, Expectation, Source
from terminal.kernels import KernelResult
from terminal.oda import OdaResult
from terminal.pos import TransactionResult

__all__ = ["ANY_COMMANDS", "ONE_COMMAND", "apdu_names", "check_tap", "match_apdus"]

ANY_COMMANDS = "*"
"""An ``apdus`` item that matches any number of commands (none included)."""
ONE_COMMAND = "?"
"""An ``apdus`` item that matches exactly one command."""

_NONE = "none"
_SEPARATOR = " | "


def apdu_names(trace: Trace) -> list[str]:
    """The names of the commands sent in ``trace`` (:func:`emv.apdu.command_name`), in
    order; a command that does not parse reads ``malformed command (why)``."""
    names = []
    for command in trace.commands():
        try:
            names.append(apdu.command_name(apdu.CommandApdu.parse(command)))
        except ValueError as err:
            names.append(f"malformed command ({err})")
    return names


def match_apdus(patterns: Sequence[str], names: Sequence[str]) -> bool:
    """Whether the command ``names`` fit ``patterns``: ``*`` any run of commands, ``?``
    one command, an item ending in ``*`` one command whose name starts with the rest,
    any other item one command of exactly that name."""
    # fits[i][j]: patterns[i:] matches names[j:]
    fits = [[False] * (len(names) + 1) for _ in range(len(patterns) + 1)]
    fits[len(patterns)][len(names)] = True
    for i in reversed(range(len(patterns))):
        pattern = patterns[i]
        for j in reversed(range(len(names) + 1)):
            if pattern == ANY_COMMANDS:
                fits[i][j] = fits[i + 1][j] or (j < len(names) and fits[i][j + 1])
            else:
                fits[i][j] = j < len(names) and _item_fits(pattern, names[j]) and fits[i + 1][j + 1]
    return fits[0][0]


def _item_fits(pattern: str, name: str) -> bool:
    if pattern == ONE_COMMAND:
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def check_tap(
    expect: Expectation, result: TransactionResult, trace: Trace, source: Source
) -> list[Check]:
    """One check per expectation given (module docstring); ``source`` is where the tap
    was written, used for an expectation whose own place is not known."""
    checks: list[Check] = []

    def add(name: str, expected: str, actual: str, passed: bool) -> None:
        checks.append(Check(name, expected, actual, passed, expect.sources.get(name, source)))

    kernel = result.kernel
    if expect.outcome is not None:
        status = str(result.outcome.status)
        add(
            "outcome",
            expect.outcome,
            _with(status, result.outcome.reason),
            expect.outcome == status,
        )
    for name, wanted, actual in (
        ("kernel", expect.kernel, kernel.kernel if kernel else _NONE),
        ("path", expect.path, (kernel.path or _NONE) if kernel else _NONE),
        ("cvm", expect.cvm, str(result.outcome.cvm)),
        ("cryptogram", expect.cryptogram, _cryptogram(kernel)),
    ):
        if wanted is not None:
            add(name, wanted, actual, wanted == actual)
    if expect.oda is not None:
        oda = kernel.oda if kernel else OdaResult(reason="no kernel ran")
        add("oda", expect.oda, str(oda), _oda_key(expect.oda) == _oda_key(str(oda)))
    if expect.online is not None:
        add(
            "online", _yes_no(expect.online), _yes_no(result.online), expect.online == result.online
        )
    _check_host(expect, result, add)
    if expect.tvr_set or expect.tvr_clear:
        _check_tvr(expect, kernel, add)
    for tag, value in expect.tags.items():
        actual_value = _tag_value(kernel, tag)
        add(
            f"tags.{tlv.tag_hex(tag)}",
            value.hex().upper(),
            "absent" if actual_value is None else actual_value.hex().upper(),
            actual_value == value,
        )
    if expect.apdus is not None:
        names = apdu_names(trace)
        add("apdus", _list(expect.apdus), _list(names), match_apdus(expect.apdus, names))
    if expect.ui is not None:
        texts = [request.message.text for request in result.ui]
        add("ui", _list(expect.ui, ui=True), _list(texts, ui=True), list(expect.ui) == texts)
    if expect.taps is not None:
        taps = result.entry.taps
        add("taps", str(expect.taps), str(taps), expect.taps == taps)
    if expect.reason is not None:
        reason = result.outcome.reason
        add(
            "reason",
            f"contains {expect.reason!r}",
            repr(reason) if reason else "no reason given",
            expect.reason in reason,
        )
    return checks


_Add = Callable[[str, str, str, bool], None]


def _check_host(expect: Expectation, result: TransactionResult, add: _Add) -> None:
    """``host.decision`` and ``host.reason``; why no usable answer came is shown."""
    host = result.host
    why = f" ({result.host_error})" if result.host_error else ""
    if expect.host_decision is not None:
        decision = _NONE if host is None else ("approved" if host.approved else "declined")
        add(
            "host.decision",
            expect.host_decision,
            decision + why,
            expect.host_decision == decision,
        )
    if expect.host_reason is not None:
        reason = _NONE if host is None else (host.reason or _NONE)
        add("host.reason", expect.host_reason, reason + why, expect.host_reason == reason)


def _check_tvr(expect: Expectation, kernel: KernelResult | None, add: _Add) -> None:
    """``tvr``: the named bits set / clear, the whole TVR shown in words."""
    wanted = "; ".join(
        f"{word}: {', '.join(names)}"
        for word, names in (("set", expect.tvr_set), ("clear", expect.tvr_clear))
        if names
    )
    if kernel is None:
        add("tvr", wanted, "no TVR (no kernel ran)", False)
        return
    try:
        tvr = TVR.from_bytes(kernel.tvr)
    except ValueError as err:
        add("tvr", wanted, f"unreadable TVR {kernel.tvr.hex().upper()}: {err}", False)
        return
    set_now = [item.name for item in fields(tvr) if item.name != "rfu" and getattr(tvr, item.name)]
    passed = all(name in set_now for name in expect.tvr_set) and not any(
        name in set_now for name in expect.tvr_clear
    )
    shown = ", ".join(set_now) if set_now else "nothing"
    rfu = f", RFU bits {tvr.rfu:010X}" if tvr.rfu else ""
    add("tvr", wanted, f"{kernel.tvr.hex().upper()}: set {shown}{rfu}", passed)


def _tag_value(kernel: KernelResult | None, tag: int) -> bytes | None:
    if kernel is None:
        return None
    value = kernel.card_data.get(tag)
    return value if value is not None else kernel.data_record.get(tag)


def _cryptogram(kernel: KernelResult | None) -> str:
    if kernel is None or kernel.cryptogram_type is None:
        return _NONE
    return kernel.cryptogram_type.name


def _oda_key(text: str) -> str:
    """ODA words compared: method and result, without the reason, case and spacing aside."""
    return " ".join(text.split(":", 1)[0].split()).casefold()


def _with(status: str, reason: str) -> str:
    return f"{status} ({reason})" if reason else status


def _yes_no(value: bool) -> str:
    return "true" if value else "false"


def _list(items: Sequence[str], *, ui: bool = False) -> str:
    """A list as one line; an empty UI text is Clear Display."""
    if not items:
        return "(none)"
    return _SEPARATOR.join(("(clear display)" if ui and not item else item) for item in items)
