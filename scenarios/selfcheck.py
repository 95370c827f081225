"""The crypto self-check behind ``emvtap selfcheck``.

Two parts:

* known-answer tests: every published vector shipped in ``emv/crypto/vectors/*.json``
  is fed to the function it names and the result compared. A vector file is
  ``{"source": ..., "vectors": [{"function": "emv.crypto.kd.derive_icc_mk_a",
  "name": ..., "args": {...}, "expect": "HEX"}], "chains": [...]}``; arguments
  the function annotates as ``bytes`` are written in hex, the others as JSON
  scalars. ``chains`` are published multi-step results (master key, session
  key, cryptogram, ARPC or CVC3) whose intermediate keys are only published as
  key check values;
* an offline data authentication round trip on a test PKI generated now
  (CA -> issuer -> ICC), which must verify, and must fail once a bit is flipped.
"""

from __future__ import annotations

import importlib
import json
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date
from importlib import resources
from typing import Any

from emv.crypto import ac, cvc3, des, kd, oda

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


def vector_files() -> dict[str, dict[str, Any]]:
    """The shipped vector files by name, parsed."""
    folder = resources.files(VECTOR_PACKAGE) / VECTOR_DIR
    return {
        entry.name: json.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }


def known_answer_tests() -> Iterator[CheckResult]:
    """Every vector and every chain of every shipped vector file."""
    for file, document in vector_files().items():
        for number, vector in enumerate(document.get("vectors", []), 1):
            yield check_vector(file, number, vector)
        for chain in document.get("chains", []):
            yield check_chain(file, chain)


def check_vector(file: str, number: int, vector: dict[str, Any]) -> CheckResult:
    """One single-call vector: the named function on the given arguments."""
    name = f"{vector.get('name') or vector.get('function')} (#{number})"
    try:
        function = _resolve(vector["function"])
        got = function(**_arguments(function, vector.get("args", {})))
    except (KeyError, ValueError, TypeError) as err:
        return CheckResult(file, name, False, f"could not run: {err}")
    return _compare(file, name, [("result", _shown(got), str(vector["expect"]))])


def check_chain(file: str, chain: dict[str, Any]) -> CheckResult:
    """A published multi-step result: ICC master key -> session key -> AC -> ARPC, or CVC3.

    Intermediate keys are published only as 2-byte key check values (``mk_kcv``,
    ``sk_kcv``); each present step is compared.
    """
    name = str(chain.get("name", "chain"))
    try:
        return _compare(file, name, list(_chain_steps(chain)))
    except (KeyError, ValueError, TypeError) as err:
        return CheckResult(file, name, False, f"could not run: {err}")


def _chain_steps(chain: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(step, got, expected) for each published step of ``chain``."""
    derive = {"a": kd.derive_icc_mk_a, "b": kd.derive_icc_mk_b}[chain["option"]]
    mk = derive(bytes.fromhex(chain["imk"]), chain["pan"], bytes.fromhex(chain["psn"]))
    if "mk_kcv" in chain:
        yield "ICC master key KCV", des.kcv(mk, 2).hex().upper(), chain["mk_kcv"]
    sk = _session_key(chain.get("session_key", {"function": "none"}), mk)
    if "sk_kcv" in chain:
        yield "session key KCV", des.kcv(sk, 2).hex().upper(), chain["sk_kcv"]
    if "ac" in chain:
        spec = chain["ac"]
        arqc = ac.generate_ac(sk, _cryptogram_input(spec), spec["padding"])
        yield "application cryptogram", arqc.hex().upper(), spec["arqc"]
        if "arpc" in chain:
            arpc = _arpc(chain["arpc"], {"mk": mk, "sk": sk}[chain["arpc"]["key"]], arqc)
            yield "ARPC", arpc.hex().upper(), chain["arpc"]["expect"]
    if "cvc3" in chain:
        spec = chain["cvc3"]
        value = cvc3.generate_cvc3(
            mk, *(bytes.fromhex(spec[k]) for k in ("track_data", "atc", "un"))
        )
        suffix = spec["expect_suffix"]  # published as the rightmost digits only
        yield "CVC3 (rightmost digits)", value[-len(suffix) :], suffix


def _session_key(spec: dict[str, Any], mk: bytes) -> bytes:
    function = spec["function"]
    if function == "none":
        return mk
    if function == "derive_common_sk":
        return kd.derive_common_sk(mk, bytes.fromhex(spec["r"]))
    if function == "derive_mastercard_sk":
        return kd.derive_mastercard_sk(mk, bytes.fromhex(spec["atc"]), bytes.fromhex(spec["un"]))
    if function == "derive_visa_sm_sk":
        return kd.derive_visa_sm_sk(mk, bytes.fromhex(spec["atc"]))
    raise ValueError(f"unknown session key function {function!r}")


def _cryptogram_input(spec: dict[str, Any]) -> bytes:
    """The AC input: given whole, or assembled by the named ``ac.*_input`` function."""
    if "data" in spec:
        return bytes.fromhex(spec["data"])
    assemble = _resolve(f"emv.crypto.ac.{spec['input']}")
    elements = {k: bytes.fromhex(v) for k, v in spec["elements"].items()}
    fields = ac.CryptogramData.FIELD_LENGTHS
    table26 = {k: elements.pop(k) for k in list(elements) if k in fields}
    return bytes(assemble(ac.CryptogramData(**table26), **elements))


def _arpc(spec: dict[str, Any], key: bytes, arqc: bytes) -> bytes:
    if spec["method"] == 1:
        return ac.generate_arpc_1(key, arqc, bytes.fromhex(spec["arc"]))
    csu, prop = bytes.fromhex(spec["csu"]), bytes.fromhex(spec["prop_auth_data"])
    return ac.generate_arpc_2(key, arqc, csu, prop)


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


def _shown(value: object) -> str:
    return value.hex().upper() if isinstance(value, bytes | bytearray) else str(value)


def _compare(file: str, name: str, steps: list[tuple[str, str, str]]) -> CheckResult:
    if not steps:
        return CheckResult(file, name, False, "nothing to compare")
    for step, got, expected in steps:
        if got.upper() != expected.upper():
            return CheckResult(file, name, False, f"{step}: got {got}, expected {expected}")
    return CheckResult(file, name, True)


def oda_round_trip() -> Iterator[CheckResult]:
    """A fresh CA -> issuer -> ICC chain signs and verifies, and rejects a flipped bit.

    Small keys (1152/1024/1024 bits, exponent 3 for the ICC) keep it quick; the
    test suite covers every size and every bit.
    """
    ca = oda.generate_rsa_key(1152, 65537)
    issuer = oda.generate_rsa_key(1024, 65537)
    icc = oda.generate_rsa_key(1024, 3)
    pan, static_data, today = (
        "4761739001010010",
        bytes.fromhex("5A0847617390010100105F2403291231"),
        date(2026, 1, 1),
    )
    steps: list[tuple[str, Callable[[], object]]] = []
    issuer_cert = oda.build_issuer_certificate(
        ca,
        issuer.public_key,
        issuer_identifier="476173",
        expiry="1229",
        serial_number=b"\x00\x00\x01",
    )
    icc_cert = oda.build_icc_certificate(
        issuer,
        icc.public_key,
        pan=pan,
        expiry="1229",
        serial_number=b"\x00\x00\x02",
        static_data=static_data,
    )
    steps.append(
        (
            "issuer certificate recovers",
            lambda: oda.recover_issuer_public_key(ca.public_key, issuer_cert, pan, today),
        )
    )
    steps.append(
        (
            "ICC certificate recovers",
            lambda: oda.recover_icc_public_key(
                issuer.public_key, icc_cert, pan=pan, static_data=static_data, today=today
            ),
        )
    )
    ssad = oda.sign_static_data(issuer, b"\xda\xc1", static_data)
    steps.append(
        ("SDA verifies", lambda: oda.verify_static_data(issuer.public_key, ssad, static_data))
    )
    ddol_data = bytes.fromhex("5A1B3C4D")
    sdad = oda.sign_dda(icc, b"\x01\x02\x03\x04", ddol_data)
    steps.append(("DDA verifies", lambda: oda.verify_dda(icc.public_key, sdad, ddol_data)))
    for name, step in steps:
        yield _expect_success(name, step)
    flipped = bytes([sdad[0], sdad[1] ^ 0x01, *sdad[2:]])
    yield _expect_rejection(
        "DDA with one flipped bit is rejected",
        lambda: oda.verify_dda(icc.public_key, flipped, ddol_data),
    )


def _expect_success(name: str, step: Callable[[], object]) -> CheckResult:
    try:
        step()
    except oda.OdaError as err:
        return CheckResult("oda", name, False, str(err))
    return CheckResult("oda", name, True)


def _expect_rejection(name: str, step: Callable[[], object]) -> CheckResult:
    try:
        step()
    except oda.OdaError as err:
        return CheckResult("oda", name, True, f"({err})")
    return CheckResult("oda", name, False, "accepted")


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
