"""Scenario reports: failure text, summary, JUnit XML, HTML, traces on disk."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from emv import trace
from scenarios import reports
from scenarios.model import (
    CardSpec,
    Check,
    Scenario,
    ScenarioResult,
    Source,
    TapResult,
    TapSpec,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "scenarios" / "samples" / "visa_qvsdc_tap.jsonl"
PAN = "4761739001010010"  # in clear in the sample trace (track 2 equivalent data)
MASKED_PAN = "476173******0010"

YAML = """\
id: k3-online
title: Kernel 3 goes online <above> the floor limit & more
requirement: "Book B §3.1.1"
card: visa_qvsdc_plastic
taps:
  - amount: "12.34"
    expect:
      outcome: Approved
      cryptogram: ARQC
"""


def sample_trace() -> trace.Trace:
    return trace.from_jsonl(SAMPLE.read_text(encoding="utf-8"))


def make_result(
    file: Path,
    verdict: str = "failed",
    *,
    scenario_id: str = "k3-online",
    seconds: float = 1.5,
    error: str | None = None,
    actual_outcome: str = "Declined",
) -> ScenarioResult:
    """A scenario of YAML (written to ``file``) and a result for it."""
    if not file.exists():
        file.write_text(YAML, encoding="utf-8")
    name = str(file)
    scenario = Scenario(
        id=scenario_id,
        title="Kernel 3 goes online <above> the floor limit & more",
        requirement="Book B §3.1.1",
        card=CardSpec("visa_qvsdc_plastic"),
        taps=(TapSpec(amount="12.34", source=Source(name, 6)),),
        source=Source(name, 1),
        tags=("kernel3", "online"),
    )
    passed = verdict == "passed"
    checks = [
        Check(
            "outcome", "Approved", "Approved" if passed else actual_outcome, passed, Source(name, 8)
        ),
        Check("cryptogram", "ARQC", "ARQC", True, Source(name, 9)),
    ]
    taps = (
        []
        if verdict == "errored"
        else [
            TapResult(
                0,
                0,
                checks,
                report=f"Outcome: {actual_outcome}\nPAN: {MASKED_PAN}",
                trace=sample_trace(),
            )
        ]
    )
    return ScenarioResult(scenario, verdict, taps, seconds, error)  # type: ignore[arg-type]


@pytest.fixture
def results(tmp_path: Path) -> list[ScenarioResult]:
    pack = tmp_path / "scenarios" / "packs" / "visa" / "kernel3"
    pack.mkdir(parents=True)
    file = pack / "k3.yaml"
    return [
        make_result(file, "passed", scenario_id="k3-ok", seconds=0.25),
        make_result(file, "failed", scenario_id="k3-online", seconds=2.5),
        make_result(
            file,
            "errored",
            scenario_id="k3-broken[amount=1]",
            seconds=0.5,
            error=f"card override: applications[0].pan {PAN} <bad> \x00",
        ),
    ]


# --- text ----------------------------------------------------------------------------------


def test_failure_text_shows_expected_actual_yaml_line_and_masked_trace(
    results: list[ScenarioResult],
) -> None:
    text = reports.failure_text(results[1])
    lines = text.splitlines()
    assert lines[0] == f"FAILED k3-online ({results[1].scenario.source})"
    assert "1 of 2 check(s) failed" in text
    assert "x outcome" in text
    assert "expected: Approved" in text
    assert "actual:   Declined" in text
    assert f"asked at {results[1].scenario.source.file}:8:  outcome: Approved" in text
    assert "x cryptogram" not in text  # only the checks that failed
    assert "APDU trace of tap 1:" in text
    assert "GET PROCESSING OPTIONS" in text
    assert "Outcome: Declined" in text  # the transaction in words
    assert PAN not in text
    assert "PANs masked" in text


def test_failure_text_in_clear_shows_the_pan(results: list[ScenarioResult]) -> None:
    assert PAN in reports.failure_text(results[1], clear=True)


def test_failure_text_of_an_error_gives_the_message_masked(results: list[ScenarioResult]) -> None:
    text = reports.failure_text(results[2])
    assert text.startswith("ERROR k3-broken[amount=1] (")
    assert f"applications[0].pan {MASKED_PAN} <bad>" in text
    assert PAN not in text


def test_mask_text_masks_pan_shaped_numbers_only() -> None:
    assert reports.mask_text(f"57: {PAN}D2912201") == f"57: {MASKED_PAN}D2912201"
    assert reports.mask_text("9F02 000000001234") == "9F02 000000001234"  # 12 digits
    assert reports.mask_text("4761739001010011") == "4761739001010011"  # fails Luhn
    assert reports.mask_text(PAN, clear=True) == PAN


def test_summary_counts_and_slowest_first(results: list[ScenarioResult]) -> None:
    text = reports.summary_text(results, seconds=3.25, slowest=2)
    lines = text.splitlines()
    assert lines[0] == "3 scenario(s) in 3.25 s"
    assert "  passed   1" in lines
    assert "  failed   1" in lines
    assert "  errored  1" in lines
    slow = lines[lines.index("slowest:") + 1 :]
    assert len(slow) == 2
    assert "2.50 s  k3-online  [failed]" in slow[0]
    assert "0.50 s  k3-broken[amount=1]  [errored]" in slow[1]


def test_pack_name_is_the_folder_below_packs(tmp_path: Path) -> None:
    (tmp_path / "packs" / "mc").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    assert reports.pack_name(make_result(tmp_path / "packs" / "mc" / "a.yaml")) == "mc"
    assert reports.pack_name(make_result(tmp_path / "other" / "b.yaml")) == "other"
    assert reports.pack_name(make_result(tmp_path / "packs" / "c.yaml")) == "packs"


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_xml_parses_with_counts_and_attributes(results: list[ScenarioResult]) -> None:
    root = ET.fromstring(reports.junit_xml(results))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["visa.kernel3"]
    suite = suites[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert float(suite.get("time", "0")) == pytest.approx(3.25)
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"k3-ok", "k3-online", "k3-broken[amount=1]"}
    for case in cases.values():
        assert case.get("classname") == "visa.kernel3"
        assert case.get("file", "").endswith("k3.yaml")
        assert case.get("line") == "1"
    assert cases["k3-online"].get("time") == "2.500"

    ok = cases["k3-ok"]
    assert ok.find("failure") is None and ok.find("error") is None
    properties = {p.get("name"): p.get("value") for p in ok.iter("property")}
    assert properties["requirement"] == "Book B §3.1.1"
    assert properties["title"] == "Kernel 3 goes online <above> the floor limit & more"

    failure = cases["k3-online"].find("failure")
    assert failure is not None
    assert failure.get("message") == "tap 1 outcome: expected Approved, actual Declined"
    body = failure.text or ""
    assert "GET PROCESSING OPTIONS" in body and "expected: Approved" in body
    assert PAN not in body

    error = cases["k3-broken[amount=1]"].find("error")
    assert error is not None
    message = error.get("message", "")
    assert MASKED_PAN in message and PAN not in message
    assert "\x00" not in message  # not representable in XML: replaced


def test_junit_xml_in_clear_keeps_the_pan(results: list[ScenarioResult]) -> None:
    root = ET.fromstring(reports.junit_xml(results, clear=True))
    failure = root.find(".//testcase[@name='k3-online']/failure")
    assert failure is not None and PAN in (failure.text or "")


def test_junit_xml_of_nothing_is_an_empty_suite_set() -> None:
    root = ET.fromstring(reports.junit_xml([]))
    assert root.get("tests") == "0" and root.findall("testsuite") == []


# --- HTML ----------------------------------------------------------------------------------


class _Structure(HTMLParser):
    """Checks that elements nest properly; collects links and element ids."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if found.get("href"):
            self.links.append(found["href"] or "")
        if found.get("src"):
            self.sources.append(found["src"] or "")
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open[-3:], tag)
        self.open.pop()


def test_html_report_is_one_page_with_expandable_scenarios(results: list[ScenarioResult]) -> None:
    page = reports.html_report(results, seconds=2.0)
    assert page.startswith("<!DOCTYPE html>")
    structure = _Structure()
    structure.feed(page)
    structure.close()
    assert structure.open == []  # every element closed, in order
    assert structure.sources == [] and "<script" not in page  # self-contained
    assert all(link.startswith("#") and link[1:] in structure.ids for link in structure.links)
    assert len(structure.links) == 2  # the failed and the errored one
    assert page.count("<details class='scenario'") == 3
    assert "<details class='scenario' open id='s-k3-online'>" in page  # failures open
    assert "<details class='scenario' id='s-k3-ok'>" in page
    assert "<details class='trace'>" in page
    assert "-&gt; GET PROCESSING OPTIONS" in page  # the decoded trace, escaped
    assert "<td>outcome</td><td>Approved</td><td>Declined</td>" in page
    assert "<td class='failed'>1</td>" in page
    assert "2.00 s (scenarios: 3.25 s)" in page


def test_html_report_escapes_everything(results: list[ScenarioResult]) -> None:
    page = reports.html_report(results)
    assert "&lt;above&gt; the floor limit &amp; more" in page
    assert "<above>" not in page and "<bad>" not in page
    assert "&lt;bad&gt;" in page


def test_html_report_masks_pans_unless_clear(results: list[ScenarioResult]) -> None:
    assert PAN not in reports.html_report(results)
    assert MASKED_PAN in reports.html_report(results)
    assert PAN in reports.html_report(results, clear=True)


# --- traces --------------------------------------------------------------------------------


def test_write_traces_text_and_pcapng_per_tap(
    results: list[ScenarioResult], tmp_path: Path
) -> None:
    out = tmp_path / "traces"
    written = reports.write_traces(results, out)
    names = sorted(str(path.relative_to(out)) for path in written)
    assert names == [
        "k3-ok/tap-1.pcapng",
        "k3-ok/tap-1.txt",
        "k3-online/tap-1.pcapng",
        "k3-online/tap-1.txt",
    ]
    text = (out / "k3-online" / "tap-1.txt").read_text(encoding="utf-8")
    assert "GET PROCESSING OPTIONS" in text and PAN not in text
    pcap = (out / "k3-online" / "tap-1.pcapng").read_bytes()
    block_type, _length, magic = struct.unpack("<III", pcap[:12])
    assert block_type == 0x0A0D0D0A and magic == 0x1A2B3C4D  # pcapng section header
    assert bytes.fromhex(PAN) not in pcap
    clear = reports.write_traces(results[1:2], tmp_path / "clear", clear=True)
    assert bytes.fromhex(PAN) in clear[1].read_bytes()


def test_write_traces_makes_safe_distinct_folder_names(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    odd = [
        make_result(file, scenario_id="../../etc/passwd"),
        make_result(file, scenario_id="a[x=1, y=2]"),
        make_result(file, scenario_id="a[x=1,_y=2]"),
        make_result(file, scenario_id="z" * 300),
    ]
    out = tmp_path / "out"
    written = reports.write_traces(odd, out)
    folders = [path.parent for path in written[::2]]
    assert all(folder.parent == out for folder in folders)
    assert len(set(folders)) == 4
    assert folders[0].name == "etc_passwd"
    assert folders[1].name == "a_x=1,_y=2"
    assert folders[2].name == "a_x=1,_y=2-2"
    assert len(folders[3].name) <= 100


@pytest.mark.parametrize(
    ("name", "safe"),
    [("k3-online", "k3-online"), (".hidden", "hidden"), ("", "_"), ("a/b\\c", "a_b_c")],
)
def test_safe_name(name: str, safe: str) -> None:
    assert reports.safe_name(name) == safe


def test_a_tap_error_is_said_once(tmp_path: Path) -> None:
    """The runner gives an errored tap's message to the tap and (prefixed) the scenario."""
    result = make_result(tmp_path / "e.yaml", "errored", error="tap 1: e.yaml:6: tap: bad amount")
    result.taps = [TapResult(0, 0, error="e.yaml:6: tap: bad amount", trace=sample_trace())]
    text = reports.failure_text(result)
    assert text.count("bad amount") == 1
    assert "APDU trace of tap 1:" in text  # what the link saw before it went wrong
    page = reports.html_report([result])
    assert page.count("bad amount") == 1
    assert "<span class='errored'>errored</span></h3>" in page
