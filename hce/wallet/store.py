"""The wallet file at rest: one AES-256-GCM blob under a key bound to the device.

The wallet key is HKDF-SHA256(device secret, info = "emvtap-wallet/1" || device
binding): the device secret is 32 random bytes in a separate file (a stand-in
for the phone's keystore) and the binding names the device (a hardware id).
A wallet file copied elsewhere therefore does not open (DESIGN.md, hce/wallet).

File layout (all writes atomic and durable: temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory)::

    "EWF1" || key check (8) || nonce (12) || AES-256-GCM(wallet key, nonce, state, aad)

with aad the first 12 bytes (magic and key check).

The key check, HMAC-SHA256(wallet key, "emvtap-wallet key check")[:8], tells a
file made for another device from an altered one without decrypting anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hce.atomic import replace_atomically
from hce.wallet.errors import ForeignWallet, WalletCorrupt, WalletError

__all__ = ["WalletFile", "create_device_secret"]

MAGIC = b"EWF1"
HKDF_INFO = b"emvtap-wallet/1"
KEY_CHECK_LABEL = b"emvtap-wallet key check"
SECRET_LENGTH = 32
KEY_CHECK_LENGTH = 8
NONCE_LENGTH = 12
HEADER_LENGTH = len(MAGIC) + KEY_CHECK_LENGTH


def create_device_secret(path: Path) -> None:
    """Write a new 32-byte device secret (refusing to overwrite one: that would orphan
    every wallet sealed under it)."""
    if path.exists():
        raise WalletError(f"device secret {path} already exists")
    replace_atomically(path, os.urandom(SECRET_LENGTH))


@dataclass(frozen=True)
class WalletFile:
    """Where a wallet lives and what it is bound to: its file, the device secret file
    and the device binding string."""

    path: Path
    secret_path: Path
    binding: str

    def _key(self) -> bytes:
        try:
            secret = self.secret_path.read_bytes()
        except FileNotFoundError:
            raise WalletError(f"device secret {self.secret_path} is missing") from None
        if len(secret) != SECRET_LENGTH:
            raise WalletError(f"device secret {self.secret_path} is not {SECRET_LENGTH} bytes")
        info = HKDF_INFO + self.binding.encode("utf-8")
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

    def exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the wallet (a lock file beside it, flock): a writer holds it
        while it checks the file and replaces it. The kernel drops it if the process dies."""
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def save(self, state: bytes) -> None:
        """Seal ``state`` and write it atomically."""
        key = self._key()
        header = MAGIC + _key_check(key)
        nonce = os.urandom(NONCE_LENGTH)
        replace_atomically(self.path, header + nonce + AESGCM(key).encrypt(nonce, state, header))

    def load(self) -> bytes:
        """The state sealed in the file: :class:`ForeignWallet` if it was made for another
        device secret or binding, :class:`WalletCorrupt` if it is damaged."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            raise WalletError(f"wallet file {self.path} does not exist") from None
        if len(blob) < HEADER_LENGTH + NONCE_LENGTH + 16 or not blob.startswith(MAGIC):
            raise WalletCorrupt(f"wallet file {self.path} is not an emvtap wallet file")
        key = self._key()
        header, nonce = blob[:HEADER_LENGTH], blob[HEADER_LENGTH : HEADER_LENGTH + NONCE_LENGTH]
        if not hmac.compare_digest(header[len(MAGIC) :], _key_check(key)):
            raise ForeignWallet(f"wallet file {self.path} was made for another device")
        try:
            return AESGCM(key).decrypt(nonce, blob[HEADER_LENGTH + NONCE_LENGTH :], header)
        except InvalidTag:
            raise WalletCorrupt(f"wallet file {self.path} was altered or damaged") from None


def _key_check(key: bytes) -> bytes:
    return hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).digest()[:KEY_CHECK_LENGTH]
