"""The soft HSM's key file: one AES-256-GCM blob under a master key, written atomically.

File layout::

    "EMVTAPK1" || nonce (12) || AES-256-GCM(master key, nonce, plaintext, aad = "EMVTAPK1")

The whole file is authenticated, so a wrong master key, an altered byte, a
truncated file or another file format are all refused the same way: an
:class:`~hce.hsm.interface.HsmError` that names the file, never the key.

The master key is 32 bytes, given as 64 hex digits in a file or in the
environment variable ``EMVTAP_HSM_MASTER_KEY`` (``openssl rand -hex 32``).
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hce.atomic import replace_atomically
from hce.hsm.interface import HsmError

__all__ = [
    "MASTER_KEY_ENV",
    "MASTER_KEY_LENGTH",
    "read_key_file",
    "read_master_key",
    "write_key_file",
]

MASTER_KEY_ENV = "EMVTAP_HSM_MASTER_KEY"
MASTER_KEY_LENGTH = 32
MAGIC = b"EMVTAPK1"
NONCE_LENGTH = 12
TAG_LENGTH = 16


def _parse_master_key(text: str, source: str) -> bytes:
    digits = text.strip()
    if len(digits) != 2 * MASTER_KEY_LENGTH or not all(c in string.hexdigits for c in digits):
        raise HsmError(
            f"master key from {source}: expected {2 * MASTER_KEY_LENGTH} hex digits"
            f" ({MASTER_KEY_LENGTH} bytes), e.g. from `openssl rand -hex 32`"
        )
    return bytes.fromhex(digits)


def read_master_key(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ
) -> bytes:
    """The 32-byte master key: from the file ``path`` if given, else from the
    ``EMVTAP_HSM_MASTER_KEY`` environment variable; both hold 64 hex digits.

    HsmError says where the key was looked for and what is wrong, never what it held.
    """
    if path is not None:
        source = f"file {os.fspath(path)}"
        try:
            raw = Path(path).read_bytes()
        except OSError as err:
            raise HsmError(f"master key {source}: cannot read it ({err.strerror})") from None
        return _parse_master_key(raw.decode("ascii", "replace"), source)
    value = environ.get(MASTER_KEY_ENV)
    if value is None:
        raise HsmError(
            f"no master key: set {MASTER_KEY_ENV} to {2 * MASTER_KEY_LENGTH} hex digits"
            " or give a master key file"
        )
    return _parse_master_key(value, f"environment variable {MASTER_KEY_ENV}")


def _aead(path: Path, master_key: bytes) -> AESGCM:
    if len(master_key) != MASTER_KEY_LENGTH:
        raise HsmError(f"key file {path}: the master key must be {MASTER_KEY_LENGTH} bytes")
    return AESGCM(master_key)


def read_key_file(path: Path, master_key: bytes) -> bytes:
    """The plaintext of the key file at ``path``; HsmError naming the file if it is
    missing, altered, not a key file, or sealed under another master key."""
    aead = _aead(path, master_key)
    try:
        sealed = path.read_bytes()
    except OSError as err:
        raise HsmError(f"key file {path}: cannot read it ({err.strerror})") from None
    if len(sealed) < len(MAGIC) + NONCE_LENGTH + TAG_LENGTH or not sealed.startswith(MAGIC):
        raise HsmError(f"key file {path}: not an emvtap soft HSM key file")
    nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_LENGTH]
    try:
        return aead.decrypt(nonce, sealed[len(MAGIC) + NONCE_LENGTH :], MAGIC)
    except InvalidTag:
        raise HsmError(
            f"key file {path}: refused: wrong master key, or the file was altered"
        ) from None


def write_key_file(path: Path, master_key: bytes, plaintext: bytes) -> None:
    """Seal ``plaintext`` under the master key and replace the file at ``path`` atomically."""
    nonce = os.urandom(NONCE_LENGTH)
    sealed = MAGIC + nonce + _aead(path, master_key).encrypt(nonce, plaintext, MAGIC)
    try:
        replace_atomically(path, sealed)
    except OSError as err:
        raise HsmError(f"key file {path}: cannot write it ({err.strerror or err})") from None
