"""Key batches and their device envelope (docs/cbp.md "The batch and its envelope")."""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from emv.crypto import wrap
from emv.crypto.wrap import BatchHeader, BatchKey, BatchKind, WrapError

DEVICE = ec.generate_private_key(ec.SECP256R1())
OTHER_DEVICE = ec.generate_private_key(ec.SECP256R1())
DEVICE_POINT = wrap.public_point(DEVICE.public_key())
KEYS = [
    BatchKey(BatchKind.LUK, bytes.fromhex("00EA6000"), bytes(range(16)), 10, 50_000, 60_024),
    BatchKey(
        BatchKind.SUK, bytes.fromhex("00000012"), bytes(range(16, 32)), 1, 999_999_999_999, 60_100
    ),
]
HEADER = BatchHeader(b"batch-01", b"token-1", wrap.device_fingerprint(DEVICE_POINT), BatchKind.LUK)


def _seal(batch: bytes, header: bytes = HEADER.to_bytes()) -> bytes:
    return wrap.wrap_batch(
        DEVICE_POINT,
        header,
        batch,
        ephemeral_key=ec.generate_private_key(ec.SECP256R1()),
    )


def test_batch_round_trip() -> None:
    assert wrap.decode_batch(wrap.encode_batch(KEYS)) == KEYS
    assert BatchHeader.from_bytes(HEADER.to_bytes()) == HEADER


def test_only_the_device_opens_its_envelope() -> None:
    batch = wrap.encode_batch(KEYS)
    envelope = _seal(batch)
    assert wrap.unwrap_batch(DEVICE, envelope, HEADER.to_bytes()) == batch
    assert all(key.value not in envelope for key in KEYS)
    with pytest.raises(WrapError, match="authentication failed"):
        wrap.unwrap_batch(OTHER_DEVICE, envelope, HEADER.to_bytes())


def test_the_header_is_bound_to_the_envelope() -> None:
    envelope = _seal(wrap.encode_batch(KEYS))
    other = BatchHeader(b"batch-02", b"token-1", HEADER.device, BatchKind.LUK)
    with pytest.raises(WrapError, match="authentication failed"):
        wrap.unwrap_batch(DEVICE, envelope, other.to_bytes())


@settings(max_examples=60)
@given(st.data())
def test_any_altered_byte_is_detected(data: st.DataObject) -> None:
    envelope = bytearray(_seal(wrap.encode_batch(KEYS)))
    position = data.draw(st.integers(0, len(envelope) - 1))
    envelope[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WrapError):
        wrap.unwrap_batch(DEVICE, bytes(envelope), HEADER.to_bytes())


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (b"XXXX" + bytes(100), "not an emvtap ECW2 envelope"),
        (b"ECW2" + bytes(10), "too short"),
        (b"ECW2" + b"\x04" + bytes(64) + bytes(16) + bytes(32), "not a point on P-256"),
        (b"ECW2" + b"\x02" + bytes(64) + bytes(16) + bytes(32), "uncompressed P-256 point"),
    ],
)
def test_malformed_envelopes(envelope: bytes, message: str) -> None:
    with pytest.raises(WrapError, match=message):
        wrap.unwrap_batch(DEVICE, envelope, HEADER.to_bytes())


def test_wrap_checks_its_inputs() -> None:
    with pytest.raises(WrapError, match="device public key"):
        wrap.wrap_batch(bytes(65), b"", b"", ephemeral_key=DEVICE)


def test_the_envelope_is_built_from_token_mechanisms() -> None:
    """docs/cbp.md v2, recomputed step by step with cryptography's primitives: ECDH,
    AES-ECB key derivation, RFC 5649 key wrap, AES-CMAC (RFC 4493)."""
    from cryptography.hazmat.primitives import cmac, hashes, keywrap  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415

    ephemeral = ec.generate_private_key(ec.SECP256R1())
    header = HEADER.to_bytes()
    envelope = wrap.wrap_batch(
        DEVICE_POINT, header, wrap.encode_batch(KEYS), ephemeral_key=ephemeral
    )
    point = wrap.public_point(ephemeral.public_key())
    assert envelope[:4] == b"ECW2" and envelope[4:69] == point
    z = ephemeral.exchange(ec.ECDH(), DEVICE.public_key())
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"emvtap-cbp-wrap/2" + point + DEVICE_POINT)
    h = digest.finalize()[:15]
    ecb = Cipher(algorithms.AES(z), modes.ECB()).encryptor()
    kek = ecb.update(b"\x01" + h + b"\x02" + h)
    kmac = ecb.update(b"\x03" + h + b"\x04" + h)
    payload = envelope[85:]
    signer = cmac.CMAC(algorithms.AES(kmac))
    signer.update(header + payload)
    assert envelope[69:85] == signer.finalize()
    sealed = wrap.decode_batch(payload, wrap.WRAPPED_KEY_LENGTH)
    assert [keywrap.aes_key_unwrap_with_padding(kek, k.value) for k in sealed] == [
        k.value for k in KEYS
    ]


@pytest.mark.parametrize(
    ("hex_batch", "message"),
    [
        ("5A01FF", "object 1 has tag 5A, expected E1"),
        (wrap.encode_batch(KEYS[:1]).hex().upper().replace("C1014C", "C10199"), "kind 99"),
        ("E103C1014C", "batch key 1: tag C2 is missing"),
        ("E1", "batch: TLV error at offset 1"),
    ],
)
def test_malformed_batches_name_key_and_tag(hex_batch: str, message: str) -> None:
    with pytest.raises(WrapError, match=message):
        wrap.decode_batch(bytes.fromhex(hex_batch))


def test_bad_amount_and_header() -> None:
    raw = bytearray(wrap.encode_batch(KEYS[:1]))
    at = raw.index(bytes.fromhex("C506")) + 2
    raw[at] = 0xAB
    with pytest.raises(WrapError, match=r"maximum amount .* is not BCD"):
        wrap.decode_batch(bytes(raw))
    with pytest.raises(WrapError, match="expected one E0 template"):
        BatchHeader.from_bytes(bytes.fromhex("5A0101"))


@given(st.binary(max_size=64))
def test_random_batches_give_only_wrap_error(data: bytes) -> None:
    with contextlib.suppress(WrapError):
        wrap.decode_batch(data)
