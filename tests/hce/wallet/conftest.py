"""Shared test data for the wallet: a test issuer, batches sealed like the server does
(docs/cbp.md "The batch and its envelope"), a settable clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from icc_data import terminal_data

from emv.crypto import cbp, kd, wrap
from emv.crypto.wrap import BatchHeader, BatchKey, BatchKind
from hce.wallet import Wallet, WalletFile

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "4761739001010010"
MK = kd.derive_icc_mk_a(IMK, PAN, b"\x01")
PIN = "2468"
TOKEN = b"token-01"
NOW = 60_000  # hours since 2020-01-01


class Clock:
    """A clock the test sets: hours since 2020-01-01."""

    def __init__(self, hour: int = NOW) -> None:
        self.hour = hour

    def __call__(self) -> int:
        return self.hour


class Issuer:
    """The test issuer's side of docs/cbp.md: keys derived from MK-AC with
    ``emv.crypto.cbp`` and sealed for a device with ``emv.crypto.wrap``."""

    MK = MK
    PAN = PAN
    PIN = PIN
    TOKEN = TOKEN
    NOW = NOW

    def __init__(self) -> None:
        self._batch_ids = itertools.count(1)

    @staticmethod
    def luk(sequence: int, max_transactions: int = 3, max_amount: int = 10_000) -> BatchKey:
        index = cbp.KeyIndex(NOW, sequence).to_bytes()
        luk = cbp.derive_luk(MK, index)
        return BatchKey(BatchKind.LUK, index, luk, max_transactions, max_amount, NOW + 24)

    @staticmethod
    def suks(atcs: Iterable[int], max_amount: int = 10_000) -> list[BatchKey]:
        """The SUK and the PIN-masked SUK-UV of each ATC."""
        keys = []
        mask = cbp.pin_key(PIN, PAN)
        for atc in atcs:
            atc_bytes = atc.to_bytes(2, "big")
            ident = b"\x00\x00" + atc_bytes
            suk = cbp.derive_suk(MK, atc_bytes)
            masked = cbp.mask_key(cbp.derive_suk_uv(MK, atc_bytes), mask)
            keys.append(BatchKey(BatchKind.SUK, ident, suk, 1, max_amount, NOW + 24))
            keys.append(BatchKey(BatchKind.SUK_UV, ident, masked, 1, max_amount, NOW + 24))
        return keys

    @staticmethod
    def log_key(fingerprint: bytes) -> BatchKey:
        key = cbp.derive_log_key(MK, fingerprint)
        return BatchKey(BatchKind.LOG, fingerprint[:4], key, 0, 0, NOW + 24)

    def seal(
        self,
        device_point: bytes,
        keys: list[BatchKey],
        kind: BatchKind = BatchKind.LUK,
        token: bytes = TOKEN,
        device: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """A batch for ``device_point`` as the token server makes it: (header, envelope)."""
        fingerprint = wrap.device_fingerprint(device_point) if device is None else device
        batch_id = next(self._batch_ids).to_bytes(8, "big")
        header = BatchHeader(batch_id, token, fingerprint, kind).to_bytes()
        envelope = wrap.wrap_batch(
            device_point,
            header,
            wrap.encode_batch(keys),
            ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
        )
        return header, envelope

    terminal_data = staticmethod(terminal_data)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wallet_file(tmp_path: Path) -> WalletFile:
    return WalletFile(tmp_path / "wallet.bin", tmp_path / "device.secret", "hw-id-A")


@pytest.fixture
def wallet(wallet_file: WalletFile, clock: Clock, issuer: Issuer) -> Wallet:
    """A registered, enrolled wallet holding the log key and nothing else."""
    registered = Wallet.register(wallet_file, clock)
    registered.enrol(PAN, TOKEN)
    log = issuer.log_key(registered.fingerprint)
    registered.load_batch(*issuer.seal(registered.device_point, [log]))
    return registered


@pytest.fixture
def load(wallet: Wallet, issuer: Issuer) -> Callable[..., int]:
    """Load keys into the wallet fixture: ``load(keys, kind)``, the number added."""

    def load_keys(keys: list[BatchKey], kind: BatchKind = BatchKind.LUK) -> int:
        return wallet.load_batch(*issuer.seal(wallet.device_point, keys, kind))

    return load_keys
