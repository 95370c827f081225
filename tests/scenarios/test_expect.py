"""scenarios.expect: a tap's result checked against its expectation, with readable
expected and actual values, on real transactions of the shipped Visa plastic card
(scenarios.tap.TapEnvironment): approved online, declined without a host, and a
replayed cryptogram declined by the token server. APDU patterns are unit-tested."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from emv import apdu
from emv.trace import EventKind, Trace
from scenarios.expect import apdu_names, check_tap, match_apdus
from scenarios.model import Check, Expectation, Source
from scenarios.tap import TapEnvironment
from terminal.pos import TransactionResult

TAP = Source("tap.yaml", 7)
APDUS = [
    "SELECT 2PAY.SYS.DDF01",
    "SELECT A0000000031010",
    "GET PROCESSING OPTIONS",
    "READ RECORD SFI 1 record 1",
    "READ RECORD SFI 2 record 1",
    "READ RECORD SFI 3 record 1",
    "READ RECORD SFI 3 record 2",
]


@dataclass(frozen=True)
class Tap:
    result: TransactionResult
    trace: Trace


@dataclass(frozen=True)
class Taps:
    approved: Tap  # online, approved by the token server
    replayed: Tap  # the same, with the host's answer to the same ICC data sent again
    no_host: Tap  # online request, no host: Declined


@pytest.fixture(scope="module")
def taps() -> Iterator[Taps]:
    with TapEnvironment("visa_qvsdc_plastic") as env:
        result, trace = env.tap(1234)
        assert env.terminal.host is not None
        replay = env.terminal.host.authorise(result.icc_data)
        replayed = replace(result, host=replay)
    with TapEnvironment("visa_qvsdc_plastic", host="none") as env:
        declined, declined_trace = env.tap(1234)
    yield Taps(Tap(result, trace), Tap(replayed, trace), Tap(declined, declined_trace))


def only(tap: Tap, **expected: Any) -> Check:
    """The single check an expectation with these fields makes."""
    (check,) = check_tap(Expectation(**expected), tap.result, tap.trace, TAP)
    return check


def test_nothing_expected_checks_nothing(taps: Taps) -> None:
    assert check_tap(Expectation(), taps.approved.result, taps.approved.trace, TAP) == []


# --- each expectation, passing and failing ------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "name", "expected", "actual"),
    [
        ({"outcome": "Approved"}, "outcome", "Approved", "Approved (host approved)"),
        ({"kernel": "C-3"}, "kernel", "C-3", "C-3"),
        ({"path": "qVSDC"}, "path", "qVSDC", "qVSDC"),
        ({"cvm": "No CVM"}, "cvm", "No CVM", "No CVM"),
        ({"oda": "fDDA passed"}, "oda", "fDDA passed", "fDDA passed"),
        ({"cryptogram": "ARQC"}, "cryptogram", "ARQC", "ARQC"),
        ({"online": True}, "online", "true", "true"),
        ({"host_decision": "approved"}, "host.decision", "approved", "approved"),
        ({"host_reason": "approved"}, "host.reason", "approved", "approved"),
        (
            {"tvr_clear": ("dda_failed", "cda_failed")},
            "tvr",
            "clear: dda_failed, cda_failed",
            "0000000000: set nothing",
        ),
        ({"tags": {0x9F27: b"\x80"}}, "tags.9F27", "80", "80"),
        ({"tags": {0x9F02: bytes.fromhex("000000001234")}}, "tags.9F02", "000000001234", None),
        ({"apdus": tuple(APDUS)}, "apdus", " | ".join(APDUS), " | ".join(APDUS)),
        (
            {"ui": ("Present Card", "Card Read OK", "Authorising Please Wait", "Approved")},
            "ui",
            "Present Card | Card Read OK | Authorising Please Wait | Approved",
            "Present Card | Card Read OK | Authorising Please Wait | Approved",
        ),
        ({"taps": 1}, "taps", "1", "1"),
        ({"reason": "approved"}, "reason", "contains 'approved'", "'host approved'"),
    ],
)
def test_an_expectation_that_holds_passes_with_readable_values(
    taps: Taps, fields: dict[str, object], name: str, expected: str, actual: str | None
) -> None:
    check = only(taps.approved, **fields)
    assert (check.name, check.expected, check.passed) == (name, expected, True)
    assert check.actual == (expected if actual is None else actual)
    assert check.source == TAP


@pytest.mark.parametrize(
    ("fields", "name", "expected", "actual"),
    [
        ({"outcome": "Declined"}, "outcome", "Declined", "Approved (host approved)"),
        ({"kernel": "C-2"}, "kernel", "C-2", "C-3"),
        ({"path": "M/Chip"}, "path", "M/Chip", "qVSDC"),
        ({"cvm": "Online PIN"}, "cvm", "Online PIN", "No CVM"),
        ({"oda": "CDA passed"}, "oda", "CDA passed", "fDDA passed"),
        ({"oda": "not performed"}, "oda", "not performed", "fDDA passed"),
        ({"cryptogram": "TC"}, "cryptogram", "TC", "ARQC"),
        ({"online": False}, "online", "false", "true"),
        ({"host_decision": "declined"}, "host.decision", "declined", "approved"),
        ({"host_reason": "replay"}, "host.reason", "replay", "approved"),
        (
            {"tvr_set": ("dda_failed",), "tvr_clear": ("cda_failed",)},
            "tvr",
            "set: dda_failed; clear: cda_failed",
            "0000000000: set nothing",
        ),
        ({"tags": {0x9F27: b"\x40"}}, "tags.9F27", "40", "80"),
        ({"tags": {0x9F7C: b"\x01"}}, "tags.9F7C", "01", "absent"),
        (
            {"apdus": ("SELECT 2PAY.SYS.DDF01", "GET PROCESSING OPTIONS", "*")},
            "apdus",
            "SELECT 2PAY.SYS.DDF01 | GET PROCESSING OPTIONS | *",
            " | ".join(APDUS),
        ),
        (
            {"ui": ("Present Card", "Approved")},
            "ui",
            "Present Card | Approved",
            "Present Card | Card Read OK | Authorising Please Wait | Approved",
        ),
        ({"taps": 2}, "taps", "2", "1"),
        ({"reason": "declined"}, "reason", "contains 'declined'", "'host approved'"),
    ],
)
def test_an_expectation_that_fails_shows_expected_and_actual(
    taps: Taps, fields: dict[str, object], name: str, expected: str, actual: str
) -> None:
    check = only(taps.approved, **fields)
    assert (check.name, check.expected, check.actual, check.passed) == (
        name,
        expected,
        actual,
        False,
    )


def test_a_declined_outcome_shows_its_reason_and_why_the_host_gave_no_answer(
    taps: Taps,
) -> None:
    expect = Expectation(
        outcome="Declined",
        online=True,
        host_decision="none",
        host_reason="none",
        reason="host unavailable",
        ui=("Present Card", "Card Read OK", "Authorising Please Wait", "Not Authorised"),
    )
    checks = check_tap(expect, taps.no_host.result, taps.no_host.trace, TAP)
    assert [(check.name, check.actual) for check in checks] == [
        ("outcome", "Declined (host unavailable: no host configured)"),
        ("online", "true"),
        ("host.decision", "none (no host configured)"),
        ("host.reason", "none (no host configured)"),
        ("ui", "Present Card | Card Read OK | Authorising Please Wait | Not Authorised"),
        ("reason", "'host unavailable: no host configured'"),
    ]
    assert all(check.passed for check in checks)


def test_a_replay_shows_the_token_servers_decline_and_reason(taps: Taps) -> None:
    expect = Expectation(host_decision="declined", host_reason="replay")
    checks = check_tap(expect, taps.replayed.result, taps.replayed.trace, TAP)
    assert [(check.name, check.actual, check.passed) for check in checks] == [
        ("host.decision", "declined", True),
        ("host.reason", "replay", True),
    ]


def test_oda_ignores_the_reason_and_case(taps: Taps) -> None:
    assert only(taps.approved, oda="FDDA  Passed").passed


def test_checks_come_in_the_formats_order_one_per_expectation(taps: Taps) -> None:
    expect = Expectation(
        reason="host",
        taps=1,
        ui=("Present Card", "Card Read OK", "Authorising Please Wait", "Approved"),
        apdus=("*",),
        tags={0x9F27: b"\x80", 0x9F36: b"\x00\x01"},
        tvr_set=("floor_limit_exceeded",),
        host_decision="approved",
        host_reason="approved",
        online=True,
        cryptogram="ARQC",
        oda="fDDA passed",
        cvm="No CVM",
        path="qVSDC",
        kernel="C-3",
        outcome="Approved",
    )
    checks = check_tap(expect, taps.approved.result, taps.approved.trace, TAP)
    assert [check.name for check in checks] == [
        "outcome",
        "kernel",
        "path",
        "cvm",
        "cryptogram",
        "oda",
        "online",
        "host.decision",
        "host.reason",
        "tvr",
        "tags.9F27",
        "tags.9F36",
        "apdus",
        "ui",
        "taps",
        "reason",
    ]


def test_a_check_points_at_the_line_of_its_expectation_when_known(taps: Taps) -> None:
    expect = Expectation(
        outcome="Approved",
        kernel="C-3",
        tags={0x9F27: b"\x80"},
        sources={"outcome": Source("s.yaml", 10), "tags.9F27": Source("s.yaml", 12)},
    )
    checks = check_tap(expect, taps.approved.result, taps.approved.trace, TAP)
    assert [(check.name, check.source) for check in checks] == [
        ("outcome", Source("s.yaml", 10)),
        ("kernel", TAP),
        ("tags.9F27", Source("s.yaml", 12)),
    ]


def test_a_result_without_a_kernel_reads_none(taps: Taps) -> None:
    result = taps.approved.result
    no_kernel = replace(result, entry=replace(result.entry, kernel=None))
    expect = Expectation(
        kernel="none",
        path="none",
        cryptogram="none",
        oda="not performed",
        tvr_clear=("dda_failed",),
        tags={0x9F27: b"\x80"},
    )
    checks = check_tap(expect, no_kernel, Trace(), TAP)
    assert [(check.name, check.actual, check.passed) for check in checks] == [
        ("kernel", "none", True),
        ("path", "none", True),
        ("cryptogram", "none", True),
        ("oda", "not performed: no kernel ran", True),
        ("tvr", "no TVR (no kernel ran)", False),
        ("tags.9F27", "absent", False),
    ]


# --- apdu names and patterns ------------------------------------------------------------


def test_apdu_names_are_the_command_names_of_the_trace(taps: Taps) -> None:
    assert apdu_names(taps.approved.trace) == APDUS


def test_apdu_names_read_a_malformed_command_as_such() -> None:
    trace = Trace()
    trace.add(0, EventKind.COMMAND, apdu.select_ppse().to_bytes())
    trace.add(1, EventKind.RESPONSE, b"\x90\x00")
    trace.add(2, EventKind.COMMAND, b"\x80")
    names = apdu_names(trace)
    assert names[0] == "SELECT 2PAY.SYS.DDF01"
    assert names[1].startswith("malformed command (")


@pytest.mark.parametrize(
    ("patterns", "fits"),
    [
        (APDUS, True),
        (["*"], True),
        ([*APDUS[:3], "*"], True),
        (["*", "READ RECORD SFI 3 record 2"], True),
        (["SELECT*", "SELECT*", "GET PROCESSING OPTIONS", "READ RECORD*", "*"], True),
        (["?", "?", "GET PROCESSING OPTIONS", "*", "?"], True),
        (["*", "GET PROCESSING OPTIONS", "*", "READ RECORD SFI 2 record 1", "*"], True),
        (["*", "*", "*"], True),
        (["?"] * 7, True),
        (["?"] * 8, False),
        (["?"] * 6, False),
        (APDUS[:-1], False),
        ([*APDUS, "*", "?"], False),
        (["SELECT", "*"], False),  # exact: "SELECT" is not "SELECT 2PAY.SYS.DDF01"
        (["*", "GENERATE AC*", "*"], False),
        (["select 2pay.sys.ddf01", "*"], False),  # names are compared as written
        ([], False),
    ],
)
def test_apdu_patterns(patterns: list[str], fits: bool) -> None:
    assert match_apdus(patterns, APDUS) is fits


def test_no_commands_fit_only_patterns_of_stars() -> None:
    assert match_apdus([], [])
    assert match_apdus(["*", "*"], [])
    assert not match_apdus(["?"], [])
    assert not match_apdus(["SELECT*"], [])
