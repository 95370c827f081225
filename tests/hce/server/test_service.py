"""Initialisation, credentials and roles, enrolment, provisioning, the audit log, and a
database that holds no PAN, key, PIN or credential in clear."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from emv.crypto import aes, des, oda
from emv.crypto.wrap import BatchKind, decode_batch, public_point, unwrap_batch
from hce.hsm.interface import KeyKind
from hce.hsm.soft import SoftHsm
from hce.server import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServerConfig,
    SqliteStore,
    TokenService,
    Unauthorised,
)
from hce.server.vault import luhn_valid

FUNDING = "4111111111111111"


def test_initialise_is_idempotent_and_certifies_each_bin(server):
    summary = server.summary
    assert set(summary.kcvs) == {"imk-ac", "vault", "lookup"}
    assert set(summary.created) == {"imk-ac", "vault", "lookup", "ca", "issuer"}
    ca = oda.CaKeyStore.parse(summary.ca_key).lookup(bytes.fromhex("A000000999"), 0x99)
    issuer = server.hsm.rsa_public_key("issuer").oda_key()
    for row in summary.issuer_certificates:
        pan = {"visa": "4895370000000002", "mastercard": "5413330000000003"}[row.scheme]
        certificate = oda.PublicKeyCertificate(row.certificate, row.remainder, row.exponent)
        recovered = oda.recover_issuer_public_key(ca.public_key, certificate, pan, date(2025, 3, 1))
        assert (recovered.public_key, recovered.issuer_identifier) == (
            issuer,
            row.issuer_identifier,
        )
    again = server.service.initialise()
    assert (again.created, again.admin_credential, again.kcvs) == ((), None, summary.kcvs)


def test_credentials_and_roles(server, make_card):
    service = server.service
    with pytest.raises(Unauthorised):
        service.authenticate("not-a-credential")
    with pytest.raises(Forbidden):
        service.enrol_token("4111111111111111", "2712", actor=server.acquirer)
    card = make_card("visa")
    other = make_card("visa")
    with pytest.raises(Forbidden):
        service.issue_batch(other.device_id, "LUK", 1, actor=card.device)
    with pytest.raises(Forbidden):
        service.authorise(b"", actor=card.device)
    assert card.device.role == "device" and card.device.device_id == card.device_id


def test_enrolment_makes_a_luhn_valid_token_pan_in_the_bin(server):
    for scheme, prefix in (("visa", "489537"), ("mastercard", "541333")):
        token = server.service.enrol_token(
            "4111111111111111", "2712", "01", scheme, actor=server.admin
        )
        assert token.token_pan.startswith(prefix) and luhn_valid(token.token_pan)
        assert server.service.token(token.token_id, actor=server.admin) == token
    with pytest.raises(InvalidRequest):
        server.service.enrol_token("4111111111111112", "2712", actor=server.admin)
    with pytest.raises(NotFound):
        server.service.suspend("00" * 8, actor=server.admin)


def test_luk_key_indexes_are_never_reused(server, make_card, kit):
    card = make_card("visa", count=3)
    kit.load(card, "LUK", 2)
    server.clock.advance(1)
    kit.load(card, "LUK", 1)
    idents = [int.from_bytes(k.ident, "big") for k in card.keys if k.kind == BatchKind.LUK]
    hour = (server.clock.now - datetime(2020, 1, 1, tzinfo=UTC)) // timedelta(hours=1)
    assert len(set(idents)) == 6
    assert idents[:5] == list(range(idents[0], idents[0] + 5))
    assert idents[5] >> 8 == (idents[0] >> 8) + 1
    assert idents[0] >> 8 == hour - 1  # the first batch came an hour before the clock moved
    luk = card.keys[0]
    assert (luk.max_transactions, luk.max_amount, luk.expiry_hour) == (
        3,
        20_000,
        (idents[0] >> 8) + 72,
    )


def test_suk_batches_take_the_next_atcs_and_a_pin_adds_suk_uvs(server, make_card, kit):
    card = make_card("mastercard", count=2)
    kit.load(card, "SUK", 2, "4821")
    kinds = [(k.kind, int.from_bytes(k.ident, "big")) for k in card.keys if k.kind != BatchKind.LOG]
    assert kinds == [
        (BatchKind.SUK, 1),
        (BatchKind.SUK, 2),
        (BatchKind.SUK, 3),
        (BatchKind.SUK_UV, 3),
        (BatchKind.SUK, 4),
        (BatchKind.SUK_UV, 4),
    ]
    log = card.key(BatchKind.LOG)
    assert log.ident == bytes.fromhex(card.device_id)[:4]
    with pytest.raises(InvalidRequest):
        kit.load(card, "LUK", 1)
    with pytest.raises(InvalidRequest):
        kit.load(card, "SUK", 1, "12ab")


def test_batches_only_for_active_tokens_and_devices_once(server, make_card, kit):
    card = make_card("visa")
    point = public_point(card.device_key.public_key())
    with pytest.raises(Conflict):
        server.service.register_device(card.token_id, point, actor=server.admin)
    with pytest.raises(InvalidRequest):
        server.service.register_device(card.token_id, b"\x04" + bytes(64), actor=server.admin)
    server.service.suspend(card.token_id, actor=server.admin)
    with pytest.raises(Conflict):
        kit.load(card, "LUK", 1)


IMPORTED = {
    "imk-ac": (KeyKind.DES2, bytes(range(16)), des.kcv),
    "vault": (KeyKind.AES256, bytes(range(32, 64)), aes.kcv),
    "lookup": (KeyKind.AES128, bytes(range(64, 80)), aes.kcv),
}
PIN = "739155"


def _full_flow(directory: Path) -> list[bytes]:
    """Run every operation on imported keys; return what must not be in the database."""
    hsm = SoftHsm.create(directory / "keys", bytes(32))
    for label, (kind, value, kcv) in IMPORTED.items():
        hsm.import_key(label, kind, value, kcv(value))
    store = SqliteStore(directory / "server.db")
    config = ServerConfig(ca_bits=1024, issuer_bits=1024)
    service = TokenService(hsm, store, lambda: datetime(2025, 3, 1, tzinfo=UTC), config)
    summary = service.initialise()
    assert summary.admin_credential is not None
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.create_credential("acquirer", "pos", actor=admin)
    secrets = [summary.admin_credential, acquirer, PIN, FUNDING]
    clear_keys = [value for _, value, _ in IMPORTED.values()]
    for scheme, kind, pin in (("visa", "LUK", None), ("mastercard", "SUK", PIN)):
        token = service.enrol_token(FUNDING, "2712", scheme=scheme, actor=admin)
        device_key = ec.generate_private_key(ec.SECP256R1())
        point = public_point(device_key.public_key())
        device = service.register_device(token.token_id, point, actor=admin)
        principal = service.authenticate(device.credential)
        batch = service.issue_batch(device.device_id, kind, 2, pin, actor=principal)
        keys = decode_batch(unwrap_batch(device_key, batch.envelope, batch.header.to_bytes()))
        clear_keys += [k.value for k in keys]
        secrets += [token.token_pan, device.credential]
        service.reconcile(device.device_id, [], [], actor=principal)
        pan = bytes.fromhex(token.token_pan)
        service.authorise(b"\x5a\x08" + pan, actor=service.authenticate(acquirer))
    store.close()
    found = [s.encode() for s in secrets] + [bytes.fromhex(FUNDING)]
    found += [bytes.fromhex(s) for s in secrets if len(s) == 16 and s.isdigit()]
    for value in clear_keys:
        found += [value, value.hex().encode(), value.hex().upper().encode()]
    return found


def test_the_database_holds_no_secret_in_clear(tmp_path):
    secrets = _full_flow(tmp_path)
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("server.db*"))
    assert b"enrol_token" in raw  # the grep does see the file's contents
    assert [s for s in secrets if s in raw] == []


def test_every_operation_is_audited_without_secrets(server, make_card, kit):
    card = make_card("mastercard", pin="4821")
    server.service.authorise(kit.tap_m(card, 1).icc, actor=server.acquirer)
    server.service.suspend(card.token_id, actor=server.admin)
    server.service.resume(card.token_id, actor=server.admin)
    server.service.reconcile(card.device_id, [], [], actor=card.device)
    with pytest.raises(Forbidden):
        server.service.audit_log(actor=card.device)
    entries = server.service.audit_log(actor=server.admin)
    actions = {e.action for e in entries}
    assert actions >= {
        "initialise",
        "generate_key",
        "generate_rsa_key",
        "sign_issuer_certificate",
        "create_credential",
        "enrol_token",
        "register_device",
        "issue_batch",
        "authorise",
        "suspend",
        "resume",
        "reconcile",
    }
    assert all(e.actor_name and e.actor_role for e in entries)
    text = repr(entries)
    for secret in (card.token_pan, kit.funding_pan, "4821", server.summary.admin_credential):
        assert secret not in text
    authorised = next(e for e in entries if e.action == "authorise")
    assert (authorised.actor_role, authorised.subject, authorised.result) == (
        "acquirer",
        card.token_id,
        "approved",
    )


def test_the_audit_log_line_names_no_secret_and_is_made_only_when_logged(
    server, make_card, kit, caplog
):
    card = make_card("visa")
    with caplog.at_level(logging.WARNING, logger="emvtap.server.audit"):
        server.service.authorise(kit.tap_v(card, 1).icc, actor=server.acquirer)
    assert not [r for r in caplog.records if r.name == "emvtap.server.audit"]
    with caplog.at_level(logging.INFO, logger="emvtap.server.audit"):
        answer = server.service.authorise(kit.tap_v(card, 2).icc, actor=server.acquirer)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "emvtap.server.audit"]
    assert f"acquirer:{server.acquirer.name} authorise {card.token_id} -> approved" in line
    assert f"id={answer.authorisation_id} reason=approved atc=2" in line
    assert card.token_pan not in line and kit.funding_pan not in line


def test_a_token_lives_on_one_device(server, make_card):
    card = make_card("visa")
    other = public_point(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(Conflict, match="already bound to a device"):
        server.service.register_device(card.token_id, other, actor=server.admin)


def test_refusals_for_the_request_or_the_state_are_audited(server, make_card):
    card = make_card("visa")
    with pytest.raises(NotFound):
        server.service.suspend("0" * 16, actor=server.admin)
    server.service.suspend(card.token_id, actor=server.admin)
    with pytest.raises(Conflict):
        server.service.issue_batch(card.device_id, "LUK", 1, actor=card.device)
    entries = server.service.audit_log(actor=server.admin)
    refused = [(e.action, e.subject) for e in entries if e.result == "refused"]
    assert ("suspend", "0" * 16) in refused
    assert any(action == "issue_batch" for action, _ in refused)
    assert all(card.token_pan not in e.detail for e in entries)
