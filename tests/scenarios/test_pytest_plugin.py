"""The emvtap pytest plugin: scenario YAML files as pytest items (run in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from scenario_texts import APPROVED, BROKEN, WRONG

from scenarios.pytest_plugin import MARKER_FILE, is_scenario_file

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("emvtap") == "scenarios.pytest_plugin"


def test_repository_yaml_files_are_not_scenarios() -> None:
    """Card profiles, terminal configurations and CI files stay out of the test run."""
    others = [
        path
        for path in ROOT.rglob("*.y*ml")
        if ".venv" not in path.parts and "packs" not in path.parts
    ]
    assert any(path.parent.name == "profiles" for path in others)
    assert [path for path in others if is_scenario_file(path)] == []


def test_collection_rule(tmp_path: Path) -> None:
    marked = tmp_path / "suite" / "nested"
    marked.mkdir(parents=True)
    (tmp_path / "suite" / MARKER_FILE).touch()
    packs = tmp_path / "repo" / "scenarios" / "packs" / "visa"
    packs.mkdir(parents=True)
    plain = tmp_path / "configs"
    plain.mkdir()
    assert is_scenario_file(marked / "a.yaml")
    assert is_scenario_file(marked / "a.yml")
    assert not is_scenario_file(marked / "a.json")
    assert not is_scenario_file(marked / "_fragment.yaml")  # an include, as emvtap run
    assert is_scenario_file(packs / "b.yaml")
    assert not is_scenario_file(plain / "c.yaml")
    assert is_scenario_file(plain / "c.yaml", frozenset({(plain / "c.yaml").resolve()}))


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    """A marked folder with a passing and a failing scenario, an unmarked YAML beside it."""
    folder = pytester.path / "suite"
    folder.mkdir()
    (folder / MARKER_FILE).touch()
    (folder / "approved.yaml").write_text(APPROVED, encoding="utf-8")
    (folder / "wrong.yaml").write_text(WRONG, encoding="utf-8")
    other = pytester.path / "config"
    other.mkdir()
    (other / "terminal.yaml").write_text("name: not a scenario\n", encoding="utf-8")
    return folder


def test_scenarios_run_as_items_and_failures_read_like_emvtap_run(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "suite/approved.yaml::visa-approved PASSED" in out
    assert "suite/wrong.yaml::visa-wrongly-declined FAILED" in out
    assert "terminal.yaml" not in out  # no marker: not collected
    result.stdout.fnmatch_lines(
        [
            "*FAILED visa-wrongly-declined (*wrong.yaml:1)",
            "*x outcome*",
            "*expected: Declined",
            "*actual:   Approved*",
            "*asked at *wrong.yaml:8:  outcome: Declined",
            "*APDU trace of tap 1:",
            "*-> GET PROCESSING OPTIONS",
        ]
    )
    assert "4761739001010010" not in out  # PANs masked
    assert "Traceback" not in out


def test_emvtap_link_runs_the_scenarios_over_that_link(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = pytester.runpytest_subprocess("--emvtap-link", "vpcd-direct", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*field on, ATR 3B80800101*"])  # the PC/SC ATR, not the ATS
    bad = pytester.runpytest_subprocess("--emvtap-link", "bogus", "-p", "no:cacheprovider")
    bad.assert_outcomes(failed=2)
    bad.stdout.fnmatch_lines(["*--link 'bogus': expected inprocess, vpcd-direct*"])


def test_explicit_files_are_collected_and_k_selects_by_tag(
    pytester: pytest.Pytester, suite: Path
) -> None:
    config = pytester.path / "config"
    (config / "scenario.yaml").write_text(APPROVED, encoding="utf-8")
    result = pytester.runpytest_subprocess(
        "config/scenario.yaml", "suite", "-k", "smoke", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, deselected=1)  # the tag selects; wrong.yaml has none
    assert "config/scenario.yaml::visa-approved PASSED" in result.stdout.str()
    assert "terminal.yaml" not in result.stdout.str()


def test_a_file_that_does_not_load_is_one_line_collection_error(
    pytester: pytest.Pytester, suite: Path
) -> None:
    (suite / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    result = pytester.runpytest_subprocess("suite", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "broken.yaml:" in out
    assert "Traceback" not in out and "scenarios/loader.py" not in out


def test_xdist_distributes_scenarios(pytester: pytest.Pytester, suite: Path) -> None:
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess(
        "suite", "-n", "2", "-v", "--emvtap-clear", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "created: 2/2 workers" in out
    assert "[gw0]" in out or "[gw1]" in out
    assert "expected: Declined" in out
    assert "4761739001010010" in out  # --emvtap-clear: the PAN in clear


def test_repository_test_run_collects_no_yaml() -> None:
    """``pytest`` in the repository (testpaths = tests) with the plugin: no YAML items."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "tests/scenarios/test_pytest_plugin.py::" in done.stdout, done.stderr[-2000:]
    assert ".yaml::" not in done.stdout and ".yml::" not in done.stdout
