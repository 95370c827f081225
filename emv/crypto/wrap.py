"""Key batches for one device, and the envelope that only that device opens (docs/cbp.md).

The token server hands limited-use keys to a phone in a *batch*: BER-TLV with
emvtap's private tags, one template per key, sealed in an *envelope*:

    Z    = ECDH P-256 (ephemeral server key, device key)
    KEK  = HKDF-SHA256(Z, salt = '', info = "emvtap-cbp-wrap/1" || E || D)   (32 bytes)
    env  = "ECW1" || E || nonce || AES-256-GCM(KEK, nonce, batch, aad = header)

E and D are the uncompressed public points (65 bytes). The header travels in
clear and is authenticated: it binds the batch to its id, token and device.
Randomness (the ephemeral key, the nonce) is passed in: this module is pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from emv import tlv
from emv.tlv import Tlv

__all__ = [
    "BatchHeader",
    "BatchKey",
    "BatchKind",
    "WrapError",
    "decode_batch",
    "device_fingerprint",
    "encode_batch",
    "public_point",
    "unwrap_batch",
    "wrap_batch",
]

MAGIC = b"ECW1"
POINT_LENGTH = 65
NONCE_LENGTH = 12
HKDF_INFO = b"emvtap-cbp-wrap/1"

# emvtap private tags (context-specific class, docs/cbp.md "The batch").
TAG_HEADER, TAG_KEY = 0xE0, 0xE1
TAG_KIND, TAG_IDENT, TAG_VALUE = 0xC1, 0xC2, 0xC3
TAG_MAX_TRANSACTIONS, TAG_MAX_AMOUNT, TAG_EXPIRY = 0xC4, 0xC5, 0xC6
TAG_BATCH_ID, TAG_TOKEN, TAG_DEVICE, TAG_BATCH_KIND = 0xC7, 0xC8, 0xC9, 0xCA


class WrapError(ValueError):
    """A batch or envelope that cannot be used: says which field or step failed."""


class BatchKind(IntEnum):
    """What a key in a batch is (the same bytes as the CBP key domains)."""

    LUK = 0x4C
    SUK = 0x53
    LOG = 0x54  # the device's transaction log MAC key (ident: fingerprint's first 4 bytes)
    SUK_UV = 0x55  # in a batch always masked with the PIN mask (docs/cbp.md)


def public_point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed P-256 point (65 bytes) of a public key."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def device_fingerprint(point: bytes) -> bytes:
    """SHA-256 of a device's uncompressed public point: how the server names a device."""
    return hashlib.sha256(point).digest()


# --- the batch -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchKey:
    """One key of a batch. ``ident`` is the key index (LUK) or '0000' || ATC (SUK)."""

    kind: BatchKind
    ident: bytes
    value: bytes
    max_transactions: int
    max_amount: int
    expiry_hour: int

    def to_tlv(self) -> Tlv:
        p = Tlv.primitive
        return Tlv.template(
            TAG_KEY,
            p(TAG_KIND, bytes((self.kind,))),
            p(TAG_IDENT, self.ident),
            p(TAG_VALUE, self.value),
            p(TAG_MAX_TRANSACTIONS, self.max_transactions.to_bytes(2, "big")),
            p(TAG_MAX_AMOUNT, bytes.fromhex(f"{self.max_amount:012d}")),
            p(TAG_EXPIRY, self.expiry_hour.to_bytes(3, "big")),
        )

    @classmethod
    def from_tlv(cls, number: int, template: Tlv) -> BatchKey:
        where = f"batch key {number}"
        fields = tlv.index([template])
        kind, ident, value, count, amount, expiry = (
            _field(fields, tag, length, where)
            for tag, length in (
                (TAG_KIND, 1),
                (TAG_IDENT, 4),
                (TAG_VALUE, 16),
                (TAG_MAX_TRANSACTIONS, 2),
                (TAG_MAX_AMOUNT, 6),
                (TAG_EXPIRY, 3),
            )
        )
        try:
            batch_kind = BatchKind(kind[0])
        except ValueError:
            raise WrapError(f"{where}: kind {kind.hex().upper()} is not 4C, 53, 54 or 55") from None
        if not amount.hex().isdigit():
            raise WrapError(f"{where}: maximum amount {amount.hex().upper()} is not BCD")
        return cls(
            batch_kind,
            ident,
            value,
            int.from_bytes(count, "big"),
            int(amount.hex()),
            int.from_bytes(expiry, "big"),
        )


def _field(fields: dict[int, bytes], tag: int, length: int, where: str) -> bytes:
    value = fields.get(tag)
    if value is None:
        raise WrapError(f"{where}: tag {tlv.tag_hex(tag)} is missing")
    if len(value) != length:
        raise WrapError(
            f"{where}: tag {tlv.tag_hex(tag)} has {len(value)} bytes, expected {length}"
        )
    return value


def encode_batch(keys: Sequence[BatchKey]) -> bytes:
    """The batch plaintext: one E1 template per key."""
    return tlv.encode(key.to_tlv() for key in keys)


def decode_batch(data: bytes) -> list[BatchKey]:
    """The keys of a batch plaintext; :class:`WrapError` names the key and tag at fault."""
    try:
        objects = tlv.decode(data)
    except tlv.TlvError as err:
        raise WrapError(f"batch: {err}") from None
    keys = []
    for number, obj in enumerate(objects, 1):
        if obj.tag != TAG_KEY:
            raise WrapError(f"batch: object {number} has tag {tlv.tag_hex(obj.tag)}, expected E1")
        keys.append(BatchKey.from_tlv(number, obj))
    return keys


@dataclass(frozen=True)
class BatchHeader:
    """The clear, authenticated part: which batch, for which token and which device."""

    batch_id: bytes
    token: bytes
    device: bytes
    kind: BatchKind

    def to_bytes(self) -> bytes:
        return Tlv.template(
            TAG_HEADER,
            Tlv.primitive(TAG_BATCH_ID, self.batch_id),
            Tlv.primitive(TAG_TOKEN, self.token),
            Tlv.primitive(TAG_DEVICE, self.device),
            Tlv.primitive(TAG_BATCH_KIND, bytes((self.kind,))),
        ).to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchHeader:
        try:
            objects = tlv.decode(data)
        except tlv.TlvError as err:
            raise WrapError(f"batch header: {err}") from None
        if len(objects) != 1 or objects[0].tag != TAG_HEADER:
            raise WrapError("batch header: expected one E0 template")
        fields = tlv.index(objects)
        kind = _field(fields, TAG_BATCH_KIND, 1, "batch header")[0]
        try:
            batch_kind = BatchKind(kind)
        except ValueError:
            raise WrapError(f"batch header: kind {kind:02X} is not 4C, 53, 54 or 55") from None
        return cls(
            _field(fields, TAG_BATCH_ID, 8, "batch header"),
            fields.get(TAG_TOKEN, b""),
            _field(fields, TAG_DEVICE, 32, "batch header"),
            batch_kind,
        )


# --- the envelope --------------------------------------------------------------------------


def _kek(shared: bytes, ephemeral: bytes, device: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO + ephemeral + device
    )
    return hkdf.derive(shared)


def _load_point(point: bytes, what: str) -> ec.EllipticCurvePublicKey:
    if len(point) != POINT_LENGTH or point[0] != 0x04:
        raise WrapError(f"{what}: expected an uncompressed P-256 point of 65 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise WrapError(f"{what}: not a point on P-256") from None


def wrap_batch(
    device_point: bytes,
    header: bytes,
    batch: bytes,
    *,
    ephemeral_key: ec.EllipticCurvePrivateKey,
    nonce: bytes,
) -> bytes:
    """Seal ``batch`` for the device whose public point is ``device_point``."""
    if len(nonce) != NONCE_LENGTH:
        raise WrapError(f"nonce: expected {NONCE_LENGTH} bytes, got {len(nonce)}")
    device_key = _load_point(device_point, "device public key")
    ephemeral = public_point(ephemeral_key.public_key())
    shared = ephemeral_key.exchange(ec.ECDH(), device_key)
    sealed = AESGCM(_kek(shared, ephemeral, device_point)).encrypt(nonce, batch, header)
    return MAGIC + ephemeral + nonce + sealed


def unwrap_batch(device_key: ec.EllipticCurvePrivateKey, envelope: bytes, header: bytes) -> bytes:
    """Open an envelope with the device's private key; :class:`WrapError` if it is not ours,
    was altered, or was sealed under another header."""
    fixed = len(MAGIC) + POINT_LENGTH + NONCE_LENGTH
    if len(envelope) < fixed + 16 or not envelope.startswith(MAGIC):
        raise WrapError("envelope: not an emvtap ECW1 envelope (bad magic or too short)")
    ephemeral = envelope[len(MAGIC) : len(MAGIC) + POINT_LENGTH]
    nonce = envelope[len(MAGIC) + POINT_LENGTH : fixed]
    shared = device_key.exchange(ec.ECDH(), _load_point(ephemeral, "envelope ephemeral key"))
    device = public_point(device_key.public_key())
    try:
        return AESGCM(_kek(shared, ephemeral, device)).decrypt(nonce, envelope[fixed:], header)
    except InvalidTag:
        raise WrapError(
            "envelope: authentication failed (another device's batch, or altered in transit)"
        ) from None
