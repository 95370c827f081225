"""The starter scenario packs (``scenarios/packs``): they load, they say what they check,
every fault in them matters, and they pass against the real card, terminal and server.

* Every pack file loads (the loader validates each document against
  ``scenarios/schema/scenario.schema.json`` before it builds anything), every include
  fragment (``_*.yaml``) is included by some pack file, and each of the five folders
  holds scenarios tagged with its name.
* At least 80 scenarios in all, ids unique, each with a ``requirement`` that names a
  clause (a Book of EMV Contactless or EMV 4.4, docs/cbp.md, docs/terminal.md...).
* The meta-test: a fault scenario proves its fault only if its expectation fails
  without it. Every scenario with faults, in any folder (but those tagged
  ``no_effect``, which are meant to show that a fault changes nothing), is run by
  :func:`scenarios.runner.run_scenario` with its faults stripped
  (:func:`dataclasses.replace`), and must come out ``failed`` (not ``errored``: the
  rest of it must still run); every fault kind of docs/scenarios.md's "Faults" table
  (which must be the model's :data:`scenarios.model.FAULT_KINDS`) is proven so by a
  scenario of ``faults/``.
* The whole packs pass, run through the runner on two worker processes (about 200
  scenarios; some 20 s on two idle cores, the same as ``emvtap run scenarios/packs
  -j 2``).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from scenarios.loader import load_file, load_paths
from scenarios.model import FAULT_KINDS, Scenario, ScenarioResult
from scenarios.reports import failure_text
from scenarios.runner import run, run_scenario

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "scenarios" / "packs"
FOLDERS = ("entry_point", "kernel3", "kernel2", "token_server", "faults")
PACK_FILES = sorted(p for p in PACKS.rglob("*.yaml") if not p.name.startswith("_"))
FRAGMENTS = sorted(PACKS.rglob("_*.yaml"))
MIN_SCENARIOS = 80
JOBS = 2
NO_EFFECT = "no_effect"  # the tag of a fault scenario whose fault is meant to change nothing
CLAUSE = re.compile(
    r"Book (?:[AB]|C-[23]|[1-4])\b|EMV 4\.4|docs/(?:cbp|terminal|scenarios)\.md|DESIGN\.md"
)
"""What a requirement must name: an EMV Contactless Book (A, B, C-2, C-3), an EMV 4.4
Book (1-4), or the project's own documented rules."""


def _relative(path: Path) -> str:
    return str(path.relative_to(PACKS))


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return load_paths([PACKS])


def _folder(scenario: Scenario) -> str:
    return Path(scenario.source.file).resolve().relative_to(PACKS).parts[0]


def _without_faults(scenario: Scenario) -> Scenario:
    taps = tuple(dataclasses.replace(tap, faults=()) for tap in scenario.taps)
    return dataclasses.replace(scenario, taps=taps)


def _kinds(scenario: Scenario) -> set[str]:
    return {fault.kind for tap in scenario.taps for fault in tap.faults}


# --- (a) the files ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PACK_FILES, ids=_relative)
def test_every_pack_file_loads_and_validates_against_the_schema(path: Path) -> None:
    loaded = load_file(path)
    assert loaded, f"{_relative(path)} defines no scenario"
    for scenario in loaded:
        assert scenario.taps, f"{scenario.id}: no tap"


def test_every_fragment_is_included_by_a_pack_file() -> None:
    included: set[Path] = set()
    for path in PACK_FILES:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for name in document.get("include", []):
                included.add((path.parent / name).resolve())
    assert FRAGMENTS, "the packs use include fragments"
    unused = [_relative(p) for p in FRAGMENTS if p.resolve() not in included]
    assert not unused, f"fragments no pack file includes: {unused}"


def test_each_folder_holds_scenarios_tagged_with_its_name(scenarios: list[Scenario]) -> None:
    per_folder = Counter(_folder(scenario) for scenario in scenarios)
    assert set(per_folder) == set(FOLDERS), per_folder
    untagged = [s.id for s in scenarios if _folder(s) not in s.tags]
    assert not untagged, f"scenarios without their folder's tag: {untagged}"


# --- (b) how many, which ids, what they check ---------------------------------------------------


def test_enough_scenarios_with_unique_ids_and_a_cited_requirement(
    scenarios: list[Scenario],
) -> None:
    assert len(scenarios) >= MIN_SCENARIOS, len(scenarios)
    ids = Counter(scenario.id for scenario in scenarios)
    assert not [i for i, n in ids.items() if n > 1], "duplicate ids"
    uncited = [s.id for s in scenarios if not CLAUSE.search(s.requirement or "")]
    assert not uncited, f"requirements that name no clause: {uncited}"
    untitled = [s.id for s in scenarios if not s.title.strip()]
    assert not untitled, f"scenarios without a title: {untitled}"


# --- (c) the meta-test: every fault matters ------------------------------------------------------


def _documented_fault_kinds() -> list[str]:
    """The kinds of docs/scenarios.md's "Faults" table, in its order."""
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    table = text.split("## Faults", 1)[1]
    return list(dict.fromkeys(re.findall(r"^\| `([a-z_]+):", table, flags=re.MULTILINE)))


def test_the_documented_fault_kinds_are_the_models() -> None:
    assert _documented_fault_kinds() == list(FAULT_KINDS)


def _faulty() -> list[Scenario]:
    """The scenarios a fault must matter in: those with faults, but ``no_effect`` ones."""
    return [s for s in load_paths([PACKS]) if _kinds(s) and NO_EFFECT not in s.tags]


FAULTY = _faulty()


def test_every_fault_kind_is_proven_by_a_faults_scenario() -> None:
    proven = {kind for s in FAULTY if _folder(s) == "faults" for kind in _kinds(s)}
    missing = [kind for kind in FAULT_KINDS if kind not in proven]
    assert not missing, f"fault kinds no faults/ scenario proves: {missing}"


@pytest.mark.parametrize("scenario", FAULTY, ids=lambda s: s.id)
def test_a_fault_scenario_fails_without_its_faults(scenario: Scenario) -> None:
    """Its faults stripped, the scenario still runs (not errored) but its expectation
    no longer holds: the faults are what it tests."""
    result = run_scenario(_without_faults(scenario))
    assert result.verdict == "failed", (
        f"{scenario.id} {result.verdict} without its faults "
        f"({', '.join(sorted(_kinds(scenario)))})" + (f": {result.error}" if result.error else "")
    )


# --- (d) the packs pass ----------------------------------------------------------------------


def _summary(results: list[ScenarioResult]) -> str:
    bad = [r for r in results if r.verdict != "passed"]
    return "\n\n".join(failure_text(r) for r in bad[:5]) + (
        f"\n... and {len(bad) - 5} more" if len(bad) > 5 else ""
    )


def test_every_pack_scenario_passes(scenarios: list[Scenario]) -> None:
    results = run(scenarios, jobs=JOBS)
    assert len(results) == len(scenarios)
    verdicts = Counter(r.verdict for r in results)
    assert verdicts["passed"] == len(scenarios), f"{dict(verdicts)}\n{_summary(results)}"
