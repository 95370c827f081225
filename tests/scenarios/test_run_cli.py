"""``emvtap run``: exit codes, summary, failure text, reports, progress, usage errors."""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from scenario_texts import APPROVED, BROKEN, WRONG

from scenarios.cli import main
from scenarios.model import CardSpec, Scenario, ScenarioResult, Source
from scenarios.run_cli import Progress

PAN = "4761739001010010"  # visa_qvsdc_plastic's PAN


@dataclass
class Run:
    """One ``emvtap run``: its exit status, what it printed, and where it wrote."""

    status: int
    out: str
    err: str
    folder: Path


def emvtap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "a_approved.yaml").write_text(APPROVED, encoding="utf-8")
    (folder / "b_wrong.yaml").write_text(WRONG, encoding="utf-8")
    return folder


@pytest.fixture
def failing_run(suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """The suite with every report: one scenario passes, one fails."""
    out = tmp_path / "out"
    status, stdout, stderr = emvtap(
        capsys,
        "run",
        str(suite),
        "--junit",
        str(out / "junit.xml"),
        "--html",
        str(out / "report.html"),
        "--trace-dir",
        str(out / "traces"),
    )
    return Run(status, stdout, stderr, out)


def test_a_failure_exits_1_with_summary_expected_actual_and_trace(failing_run: Run) -> None:
    assert failing_run.status == 1
    out = failing_run.out
    lines = out.splitlines()
    assert lines[0].startswith("2 scenario(s) in ")
    assert "  passed   1" in lines and "  failed   1" in lines and "  errored  0" in lines
    slowest = lines[lines.index("slowest:") + 1 : lines.index("slowest:") + 3]
    assert sorted(line.split()[2] for line in slowest) == ["visa-approved", "visa-wrongly-declined"]
    assert any(line.startswith("FAILED visa-wrongly-declined (") for line in lines)
    assert "b_wrong.yaml:1)" in out
    assert "x outcome" in out
    assert "expected: Declined" in out and "actual:   Approved" in out
    assert "b_wrong.yaml:8:  outcome: Declined" in out  # the YAML line that asked
    assert "x cryptogram" not in out  # it held
    assert "APDU trace of tap 1:" in out and "-> GET PROCESSING OPTIONS" in out
    assert "FAILED visa-approved" not in out
    assert PAN not in out
    assert lines[-1].startswith("emvtap run: 1 passed, 1 failed, 0 errored in ")
    assert failing_run.err.startswith(".F\n")  # not a terminal: one mark per scenario


def test_reports_are_written(failing_run: Run) -> None:
    root = ET.parse(failing_run.folder / "junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    failure = root.find(".//testcase[@name='visa-wrongly-declined']/failure")
    assert failure is not None
    assert "expected Declined, actual Approved" in failure.get("message", "")
    page = (failing_run.folder / "report.html").read_text(encoding="utf-8")
    assert "<details class='scenario' open id='s-visa-wrongly-declined'>" in page
    assert "-&gt; GET PROCESSING OPTIONS" in page and PAN not in page
    traces = failing_run.folder / "traces"
    for scenario in ("visa-approved", "visa-wrongly-declined"):
        assert "SELECT 2PAY.SYS.DDF01" in (traces / scenario / "tap-1.txt").read_text()
        magic = struct.unpack("<I", (traces / scenario / "tap-1.pcapng").read_bytes()[:4])[0]
        assert magic == 0x0A0D0D0A
    assert "JUnit XML: " in failing_run.err


def test_all_passed_exits_0(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = emvtap(capsys, "run", str(suite / "a_approved.yaml"))
    assert status == 0
    assert "FAILED" not in out
    assert out.splitlines()[-1].startswith("emvtap run: 1 passed, 0 failed, 0 errored")


def test_k_selects_and_quiet_prints_only_the_last_line(
    suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = emvtap(capsys, "run", str(suite), "-k", "smoke", "--quiet")
    assert status == 0
    assert out.strip().splitlines() == [out.strip().splitlines()[-1]]
    assert out.strip().startswith("emvtap run: 1 passed, 0 failed")
    assert err == ""


def test_clear_shows_the_pan(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = emvtap(capsys, "run", str(suite / "b_wrong.yaml"), "--clear", "-q")
    assert status == 1
    assert PAN in out and "PANs IN CLEAR" in out


def test_parallel_results_keep_input_order(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = emvtap(capsys, "run", str(suite), "-j", "2")
    assert status == 1
    assert sorted(err.strip()) == [".", "F"]
    assert "FAILED visa-wrongly-declined" in out


def test_a_file_that_does_not_load_is_one_line_exit_2(
    suite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (suite / "c_broken.yaml").write_text(BROKEN, encoding="utf-8")
    status, out, err = emvtap(capsys, "run", str(suite))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("emvtap: error: ") and "c_broken.yaml:" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-k", "nothing_matches_this"], "-k nothing_matches_this: selects none of the 2"),
        (["--junit", "."], "is a directory"),
        (["-k", "smoke and"], "-k smoke and: column"),
    ],
)
def test_usage_errors_exit_2(
    suite: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = emvtap(capsys, "run", str(suite), *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("emvtap: error: ") and message in err and err.count("\n") == 1


def test_no_scenarios_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = emvtap(capsys, "run", str(tmp_path))
    assert status == 2
    assert err.startswith("emvtap: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("jobs", ["0", "-1", "many"])
def test_bad_jobs_is_a_usage_error(
    suite: Path, capsys: pytest.CaptureFixture[str], jobs: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(suite), "-j", jobs])
    assert stopped.value.code == 2
    assert "a positive number or 'auto'" in capsys.readouterr().err


def test_an_unknown_link_is_a_usage_error_naming_the_forms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for link in ("y", "vpcd", "nfc-udp:x", "pcsc:R@nowhere", "pcsc:R@h:70000"):
        assert main(["run", "x.yaml", "--link", link]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"emvtap: error: --link {link!r}: "), err
        assert "expected" in err
    for link in ("inprocess", "vpcd-direct", "nfc-udp"):  # accepted: the missing file fails
        assert main(["run", "x.yaml", "--link", link]) == 2
        assert "x.yaml" in capsys.readouterr().err


def test_a_pcsc_link_runs_one_scenario_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x.yaml", "--link", "pcsc", "-j", "2"]) == 2
    assert "one reader runs one scenario at a time (-j 1)" in capsys.readouterr().err


# --- progress ------------------------------------------------------------------------------


def _result(scenario_id: str, verdict: str) -> ScenarioResult:
    scenario = Scenario(
        id=scenario_id,
        title="t",
        requirement="r",
        card=CardSpec("visa_qvsdc_plastic"),
        taps=(),
        source=Source("s.yaml", 1),
    )
    return ScenarioResult(scenario, verdict)  # type: ignore[arg-type]


def test_progress_marks_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream, bar=False)
    for verdict in ("passed", "failed", "errored"):
        progress(_result("a", verdict))
    progress.close()
    assert stream.getvalue() == ".FE\n"


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream, bar=True)
    progress(_result("first", "passed"))
    progress(_result("second", "failed"))
    text = stream.getvalue()
    assert text.startswith("\r[######                  ] 1/4  0 failed, 0 errored  first")
    assert "\r[############            ] 2/4  1 failed, 0 errored  second" in text
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")  # the bar is erased


def test_progress_closed_before_any_result_prints_nothing() -> None:
    stream = io.StringIO()
    Progress(2, stream, bar=False).close()
    assert stream.getvalue() == ""


REPEATED = APPROVED.replace("id: visa-approved", "id: visa-repeated").replace(
    '  - amount: "12.34"\n', '  - amount: "12.34"\n    repeat: 3\n'
)


def test_a_repeated_tap_gives_a_trace_per_tap_made_when_traces_are_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "repeated.yaml"
    scenario.write_text(REPEATED, encoding="utf-8")
    traces = tmp_path / "traces"
    status, out, _ = emvtap(capsys, "run", str(scenario), "--trace-dir", str(traces))
    assert status == 0, out
    assert sorted(path.name for path in (traces / "visa-repeated").glob("*.txt")) == [
        "tap-1.txt",
        "tap-2.txt",
        "tap-3.txt",
    ]


def test_a_repeated_tap_that_fails_is_reported_for_each_tap_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "repeated.yaml"
    scenario.write_text(REPEATED.replace("outcome: Approved", "outcome: Declined"), "utf-8")
    status, out, _ = emvtap(capsys, "run", str(scenario), "-q", "--fresh-keys")
    assert status == 1
    assert [f"tap {n} of 3" in out for n in (1, 2, 3)] == [True, True, True]
    assert "1 failed" in out.splitlines()[-1]
