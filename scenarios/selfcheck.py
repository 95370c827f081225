"""The crypto self-check behind ``emvtap selfcheck``.

Two parts:

* known-answer tests: every published vector shipped in ``emv/crypto/vectors/*.json``
  is fed to the function it names and the result compared. A vector file is
  ``{"source": ..., "vectors": [{"function": "emv.crypto.kd.derive_icc_mk_a",
  "name": ..., "args": {...}, "expect": "HEX"}]}``; arguments the function
  annotates as ``bytes`` are written in hex, the others as JSON scalars;
* an offline data authentication round trip on a test PKI generated now
  (CA -> issuer -> ICC), which must verify, and must fail once a bit is flipped.
"""

from __future__ import annotations

import importlib
import json
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

__all__ = ["CheckResult", "known_answer_tests", "report", "run"]

VECTOR_PACKAGE = "emv.crypto"
VECTOR_DIR = "vectors"


@dataclass(frozen=True)
class CheckResult:
    """One check: what was checked, where its expectation came from, and the outcome."""

    group: str
    name: str
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run() -> list[CheckResult]:
    """All checks, known-answer tests first."""
    return [*known_answer_tests(), *oda_round_trip()]


def known_answer_tests() -> Iterator[CheckResult]:
    """Every vector of every shipped vector file, checked against the named function."""
    folder = resources.files(VECTOR_PACKAGE) / VECTOR_DIR
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            document = json.loads(entry.read_text(encoding="utf-8"))
            for number, vector in enumerate(document.get("vectors", []), 1):
                yield _check_vector(entry.name, number, vector)


def _check_vector(file: str, number: int, vector: dict[str, Any]) -> CheckResult:
    name = f"{vector.get('name') or vector.get('function')} (#{number})"
    try:
        function = _resolve(vector["function"])
        got = function(**_arguments(function, vector.get("args", {})))
    except (KeyError, ValueError, TypeError) as err:
        return CheckResult(file, name, False, f"could not run: {err}")
    shown = got.hex().upper() if isinstance(got, bytes | bytearray) else str(got)
    expected = str(vector["expect"])
    if shown.upper() == expected.upper():
        return CheckResult(file, name, True)
    return CheckResult(file, name, False, f"got {shown}, expected {expected}")


def _resolve(dotted: str) -> Callable[..., Any]:
    """``emv.crypto.kd.derive_icc_mk_a`` -> the function; only ``emv.crypto`` is allowed."""
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name.startswith("emv.crypto."):
        raise ValueError(f"function {dotted!r} is not in emv.crypto")
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise ValueError(f"no function {dotted!r}")
    return typing.cast(Callable[..., Any], function)


def _arguments(function: Callable[..., Any], args: dict[str, Any]) -> dict[str, Any]:
    """Hex strings to bytes for the parameters ``function`` annotates as bytes."""
    hints = typing.get_type_hints(function)
    return {
        key: bytes.fromhex(value) if hints.get(key) is bytes and isinstance(value, str) else value
        for key, value in args.items()
    }


def oda_round_trip() -> Iterator[CheckResult]:
    """A fresh CA -> issuer -> ICC chain signs and verifies, and rejects a flipped bit."""
    from emv.crypto import oda_selfcheck  # noqa: PLC0415  (heavy: only when asked)

    yield from (
        CheckResult("oda", name, passed, detail) for name, passed, detail in oda_selfcheck()
    )


def report(results: list[CheckResult], *, verbose: bool = False) -> str:
    """A summary per group, the failures in full, and a last line that says it all."""
    lines = ["emvtap crypto self-check"]
    groups: dict[str, list[CheckResult]] = {}
    for result in results:
        groups.setdefault(result.group, []).append(result)
    for group, members in groups.items():
        passed = sum(r.passed for r in members)
        lines.append(f"  {group:<24} {passed:>3}/{len(members)} passed")
        for result in members:
            if verbose or not result.passed:
                mark = "ok  " if result.passed else "FAIL"
                lines.append(f"    {mark} {result.name} {result.detail}".rstrip())
    failed = sum(not r.passed for r in results)
    verdict = "PASSED" if failed == 0 else f"FAILED ({failed} of {len(results)})"
    lines.append(f"self-check {verdict}: {len(results)} checks")
    return "\n".join(lines) + "\n"
