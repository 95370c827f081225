"""Published vectors in emv/crypto/vectors/*.json against the emv.crypto functions.

``vectors`` are single calls (the convention ``emvtap selfcheck`` also runs);
``chains`` are published multi-step results whose intermediate keys are only
given as key check values (see the notes in kd.json).
"""

import importlib
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from emv.crypto import ac, cvc3, des, kd

VECTOR_DIR = Path(__file__).parents[3] / "emv" / "crypto" / "vectors"
FILES = ("des.json", "mac.json", "kd.json", "ac.json", "cvc3.json")


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTOR_DIR / name).read_text(encoding="utf-8"))
    return document


def _cases(key: str) -> list[Any]:
    return [
        pytest.param(name, case, id=f"{name}:{case['name']}")
        for name in FILES
        for case in _load(name).get(key, [])
    ]


@pytest.mark.parametrize("name", FILES)
def test_file_cites_its_sources(name: str) -> None:
    document = _load(name)
    assert document["source"]
    assert document["vectors"] or document["chains"]
    for case in document["vectors"] + document.get("chains", []):
        assert case["name"]


@pytest.mark.parametrize(("file", "vector"), _cases("vectors"))
def test_vector(file: str, vector: dict[str, Any]) -> None:
    module_name, _, attribute = vector["function"].rpartition(".")
    function = getattr(importlib.import_module(module_name), attribute)
    hints = typing.get_type_hints(function)
    args = {
        key: bytes.fromhex(value) if hints[key] is bytes else value
        for key, value in vector["args"].items()
    }
    got = function(**args)
    shown = got.hex().upper() if isinstance(got, bytes) else got
    assert shown == vector["expect"], f"{file}: {vector['name']}"


def _icc_mk(chain: dict[str, Any]) -> bytes:
    derive = {"a": kd.derive_icc_mk_a, "b": kd.derive_icc_mk_b}[chain["option"]]
    mk = derive(bytes.fromhex(chain["imk"]), chain["pan"], bytes.fromhex(chain["psn"]))
    if "mk_kcv" in chain:
        assert des.kcv(mk, 2).hex().upper() == chain["mk_kcv"]
    return mk


def _session_key(chain: dict[str, Any], mk: bytes) -> bytes:
    spec = chain.get("session_key", {"function": "none"})
    function = spec["function"]
    if function == "none":
        return mk
    if function == "derive_common_sk":
        sk = kd.derive_common_sk(mk, bytes.fromhex(spec["r"]))
    elif function == "derive_mastercard_sk":
        sk = kd.derive_mastercard_sk(mk, bytes.fromhex(spec["atc"]), bytes.fromhex(spec["un"]))
    else:
        assert function == "derive_visa_sm_sk"
        sk = kd.derive_visa_sm_sk(mk, bytes.fromhex(spec["atc"]))
    if "sk_kcv" in chain:
        assert des.kcv(sk, 2).hex().upper() == chain["sk_kcv"]
    return sk


def _cryptogram_input(spec: dict[str, Any]) -> bytes:
    if "data" in spec:
        return bytes.fromhex(spec["data"])
    assemble = getattr(ac, spec["input"])
    elements = {k: bytes.fromhex(v) for k, v in spec["elements"].items()}
    table26 = {k: elements.pop(k) for k in list(elements) if k in ac.CryptogramData.FIELD_LENGTHS}
    result: bytes = assemble(ac.CryptogramData(**table26), **elements)
    return result


def _arpc(spec: dict[str, Any], mk: bytes, sk: bytes, arqc: bytes) -> bytes:
    key = {"mk": mk, "sk": sk}[spec["key"]]
    if spec["method"] == 1:
        return ac.generate_arpc_1(key, arqc, bytes.fromhex(spec["arc"]))
    return ac.generate_arpc_2(
        key, arqc, bytes.fromhex(spec["csu"]), bytes.fromhex(spec["prop_auth_data"])
    )


@pytest.mark.parametrize(("file", "chain"), _cases("chains"))
def test_chain(file: str, chain: dict[str, Any]) -> None:
    mk = _icc_mk(chain)
    sk = _session_key(chain, mk)
    if "ac" in chain:
        spec = chain["ac"]
        arqc = ac.generate_ac(sk, _cryptogram_input(spec), spec["padding"])
        assert arqc.hex().upper() == spec["arqc"], file
        if "arpc" in chain:
            arpc = _arpc(chain["arpc"], mk, sk, arqc)
            assert arpc.hex().upper() == chain["arpc"]["expect"], file
    if "cvc3" in chain:
        spec = chain["cvc3"]
        value = cvc3.generate_cvc3(
            mk,
            bytes.fromhex(spec["track_data"]),
            bytes.fromhex(spec["atc"]),
            bytes.fromhex(spec["un"]),
        )
        assert value.endswith(spec["expect_suffix"]), file


def test_every_chain_checks_something() -> None:
    for _, chain in (p.values for p in _cases("chains")):
        assert {"mk_kcv", "sk_kcv", "ac", "cvc3"} & chain.keys(), chain["name"]
