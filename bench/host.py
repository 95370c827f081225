"""Host authorisation throughput (``python -m bench --only host``): what an issuer host
pays to answer one ARQC, on each HSM backend, against pyemv doing the same arithmetic.

The unit is the token server's HSM work for one plastic card's authorisation
(:meth:`hce.server.TokenService.authorise` -> ``_decide_plastic`` -> ``_verified``):
:func:`~hce.hsm.interface.verify_arqc_and_generate_arpc`, the ARQC verified under the key
path IMK-AC -> MK-AC (option A) -> AC session key and the ARPC made under its key (one
operation on both backends, each deriving the key path once), for

* Visa CVN 18 (the Kernel 3 plastic card's): common session key of the ATC, input
  Table 26 data || IAD, ARPC method 2 (CSU '00800000') under the same session key;
* Mastercard CVN 16 (the Kernel 2 plastic card's): M/Chip session key of ATC and UN,
  ARPC method 1 (ARC '00') under the ICC master key.

Each on the soft HSM and on SoftHSMv2 through PKCS#11 (a throw-away token in a
temporary directory, its own ``SOFTHSM2_CONF``, removed afterwards); pyemv computes the
same: ``kd.derive_icc_mk_a``, ``kd.derive_common_sk``, ``ac.generate_ac``, a constant-time
compare, ``ac.generate_arpc_2`` / ``generate_arpc_1``. Every path's ARPC is checked
equal before anything is timed. The three are timed in turn, a batch of each per
round, and the ratio rows are the median over the rounds of emvtap's rate over
pyemv's, so that the machine's drift weighs on both alike.

A last row is the whole :meth:`~hce.server.TokenService.authorise` of a CVN 18 ARQC on the
soft HSM with its SQLite store (parse, PAN look-up by keyed digest, replay check,
HSM, the authorisation and audit rows committed): each call a fresh ATC, the requests
made before the clock starts (:func:`authorise_rate`).
"""

from __future__ import annotations

import hmac
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal

from bench.rows import Case, Row, measure_together, ratio, skipped, spread, with_target
from emv import tlv
from emv.crypto import ac, des, kd
from hce.hsm.interface import (
    ArpcMethod1,
    ArpcMethod2,
    CommonSession,
    Hsm,
    IccMaster,
    KeyKind,
    KeyPath,
    MastercardSession,
    verify_arqc_and_generate_arpc,
)
from hce.hsm.soft import SoftHsm
from hce.server import KeyImport, Principal, SqliteStore, TokenService
from scenarios import softhsm

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
IMK_LABEL = "imk-ac"
PAN, PSN = "4761739001010010", b"\x01"
TOKEN_LABEL, SO_PIN, USER_PIN = "emvtap-bench", "87654321", "1234"
SOFT_TARGET, SOFTHSM2_TARGET, PYEMV_TARGET = 20_000.0, 2_500.0, 1.0


def terminal_data(atc: int, un: bytes = bytes.fromhex("5A1B3C4D")) -> ac.CryptogramData:
    """Book 2 Table 26 of a GBP 12.34 purchase on 2026-11-26 with the card's ``atc``."""
    return ac.CryptogramData(
        amount_authorised=bytes.fromhex("000000001234"),
        amount_other=bytes(6),
        terminal_country_code=bytes.fromhex("0826"),
        tvr=bytes(5),
        transaction_currency_code=bytes.fromhex("0826"),
        transaction_date=bytes.fromhex("261126"),
        transaction_type=b"\x00",
        unpredictable_number=un,
        aip=bytes.fromhex("2000"),
        atc=atc.to_bytes(2, "big"),
    )


VISA_IAD = bytes.fromhex("06011203A00000")  # CVN 18: '06' DKI '12' '03' CVR
MCHIP_IAD = bytes.fromhex("0110A00000000000") + bytes(10)  # CVN 16: DKI, CVN, CVR, DAC, counters


@dataclass(frozen=True)
class Authorisation:
    """One ARQC and how the host answers it: the key paths of AC and ARPC, the ARPC
    method and its ARC (method 1) or CSU (method 2), the expected ARPC."""

    name: str
    atc: bytes
    un: bytes
    mac_input: bytes
    arqc: bytes
    ac_path: KeyPath
    arpc_path: KeyPath
    method: Literal[1, 2]
    answer: bytes
    arpc: bytes
    pyemv: Callable[[Authorisation], bytes]


def _pyemv_cvn18(case: Authorisation) -> bytes:
    from pyemv import ac as pac  # noqa: PLC0415  (optional peer)
    from pyemv import kd as pkd  # noqa: PLC0415

    icc_mk = pkd.derive_icc_mk_a(IMK, PAN, PSN.hex())
    sk = pkd.derive_common_sk(icc_mk, case.atc + bytes(6))
    if not hmac.compare_digest(pac.generate_ac(sk, case.mac_input, pac.PaddingType.EMV), case.arqc):
        raise RuntimeError("pyemv: the CVN 18 ARQC does not verify")
    return pac.generate_arpc_2(sk, case.arqc, case.answer)


def _pyemv_cvn16(case: Authorisation) -> bytes:
    from pyemv import ac as pac  # noqa: PLC0415  (optional peer)
    from pyemv import kd as pkd  # noqa: PLC0415

    icc_mk = pkd.derive_icc_mk_a(IMK, PAN, PSN.hex())
    sk = pkd.derive_common_sk(icc_mk, case.atc + b"\x00\x00" + case.un)
    if not hmac.compare_digest(pac.generate_ac(sk, case.mac_input, pac.PaddingType.EMV), case.arqc):
        raise RuntimeError("pyemv: the CVN 16 ARQC does not verify")
    return pac.generate_arpc_1(icc_mk, case.arqc, case.answer)


def authorisations() -> list[Authorisation]:
    """The Visa CVN 18 and Mastercard CVN 16 cases, their ARQC made by ``emv.crypto``."""
    icc = IccMaster(PAN, PSN)
    icc_mk = kd.derive_icc_mk_a(IMK, PAN, PSN)
    data = terminal_data(0x0123)
    visa_input = ac.visa_cvn18_input(data, VISA_IAD)
    visa_sk = kd.derive_common_sk(icc_mk, data.atc + bytes(6))
    visa_arqc = ac.generate_ac(visa_sk, visa_input)
    csu = bytes.fromhex("00800000")
    visa_path = KeyPath(IMK_LABEL, icc, session=CommonSession(data.atc + bytes(6)))
    mchip_input = ac.mastercard_cvn16_input(data, MCHIP_IAD[2:8])
    mchip_sk = kd.derive_mastercard_sk(icc_mk, data.atc, data.unpredictable_number)
    mchip_arqc = ac.generate_ac(mchip_sk, mchip_input)
    session = MastercardSession(data.atc, data.unpredictable_number)
    return [
        Authorisation(
            "Visa CVN 18",
            data.atc,
            data.unpredictable_number,
            visa_input,
            visa_arqc,
            visa_path,
            visa_path,
            2,
            csu,
            ac.generate_arpc_2(visa_sk, visa_arqc, csu),
            _pyemv_cvn18,
        ),
        Authorisation(
            "Mastercard CVN 16",
            data.atc,
            data.unpredictable_number,
            mchip_input,
            mchip_arqc,
            KeyPath(IMK_LABEL, icc, session=session),
            KeyPath(IMK_LABEL, icc),
            1,
            b"00",
            ac.generate_arpc_1(icc_mk, mchip_arqc, b"00"),
            _pyemv_cvn16,
        ),
    ]


def authorise(hsm: Hsm, case: Authorisation) -> bytes:
    """The HSM's part of one authorisation, asked as the token server asks it: verify
    the ARQC, make the ARPC."""
    arpc = ArpcMethod1(case.answer) if case.method == 1 else ArpcMethod2(case.answer)
    answer = verify_arqc_and_generate_arpc(
        hsm,
        case.ac_path,
        case.mac_input,
        "emv",
        case.arqc,
        arpc=arpc,
        arpc_session=case.arpc_path.session,
    )
    if answer is None:
        raise RuntimeError(f"{case.name}: the ARQC does not verify")
    return answer


def soft_hsm(folder: Path) -> SoftHsm:
    """A soft HSM in ``folder`` holding the IMK-AC."""
    hsm = SoftHsm.create(folder / "hsm.keys", os.urandom(32))
    hsm.import_key(IMK_LABEL, KeyKind.DES2, IMK, des.kcv(IMK))
    return hsm


def softhsm_unavailable() -> str | None:
    """Why SoftHSMv2 cannot be used here (None: it can)."""
    if softhsm.find_module() is None:
        return "no SoftHSMv2 module (libsofthsm2.so; Debian: softhsm2)"
    if shutil.which("softhsm2-util") is None:
        return "no softhsm2-util (Debian: softhsm2)"
    try:
        import pkcs11  # noqa: F401, PLC0415
    except ImportError:
        return "python-pkcs11 is not installed (pip install emvtap[pkcs11])"
    return None


@contextmanager
def softhsm2(folder: Path) -> Iterator[Hsm]:
    """A :class:`hce.hsm.pkcs11.Pkcs11Hsm` on a new SoftHSMv2 token whose files are in
    ``folder`` (``SOFTHSM2_CONF`` pointed there meanwhile), holding the IMK-AC; the
    token's files are removed after, and ``SOFTHSM2_CONF`` put back."""
    from hce.hsm.pkcs11 import Pkcs11Hsm, library  # noqa: PLC0415  (optional extra)

    module = softhsm.find_module()
    assert module is not None  # softhsm_unavailable() said so
    previous = os.environ.get(softhsm.CONF_ENV)
    try:
        softhsm.init_token(folder, TOKEN_LABEL, SO_PIN, USER_PIN)
        library(module).reinitialize()  # the module reads SOFTHSM2_CONF at C_Initialize
        with Pkcs11Hsm(module, TOKEN_LABEL, USER_PIN) as hsm:
            hsm.import_key(IMK_LABEL, KeyKind.DES2, IMK, des.kcv(IMK))
            yield hsm
    finally:
        if previous is None:
            os.environ.pop(softhsm.CONF_ENV, None)
        else:
            os.environ[softhsm.CONF_ENV] = previous
        shutil.rmtree(folder / softhsm.TOKEN_DIR, ignore_errors=True)


# --- the whole authorise, with its store ---------------------------------------------------


@dataclass
class TokenServer:
    """A token server on a soft HSM and SQLite in a folder, its IMK-AC imported, with an
    acquirer to authorise as and an admin to enrol plastic cards."""

    service: TokenService
    store: SqliteStore
    admin: Principal
    acquirer: Principal

    @classmethod
    def create(cls, folder: Path) -> TokenServer:
        hsm = SoftHsm.create(folder / "hsm.keys", os.urandom(32))
        store = SqliteStore(folder / "store.sqlite")
        service = TokenService(hsm, store, lambda: datetime.now(UTC))
        summary = service.initialise(imk_ac=KeyImport(IMK, des.kcv(IMK)))
        assert summary.admin_credential is not None  # a new store
        admin = service.authenticate(summary.admin_credential)
        acquirer = service.authenticate(service.create_credential("acquirer", "bench", actor=admin))
        return cls(service, store, admin, acquirer)

    def enrol_visa(self, pan: str) -> None:
        """A Visa CVN 18 plastic card of ``pan`` (PSN 01, expiry 2912)."""
        self.service.enrol_card(pan, "2912", PSN.hex(), "visa", "18", actor=self.admin)


def visa_request(pan: str, atc: int) -> bytes:
    """A terminal's DE 55 for a CVN 18 ARQC of ``pan`` (PSN 01) with ``atc``."""
    data = terminal_data(atc)
    icc_mk = kd.derive_icc_mk_a(IMK, pan, PSN)
    sk = kd.derive_common_sk(icc_mk, data.atc + bytes(6))
    arqc = ac.generate_ac(sk, ac.visa_cvn18_input(data, VISA_IAD))
    values = {
        0x5A: bytes.fromhex(pan),
        0x5F34: PSN,
        0x9F26: arqc,
        0x9F27: b"\x80",
        0x9F10: VISA_IAD,
        **{tag: getattr(data, name) for name, tag in ac.TABLE_26_TAGS.items()},
    }
    return tlv.encode([tlv.Tlv.primitive(tag, value) for tag, value in values.items()])


def luhn_pan(prefix: str) -> str:
    """``prefix`` (15 digits) with its Luhn check digit."""
    total = 0
    for i, char in enumerate(reversed(prefix)):
        digit = int(char) * (2 if i % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return prefix + str(-total % 10)


def authorise_rate(repeat: int) -> Row:
    """Authorisations per second of :meth:`TokenService.authorise` (module docstring):
    a batch size found first (a batch lasting 0.2 s or more), the requests of every
    batch made next, then ``repeat`` timed batches, each approval checked."""
    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        server = TokenServer.create(Path(folder))
        server.enrol_visa(PAN)
        try:
            atcs = iter(range(1, 0x10000))  # a card has 65,535 ATCs
            size, used = 8, 0
            while True:
                requests = [visa_request(PAN, next(atcs)) for _ in range(size)]
                used += size
                if _authorise_all(server, requests) > 0.2:
                    break
                size *= 2
            runs = min(repeat, (0xFFFF - used) // size)
            batches = [[visa_request(PAN, next(atcs)) for _ in range(size)] for _ in range(runs)]
            rates = [size / _authorise_all(server, batch) for batch in batches]
        finally:
            server.store.close()
    return spread(
        "TokenService.authorise, Visa CVN 18 plastic (soft HSM + SQLite)", "authorisations/s", rates
    )


def _authorise_all(server: TokenServer, requests: list[bytes]) -> float:
    start = time.perf_counter()
    for request in requests:
        answer = server.service.authorise(request, actor=server.acquirer)
        if answer.decision != "approved":
            raise RuntimeError(f"TokenService.authorise: {answer.reason}")
    return time.perf_counter() - start


# --- the rows -------------------------------------------------------------------------------


def benchmarks(repeat: int) -> list[Row]:
    """The group's rows (module docstring)."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder, ExitStack() as stack:
        soft = soft_hsm(Path(folder))
        reason = softhsm_unavailable()
        pkcs11 = reason or stack.enter_context(softhsm2(Path(folder)))
        for case in authorisations():
            rows += _case_rows(case, soft, pkcs11, repeat)
    rows.append(authorise_rate(repeat))
    return rows


def _case_rows(case: Authorisation, soft: Hsm, pkcs11: Hsm | str, repeat: int) -> list[Row]:
    """One case on the soft HSM, on SoftHSMv2 (``pkcs11``: or why not), by pyemv, and
    the ratio soft HSM / pyemv; every ARPC checked first."""
    name = f"host authorisation, {case.name} (verify ARQC + ARPC)"
    unit = "authorisations/s"
    for hsm in (soft, pkcs11):
        if not isinstance(hsm, str) and authorise(hsm, case) != case.arpc:
            raise RuntimeError(f"{case.name}: {hsm!r} made another ARPC")
    cases: list[Case] = [(f"{name}, soft HSM", unit, 1, lambda: authorise(soft, case))]
    if not isinstance(pkcs11, str):
        cases.append((f"{name}, SoftHSMv2", unit, 1, lambda: authorise(pkcs11, case)))
    try:
        version = metadata.version("pyemv")
    except metadata.PackageNotFoundError:
        version = None
    with warnings.catch_warnings():  # pyemv's 3DES through cryptography warns on every call
        warnings.simplefilter("ignore")
        if version is not None:
            if case.pyemv(case) != case.arpc:
                raise RuntimeError(f"{case.name}: pyemv made another ARPC")
            cases.append((f"{name}, pyemv {version}", unit, 1, lambda: case.pyemv(case)))
        measured = measure_together(cases, repeat)
    rows = [with_target(measured[0], ">=", SOFT_TARGET)]
    if isinstance(pkcs11, str):
        rows.append(skipped(f"{name}, SoftHSMv2", unit, pkcs11))
    else:
        rows.append(with_target(measured[1], ">=", SOFTHSM2_TARGET))
    if version is None:
        return [*rows, skipped(f"{name}, pyemv", unit, "pyemv is not installed")]
    peer = measured[-1]
    ratio_row = ratio(f"{name}: soft HSM / pyemv", rows[0], peer)
    return [*rows, peer, with_target(ratio_row, ">=", PYEMV_TARGET)]
