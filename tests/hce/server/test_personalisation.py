"""Server personalisation: the phone's ICC public key certified for its token's card.

The server signs over the same static data the phone's image has, so a terminal
recovers the phone's key from the certificates; only a device's own token, only
shipped HCE profiles of the token's scheme, only keys of the profile's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

import pytest

from emv.crypto import oda
from hce.card import load_profile
from hce.card.personalise import for_token, personalise_certified
from hce.server import Forbidden, InvalidRequest, NotFound
from hce.server.api import dispatch
from hce.server.errors import Conflict
from hce.server.service import CA_KEY
from hce.server.store import AuditEntry

if TYPE_CHECKING:
    from conftest import Card, Server

PROFILE = "visa_qvsdc_hce"
TODAY = date(2025, 3, 1)


@pytest.fixture(scope="module")
def icc_key() -> oda.RsaPrivateKey:
    return oda.generate_rsa_key(1024, 3)


def _ca_key(server: Server) -> oda.RsaPublicKey:
    public = server.hsm.rsa_public_key(CA_KEY)
    return oda.RsaPublicKey(int.from_bytes(public.modulus, "big"), public.exponent)


def test_the_phone_image_carries_its_own_key_certified_by_the_server(
    server: Server, make_card: Callable[..., Card], icc_key: oda.RsaPrivateKey
) -> None:
    card = make_card()
    answer = server.service.personalise_device(
        card.device_id, PROFILE, icc_key.public_key, actor=card.device
    )
    assert (answer.token_id, answer.profile, answer.psn) == (card.token_id, PROFILE, b"\x00")
    assert answer.expiry == bytes.fromhex("271231") and answer.ca_index == 0x99
    profile = for_token(
        load_profile(PROFILE),
        pan=card.token_pan,
        psn=answer.psn,
        expiry=answer.expiry,
        ca_index=answer.ca_index,
    )
    app = personalise_certified(profile, icc_key, answer.certificates).applications[0]
    assert app.icc_key == icc_key and app.data[0x8F] == b"\x99"
    issuer = oda.recover_issuer_public_key(
        _ca_key(server), answer.certificates.issuer, pan=card.token_pan, today=TODAY
    )
    icc = oda.recover_icc_public_key(
        issuer.public_key,
        answer.certificates.icc[app.aid],
        pan=card.token_pan,
        static_data=app.static_data,
        today=TODAY,
    )
    assert icc.public_key == icc_key.public_key and icc.expiry == "1227"


def _audit(server: Server, action: str) -> list[AuditEntry]:
    return [e for e in server.service.audit_log(actor=server.admin) if e.action == action]


def test_personalisation_is_audited_without_secrets(
    server: Server, make_card: Callable[..., Card], icc_key: oda.RsaPrivateKey
) -> None:
    card = make_card()
    server.service.personalise_token(card.token_id, PROFILE, icc_key.public_key, actor=server.admin)
    [entry] = _audit(server, "personalise")
    assert (entry.actor_role, entry.subject, entry.result) == ("admin", card.token_id, "ok")
    assert f"profile={PROFILE}" in entry.detail and card.token_pan not in entry.detail


def test_a_device_personalises_only_its_own_token(
    server: Server, make_card: Callable[..., Card], icc_key: oda.RsaPrivateKey
) -> None:
    mine, other = make_card(), make_card()
    with pytest.raises(Forbidden):
        server.service.personalise_device(
            other.device_id, PROFILE, icc_key.public_key, actor=mine.device
        )
    with pytest.raises(Forbidden):
        server.service.personalise_token(
            mine.token_id, PROFILE, icc_key.public_key, actor=mine.device
        )
    with pytest.raises(Forbidden):
        server.service.personalise_device(
            mine.device_id, PROFILE, icc_key.public_key, actor=server.acquirer
        )
    assert [e.result for e in _audit(server, "personalise")] == ["forbidden"] * 3


@pytest.mark.parametrize(
    ("profile", "error"),
    [
        ("visa_qvsdc_plastic", InvalidRequest),  # a token's card is HCE
        ("mastercard_mchip_hce", InvalidRequest),  # another scheme
        ("../../etc/passwd", NotFound),  # only shipped profiles, never a path
        ("no_such_profile", NotFound),
    ],
)
def test_only_shipped_hce_profiles_of_the_tokens_scheme(
    server: Server,
    make_card: Callable[..., Card],
    icc_key: oda.RsaPrivateKey,
    profile: str,
    error: type[Exception],
) -> None:
    card = make_card()
    with pytest.raises(error):
        server.service.personalise_device(
            card.device_id, profile, icc_key.public_key, actor=card.device
        )


def test_the_icc_key_must_fit_the_profile_and_the_token_be_active(
    server: Server, make_card: Callable[..., Card]
) -> None:
    card = make_card()
    service = server.service
    wrong = oda.generate_rsa_key(1024, 65537).public_key
    with pytest.raises(InvalidRequest, match="1024 bits, exponent 3"):
        service.personalise_device(card.device_id, PROFILE, wrong, actor=card.device)
    service.suspend(card.token_id, actor=server.admin)
    right = oda.generate_rsa_key(1024, 3).public_key
    with pytest.raises(Conflict, match="suspended"):
        service.personalise_device(card.device_id, PROFILE, right, actor=card.device)


def _post(server: Server, path: str, body: dict[str, object], credential: str) -> tuple[int, Any]:
    return dispatch(server.service, "POST", path, f"Bearer {credential}", json.dumps(body).encode())


def test_the_http_route(
    server: Server, make_card: Callable[..., Card], icc_key: oda.RsaPrivateKey
) -> None:
    card = make_card()
    credential = server.service.create_credential(
        "device", "phone", card.device_id, actor=server.admin
    )
    path = f"/v1/devices/{card.device_id}/personalisation"
    body = {
        "profile": PROFILE,
        "icc_modulus": f"{icc_key.public_key.modulus:X}",
        "icc_exponent": 3,
    }
    status, answer = _post(server, path, body, credential)
    assert status == 200, answer
    assert answer["ca_rid"] == "A000000999" and answer["ca_index"] == 0x99
    assert [c["aid"] for c in answer["icc_certificates"]] == ["A0000000031010"]
    assert set(answer["issuer_certificate"]) == {"certificate", "remainder", "exponent"}
    ca = answer["ca_public_key"]  # what a terminal needs to check the certificates
    told = oda.RsaPublicKey.from_bytes(bytes.fromhex(ca["modulus"]), bytes.fromhex(ca["exponent"]))
    assert told == _ca_key(server)
    assert _post(server, path, {**body, "icc_exponent": 5}, credential)[0] == 400
    assert _post(server, path, {**body, "profile": "../x"}, credential)[0] == 400
    other = make_card()
    status, _ = _post(server, f"/v1/devices/{other.device_id}/personalisation", body, credential)
    assert status == 403
