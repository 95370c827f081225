"""Issue 6 acceptance, end to end: `emvtap run` on a shipped pack writes JUnit XML a
JUnit reader parses, an HTML report and pcapng traces tshark dissects; pytest's plugin
collects exactly the scenarios the loader finds; the README's example passes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scenarios.cli import main
from scenarios.loader import load_file, load_paths
from scenarios.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "scenarios" / "packs"


def _tshark() -> str:
    found = shutil.which("tshark")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is not installed: ./dev test installs it on Debian as root")
        pytest.skip("tshark is not installed (./dev test installs it on Debian as root)")
    return found


def test_the_readme_example_scenario_passes(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Tap scenarios", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None, "README has no YAML example under 'Tap scenarios'"
    path = tmp_path / "example.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    (scenario,) = load_file(path)
    result = run_scenario(scenario)
    assert result.verdict == "passed", [c for tap in result.taps for c in tap.checks]


def test_emvtap_run_on_a_pack_writes_junit_html_and_dissectable_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = PACKS / "kernel2"
    expected = {scenario.id for scenario in load_paths([pack])}
    junit, html, traces = tmp_path / "junit.xml", tmp_path / "report.html", tmp_path / "traces"
    arguments = ["run", str(pack), "-j", "2", "--junit", str(junit), "--html", str(html)]
    assert main([*arguments, "--trace-dir", str(traces)]) == 0
    assert f"{len(expected)} passed, 0 failed, 0 errored" in capsys.readouterr().out

    cases = ET.parse(junit).getroot().iter("testcase")
    assert {case.get("name") for case in cases} == expected
    page = html.read_text(encoding="utf-8")
    assert all(scenario_id in page for scenario_id in expected)

    captures = sorted(traces.rglob("*.pcapng"))
    assert len(captures) >= len(expected)
    command = [_tshark(), "-r", str(captures[0]), "-d", "iso14443.subdissector,iso7816"]
    command += ["-T", "fields", "-e", "iso7816.apdu.ins"]
    dissected = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert "0xa4" in dissected.stdout.split()  # SELECT, dissected as ISO 7816


def test_pytest_collects_exactly_the_scenarios_the_loader_finds() -> None:
    command = [sys.executable, "-m", "pytest", str(PACKS), "--collect-only", "-q"]
    command += ["-p", "no:cacheprovider"]
    listed = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    items = {line.split("::", 1)[1] for line in listed.stdout.splitlines() if "::" in line}
    assert items == {scenario.id for scenario in load_paths([PACKS])}
