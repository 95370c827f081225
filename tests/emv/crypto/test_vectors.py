"""Published vectors in emv/crypto/vectors/*.json against the emv.crypto functions.

The vectors are run by ``scenarios.selfcheck`` (the code behind ``emvtap
selfcheck``), so the suite and the self-check cannot drift apart. ``vectors``
are single calls; ``chains`` are published multi-step results whose
intermediate keys are only given as key check values (see kd.json's notes).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scenarios import selfcheck

FILES = selfcheck.vector_files()


def _cases(key: str) -> list[Any]:
    return [
        pytest.param(name, number, case, id=f"{name}:{case['name']}")
        for name, document in FILES.items()
        for number, case in enumerate(document.get(key, []), 1)
    ]


def test_the_expected_files_ship() -> None:
    assert {"des.json", "mac.json", "kd.json", "ac.json", "cvc3.json"} <= FILES.keys()


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_cites_its_sources(name: str) -> None:
    document = FILES[name]
    assert document["source"]
    assert document["vectors"] or document["chains"]
    for case in document["vectors"] + document.get("chains", []):
        assert case["name"]


@pytest.mark.parametrize(("file", "number", "vector"), _cases("vectors"))
def test_vector(file: str, number: int, vector: dict[str, Any]) -> None:
    result = selfcheck.check_vector(file, number, vector)
    assert result.passed, result.detail


@pytest.mark.parametrize(("file", "number", "chain"), _cases("chains"))
def test_chain(file: str, number: int, chain: dict[str, Any]) -> None:
    result = selfcheck.check_chain(file, chain)
    assert result.passed, result.detail


def test_every_chain_checks_something() -> None:
    for _, _, chain in (p.values for p in _cases("chains")):
        assert {"mk_kcv", "sk_kcv", "ac", "cvc3"} & chain.keys(), chain["name"]


def test_the_runner_catches_a_wrong_expectation() -> None:
    vector = copy.deepcopy(FILES["mac.json"]["vectors"][0])
    vector["expect"] = "00" * (len(vector["expect"]) // 2)
    result = selfcheck.check_vector("mac.json", 1, vector)
    assert not result.passed and "expected 00" in result.detail
    chain = copy.deepcopy(next(c for c in FILES["ac.json"]["chains"] if "ac" in c))
    chain["ac"]["arqc"] = "0000000000000000"
    result = selfcheck.check_chain("ac.json", chain)
    assert not result.passed and result.detail.startswith("application cryptogram")


def test_the_runner_refuses_functions_outside_emv_crypto() -> None:
    vector = {"name": "os", "function": "os.system", "args": {}, "expect": "0"}
    result = selfcheck.check_vector("evil.json", 1, vector)
    assert not result.passed and "not in emv.crypto" in result.detail
