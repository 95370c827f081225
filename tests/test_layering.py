"""The house rules of docs/architecture.md, checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "emv": {"hce", "terminal", "scenarios"},
    "hce": {"terminal", "scenarios"},
    "terminal": {"hce", "scenarios"},
    "scenarios": set(),
}
# emv is pure: no I/O, clocks or process state from these modules.
EMV_IMPURE = {"os", "sys", "time", "socket", "subprocess", "pathlib", "random", "threading"}
CLOCK_CALLS = ("now(", "today(", "utcnow(", "monotonic")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_the_layering_allows(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in _modules(package)
        if _imports(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_emv_is_pure() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & EMV_IMPURE)
        for path in _modules("emv")
        if _imports(path) & EMV_IMPURE
    }
    assert offenders == {}
    clocks = [
        str(path.relative_to(ROOT))
        for path in _modules("emv")
        if any(call in path.read_text(encoding="utf-8") for call in CLOCK_CALLS)
    ]
    assert clocks == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom terminal.kernels import visa\n", encoding="utf-8")
    assert _imports(bad) == {"os", "terminal"}
