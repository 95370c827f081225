"""Fixtures for the token service: a soft HSM and SQLite store in tmp_path, an injected
clock, and a test card that holds the keys a batch delivered and makes ARQCs with the
pure ``emv.crypto.cbp`` functions (the server side runs inside the HSM).

Initialising a server makes two RSA keys; it is done once per session and its key
file and database are copied for each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from icc_data import icc_data

from emv.crypto import ac, cbp
from emv.crypto.wrap import BatchKey, BatchKind, decode_batch, public_point, unwrap_batch
from hce.hsm.soft import SoftHsm
from hce.server import InitSummary, Principal, ServerConfig, SqliteStore, TokenService

MASTER_KEY = bytes(range(32))
START = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
FUNDING_PAN = "4111111111111111"
EXPIRY = "2712"
TEST_CONFIG = ServerConfig(max_transactions=3, max_amount=20_000, ttl_hours=72)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float) -> None:
        self.now += timedelta(hours=hours)


@dataclass
class Server:
    service: TokenService
    hsm: SoftHsm
    store: SqliteStore
    clock: Clock
    summary: InitSummary
    admin: Principal
    acquirer: Principal
    directory: Path


@dataclass
class Card:
    """A phone's card as far as the server tests need it: the unwrapped batch keys."""

    token_pan: str
    token_id: str
    device_id: str
    device: Principal
    device_key: ec.EllipticCurvePrivateKey
    keys: list[BatchKey] = field(default_factory=list)

    def key(self, kind: BatchKind, ident: int | None = None) -> BatchKey:
        return next(
            k
            for k in self.keys
            if k.kind == kind and (ident is None or int.from_bytes(k.ident, "big") == ident)
        )

    @property
    def log_key(self) -> bytes:
        return self.key(BatchKind.LOG).value


@pytest.fixture(scope="session")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, InitSummary]:
    """One initialised server (key file + database), to copy."""
    directory = tmp_path_factory.mktemp("server-template")
    hsm = SoftHsm.create(directory / "keys", MASTER_KEY)
    store = SqliteStore(directory / "server.db")
    summary = TokenService(hsm, store, Clock(), TEST_CONFIG).initialise()
    store.close()
    return directory, summary


@pytest.fixture
def server(initialised: tuple[Path, InitSummary], tmp_path: Path) -> Iterator[Server]:
    template, summary = initialised
    for name in ("keys", "server.db"):
        shutil.copy(template / name, tmp_path / name)
    hsm = SoftHsm.open(tmp_path / "keys", MASTER_KEY)
    store = SqliteStore(tmp_path / "server.db")
    clock = Clock()
    service = TokenService(hsm, store, clock, TEST_CONFIG)
    assert summary.admin_credential is not None
    admin = service.authenticate(summary.admin_credential)
    acquirer = service.authenticate(service.create_credential("acquirer", "pos-1", actor=admin))
    yield Server(service, hsm, store, clock, summary, admin, acquirer, tmp_path)
    store.close()


@pytest.fixture
def make_card(server: Server) -> Callable[..., Card]:
    """Enrol a token, register a device made here, and load one batch into its card."""

    def make(scheme: str = "visa", count: int = 3, pin: str | None = None, psn: str = "00") -> Card:
        service, admin = server.service, server.admin
        token = service.enrol_token(FUNDING_PAN, EXPIRY, psn, scheme, actor=admin)
        device_key = ec.generate_private_key(ec.SECP256R1())
        device = service.register_device(
            token.token_id, public_point(device_key.public_key()), actor=admin
        )
        card = Card(
            token.token_pan,
            token.token_id,
            device.device_id,
            service.authenticate(device.credential),
            device_key,
        )
        load(server, card, "LUK" if scheme == "visa" else "SUK", count, pin)
        return card

    return make


def load(server: Server, card: Card, kind: str, count: int, pin: str | None = None) -> None:
    """Issue a batch to the card's device and unwrap it as the wallet would."""
    batch = server.service.issue_batch(card.device_id, kind, count, pin, actor=card.device)
    plain = unwrap_batch(card.device_key, batch.envelope, batch.header.to_bytes())
    card.keys.extend(decode_batch(plain))


def terminal_data(
    atc: int, amount: int = 1_000, un: bytes = b"\x12\x34\x56\x78"
) -> ac.CryptogramData:
    return ac.CryptogramData(
        amount_authorised=bytes.fromhex(f"{amount:012d}"),
        amount_other=bytes(6),
        terminal_country_code=bytes.fromhex("0826"),
        tvr=bytes(5),
        transaction_currency_code=bytes.fromhex("0826"),
        transaction_date=bytes.fromhex("250301"),
        transaction_type=b"\x00",
        unpredictable_number=un,
        aip=bytes.fromhex("2000"),
        atc=atc.to_bytes(2, "big"),
    )


@dataclass(frozen=True)
class Tap:
    icc: bytes
    arqc: bytes
    data: ac.CryptogramData
    key: bytes  # the key the ARPC is under: CBP-V session key, CBP-M SUK / SUK-UV


def tap_v(card: Card, atc: int, amount: int = 1_000, *, luk: int = 0, use_count: int = 1) -> Tap:
    """A CBP-V ARQC with the card's ``luk``-th LUK."""
    key = [k for k in card.keys if k.kind == BatchKind.LUK][luk]
    data = terminal_data(atc, amount)
    iad = cbp.CbpVIad(cbp.KeyIndex.from_bytes(key.ident), bytes(4), use_count)
    arqc = cbp.cbp_v_arqc(key.value, data, iad)
    session = cbp.cbp_v_session_key(key.value, data.atc)
    return Tap(icc_data(card.token_pan, data, arqc, iad.to_bytes()), arqc, data, session)


def tap_m(card: Card, atc: int, amount: int = 1_000, *, pin: str | None = None) -> Tap:
    """A CBP-M ARQC with the ATC's SUK, or with its SUK-UV unmasked by ``pin``."""
    if pin is None:
        key, key_type = card.key(BatchKind.SUK, atc).value, cbp.MKeyType.SUK
    else:
        masked = card.key(BatchKind.SUK_UV, atc).value
        key = cbp.unmask_key(masked, cbp.pin_key(pin, card.token_pan))
        key_type = cbp.MKeyType.SUK_UV
    data = terminal_data(atc, amount)
    iad = cbp.CbpMIad(key_type, bytes(4))
    arqc = cbp.cbp_m_arqc(key, data, iad)
    return Tap(icc_data(card.token_pan, data, arqc, iad.to_bytes()), arqc, data, key)


@pytest.fixture
def kit(server: Server) -> SimpleNamespace:
    """The helpers above, for test modules (which cannot import this conftest)."""
    return SimpleNamespace(
        load=lambda card, kind, count, pin=None: load(server, card, kind, count, pin),
        tap_v=tap_v,
        tap_m=tap_m,
        icc_data=icc_data,
        terminal_data=terminal_data,
        funding_pan=FUNDING_PAN,
        expiry=EXPIRY,
    )
