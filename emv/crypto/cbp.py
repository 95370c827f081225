"""The emvtap CBP profile v1: limited-use keys and their cryptograms (docs/cbp.md).

Cloud-based payments keep only limited-use keys on the phone. This module is
the profile's arithmetic, pure and shared by the HSM (which computes the server
side inside), the wallet (the card side) and the tests:

* key diversification from the ICC master key MK-AC (EMV Book 2 Annex A1.4.1
  Option A gives MK-AC; the diversification reuses its last step):
  :func:`derive_luk` (Visa-like, by key index), :func:`derive_suk` and
  :func:`derive_suk_uv` (Mastercard-like, one per ATC);
* the key index, the PIN key that masks the user-verified key;
* the Issuer Application Data of the two cryptogram versions and the cryptograms
  themselves (EMV Book 2 §8.1 with the session key of Annex A1.3.1 for CBP-V).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from emv.crypto import ac, aes, des, kd, mac
from emv.crypto.checks import require_digits, require_length

__all__ = [
    "CVR_CDCVM_PERFORMED",
    "CVR_CDCVM_SUCCESSFUL",
    "CVR_KEYS_LOW",
    "CVR_OFFLINE_APPROVED",
    "CbpError",
    "CbpMIad",
    "CbpVIad",
    "CryptogramVersion",
    "KeyDomain",
    "KeyIndex",
    "MKeyType",
    "cbp_m_arqc",
    "cbp_v_arqc",
    "cbp_v_session_key",
    "chain_log_mac",
    "derive_log_key",
    "derive_luk",
    "derive_suk",
    "derive_suk_uv",
    "diversification_data",
    "diversify_cbp_key",
    "mask_key",
    "parse_iad",
    "pin_key",
    "unmask_key",
]

PIN_KEY_ITERATIONS = 10_000
PIN_KEY_SALT = b"emvtap-cbp-pin/1"
KEY_LENGTH = 16

CVR_CDCVM_PERFORMED = 0x80
CVR_CDCVM_SUCCESSFUL = 0x40
CVR_KEYS_LOW = 0x20
CVR_OFFLINE_APPROVED = 0x10


class CbpError(ValueError):
    """Malformed CBP data: names the field and what is wrong with it."""


class KeyDomain(IntEnum):
    """The first byte of a diversification input: which family a key belongs to."""

    LUK = 0x4C  # 'L'
    SUK = 0x53  # 'S'
    LOG = 0x54  # 'T': the device's transaction log MAC key
    SUK_UV = 0x55  # 'U'


class CryptogramVersion(IntEnum):
    """The first byte of a CBP Issuer Application Data."""

    CBP_V = 0xC1
    CBP_M = 0xC2


class MKeyType(IntEnum):
    """CBP-M: which single-use key made the cryptogram."""

    SUK = 0x00
    SUK_UV = 0x01


# --- keys ----------------------------------------------------------------------------------


def diversify_cbp_key(mk: bytes, domain: KeyDomain, value: bytes) -> bytes:
    """KEY = DES3(MK)[Y] || DES3(MK)[Y xor 'FF'x8], odd parity, with
    Y = domain || value (4 bytes) || '000000' (docs/cbp.md "Keys").

    The same shape as the last step of EMV Book 2 A1.4.1 Option A, so an HSM
    computes it as one encrypt-data derivation over Y || (Y xor 'FF'x8).
    """
    require_length("mk", mk, KEY_LENGTH)
    return des.adjust_parity(des.encrypt_tdes_ecb(mk, diversification_data(domain, value)))


def diversification_data(domain: KeyDomain, value: bytes) -> bytes:
    """Y || (Y xor 'FF'x8) with Y = domain || value (4 bytes) || '000000': the input an
    HSM's encrypt-data derivation takes to give the same key as :func:`diversify_cbp_key`."""
    require_length("value", value, 4)
    return kd.with_inverse(bytes((domain,)) + value + bytes(3))


def derive_luk(mk_ac: bytes, key_index: bytes) -> bytes:
    """The Visa-like limited-use key for ``key_index`` (4 bytes, see :class:`KeyIndex`)."""
    return diversify_cbp_key(mk_ac, KeyDomain.LUK, key_index)


def derive_suk(mk_ac: bytes, atc: bytes) -> bytes:
    """The Mastercard-like single-use key for one ATC (2 bytes)."""
    require_length("atc", atc, 2)
    return diversify_cbp_key(mk_ac, KeyDomain.SUK, b"\x00\x00" + atc)


def derive_suk_uv(mk_ac: bytes, atc: bytes) -> bytes:
    """The user-verified single-use key for one ATC: only ever handed out masked."""
    require_length("atc", atc, 2)
    return diversify_cbp_key(mk_ac, KeyDomain.SUK_UV, b"\x00\x00" + atc)


def derive_log_key(mk_ac: bytes, device: bytes) -> bytes:
    """The key that MACs one device's transaction log; ``device`` is its fingerprint
    (the first 4 bytes diversify)."""
    if len(device) < 4:
        raise ValueError(f"device must be at least 4 bytes long, got {len(device)}")
    return diversify_cbp_key(mk_ac, KeyDomain.LOG, device[:4])


def chain_log_mac(log_key: bytes, previous: bytes, entry: bytes) -> bytes:
    """MAC_i = retail MAC(log key, MAC_(i-1) || entry_i), MAC_0 = '00'x8 (docs/cbp.md
    "The transaction log"): removing, reordering or altering an entry breaks the chain."""
    require_length("previous", previous, 8)
    return mac.mac_iso9797_1_alg3(log_key, previous + entry, padding=2)


def pin_key(pin: str, pan: str) -> bytes:
    """The 32-byte PIN key: PBKDF2-HMAC-SHA256(PIN, "emvtap-cbp-pin/1" || PAN, 10,000
    iterations) (docs/cbp.md "PIN key")."""
    require_digits("pin", pin, 4, 12, secret=True)
    require_digits("pan", pan, kd.PAN_MIN_DIGITS, kd.PAN_MAX_DIGITS, secret=True)
    salt = PIN_KEY_SALT + pan.encode("ascii")
    return hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, PIN_KEY_ITERATIONS)


def mask_key(key: bytes, pin_key: bytes) -> bytes:
    """The masked SUK-UV: AES-256-ECB(PIN key)[SUK-UV], one block. Without an
    integrity check a wrong PIN yields a wrong key, not an error: no offline PIN oracle."""
    require_length("key", key, KEY_LENGTH)
    require_length("pin_key", pin_key, 32)
    return aes.encrypt_aes_ecb(pin_key, key)


def unmask_key(masked: bytes, pin_key: bytes) -> bytes:
    """The SUK-UV back from its masked form, with the PIN the user entered."""
    require_length("masked", masked, KEY_LENGTH)
    require_length("pin_key", pin_key, 32)
    return aes.decrypt_aes_ecb(pin_key, masked)


@dataclass(frozen=True)
class KeyIndex:
    """A LUK's key index: the issue hour since 2020-01-01T00:00Z and a sequence number."""

    hour: int
    sequence: int

    def __post_init__(self) -> None:
        if not 0 <= self.hour < 1 << 24:
            raise CbpError(f"key index: hour {self.hour} does not fit 3 bytes")
        if not 0 <= self.sequence < 256:
            raise CbpError(f"key index: sequence {self.sequence} does not fit 1 byte")

    def to_bytes(self) -> bytes:
        return self.hour.to_bytes(3, "big") + bytes((self.sequence,))

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyIndex:
        if len(data) != 4:
            raise CbpError(f"key index: expected 4 bytes, got {len(data)}")
        return cls(int.from_bytes(data[:3], "big"), data[3])


# --- Issuer Application Data ---------------------------------------------------------------


@dataclass(frozen=True)
class CbpVIad:
    """CBP-V IAD: 'C1' || key index (4) || CVR (4) || use count (2)."""

    key_index: KeyIndex
    cvr: bytes
    use_count: int

    LENGTH = 11

    def __post_init__(self) -> None:
        if len(self.cvr) != 4:
            raise CbpError(f"CBP-V IAD: CVR must be 4 bytes, got {len(self.cvr)}")
        if not 1 <= self.use_count <= 0xFFFF:
            raise CbpError(f"CBP-V IAD: use count {self.use_count} out of 1..65535")

    def to_bytes(self) -> bytes:
        return (
            bytes((CryptogramVersion.CBP_V,))
            + self.key_index.to_bytes()
            + self.cvr
            + self.use_count.to_bytes(2, "big")
        )

    @classmethod
    def from_bytes(cls, iad: bytes) -> CbpVIad:
        _expect_iad(iad, CryptogramVersion.CBP_V, cls.LENGTH)
        return cls(KeyIndex.from_bytes(iad[1:5]), iad[5:9], int.from_bytes(iad[9:11], "big"))


@dataclass(frozen=True)
class CbpMIad:
    """CBP-M IAD: 'C2' || key type (1) || CVR (4)."""

    key_type: MKeyType
    cvr: bytes

    LENGTH = 6

    def __post_init__(self) -> None:
        if len(self.cvr) != 4:
            raise CbpError(f"CBP-M IAD: CVR must be 4 bytes, got {len(self.cvr)}")

    def to_bytes(self) -> bytes:
        return bytes((CryptogramVersion.CBP_M, self.key_type)) + self.cvr

    @classmethod
    def from_bytes(cls, iad: bytes) -> CbpMIad:
        _expect_iad(iad, CryptogramVersion.CBP_M, cls.LENGTH)
        try:
            key_type = MKeyType(iad[1])
        except ValueError:
            raise CbpError(f"CBP-M IAD: key type {iad[1]:02X} is neither 00 nor 01") from None
        return cls(key_type, iad[2:6])


def _expect_iad(iad: bytes, version: CryptogramVersion, length: int) -> None:
    if len(iad) != length:
        raise CbpError(f"{version.name} IAD: expected {length} bytes, got {len(iad)}")
    if iad[0] != version:
        raise CbpError(f"{version.name} IAD: byte 1 is {iad[0]:02X}, expected {version:02X}")


def parse_iad(iad: bytes) -> CbpVIad | CbpMIad:
    """Either CBP IAD, by its first byte; :class:`CbpError` for anything else."""
    if not iad:
        raise CbpError("IAD is empty")
    if iad[0] == CryptogramVersion.CBP_V:
        return CbpVIad.from_bytes(iad)
    if iad[0] == CryptogramVersion.CBP_M:
        return CbpMIad.from_bytes(iad)
    raise CbpError(f"IAD byte 1 is {iad[0]:02X}: not an emvtap CBP cryptogram version (C1, C2)")


# --- cryptograms ---------------------------------------------------------------------------


def cbp_v_session_key(luk: bytes, atc: bytes) -> bytes:
    """CBP-V: the common session key (Book 2 A1.3.1) of the LUK for this ATC."""
    require_length("atc", atc, 2)
    return kd.derive_common_sk(luk, atc + bytes(6))


def cbp_v_arqc(luk: bytes, data: ac.CryptogramData, iad: CbpVIad) -> bytes:
    """CBP-V application cryptogram: MAC(SK, Table 26 data || IAD), EMV padding."""
    session_key = cbp_v_session_key(luk, data.atc)
    return ac.generate_ac(session_key, data.to_bytes() + iad.to_bytes(), "emv")


def cbp_m_arqc(suk: bytes, data: ac.CryptogramData, iad: CbpMIad) -> bytes:
    """CBP-M application cryptogram: MAC(SUK or SUK-UV, Table 26 data || IAD), EMV padding."""
    return ac.generate_ac(suk, data.to_bytes() + iad.to_bytes(), "emv")
