"""SoftHsm: the embedded :class:`~hce.hsm.interface.Hsm` backend, in pure ``cryptography``.

Keys live in memory and in one key file sealed under a 32-byte master key
(``hce.hsm.keyfile``); every change rewrites the file atomically before the
call returns. The arithmetic is that of ``emv.crypto``, called on the clear keys
inside this process: ICC master keys (EMV Book 2 Annex A1.4), session keys
(A1.3.1 and the M/Chip variant), CBP limited-use keys (docs/cbp.md),
cryptograms (§8.1), ARPC (§8.2), RSA signatures with recovery (Annex A2.1).

Construct it with :meth:`SoftHsm.create` (a new key file) or :meth:`SoftHsm.open`
(an existing one), the master key coming from :func:`hce.hsm.keyfile.read_master_key`.
No key value ever appears in an exception, a repr or a log.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emv.crypto import ac, aes, cbp, des, kd, mac, oda, wrap
from emv.crypto.wrap import BatchKind
from hce.hsm import keyfile
from hce.hsm.interface import (
    Arpc,
    ArpcMethod1,
    ArqcVerifier,
    BatchRequest,
    CommonSession,
    HsmError,
    IccMaster,
    KeyInfo,
    KeyKind,
    KeyNotFound,
    KeyPath,
    MastercardSession,
    RsaPublic,
    Session,
)

__all__ = ["SoftHsm"]

KEY_LENGTHS = {KeyKind.DES2: 16, KeyKind.AES128: 16, KeyKind.AES256: 32}
AES_KINDS = (KeyKind.AES128, KeyKind.AES256)
KCV_LENGTH = 3
GCM_NONCE_LENGTH = 12
GCM_TAG_LENGTH = 16
FILE_VERSION = 1


@dataclass(frozen=True)
class _SecretKey:
    kind: KeyKind
    value: bytes = field(repr=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @cached_property
    def _tdea(self) -> des.TdeaEcb:
        return des.TdeaEcb(self.value)

    def derive_des2(self, data: bytes) -> bytes:
        """The DES2 key this DES2 key derives from ``data``
        (:func:`emv.crypto.kd.derive_des2_with`), its cipher made at the first call and
        kept, calls taking turns: an issuer master key derives every ICC master key under
        it (Book 2 A1.4)."""
        with self._lock:
            return kd.derive_des2_with(self._tdea, data)

    @cached_property
    def _cmac(self) -> mac.AesCmacKey:
        return mac.AesCmacKey(self.value)

    def cmac(self, data: bytes) -> bytes:
        """AES-CMAC (RFC 4493) of ``data`` under this AES key, with the context made at
        the first call and kept: the look-up key digests the PAN of every authorisation."""
        with self._lock:
            return self._cmac.mac(data)


_Key = _SecretKey | oda.RsaPrivateKey


def _kcv(kind: KeyKind, value: bytes) -> bytes:
    """DES2: 3DES-ECB of 8 zero bytes; AES: AES-ECB of 16 zero bytes; the leftmost 3 bytes."""
    if kind is KeyKind.DES2:
        return des.kcv(value, KCV_LENGTH)
    return aes.kcv(value, KCV_LENGTH)


def _describe(key: _Key) -> str:
    return key.kind.value if isinstance(key, _SecretKey) else "an RSA key"


@contextmanager
def _refusing_bad_input(operation: str, label: str) -> Iterator[None]:
    """Report ``emv.crypto``'s argument errors (lengths, digits, ranges) as HsmError
    naming the operation and the key label; their messages carry no key value."""
    try:
        yield
    except (ValueError, OverflowError) as err:
        raise HsmError(f"{operation} with key {label!r}: {err}") from None


def _card_key(imk: _SecretKey, path: KeyPath) -> bytes:
    """The card's key on ``path`` under the issuer master key: the ICC master key
    DES3(IMK)[Y || Y xor 'FF'x8] with odd parity (Book 2 A1.4.1 option A / A1.4.2
    option B), then the CBP key of docs/cbp.md."""
    icc = path.icc
    key = imk.derive_des2(kd.icc_mk_derivation_data(icc.pan, icc.psn, icc.option))
    if path.limited_use is not None:
        domain = cbp.KeyDomain(path.limited_use.kind)
        key = cbp.diversify_cbp_key(key, domain, path.limited_use.ident)
    return key


def _session_key(key: bytes, session: Session | None) -> bytes:
    """The session key of ``key`` (Book 2 A1.3.1, or M/Chip's R = ATC || '0000' || UN);
    ``key`` itself when there is no session."""
    if isinstance(session, CommonSession):
        if len(session.r) != des.BLOCK_SIZE:
            raise ValueError(f"r must be {des.BLOCK_SIZE} bytes long, got {len(session.r)}")
        return kd.derive_common_sk(key, session.r)
    if isinstance(session, MastercardSession):
        return kd.derive_mastercard_sk(key, session.atc, session.un)
    return key


def _walk(imk: _SecretKey, path: KeyPath) -> bytes:
    """The working key at ``path`` under the issuer master key."""
    return _session_key(_card_key(imk, path), path.session)


def _arpc(key: bytes, arqc: bytes, arpc: Arpc, mac_key: mac.RetailMacKey | None = None) -> bytes:
    """The ARPC of ``arqc`` under ``key``: method 1 (Book 2 §8.2.1) or 2 (§8.2.2), the
    MAC of method 2 with ``mac_key`` when the key's MAC ciphers are made already."""
    if isinstance(arpc, ArpcMethod1):
        return ac.generate_arpc_1(key, arqc, arpc.arc)
    mac_key = mac_key or mac.RetailMacKey(key)
    return ac.generate_arpc_2_with(mac_key, arqc, arpc.csu, arpc.prop_auth_data)


def _rsa_key(p: int, q: int, exponent: int) -> oda.RsaPrivateKey:
    """The CRT private key from its primes and public exponent."""
    return oda.RsaPrivateKey(
        oda.RsaPublicKey(p * q, exponent),
        p,
        q,
        pow(exponent, -1, p - 1),
        pow(exponent, -1, q - 1),
        pow(q, -1, p),
    )


def _rsa_public(label: str, key: oda.RsaPrivateKey) -> RsaPublic:
    public = key.public_key
    return RsaPublic(label, public.modulus.to_bytes(public.size, "big"), public.exponent)


def _dump(keys: dict[str, _Key]) -> bytes:
    """The key file plaintext: JSON with hex values (sealed by ``keyfile``)."""
    symmetric = {
        label: {"kind": key.kind.value, "value": key.value.hex()}
        for label, key in keys.items()
        if isinstance(key, _SecretKey)
    }
    rsa = {
        label: {"p": f"{key.p:x}", "q": f"{key.q:x}", "e": key.public_key.exponent}
        for label, key in keys.items()
        if isinstance(key, oda.RsaPrivateKey)
    }
    document = {"version": FILE_VERSION, "symmetric": symmetric, "rsa": rsa}
    return json.dumps(document, sort_keys=True).encode("ascii")


def _load(path: Path, plaintext: bytes) -> dict[str, _Key]:
    try:
        document = json.loads(plaintext)
        if document["version"] != FILE_VERSION:
            raise HsmError(f"key file {path}: version {document['version']} is not supported")
        keys: dict[str, _Key] = {
            label: _SecretKey(KeyKind(entry["kind"]), bytes.fromhex(entry["value"]))
            for label, entry in document["symmetric"].items()
        }
        for label, entry in document["rsa"].items():
            keys[label] = _rsa_key(int(entry["p"], 16), int(entry["q"], 16), entry["e"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise HsmError(f"key file {path}: the contents are not a soft HSM key set") from None
    return keys


class SoftHsm(ArqcVerifier):
    """The embedded HSM: keys in memory and in a key file sealed under a master key.

    Thread-safe: one lock guards the key set and the key file; the cryptography
    runs outside it on immutable key values, on the cipher a DES2 key keeps for the
    derivations under it and on the CMAC context an AES key keeps for its digests,
    which calls take turns on.
    """

    def __init__(
        self,
        path: Path,
        master_key: bytes,
        keys: dict[str, _Key],
        rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
    ) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self._path = path
        self._master_key = master_key
        self._keys = keys
        self._rsa_keys = rsa_keys
        self._lock = threading.Lock()

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        master_key: bytes,
        *,
        rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
    ) -> SoftHsm:
        """A new, empty HSM whose key file is ``path`` (HsmError if it exists);
        :meth:`generate_rsa_key` takes its keys from ``rsa_keys`` (the scenario runner
        passes its key pool, :mod:`scenarios.keypool`)."""
        key_file = Path(path)
        if key_file.exists():
            raise HsmError(f"key file {key_file}: already exists")
        keyfile.write_key_file(key_file, master_key, _dump({}))
        return cls(key_file, master_key, {}, rsa_keys)

    @classmethod
    def open(cls, path: str | os.PathLike[str], master_key: bytes) -> SoftHsm:
        """The HSM of an existing key file; refuses a wrong master key or an altered file."""
        key_file = Path(path)
        plaintext = keyfile.read_key_file(key_file, master_key)
        return cls(key_file, master_key, _load(key_file, plaintext))

    def __repr__(self) -> str:
        return f"SoftHsm({str(self._path)!r}, {len(self._keys)} keys)"

    # --- the key set ----------------------------------------------------------------------

    def _get(self, label: str) -> _Key:
        with self._lock:
            key = self._keys.get(label)
        if key is None:
            raise KeyNotFound(f"no key labelled {label!r}")
        return key

    def _secret(
        self, operation: str, label: str, kinds: Sequence[KeyKind] = tuple(KeyKind)
    ) -> _SecretKey:
        key = self._get(label)
        if not isinstance(key, _SecretKey) or key.kind not in kinds:
            expected = " or ".join(kind.value for kind in kinds)
            raise HsmError(f"{operation}: key {label!r} is {_describe(key)}, expected {expected}")
        return key

    def _rsa(self, operation: str, label: str) -> oda.RsaPrivateKey:
        key = self._get(label)
        if not isinstance(key, oda.RsaPrivateKey):
            raise HsmError(f"{operation}: key {label!r} is {_describe(key)}, not an RSA key")
        return key

    def _store(self, label: str, key: _Key) -> None:
        """Add a key and rewrite the key file; on failure the key set is unchanged."""
        if not label:
            raise HsmError("a key label must not be empty")
        with self._lock:
            if label in self._keys:
                raise HsmError(f"label {label!r} is taken")
            updated = {**self._keys, label: key}
            keyfile.write_key_file(self._path, self._master_key, _dump(updated))
            self._keys = updated

    # --- symmetric keys -------------------------------------------------------------------

    def _store_secret(self, label: str, key: _SecretKey) -> KeyInfo:
        self._store(label, key)
        return KeyInfo(label, key.kind, _kcv(key.kind, key.value))

    def generate_key(self, label: str, kind: KeyKind) -> KeyInfo:
        value = os.urandom(KEY_LENGTHS[kind])
        if kind is KeyKind.DES2:
            value = des.adjust_parity(value)
        return self._store_secret(label, _SecretKey(kind, value))

    def import_key(self, label: str, kind: KeyKind, value: bytes, kcv: bytes) -> KeyInfo:
        if len(value) != KEY_LENGTHS[kind]:
            raise HsmError(
                f"import_key {label!r}: a {kind.value} key is {KEY_LENGTHS[kind]} bytes,"
                f" got {len(value)}"
            )
        if not hmac.compare_digest(_kcv(kind, value), kcv):
            raise HsmError(f"import_key {label!r}: the key does not match the check value given")
        return self._store_secret(label, _SecretKey(kind, value))

    def key_info(self, label: str) -> KeyInfo:
        key = self._secret("key_info", label)
        return KeyInfo(label, key.kind, _kcv(key.kind, key.value))

    def labels(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    # --- cryptograms ----------------------------------------------------------------------

    def _working_key(self, operation: str, path: KeyPath) -> bytes:
        imk = self._secret(operation, path.imk, (KeyKind.DES2,))
        with _refusing_bad_input(operation, path.imk):
            return _walk(imk, path)

    def application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"]
    ) -> bytes:
        """The cryptogram of EMV Book 2 §8.1.2 (MAC of A1.2.1) under the key at ``path``."""
        key = self._working_key("application_cryptogram", path)
        with _refusing_bad_input("application_cryptogram", path.imk):
            return ac.generate_ac(key, data, padding)

    def verify_application_cryptogram(
        self, path: KeyPath, data: bytes, padding: Literal["emv", "visa"], cryptogram: bytes
    ) -> bool:
        return hmac.compare_digest(self.application_cryptogram(path, data, padding), cryptogram)

    def arpc_method_1(self, path: KeyPath, arqc: bytes, arc: bytes) -> bytes:
        """ARPC method 1 (EMV Book 2 §8.2.1) under the key at ``path``."""
        key = self._working_key("arpc_method_1", path)
        with _refusing_bad_input("arpc_method_1", path.imk):
            return ac.generate_arpc_1(key, arqc, arc)

    def arpc_method_2(
        self, path: KeyPath, arqc: bytes, csu: bytes, prop_auth_data: bytes = b""
    ) -> bytes:
        """ARPC method 2 (EMV Book 2 §8.2.2) under the key at ``path``."""
        key = self._working_key("arpc_method_2", path)
        with _refusing_bad_input("arpc_method_2", path.imk):
            return ac.generate_arpc_2(key, arqc, csu, prop_auth_data)

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
        """Verify the ARQC (Book 2 §8.1.2) under the key at ``path`` and, if it verifies,
        make the ARPC (§8.2) under the key with ``arpc_session``
        (:func:`hce.hsm.interface.verify_arqc_and_generate_arpc`). The card's key is
        derived once for both; when the ARPC is under the AC's session key, so is that
        key, and a method 2 ARPC uses the MAC ciphers of the ARQC's."""
        operation = "verify_arqc_and_generate_arpc"
        imk = self._secret(operation, path.imk, (KeyKind.DES2,))
        with _refusing_bad_input(operation, path.imk):
            card_key = _card_key(imk, path)
            ac_key = _session_key(card_key, path.session)
            mac_key = mac.RetailMacKey(ac_key)
            if not hmac.compare_digest(ac.generate_ac_with(mac_key, data, padding), arqc):
                return None
            if arpc_session == path.session:
                return _arpc(ac_key, arqc, arpc, mac_key)
            return _arpc(_session_key(card_key, arpc_session), arqc, arpc)

    def key_check_value(self, path: KeyPath) -> bytes:
        return des.kcv(self._working_key("key_check_value", path), KCV_LENGTH)

    # --- device batches -------------------------------------------------------------------

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
        """Derive, mask, encode and seal a batch (docs/cbp.md "The batch and its envelope")
        with a fresh ephemeral P-256 key and a random nonce."""
        issuer_key = self._secret("wrap_batch", imk, (KeyKind.DES2,))
        with _refusing_bad_input("wrap_batch", imk):
            batch = [_batch_key(issuer_key, imk, icc, request, pin_key) for request in keys]
            return wrap.wrap_batch(
                device_point,
                header,
                wrap.encode_batch(batch),
                ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
            )

    # --- RSA ------------------------------------------------------------------------------

    def generate_rsa_key(self, label: str, bits: int, exponent: int) -> RsaPublic:
        with _refusing_bad_input("generate_rsa_key", label):
            key = self._rsa_keys(bits, exponent)
        self._store(label, key)
        return _rsa_public(label, key)

    def rsa_public_key(self, label: str) -> RsaPublic:
        return _rsa_public(label, self._rsa("rsa_public_key", label))

    def rsa_sign_raw(self, label: str, message: bytes) -> bytes:
        """The RSA private operation of EMV Book 2 Annex A2.1.2 (CRT)."""
        key = self._rsa("rsa_sign_raw", label)
        with _refusing_bad_input("rsa_sign_raw", label):
            return oda.rsa_sign(key, message)

    # --- the vault's data key -------------------------------------------------------------

    def encrypt_data(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        key = self._secret("encrypt_data", label, AES_KINDS).value
        nonce = os.urandom(GCM_NONCE_LENGTH)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def decrypt_data(self, label: str, ciphertext: bytes, aad: bytes) -> bytes:
        key = self._secret("decrypt_data", label, AES_KINDS).value
        failed = HsmError(f"decrypt_data with key {label!r}: altered, or sealed under other aad")
        if len(ciphertext) < GCM_NONCE_LENGTH + GCM_TAG_LENGTH:
            raise failed
        nonce, sealed = ciphertext[:GCM_NONCE_LENGTH], ciphertext[GCM_NONCE_LENGTH:]
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise failed from None

    def keyed_digest(self, label: str, data: bytes) -> bytes:
        return self._secret("keyed_digest", label, AES_KINDS).cmac(data)


def _batch_key(
    issuer_key: _SecretKey,
    imk: str,
    icc: IccMaster,
    request: BatchRequest,
    pin_key: bytes | None,
) -> wrap.BatchKey:
    """One batch entry: the CBP key, masked with the PIN mask if it is an SUK-UV."""
    value = _walk(issuer_key, KeyPath(imk, icc, request.key))
    if request.key.kind is BatchKind.SUK_UV:
        if pin_key is None:
            raise HsmError("wrap_batch: an SUK-UV is only handed out masked: give pin_key")
        value = cbp.mask_key(value, pin_key)
    return wrap.BatchKey(
        request.key.kind,
        request.key.ident,
        value,
        request.max_transactions,
        request.max_amount,
        request.expiry_hour,
    )
