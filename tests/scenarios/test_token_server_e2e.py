"""End to end over the wire: `emvtap server init` and `run` (HTTPS on loopback),
an admin and an acquirer over HTTP, and a real wallet with a pinned TLS client.

init -> enrol -> register the wallet's device -> provision -> the wallet's key
makes an ARQC (through emv.crypto) -> POST it -> approved with the right ARPC;
replay -> "replay"; any flipped byte -> declined; keys exhausted -> the wallet
refuses, and replenishment restores; 16 concurrent submissions -> one approval;
and no clear PAN or key in the database or the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import softhsm
from icc_data import icc_data as encode_icc_data
from icc_data import terminal_data

from emv import tlv
from emv.crypto import ac, cbp
from hce.wallet import HttpTokenServer, KeysExhausted, Outcome, Wallet, WalletFile

if TYPE_CHECKING:
    from conftest import StartTokenServer
    from conftest import TokenServerProcess as Server

ROOT = Path(__file__).resolve().parents[2]
FUNDING_PAN = "4000123412341234"
CVR = bytes(4)


def _softhsm_token(directory: Path) -> dict[str, str]:
    """A SoftHSMv2 token of its own for the server: the environment and --hsm spec."""
    helper = softhsm
    module = helper.softhsm_module()
    previous = os.environ.get("SOFTHSM2_CONF")
    helper.init_token(directory)
    env = {
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        "EMVTAP_HSM_PIN": helper.USER_PIN,
        "HSM_SPEC": f"pkcs11:{module}:{helper.TOKEN_LABEL}",
    }
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF")
    else:
        os.environ["SOFTHSM2_CONF"] = previous
    return env


@pytest.fixture(scope="module", params=["soft", "pkcs11"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_token_server: StartTokenServer,
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("server")
    env = dict(os.environ)
    hsm = "soft"
    if request.param == "pkcs11":
        token = _softhsm_token(tmp_path_factory.mktemp("hsm"))
        hsm = token.pop("HSM_SPEC")
        env.update(token)
    server = start_token_server(directory, ["--hsm", hsm], env)
    assert "A000000999 99" in server.init_output
    yield server
    server.stop()


@dataclass
class Card:
    """A wallet enrolled for one token, its device credential and the acquirer's."""

    wallet: Wallet
    client: HttpTokenServer
    token_pan: str
    psn: str
    acquirer: str


@pytest.fixture(scope="module")
def card(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Card:
    home = tmp_path_factory.mktemp("phone")
    (home / "secret").write_bytes(bytes(range(32)))
    wallet = Wallet.register(WalletFile(home / "wallet", home / "secret", "phone-1"))
    acquirer = server.ok("/v1/credentials", {"role": "acquirer", "name": "pos-1"}, server.admin)
    token = server.ok("/v1/tokens", {"funding_pan": FUNDING_PAN, "expiry": "2912"}, server.admin)
    device = server.ok(
        f"/v1/tokens/{token['token_id']}/devices",
        {"public_key": wallet.device_point.hex().upper()},
        server.admin,
    )
    wallet.enrol(token["token_pan"], bytes.fromhex(token["token_id"]))
    client = HttpTokenServer(
        server.url, device["device_id"], device["credential"], pin_sha256=server.pin
    )
    assert wallet.replenish_if_low(client, threshold=1, count=2) > 0
    return Card(wallet, client, token["token_pan"], token["psn"], acquirer["credential"])


def _tap(card: Card, amount: int) -> tuple[bytes, bytes, bytes]:
    """One CBP-V tap: the ICC data a terminal would send, the LUK session key and the ARQC."""
    grant = card.wallet.take_luk(amount)
    data = terminal_data(grant.atc, amount)
    cryptogram = grant.cryptogram(data, CVR)
    icc = encode_icc_data(card.token_pan, data, cryptogram.arqc, cryptogram.iad, card.psn)
    return icc, cbp.cbp_v_session_key(grant.key, grant.atc), cryptogram.arqc


def _authorise(server: Server, card: Card, icc_data: bytes) -> dict[str, Any]:
    return dict(
        server.ok("/v1/authorisations", {"icc_data": icc_data.hex().upper()}, card.acquirer)
    )


def test_approved_with_a_correct_arpc_then_replay_declined(server: Server, card: Card) -> None:
    icc_data, session_key, arqc = _tap(card, 1500)
    answer = _authorise(server, card, icc_data)
    assert (answer["decision"], answer["reason"], answer["arc"]) == ("approved", "approved", "3030")
    expected = ac.generate_arpc_1(session_key, arqc, bytes.fromhex("3030"))
    assert bytes.fromhex(answer["arpc"]) == expected
    again = _authorise(server, card, icc_data)
    assert (again["decision"], again["reason"]) == ("declined", "replay")


def _value_positions(icc_data: bytes) -> list[int]:
    """Offsets of every value byte (not tags or lengths) of the ICC data objects."""
    positions = []
    for obj in tlv.decode(icc_data):
        end = obj.offset + len(obj.to_bytes())
        positions.extend(range(end - len(obj.value), end))
    return positions


def test_every_flipped_byte_is_declined(server: Server, card: Card) -> None:
    icc_data, _, _ = _tap(card, 700)
    positions = _value_positions(icc_data)
    assert len(positions) == sum(len(obj.value) for obj in tlv.decode(icc_data)) == 62
    for position in positions:
        flipped = bytearray(icc_data)
        flipped[position] ^= 0x01
        status, answer = server.call(
            "/v1/authorisations", {"icc_data": bytes(flipped).hex().upper()}, card.acquirer
        )
        assert status != 200 or answer["decision"] == "declined", (position, answer)
    assert _authorise(server, card, icc_data)["decision"] == "approved"


def test_sixteen_concurrent_submissions_one_approval(server: Server, card: Card) -> None:
    icc_data, _, _ = _tap(card, 300)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: _authorise(server, card, icc_data), range(16)))
    decisions = sorted((a["decision"], a["reason"]) for a in answers)
    assert decisions == [("approved", "approved")] + [("declined", "replay")] * 15


def test_exhausted_keys_refused_then_replenished(server: Server, card: Card) -> None:
    with pytest.raises(KeysExhausted):
        while True:
            icc_data, _, _ = _tap(card, 100)
            assert _authorise(server, card, icc_data)["decision"] == "approved"
    assert card.wallet.replenish_if_low(card.client, threshold=1, count=1) > 0
    icc_data, _, _ = _tap(card, 100)
    assert _authorise(server, card, icc_data)["decision"] == "approved"


def test_reconciliation_over_two_uploads(server: Server, card: Card) -> None:
    """The wallet logs each tap; the server verifies the MAC chain across uploads and
    matches the entries with its own decisions."""
    for amount in (200, 300):
        grant = card.wallet.take_luk(amount)
        data = terminal_data(grant.atc, amount)
        cryptogram = grant.cryptogram(data, CVR)
        card.wallet.record(grant, data, cryptogram, b"\x80", Outcome.ONLINE_REQUESTED)
        first = card.wallet.upload_log(card.client)
        assert first["forged"] == [] and first["verified"] == 1, first
    assert card.wallet.pending_log()[1] == []


def test_a_device_cannot_fetch_another_devices_keys(server: Server, card: Card) -> None:
    other = "00" * 32
    status, answer = server.call(
        f"/v1/devices/{other}/batches", {"kind": "LUK", "count": 1}, card.client._credential
    )
    assert status in (403, 404), answer
    status, _ = server.call("/v1/authorisations", {"icc_data": "00"}, None)
    assert status == 401


def test_no_clear_pan_or_key_in_the_database_or_the_log(server: Server, card: Card) -> None:
    icc_data, session_key, _ = _tap(card, 50)
    _authorise(server, card, icc_data)
    log = server.stop()
    database = b"".join(p.read_bytes() for p in server.directory.glob("store.sqlite*"))
    master_file = server.directory / "master.key"
    master = master_file.read_text().strip() if master_file.exists() else server.admin
    secrets_ = [FUNDING_PAN, card.token_pan, server.admin, card.acquirer, master]
    for secret in secrets_:
        assert secret.encode() not in database and secret not in log
    for raw in (bytes.fromhex(FUNDING_PAN), bytes.fromhex(card.token_pan), session_key):
        assert raw not in database and raw.hex().upper() not in log and raw.hex() not in log
    assert "POST /v1/authorisations 200" in log
