"""The `Hsm` interface: keys are labels, and no operation returns a clear key.

Everything the token server does with a secret goes through these operations.
Derived keys (ICC master keys, limited-use and single-use keys, session keys)
exist only inside one call: a :class:`KeyPath` names how to reach the key from
an issuer master key, and the HSM walks it inside. The only export of key
material is :meth:`Hsm.wrap_batch`, which seals limited-use keys for one
device's public key (docs/cbp.md).

The arithmetic is the one of ``emv.crypto`` (EMV Book 2 Annex A1 derivations,
§8.1 cryptograms, §8.2 ARPC, the emvtap CBP profile): every backend must give
the same bytes as those pure functions, and the shared HSM test suite checks it.

An authorisation's HSM work, verify the ARQC and make the ARPC, is
:func:`verify_arqc_and_generate_arpc`: one operation on a backend that is an
:class:`ArqcVerifier` (the key path walked once), the operations of :class:`Hsm`
on any other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol, runtime_checkable

from emv.crypto import oda
from emv.crypto.wrap import BatchKind

__all__ = [
    "Arpc",
    "ArpcMethod1",
    "ArpcMethod2",
    "ArqcVerifier",
    "BatchRequest",
    "CommonSession",
    "Hsm",
    "HsmError",
    "IccMaster",
    "KeyInfo",
    "KeyKind",
    "KeyNotFound",
    "KeyPath",
    "LimitedUse",
    "MastercardSession",
    "RsaPublic",
    "Session",
    "verify_arqc_and_generate_arpc",
]


class HsmError(Exception):
    """An HSM operation failed: names the operation and the key label, never a key value."""


class KeyNotFound(HsmError):
    """No key with that label."""


class KeyKind(Enum):
    """Symmetric key types an issuer master key can have."""

    DES2 = "des2"  # 2-key triple DES, 16 bytes
    AES128 = "aes128"
    AES256 = "aes256"


@dataclass(frozen=True)
class KeyInfo:
    """What may be known about a stored symmetric key: label, kind and check value."""

    label: str
    kind: KeyKind
    kcv: bytes  # 3 bytes: 3DES encrypt of zeros; AES: AES-ECB of zeros (leftmost 3 bytes)


@dataclass(frozen=True)
class RsaPublic:
    """The public half of an RSA key held in the HSM."""

    label: str
    modulus: bytes
    exponent: int

    def oda_key(self) -> oda.RsaPublicKey:
        """The same key in the form ``emv.crypto.oda`` verifies with."""
        return oda.RsaPublicKey(int.from_bytes(self.modulus, "big"), self.exponent)


@dataclass(frozen=True)
class IccMaster:
    """The ICC master key: option A or B (EMV Book 2 A1.4.1/A1.4.2) from a PAN and PSN."""

    pan: str
    psn: bytes = b"\x00"
    option: Literal["A", "B"] = "A"


@dataclass(frozen=True)
class LimitedUse:
    """A CBP key diversified from the ICC master key (docs/cbp.md): ``kind`` LUK with a
    4-byte key index, or SUK / SUK_UV with '0000' || ATC as ``ident``. Inside the
    HSM an SUK-UV is the key itself; it is masked only in :meth:`Hsm.wrap_batch`."""

    kind: BatchKind
    ident: bytes


@dataclass(frozen=True)
class CommonSession:
    """EMV common session key (Book 2 A1.3.1) with diversification value R."""

    r: bytes


@dataclass(frozen=True)
class MastercardSession:
    """M/Chip session key: R = ATC || '0000' || UN."""

    atc: bytes
    un: bytes


Session = CommonSession | MastercardSession


@dataclass(frozen=True)
class KeyPath:
    """How to reach a working key from the issuer master key labelled ``imk``:
    ICC master key, then optionally a CBP limited-use key, then optionally a
    session key."""

    imk: str
    icc: IccMaster
    limited_use: LimitedUse | None = None
    session: Session | None = None


@dataclass(frozen=True)
class ArpcMethod1:
    """ARPC method 1 (EMV Book 2 §8.2.1) over the 2-byte Authorisation Response Code."""

    arc: bytes


@dataclass(frozen=True)
class ArpcMethod2:
    """ARPC method 2 (EMV Book 2 §8.2.2) over the 4-byte Card Status Update and 0 to 8
    bytes of Proprietary Authentication Data."""

    csu: bytes
    prop_auth_data: bytes = b""


Arpc = ArpcMethod1 | ArpcMethod2


@dataclass(frozen=True)
class BatchRequest:
    """One key to put in a device batch, with the limits the batch carries."""

    key: LimitedUse
    max_transactions: int
    max_amount: int
    expiry_hour: int


@runtime_checkable
class Hsm(Protocol):
    """Keys you can use but not read."""

    # --- symmetric keys ---------------------------------------------------------------

    def generate_key(self, label: str, kind: KeyKind) -> KeyInfo:
        """Make a new random key under ``label`` (HsmError if the label is taken)."""
        ...

    def import_key(self, label: str, kind: KeyKind, value: bytes, kcv: bytes) -> KeyInfo:
        """Store a key given in clear (key ceremony, tests), refusing it unless its
        check value equals ``kcv``."""
        ...

    def key_info(self, label: str) -> KeyInfo:
        """Label, kind and KCV of a stored key (KeyNotFound if absent)."""
        ...

    def labels(self) -> list[str]:
        """Every key label, symmetric and RSA, sorted."""
        ...

    # --- cryptograms ------------------------------------------------------------------

    def application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"]
    ) -> bytes:
        """``emv.crypto.ac.generate_ac`` under the key at ``path``."""
        ...

    def verify_application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"], cryptogram: bytes
    ) -> bool:
        """Recompute and compare in constant time."""
        ...

    def arpc_method_1(self, path: KeyPath, arqc: bytes, arc: bytes) -> bytes:
        """``emv.crypto.ac.generate_arpc_1`` under the key at ``path``."""
        ...

    def arpc_method_2(
        self, path: KeyPath, arqc: bytes, csu: bytes, prop_auth_data: bytes = b""
    ) -> bytes:
        """``emv.crypto.ac.generate_arpc_2`` under the key at ``path``."""
        ...

    def key_check_value(self, path: KeyPath) -> bytes:
        """The 3-byte KCV of the key at ``path`` (lets tests compare backends and the
        pure functions without ever seeing a key)."""
        ...

    # --- device batches ---------------------------------------------------------------

    def wrap_batch(
        self,
        imk: str,
        icc: IccMaster,
        keys: Sequence[BatchRequest],
        *,
        device_point: bytes,
        header: bytes,
        pin_key: bytes | None = None,
    ) -> bytes:
        """Derive ``keys`` inside, mask any SUK-UV with ``pin_key`` (emv.crypto.cbp.mask_key),
        encode the batch
        and seal it for ``device_point`` (``emv.crypto.wrap``): the envelope is the
        only way key material leaves an HSM."""
        ...

    # --- RSA (EMV certificates) -------------------------------------------------------

    def generate_rsa_key(self, label: str, bits: int, exponent: int) -> RsaPublic:
        """A new RSA key pair for signing EMV certificates (exponent 3 or 65537)."""
        ...

    def rsa_public_key(self, label: str) -> RsaPublic:
        """The public half of a stored RSA key."""
        ...

    def rsa_sign_raw(self, label: str, message: bytes) -> bytes:
        """Raw RSA private operation (EMV Book 2 Annex A2.1 signatures with recovery);
        ``message`` is as long as the modulus and below it."""
        ...

    # --- the vault's data key ---------------------------------------------------------

    def encrypt_data(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM under an AES key (random nonce prepended)."""
        ...

    def decrypt_data(self, label: str, ciphertext: bytes, aad: bytes) -> bytes:
        """The inverse of :meth:`encrypt_data`; HsmError if altered or under other aad."""
        ...

    def keyed_digest(self, label: str, data: bytes) -> bytes:
        """AES-CMAC (16 bytes) of ``data`` under an AES key: a deterministic, keyed
        look-up value, so a store can find a PAN without holding it in clear."""
        ...


class ArqcVerifier(ABC):
    """An HSM that verifies an ARQC and makes its ARPC in one operation, walking the key
    path once for both, as an HSM's verify-and-respond command does (Thales KQ, Futurex):
    :func:`verify_arqc_and_generate_arpc` calls it rather than the three operations."""

    @abstractmethod
    def verify_arqc_and_generate_arpc(
        self,
        path: KeyPath,
        data: bytes,
        padding: Literal["emv", "visa"],
        arqc: bytes,
        *,
        arpc: Arpc,
        arpc_session: Session | None,
    ) -> bytes | None:
        """As :func:`verify_arqc_and_generate_arpc`."""


def verify_arqc_and_generate_arpc(
    hsm: Hsm,
    path: KeyPath,
    data: bytes,
    padding: Literal["emv", "visa"],
    arqc: bytes,
    *,
    arpc: Arpc,
    arpc_session: Session | None,
) -> bytes | None:
    """Verify ``arqc`` over ``data`` (EMV Book 2 §8.1.2) under the key at ``path`` and, if
    it verifies, the ARPC (§8.2) under the same card's key with ``arpc_session`` (the
    AC's session, or None for the key at ``path`` without a session: the ICC master key
    or the CBP key); None if the ARQC does not verify.

    An :class:`ArqcVerifier` does it in one operation; any other HSM by
    :meth:`Hsm.verify_application_cryptogram`, then :meth:`Hsm.arpc_method_1` or
    :meth:`Hsm.arpc_method_2`."""
    if isinstance(hsm, ArqcVerifier):
        return hsm.verify_arqc_and_generate_arpc(
            path, data, padding, arqc, arpc=arpc, arpc_session=arpc_session
        )
    if not hsm.verify_application_cryptogram(path, data, padding, arqc):
        return None
    arpc_path = KeyPath(path.imk, path.icc, path.limited_use, arpc_session)
    if isinstance(arpc, ArpcMethod1):
        return hsm.arpc_method_1(arpc_path, arqc, arpc.arc)
    return hsm.arpc_method_2(arpc_path, arqc, arpc.csu, arpc.prop_auth_data)
