"""Key batches for one device, and the envelope that only that device opens (docs/cbp.md).

The token server hands limited-use keys to a phone in a *batch*: BER-TLV with
emvtap's private tags, one template per key, sealed in an *envelope* (v2):

    Z       = ECDH P-256 (ephemeral server key, device key), used as an AES-256 key
    h       = SHA-256("emvtap-cbp-wrap/2" || E || D)
    KEK     = AES-256-ECB(Z)['01' || h[0:15] || '02' || h[0:15]]
    KMAC    = AES-256-ECB(Z)['03' || h[0:15] || '04' || h[0:15]]
    payload = the batch with every key value (tag C3) replaced by AES-KWP(KEK, value)
    tag     = AES-CMAC(KMAC, header || payload)
    env     = "ECW2" || E || tag || payload

E and D are the uncompressed public points (65 bytes). Every step is a PKCS#11
mechanism a token has (ECDH1_DERIVE, AES_ECB_ENCRYPT_DATA, AES_KEY_WRAP_PAD,
AES_CMAC), so an HSM builds the envelope without a key leaving it in clear.
The header travels in clear and is authenticated: it binds the batch to its id,
token and device. The ephemeral key is passed in: this module is pure.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from cryptography.hazmat.primitives import keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emv import tlv
from emv.crypto import aes, mac
from emv.tlv import Tlv

__all__ = [
    "BatchHeader",
    "BatchKey",
    "BatchKind",
    "WrapError",
    "assemble_envelope",
    "decode_batch",
    "device_fingerprint",
    "encode_batch",
    "envelope_key_data",
    "load_point",
    "public_point",
    "unwrap_batch",
    "wrap_batch",
]

MAGIC = b"ECW2"
POINT_LENGTH = 65
TAG_LENGTH = 16
KEY_LENGTH = 16
WRAPPED_KEY_LENGTH = 24  # RFC 5649 wrapping of a 16-byte key
KDF_LABEL = b"emvtap-cbp-wrap/2"

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
    def from_tlv(cls, number: int, template: Tlv, value_length: int = KEY_LENGTH) -> BatchKey:
        where = f"batch key {number}"
        fields = tlv.index([template])
        kind, ident, value, count, amount, expiry = (
            _field(fields, tag, length, where)
            for tag, length in (
                (TAG_KIND, 1),
                (TAG_IDENT, 4),
                (TAG_VALUE, value_length),
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


def decode_batch(data: bytes, value_length: int = KEY_LENGTH) -> list[BatchKey]:
    """The keys of a batch (clear values of ``value_length`` bytes, or wrapped ones in
    an envelope's payload); :class:`WrapError` names the key and tag at fault."""
    try:
        objects = tlv.decode(data)
    except tlv.TlvError as err:
        raise WrapError(f"batch: {err}") from None
    keys = []
    for number, obj in enumerate(objects, 1):
        if obj.tag != TAG_KEY:
            raise WrapError(f"batch: object {number} has tag {tlv.tag_hex(obj.tag)}, expected E1")
        keys.append(BatchKey.from_tlv(number, obj, value_length))
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


def envelope_key_data(ephemeral_point: bytes, device_point: bytes) -> tuple[bytes, bytes]:
    """The 32-byte inputs that AES-256-ECB under Z turns into KEK and KMAC."""
    h = hashlib.sha256(KDF_LABEL + ephemeral_point + device_point).digest()[:15]
    return b"\x01" + h + b"\x02" + h, b"\x03" + h + b"\x04" + h


def _envelope_keys(
    shared: bytes, ephemeral_point: bytes, device_point: bytes
) -> tuple[bytes, bytes]:
    kek_data, kmac_data = envelope_key_data(ephemeral_point, device_point)
    return aes.encrypt_aes_ecb(shared, kek_data), aes.encrypt_aes_ecb(shared, kmac_data)


def assemble_envelope(ephemeral_point: bytes, tag: bytes, payload: bytes) -> bytes:
    """``"ECW2" || E || tag || payload``."""
    return MAGIC + ephemeral_point + tag + payload


def load_point(point: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its uncompressed point; :class:`WrapError` names ``what``."""
    if len(point) != POINT_LENGTH or point[0] != 0x04:
        raise WrapError(f"{what}: expected an uncompressed P-256 point of 65 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise WrapError(f"{what}: not a point on P-256") from None


def wrap_batch(
    device_point: bytes, header: bytes, batch: bytes, *, ephemeral_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """Seal the clear ``batch`` for the device whose public point is ``device_point``."""
    device_key = load_point(device_point, "device public key")
    ephemeral = public_point(ephemeral_key.public_key())
    kek, kmac = _envelope_keys(
        ephemeral_key.exchange(ec.ECDH(), device_key), ephemeral, device_point
    )
    sealed = [
        replace(key, value=keywrap.aes_key_wrap_with_padding(kek, key.value))
        for key in decode_batch(batch)
    ]
    payload = encode_batch(sealed)
    return assemble_envelope(ephemeral, mac.aes_cmac(kmac, header + payload), payload)


def unwrap_batch(device_key: ec.EllipticCurvePrivateKey, envelope: bytes, header: bytes) -> bytes:
    """Open an envelope with the device's private key: the clear batch. :class:`WrapError`
    if it is not ours, was altered, or was sealed under another header."""
    fixed = len(MAGIC) + POINT_LENGTH + TAG_LENGTH
    if len(envelope) < fixed or not envelope.startswith(MAGIC):
        raise WrapError("envelope: not an emvtap ECW2 envelope (bad magic or too short)")
    ephemeral = envelope[len(MAGIC) : len(MAGIC) + POINT_LENGTH]
    tag, payload = envelope[len(MAGIC) + POINT_LENGTH : fixed], envelope[fixed:]
    shared = device_key.exchange(ec.ECDH(), load_point(ephemeral, "envelope ephemeral key"))
    kek, kmac = _envelope_keys(shared, ephemeral, public_point(device_key.public_key()))
    if not hmac.compare_digest(mac.aes_cmac(kmac, header + payload), tag):
        raise WrapError(
            "envelope: authentication failed (another device's batch, or altered in transit)"
        )
    try:
        keys = [
            replace(key, value=keywrap.aes_key_unwrap_with_padding(kek, key.value))
            for key in decode_batch(payload, WRAPPED_KEY_LENGTH)
        ]
    except keywrap.InvalidUnwrap:
        raise WrapError("envelope: a key does not unwrap under the envelope's KEK") from None
    return encode_batch(keys)
