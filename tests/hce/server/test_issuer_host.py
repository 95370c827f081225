"""The issuer host: plastic cards enrolled with the token server, their Visa CVN 18/22
and Mastercard CVN 16/17/20/21 ARQCs verified inside the HSM, answered with the ARPC
of their version. The cards' cryptograms are made here with ``emv.crypto`` and the
IADs of ``hce.card``; every expected ARPC is recomputed independently."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from emv import tlv
from emv.apdu import CryptogramType
from emv.crypto import ac, des, kd
from emv.crypto.wrap import public_point
from hce.card.mastercard import Velocity, mchip_cvr, mchip_iad
from hce.card.visa import visa_cvr, visa_iad
from hce.hsm.interface import HsmError
from hce.hsm.soft import SoftHsm
from hce.server import Principal, ServerConfig, SqliteStore, TokenService, store
from hce.server.api import dispatch
from hce.server.authorisation import CSU_APPROVED, CSU_DECLINED
from hce.server.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hce.server.service import IMK_AC, KeyImport
from hce.server.vault import new_token_pan
from scenarios.cli import main

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
VERSIONS = ("18", "22", "16", "17", "20", "21")
SCHEME = {"18": "visa", "22": "visa"}
BIN = {"visa": "476173", "mastercard": "520473"}
PSN = "01"
EXPIRY = "2912"
DKI = 0x01
COUNTERS = bytes.fromhex("000000001500") + bytes((1, 0xFF))  # M/Chip IAD counters


def _scheme(version: str) -> str:
    return SCHEME.get(version, "mastercard")


@dataclass
class Host:
    service: TokenService
    admin: Principal
    acquirer: Principal
    store: SqliteStore


def _host(directory: Path) -> Host:
    """A server whose IMK-AC is :data:`IMK` (imported at initialisation)."""
    directory.mkdir()
    hsm = SoftHsm.create(directory / "keys", bytes(32))
    store = SqliteStore(directory / "server.db")
    config = ServerConfig(ca_bits=1024, issuer_bits=1024)
    service = TokenService(hsm, store, lambda: datetime(2026, 3, 1, tzinfo=UTC), config)
    summary = service.initialise(imk_ac=KeyImport(IMK, des.kcv(IMK)))
    assert IMK_AC in summary.created and summary.admin_credential is not None
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.authenticate(service.create_credential("acquirer", "pos", actor=admin))
    return Host(service, admin, acquirer, store)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    made = _host(tmp_path_factory.mktemp("issuer-host") / "host")
    yield made
    made.store.close()


@dataclass(frozen=True)
class Plastic:
    card_id: str
    pan: str
    version: str


def enrol(host: Host, version: str) -> Plastic:
    pan = new_token_pan(BIN[_scheme(version)])
    record = host.service.enrol_card(pan, EXPIRY, PSN, _scheme(version), version, actor=host.admin)
    return Plastic(record.card_id, pan, version)


@dataclass(frozen=True)
class Tap:
    icc: bytes
    arqc: bytes
    mk: bytes  # the card's ICC MK-AC
    session_key: bytes  # the AC session key of its version


def tap(
    card: Plastic,
    kit: SimpleNamespace,
    atc: int,
    amount: int = 1_000,
    kind: CryptogramType = CryptogramType.ARQC,
) -> Tap:
    """One cryptogram (an ARQC unless told) as the emulated card of the version makes it
    (hce.card's IAD)."""
    mk = kd.derive_icc_mk_a(IMK, card.pan, bytes.fromhex(PSN))
    data = kit.terminal_data(atc, amount)
    common = kd.derive_common_sk(mk, data.atc + bytes(6))
    if _scheme(card.version) == "visa":
        cvr = visa_cvr(kind, unable_online=False, velocity_exceeded=False)
        iad = visa_iad(card.version, DKI, cvr)
        session_key, mac_input = common, ac.visa_cvn18_input(data, iad)
    else:
        cvr = mchip_cvr(kind, None, cda_first=True, cda_second=False, velocity=Velocity())
        iad = mchip_iad(card.version, DKI, cvr, COUNTERS)
        if card.version in ("16", "17"):
            session_key = kd.derive_mastercard_sk(mk, data.atc, data.unpredictable_number)
        else:
            session_key = common
        if card.version in ("17", "21"):
            mac_input = ac.mastercard_cvn17_input(data, cvr, COUNTERS)
        else:
            mac_input = ac.mastercard_cvn16_input(data, cvr)
    arqc = ac.generate_ac(session_key, mac_input)
    icc = kit.icc_data(card.pan, data, arqc, iad, PSN, cid=bytes((kind,)))
    return Tap(icc, arqc, mk, session_key)


def expected_arpc(card: Plastic, made: Tap, arc: bytes) -> tuple[bytes, bytes | None]:
    """Visa CVN 18/22: method 2 under the session key with the CSU; Mastercard CVN 16/17:
    method 1 under the ICC MK; CVN 20/21: method 1 under the session key."""
    if _scheme(card.version) == "visa":
        csu = CSU_APPROVED if arc == b"00" else CSU_DECLINED
        return ac.generate_arpc_2(made.session_key, made.arqc, csu), csu
    key = made.mk if card.version in ("16", "17") else made.session_key
    return ac.generate_arpc_1(key, made.arqc, arc), None


# --- enrolment ------------------------------------------------------------------------------


def test_enrol_card_and_its_refusals(host: Host) -> None:
    card = enrol(host, "18")
    service, admin = host.service, host.admin
    with pytest.raises(Conflict, match="is enrolled"):
        service.enrol_card(card.pan, EXPIRY, PSN, "visa", "18", actor=admin)
    pan = new_token_pan(BIN["visa"])
    for scheme, version in (("visa", "16"), ("mastercard", "22"), ("visa", "10")):
        with pytest.raises(InvalidRequest, match="cryptogram version"):
            service.enrol_card(pan, EXPIRY, PSN, scheme, version, actor=admin)
    with pytest.raises(InvalidRequest, match="expiry"):
        service.enrol_card(pan, "2913", PSN, "visa", "18", actor=admin)
    with pytest.raises(InvalidRequest, match="check digit") as refused:
        service.enrol_card(
            pan[:-1] + str((int(pan[-1]) + 1) % 10), EXPIRY, PSN, "visa", "18", actor=admin
        )
    assert pan[:-1] not in str(refused.value)
    with pytest.raises(Forbidden):
        service.enrol_card(pan, EXPIRY, PSN, "visa", "18", actor=host.acquirer)
    # a card is no token: no devices, batches or token operations on its id
    with pytest.raises(NotFound, match="token"):
        point = public_point(ec.generate_private_key(ec.SECP256R1()).public_key())
        service.register_device(card.card_id, point, actor=admin)
    with pytest.raises(NotFound, match="token"):
        service.suspend(card.card_id, actor=admin)
    assert service.suspend_card(card.card_id, actor=admin).status == "suspended"


# --- authorisation --------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_plastic_arqc_is_approved_with_the_arpc_of_its_version(
    host: Host, kit: SimpleNamespace, version: str
) -> None:
    card = enrol(host, version)
    for atc in (1, 2, 0x1C):
        made = tap(card, kit, atc)
        answer = host.service.authorise(made.icc, actor=host.acquirer)
        assert (answer.decision, answer.reason, answer.arc) == ("approved", "approved", b"00")
        assert (answer.arpc, answer.csu) == expected_arpc(card, made, b"00")


@pytest.mark.parametrize("version", ("18", "16"))
def test_a_tc_sent_online_is_verified_like_an_arqc(
    host: Host, kit: SimpleNamespace, version: str
) -> None:
    """Book C-3: a card's TC goes online when fDDA failed and the CTQ says so."""
    card = enrol(host, version)
    made = tap(card, kit, 7, kind=CryptogramType.TC)
    answer = host.service.authorise(made.icc, actor=host.acquirer)
    assert (answer.decision, answer.reason) == ("approved", "approved")
    assert (answer.arpc, answer.csu) == expected_arpc(card, made, b"00")
    aac = tap(card, kit, 8, kind=CryptogramType.AAC)
    refused = host.service.authorise(aac.icc, actor=host.acquirer)
    assert (refused.decision, refused.reason) == ("declined", "malformed")
    assert "9F27" in refused.detail


@pytest.mark.parametrize("version", ("18", "16"))
def test_a_second_submission_is_a_replay(host: Host, kit: SimpleNamespace, version: str) -> None:
    card = enrol(host, version)
    made = tap(card, kit, 5)
    assert host.service.authorise(made.icc, actor=host.acquirer).reason == "approved"
    again = host.service.authorise(made.icc, actor=host.acquirer)
    assert (again.decision, again.reason, again.arc, again.arpc) == (
        "declined",
        "replay",
        b"05",
        None,
    )
    # another cryptogram for the same ATC (another amount) is a replay too
    other = host.service.authorise(tap(card, kit, 5, 2_000).icc, actor=host.acquirer)
    assert other.reason == "replay"


def outside_the_mac(version: str) -> set[int]:
    """The IAD bytes the ARQC does not cover: M/Chip DKI and DAC / ICC dynamic number,
    and for CVN 16/20 the counters (docs/cbp.md "Plastic cards"); none for Visa."""
    if _scheme(version) == "visa":
        return set()
    return {0, 8, 9} | (set(range(10, 18)) if version in ("16", "20") else set())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_flipped_byte_is_declined(host: Host, kit: SimpleNamespace, version: str) -> None:
    """Every value byte of the request, but the IAD bytes outside the MAC."""
    card = enrol(host, version)
    skipped = outside_the_mac(version)
    made = tap(card, kit, 7)
    objects = tlv.decode(made.icc)
    for position, obj in enumerate(objects):
        for offset in range(len(obj.value)):
            if obj.tag == 0x9F10 and offset in skipped:
                continue
            value = bytearray(obj.value)
            value[offset] ^= 0x01
            changed = [*objects]
            changed[position] = tlv.Tlv.primitive(obj.tag, bytes(value))
            answer = host.service.authorise(tlv.encode(changed), actor=host.acquirer)
            assert answer.decision == "declined", f"{tlv.tag_hex(obj.tag)}[{offset}]"
    assert host.service.authorise(made.icc, actor=host.acquirer).reason == "approved"


def test_unknown_card(host: Host, kit: SimpleNamespace) -> None:
    stranger = Plastic("-", new_token_pan(BIN["visa"]), "18")
    answer = host.service.authorise(tap(stranger, kit, 1).icc, actor=host.acquirer)
    assert (answer.reason, answer.arpc) == ("unknown_token", None)
    card = enrol(host, "18")
    other_psn = tap(card, kit, 1).icc.replace(b"\x5f\x34\x01\x01", b"\x5f\x34\x01\x02")
    assert host.service.authorise(other_psn, actor=host.acquirer).reason == "unknown_token"


@pytest.mark.parametrize("version", ("22", "17", "21"))
def test_suspended_card_is_declined_with_an_arpc_then_resumed(
    host: Host, kit: SimpleNamespace, version: str
) -> None:
    card = enrol(host, version)
    host.service.suspend_card(card.card_id, actor=host.admin)
    made = tap(card, kit, 3)
    answer = host.service.authorise(made.icc, actor=host.acquirer)
    assert (answer.decision, answer.reason, answer.arc) == ("declined", "suspended_token", b"05")
    assert (answer.arpc, answer.csu) == expected_arpc(card, made, b"05")
    host.service.resume_card(card.card_id, actor=host.admin)
    assert host.service.authorise(made.icc, actor=host.acquirer).reason == "approved"


def test_an_iad_of_another_version_is_malformed(host: Host, kit: SimpleNamespace) -> None:
    visa_18, mchip_16 = enrol(host, "18"), enrol(host, "16")
    for card, version in ((visa_18, "22"), (mchip_16, "20"), (mchip_16, "18")):
        forged = Plastic(card.card_id, card.pan, version)
        answer = host.service.authorise(tap(forged, kit, 1).icc, actor=host.acquirer)
        assert (answer.reason, answer.arpc) == ("malformed", None)
        assert "9F10" in answer.detail and card.pan not in answer.detail
    # a CBP IAD on a plastic card's PAN is no better
    made = tap(visa_18, kit, 1)
    objects = [o for o in tlv.decode(made.icc) if o.tag != 0x9F10]
    cbp_iad = tlv.Tlv.primitive(0x9F10, bytes.fromhex("C1000000000000000000 01".replace(" ", "")))
    answer = host.service.authorise(tlv.encode([*objects, cbp_iad]), actor=host.acquirer)
    assert answer.reason == "malformed"


# --- the IMK-AC, the HTTP routes, the CLI, the database -------------------------------------


def test_imk_ac_import_is_checked(server: SimpleNamespace, tmp_path: Path) -> None:
    """An initialised server keeps its IMK-AC: importing another is a Conflict; the HSM
    refuses a key whose KCV is not the one given."""
    present = server.hsm.key_info(IMK_AC)
    with pytest.raises(Conflict, match="another KCV"):
        server.service.initialise(imk_ac=KeyImport(IMK, des.kcv(IMK)))
    assert server.hsm.key_info(IMK_AC) == present
    hsm = SoftHsm.create(tmp_path / "other.keys", bytes(32))
    store = SqliteStore(tmp_path / "other.db")
    service = TokenService(hsm, store, server.clock, server.service.config)
    with pytest.raises(HsmError):
        service.initialise(imk_ac=KeyImport(IMK, bytes(3)))
    store.close()


def test_routes_enrol_authorise_and_suspend(host: Host, kit: SimpleNamespace) -> None:
    service = host.service
    admin = service.create_credential("admin", "ops", actor=host.admin)
    acquirer = service.create_credential("acquirer", "pos-http", actor=host.admin)
    pan = new_token_pan(BIN["mastercard"])
    body = {"pan": pan, "expiry": EXPIRY, "psn": PSN, "scheme": "mastercard"}
    status, answer = dispatch(
        service,
        "POST",
        "/v1/cards",
        f"Bearer {admin}",
        json.dumps({**body, "cryptogram_version": "20"}).encode(),
    )
    assert status == 200 and answer["cryptogram_version"] == "20" and pan not in json.dumps(answer)
    card = Plastic(answer["card_id"], pan, "20")
    made = tap(card, kit, 1)
    icc = json.dumps({"icc_data": made.icc.hex()}).encode()
    status, answer = dispatch(service, "POST", "/v1/authorisations", f"Bearer {acquirer}", icc)
    assert (status, answer["reason"]) == (200, "approved")
    assert answer["arpc"] == expected_arpc(card, made, b"00")[0].hex().upper()
    status, answer = dispatch(
        service, "POST", f"/v1/cards/{card.card_id}/suspend", f"Bearer {admin}", b""
    )
    assert (status, answer["status"]) == (200, "suspended")
    status, answer = dispatch(
        service, "POST", "/v1/cards", f"Bearer {acquirer}", json.dumps(body).encode()
    )
    assert status == 403


def test_cli_init_imports_the_imk_ac(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kcv = des.kcv(IMK).hex().upper()
    directory = tmp_path / "srv"
    argv = ["server", "init", str(directory), "--import-imk-ac", IMK.hex()]
    assert main([*argv, "--imk-ac-kcv", "000000"]) == 2
    assert "check value" in capsys.readouterr().err and not directory.exists()
    assert main(argv) == 2
    assert "--imk-ac-kcv" in capsys.readouterr().err
    assert main([*argv, "--imk-ac-kcv", kcv]) == 0
    assert f"key {IMK_AC:<10} KCV {kcv}" in capsys.readouterr().out


def test_the_database_holds_no_clear_pan(tmp_path: Path, kit: SimpleNamespace) -> None:
    made = _host(tmp_path / "host")
    pans = []
    for version in VERSIONS:
        card = enrol(made, version)
        pans.append(card.pan)
        assert made.service.authorise(tap(card, kit, 1).icc, actor=made.acquirer).reason == (
            "approved"
        )
    made.store.close()
    raw = b"".join(path.read_bytes() for path in (tmp_path / "host").glob("server.db*"))
    assert b"enrol_card" in raw  # the grep does see the file's contents
    secrets = [IMK, IMK.hex().encode(), IMK.hex().upper().encode()]
    secrets += [pan.encode() for pan in pans] + [bytes.fromhex(pan) for pan in pans]
    assert [s for s in secrets if s in raw] == []


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    """Schema version 2 adds the card columns to a version 1 file; its tokens stay tokens."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(store._MIGRATIONS[0])
    db.execute(
        "INSERT INTO tokens VALUES (?, 'visa', ?, ?, ?, ?, '00', '2712', 'active', 1, ?)",
        ("00" * 8, b"d" * 16, b"s", b"f" * 16, b"s", "2025-03-01T00:00:00+00:00"),
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    migrated = SqliteStore(path)
    with migrated.transaction() as tx:
        token = tx.token("00" * 8)
    migrated.close()
    assert token is not None and (token.kind, token.cryptogram_version) == ("token", None)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (2,)
