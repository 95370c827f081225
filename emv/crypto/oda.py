"""Offline Data Authentication with RSA: certificates CA -> issuer -> ICC, SDA, DDA, fDDA, CDA.

EMV signatures are raw RSA with message recovery (EMV Book 2 Annex A2.1, RSA per
Annex B2.1, SHA-1 per Annex B3): the signer builds ``6A || data || hash || BC`` as
long as the modulus and applies the private key; the verifier applies the public
key, checks the header and trailer, and recomputes the SHA-1 hash over the
recovered data followed by the data that was signed but not carried.

Every failure raises :class:`OdaError` whose message names the step and the field.

Formats (EMV Book 2 v4.3 numbering):

- ``02`` Issuer Public Key Certificate (tag 90, §5.3 / §6.3, Table 6) with the
  Issuer Public Key Remainder (92) and Exponent (9F32);
- ``03`` Signed Static Application Data (tag 93, §5.4, Table 7), carrying the
  Data Authentication Code (9F45);
- ``04`` ICC Public Key Certificate (tag 9F46, §6.4, Table 14) with the ICC
  Public Key Remainder (9F48) and Exponent (9F47); its hash also covers the
  static data to be authenticated;
- ``05`` Signed Dynamic Application Data (tag 9F4B, §6.5 Table 17; CDA §6.6
  Table 19), used by DDA (terminal data = DDOL data), fDDA (EMV Contactless Book
  C-3 Annex C) and CDA.

The static data to be authenticated (the records named by the AFL, then the
values of the tags in the SDA Tag List) and the TLV lists of a GENERATE AC
response are built by the caller; this module takes them as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import rsa

HEADER = 0x6A
TRAILER = 0xBC
PAD = 0xBB
HASH_SHA1 = 0x01
PK_RSA = 0x01
FORMAT_ISSUER_CERTIFICATE = 0x02
FORMAT_SIGNED_STATIC_DATA = 0x03
FORMAT_ICC_CERTIFICATE = 0x04
FORMAT_SIGNED_DYNAMIC_DATA = 0x05
EMV_EXPONENTS = (3, 65537)
MAX_MODULUS_BYTES = 248  # Book 2 §5.1 / §6.1: at most 1984 bits
_SHA1_LEN = 20


class OdaError(ValueError):
    """Offline data authentication failed; the message names the step and the field."""


# --------------------------------------------------------------------------- RSA


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key (Book 2 Annex B2.1): modulus n and exponent e."""

    modulus: int
    exponent: int

    @property
    def size(self) -> int:
        """The modulus length in bytes (N_CA, N_I or N_IC in Book 2)."""
        return (self.modulus.bit_length() + 7) // 8

    @property
    def exponent_bytes(self) -> bytes:
        """The exponent as carried in tags 9F32 / 9F47: 1 byte for 3, 3 bytes for 65537."""
        return self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")

    @classmethod
    def from_bytes(cls, modulus: bytes, exponent: bytes) -> RsaPublicKey:
        """Build a key from big-endian modulus and exponent bytes."""
        return cls(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


@dataclass(frozen=True, repr=False)
class RsaPrivateKey:
    """An RSA private key in CRT form (p, q, d mod p-1, d mod q-1, q^-1 mod p)."""

    public_key: RsaPublicKey
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    def __repr__(self) -> str:
        return f"RsaPrivateKey({self.public_key.size * 8} bits, e={self.public_key.exponent})"


def generate_rsa_key(bits: int, exponent: int) -> RsaPrivateKey:
    """Generate an EMV RSA key: exponent 3 or 65537, modulus 1024..1984 bits, whole bytes."""
    if exponent not in EMV_EXPONENTS:
        raise OdaError(f"key generation: exponent {exponent}, expected 3 or 65537")
    if bits % 8 or not 1024 <= bits <= MAX_MODULUS_BYTES * 8:
        raise OdaError(f"key generation: modulus {bits} bits, expected 1024..1984, whole bytes")
    numbers = rsa.generate_private_key(exponent, bits).private_numbers()
    public = RsaPublicKey(numbers.public_numbers.n, exponent)
    return RsaPrivateKey(public, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)


RsaKeySource = Callable[[int, int], RsaPrivateKey]
"""Where a party's RSA keys come from, given the modulus bits and the exponent:
:func:`generate_rsa_key` (a new key on each call) unless a test harness hands out keys
it made earlier (:class:`scenarios.keypool.RsaKeyPool`)."""


def rsa_recover(step: str, key: RsaPublicKey, signature: bytes) -> bytes:
    """Apply the public key to a signature of exactly the modulus length (Annex A2.1.3)."""
    if len(signature) != key.size:
        raise OdaError(f"{step}: length {len(signature)} bytes, expected {key.size} (modulus)")
    value = int.from_bytes(signature, "big")
    if value >= key.modulus:
        raise OdaError(f"{step}: signature value is not less than the modulus")
    return pow(value, key.exponent, key.modulus).to_bytes(key.size, "big")


def rsa_sign(key: RsaPrivateKey, message: bytes) -> bytes:
    """Apply the private key (CRT) to a message of exactly the modulus length (Annex A2.1.2)."""
    n = key.public_key.modulus
    value = int.from_bytes(message, "big")
    if len(message) != key.public_key.size or value >= n:
        raise OdaError("signing: message must have the modulus length and be less than it")
    m1 = pow(value, key.dp, key.p)
    m2 = pow(value, key.dq, key.q)
    h = (key.qinv * (m1 - m2)) % key.p
    return (m2 + h * key.q).to_bytes(key.public_key.size, "big")


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _recoverable_message(data: bytes, hashed_extra: bytes) -> bytes:
    """``6A || data || SHA-1(data || hashed_extra) || BC``: what is signed (Annex A2.1.2)."""
    return bytes([HEADER]) + data + _sha1(data, hashed_extra) + bytes([TRAILER])


def _sign_recoverable(key: RsaPrivateKey, data: bytes, hashed_extra: bytes) -> bytes:
    """Sign ``data`` with message recovery (Annex A2.1.2)."""
    return rsa_sign(key, _recoverable_message(data, hashed_extra))


def _open_recoverable(
    step: str, key: RsaPublicKey, signature: bytes, fmt: int, fields: int
) -> tuple[bytes, bytes]:
    """Recover and check trailer, header and format (Annex A2.1.3 steps 1-3).

    Returns the recovered data (from the format byte on: the hash input) and the
    hash result. ``fields`` is the length of the fixed fields after the header.
    """
    if key.size < fields + 2 + _SHA1_LEN:
        raise OdaError(f"{step}: a {key.size}-byte modulus is too short for this format")
    recovered = rsa_recover(step, key, signature)
    if recovered[-1] != TRAILER:
        raise OdaError(f"{step}: recovered trailer 0x{recovered[-1]:02X}, expected 0xBC")
    if recovered[0] != HEADER:
        raise OdaError(f"{step}: recovered header 0x{recovered[0]:02X}, expected 0x6A")
    if recovered[1] != fmt:
        raise OdaError(f"{step}: certificate format 0x{recovered[1]:02X}, expected 0x{fmt:02X}")
    return recovered[1 : -1 - _SHA1_LEN], recovered[-1 - _SHA1_LEN : -1]


def _check_hash(step: str, signature_hash: bytes, *hashed: bytes) -> None:
    if not hmac.compare_digest(signature_hash, _sha1(*hashed)):
        raise OdaError(f"{step}: hash result does not match the recomputed SHA-1")


def _check_algorithms(step: str, hash_algorithm: int, pk_algorithm: int | None = None) -> None:
    if hash_algorithm != HASH_SHA1:
        raise OdaError(f"{step}: hash algorithm indicator 0x{hash_algorithm:02X}, expected 01")
    if pk_algorithm is not None and pk_algorithm != PK_RSA:
        raise OdaError(f"{step}: public key algorithm indicator 0x{pk_algorithm:02X}, expected 01")


# --------------------------------------------------------------------------- dates and PANs


def _digits(step: str, field: str, value: bytes) -> str:
    """Numeric (cn) bytes to digits, dropping the trailing F padding."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit():
        raise OdaError(f"{step}: {field} {value.hex().upper()} is not digits padded with F")
    return text


def _pad_f(digits: str, length: int) -> bytes:
    return bytes.fromhex(digits.ljust(length * 2, "F"))


def _check_pan(step: str, pan: str) -> None:
    if not re.fullmatch(r"\d{8,19}", pan):
        raise OdaError(f"{step}: the PAN must be 8 to 19 digits")


def _expiry_bytes(step: str, expiry: str) -> bytes:
    if not re.fullmatch(r"(0[1-9]|1[0-2])\d\d", expiry):
        raise OdaError(f"{step}: expiry {expiry!r}, expected MMYY")
    return bytes.fromhex(expiry)


def _check_expiry(step: str, expiry: bytes, today: date) -> str:
    """Certificate expiration MMYY: valid through the last day of that month (§5.3 step 9).

    YY 00-49 is 20YY, 50-99 is 19YY (Book 4 §6.7.3, years as two digits).
    """
    text = expiry.hex()
    if not re.fullmatch(r"(0[1-9]|1[0-2])\d\d", text):
        raise OdaError(f"{step}: expiration date {text.upper()} is not MMYY")
    month, yy = int(text[:2]), int(text[2:])
    year = 2000 + yy if yy < 50 else 1900 + yy
    if (year, month) < (today.year, today.month):
        raise OdaError(f"{step}: expiration date {text} is before the transaction date {today}")
    return text


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class PublicKeyCertificate:
    """What a card carries for one public key: certificate, remainder and exponent.

    Issuer: tags 90, 92, 9F32. ICC: tags 9F46, 9F48, 9F47.
    """

    certificate: bytes
    remainder: bytes
    exponent: bytes


@dataclass(frozen=True)
class IssuerPublicKeyCertificate:
    """Recovered Issuer Public Key Certificate contents (Book 2 Table 6)."""

    issuer_identifier: str
    expiry: str
    serial_number: bytes
    hash_algorithm: int
    pk_algorithm: int
    public_key: RsaPublicKey


@dataclass(frozen=True)
class IccPublicKeyCertificate:
    """Recovered ICC Public Key Certificate contents (Book 2 Table 14)."""

    pan: str
    expiry: str
    serial_number: bytes
    hash_algorithm: int
    pk_algorithm: int
    public_key: RsaPublicKey


def _split_public_key(key: RsaPublicKey, room: int) -> tuple[bytes, bytes]:
    """The certificate's key field (padded with BB to ``room``) and the remainder."""
    modulus = key.modulus.to_bytes(key.size, "big")
    if key.size <= room:
        return modulus + bytes([PAD]) * (room - key.size), b""
    return modulus[:room], modulus[room:]


def _join_public_key(
    step: str, header: bytes, field: bytes, remainder: bytes, exponent: bytes
) -> RsaPublicKey:
    """Rebuild the certified key from the header lengths, key field, remainder, exponent."""
    length, exponent_length = header[-2], header[-1]
    room = len(field)
    expected_remainder = max(0, length - room)
    if len(remainder) != expected_remainder:
        raise OdaError(
            f"{step}: remainder {len(remainder)} bytes, expected {expected_remainder}"
            f" (key {length} bytes, {room} in the certificate)"
        )
    if len(exponent) != exponent_length:
        raise OdaError(f"{step}: exponent {len(exponent)} bytes, expected {exponent_length}")
    modulus = (field + remainder)[:length]
    if not modulus or modulus[0] == 0:
        raise OdaError(f"{step}: public key length {length} does not match its modulus")
    key = RsaPublicKey.from_bytes(modulus, exponent)
    if key.exponent not in EMV_EXPONENTS:
        raise OdaError(f"{step}: exponent {key.exponent}, expected 3 or 65537")
    return key


@dataclass(frozen=True)
class UnsignedCertificate:
    """A certificate ready for the signer's raw RSA operation: ``message`` is the
    whole ``6A .. BC`` block, as long as the signer's modulus. An HSM signs it
    (``rsa_sign_raw``) and the result goes in the certificate's tag."""

    message: bytes
    remainder: bytes
    exponent: bytes

    def signed(self, signature: bytes) -> PublicKeyCertificate:
        return PublicKeyCertificate(signature, self.remainder, self.exponent)


@dataclass(frozen=True)
class _CertificateLayout:
    """What differs between the issuer (Table 6) and ICC (Table 14) certificates."""

    step: str
    format_code: int
    key_name: str
    signer_name: str
    overhead: int  # certificate bytes that are not the key field: N - overhead holds the key


def _unsigned_certificate(
    layout: _CertificateLayout,
    *,
    identifier: bytes,
    expiry: str,
    serial_number: bytes,
    key: RsaPublicKey,
    signer_size: int,
    hashed_after: bytes,
) -> UnsignedCertificate:
    """The fields shared by Tables 6 and 14 (format, identifier, expiry, serial, hash and
    key algorithms, key and exponent lengths, key field), hashed with the remainder,
    the exponent and ``hashed_after`` (the ICC certificate's static data)."""
    step = layout.step
    if len(serial_number) != 3:
        raise OdaError(f"{step}: serial number {len(serial_number)} bytes, expected 3")
    if key.size > signer_size:
        raise OdaError(f"{step}: {layout.key_name} key is longer than the {layout.signer_name} key")
    exponent = key.exponent_bytes
    field, remainder = _split_public_key(key, signer_size - layout.overhead)
    data = (
        bytes([layout.format_code])
        + identifier
        + _expiry_bytes(step, expiry)
        + serial_number
        + bytes([HASH_SHA1, PK_RSA, key.size, len(exponent)])
        + field
    )
    message = _recoverable_message(data, remainder + exponent + hashed_after)
    return UnsignedCertificate(message, remainder, exponent)


def issuer_certificate_message(
    ca_size: int,
    issuer_key: RsaPublicKey,
    *,
    issuer_identifier: str,
    expiry: str,
    serial_number: bytes,
) -> UnsignedCertificate:
    """The Issuer Public Key Certificate, format 02, before signing (Book 2 §5.1 / §6.1,
    Table 6) for a CA key of ``ca_size`` bytes.

    ``issuer_identifier`` is the leftmost 3 to 8 PAN digits; ``expiry`` is MMYY;
    ``serial_number`` is 3 bytes. N_I <= N_CA; the key digits beyond N_CA - 36
    bytes go to the remainder (tag 92).
    """
    step = "issuer certificate"
    if not re.fullmatch(r"\d{3,8}", issuer_identifier):
        raise OdaError(f"{step}: issuer identifier {issuer_identifier!r}, expected 3-8 digits")
    return _unsigned_certificate(
        _CertificateLayout(step, FORMAT_ISSUER_CERTIFICATE, "issuer", "CA", 36),
        identifier=_pad_f(issuer_identifier, 4),
        expiry=expiry,
        serial_number=serial_number,
        key=issuer_key,
        signer_size=ca_size,
        hashed_after=b"",
    )


def build_issuer_certificate(
    ca_key: RsaPrivateKey,
    issuer_key: RsaPublicKey,
    *,
    issuer_identifier: str,
    expiry: str,
    serial_number: bytes,
) -> PublicKeyCertificate:
    """Sign an Issuer Public Key Certificate with a CA key held in memory
    (:func:`issuer_certificate_message`, then the raw RSA operation)."""
    unsigned = issuer_certificate_message(
        ca_key.public_key.size,
        issuer_key,
        issuer_identifier=issuer_identifier,
        expiry=expiry,
        serial_number=serial_number,
    )
    return unsigned.signed(rsa_sign(ca_key, unsigned.message))


def recover_issuer_public_key(
    ca_key: RsaPublicKey, certificate: PublicKeyCertificate, pan: str, today: date
) -> IssuerPublicKeyCertificate:
    """Retrieve and check the Issuer Public Key (Book 2 §5.3 / §6.3, steps 1-11).

    Checks length, trailer BC, header 6A, format 02, the hash over the certificate
    fields, remainder and exponent, the issuer identifier against the leftmost PAN
    digits, the expiry against ``today`` (the transaction date) and the algorithm
    indicators. Revocation lists are the caller's.
    """
    step = "issuer certificate"
    _check_pan(step, pan)
    data, signed_hash = _open_recoverable(
        step, ca_key, certificate.certificate, FORMAT_ISSUER_CERTIFICATE, 14
    )
    header, field = data[:14], data[14:]
    _check_algorithms(step, header[10], header[11])
    key = _join_public_key(step, header, field, certificate.remainder, certificate.exponent)
    _check_hash(step, signed_hash, data, certificate.remainder, certificate.exponent)
    identifier = _digits(step, "issuer identifier", header[1:5])
    if not 3 <= len(identifier) <= 8 or not pan.startswith(identifier):
        raise OdaError(f"{step}: issuer identifier {identifier} does not match the PAN")
    expiry = _check_expiry(step, header[5:7], today)
    return IssuerPublicKeyCertificate(identifier, expiry, header[7:10], header[10], header[11], key)


def icc_certificate_message(
    issuer_size: int,
    icc_key: RsaPublicKey,
    *,
    pan: str,
    expiry: str,
    serial_number: bytes,
    static_data: bytes,
) -> UnsignedCertificate:
    """The ICC Public Key Certificate, format 04, before signing (Book 2 §6.1, Table 14)
    for an issuer key of ``issuer_size`` bytes.

    N_IC <= N_I. The hash covers the certificate fields, the ICC key remainder and
    exponent, then ``static_data`` (the static data to be authenticated, §6.4 step 5).
    """
    step = "ICC certificate"
    _check_pan(step, pan)
    return _unsigned_certificate(
        _CertificateLayout(step, FORMAT_ICC_CERTIFICATE, "ICC", "issuer", 42),
        identifier=_pad_f(pan, 10),
        expiry=expiry,
        serial_number=serial_number,
        key=icc_key,
        signer_size=issuer_size,
        hashed_after=static_data,
    )


def build_icc_certificate(
    issuer_key: RsaPrivateKey,
    icc_key: RsaPublicKey,
    *,
    pan: str,
    expiry: str,
    serial_number: bytes,
    static_data: bytes,
) -> PublicKeyCertificate:
    """Sign an ICC Public Key Certificate with an issuer key held in memory
    (:func:`icc_certificate_message`, then the raw RSA operation)."""
    unsigned = icc_certificate_message(
        issuer_key.public_key.size,
        icc_key,
        pan=pan,
        expiry=expiry,
        serial_number=serial_number,
        static_data=static_data,
    )
    return unsigned.signed(rsa_sign(issuer_key, unsigned.message))


def recover_icc_public_key(
    issuer_key: RsaPublicKey,
    certificate: PublicKeyCertificate,
    *,
    pan: str,
    static_data: bytes,
    today: date,
) -> IccPublicKeyCertificate:
    """Retrieve and check the ICC Public Key (Book 2 §6.4, steps 1-10).

    Checks length, trailer BC, header 6A, format 04, the hash (which covers the
    static data to be authenticated), the certified PAN against ``pan``, the
    expiry against ``today`` and the algorithm indicators.
    """
    step = "ICC certificate"
    _check_pan(step, pan)
    data, signed_hash = _open_recoverable(
        step, issuer_key, certificate.certificate, FORMAT_ICC_CERTIFICATE, 20
    )
    header, field = data[:20], data[20:]
    _check_algorithms(step, header[16], header[17])
    key = _join_public_key(step, header, field, certificate.remainder, certificate.exponent)
    _check_hash(
        step,
        signed_hash,
        data,
        certificate.remainder,
        certificate.exponent,
        static_data,
    )
    certified_pan = _digits(step, "application PAN", header[1:11])
    if certified_pan != pan:
        raise OdaError(f"{step}: application PAN in the certificate does not match the card's PAN")
    expiry = _check_expiry(step, header[11:13], today)
    return IccPublicKeyCertificate(pan, expiry, header[13:16], header[16], header[17], key)


# --------------------------------------------------------------------------- SDA


def sign_static_data(issuer_key: RsaPrivateKey, dac: bytes, static_data: bytes) -> bytes:
    """Signed Static Application Data, format 03 (tag 93, Book 2 §5.1, Table 7).

    ``6A 03 01 DAC(2) BB..BB SHA-1 BC``, the hash covering ``static_data`` too.
    """
    if len(dac) != 2:
        raise OdaError(f"signed static data: data authentication code {len(dac)} bytes, expected 2")
    padding = bytes([PAD]) * (issuer_key.public_key.size - 26)
    data = bytes([FORMAT_SIGNED_STATIC_DATA, HASH_SHA1]) + dac + padding
    return _sign_recoverable(issuer_key, data, static_data)


def verify_static_data(issuer_key: RsaPublicKey, ssad: bytes, static_data: bytes) -> bytes:
    """Verify Signed Static Application Data (Book 2 §5.4 steps 1-7); return the DAC (9F45)."""
    step = "signed static data"
    data, signed_hash = _open_recoverable(step, issuer_key, ssad, FORMAT_SIGNED_STATIC_DATA, 4)
    _check_algorithms(step, data[1])
    _check_hash(step, signed_hash, data, static_data)
    return data[2:4]


# --------------------------------------------------------------------------- DDA, fDDA


def sign_dynamic_data(
    icc_key: RsaPrivateKey, icc_dynamic_data: bytes, terminal_dynamic_data: bytes
) -> bytes:
    """Signed Dynamic Application Data, format 05 (tag 9F4B, Book 2 §6.5.1, Table 17).

    ``6A 05 01 L_DD ICC-dynamic-data BB..BB SHA-1 BC``; the hash also covers
    ``terminal_dynamic_data`` (DDOL data for DDA, C-3 Annex C data for fDDA, the
    Unpredictable Number for CDA).
    """
    room = icc_key.public_key.size - 25
    if len(icc_dynamic_data) > room:
        raise OdaError(
            f"signed dynamic data: ICC dynamic data {len(icc_dynamic_data)} bytes, at most {room}"
        )
    padding = bytes([PAD]) * (room - len(icc_dynamic_data))
    data = (
        bytes([FORMAT_SIGNED_DYNAMIC_DATA, HASH_SHA1, len(icc_dynamic_data)])
        + icc_dynamic_data
        + padding
    )
    return _sign_recoverable(icc_key, data, terminal_dynamic_data)


def recover_dynamic_data(icc_key: RsaPublicKey, sdad: bytes, terminal_dynamic_data: bytes) -> bytes:
    """Verify Signed Dynamic Application Data (Book 2 §6.5.2 steps 1-7, §6.6.2 steps 1-7).

    Returns the ICC Dynamic Data (its first byte is the ICC Dynamic Number length).
    """
    step = "signed dynamic data"
    data, signed_hash = _open_recoverable(step, icc_key, sdad, FORMAT_SIGNED_DYNAMIC_DATA, 3)
    _check_algorithms(step, data[1])
    length = data[2]
    if length > len(data) - 3:
        raise OdaError(f"{step}: ICC dynamic data length {length} exceeds the signature")
    _check_hash(step, signed_hash, data, terminal_dynamic_data)
    return data[3 : 3 + length]


def icc_dynamic_number(step: str, icc_dynamic_data: bytes) -> tuple[bytes, bytes]:
    """Split ICC Dynamic Data into the ICC Dynamic Number (9F4C, 2-8 bytes) and the rest."""
    if not icc_dynamic_data:
        raise OdaError(f"{step}: ICC dynamic data is empty")
    length = icc_dynamic_data[0]
    if not 2 <= length <= 8 or len(icc_dynamic_data) < 1 + length:
        raise OdaError(f"{step}: ICC dynamic number length {length}, expected 2..8 within the data")
    return icc_dynamic_data[1 : 1 + length], icc_dynamic_data[1 + length :]


def _dynamic_number_data(step: str, number: bytes) -> bytes:
    if not 2 <= len(number) <= 8:
        raise OdaError(f"{step}: ICC dynamic number {len(number)} bytes, expected 2..8")
    return bytes([len(number)]) + number


def sign_dda(icc_key: RsaPrivateKey, dynamic_number: bytes, ddol_data: bytes) -> bytes:
    """INTERNAL AUTHENTICATE response for DDA (Book 2 §6.5.1): SDAD over the DDOL data."""
    data = _dynamic_number_data("signed dynamic data", dynamic_number)
    return sign_dynamic_data(icc_key, data, ddol_data)


def verify_dda(icc_key: RsaPublicKey, sdad: bytes, ddol_data: bytes) -> bytes:
    """Verify a DDA SDAD (Book 2 §6.5.2) and return the ICC Dynamic Number (9F4C)."""
    recovered = recover_dynamic_data(icc_key, sdad, ddol_data)
    return icc_dynamic_number("signed dynamic data", recovered)[0]


def fdda_terminal_data(
    unpredictable_number: bytes,
    amount_authorised: bytes,
    transaction_currency_code: bytes,
    card_authentication_related_data: bytes,
) -> bytes:
    """The terminal data hashed by fDDA (EMV Contactless Book C-3 Annex C).

    fDDA version 01 (first byte of 9F69): 9F37 || 9F02 || 5F2A || 9F69.
    fDDA version 00: the Unpredictable Number 9F37 alone.
    """
    step = "fDDA"
    if len(unpredictable_number) != 4:
        raise OdaError(f"{step}: unpredictable number {len(unpredictable_number)} bytes, not 4")
    if len(amount_authorised) != 6:
        raise OdaError(f"{step}: amount authorised {len(amount_authorised)} bytes, expected 6")
    if len(transaction_currency_code) != 2:
        raise OdaError(f"{step}: currency code {len(transaction_currency_code)} bytes, expected 2")
    if not card_authentication_related_data:
        return unpredictable_number
    version = card_authentication_related_data[0]
    if version == 0x00:
        return unpredictable_number
    if version != 0x01:
        raise OdaError(f"{step}: card authentication related data version 0x{version:02X}")
    return (
        unpredictable_number
        + amount_authorised
        + transaction_currency_code
        + card_authentication_related_data
    )


# --------------------------------------------------------------------------- CDA


@dataclass(frozen=True)
class CdaDynamicData:
    """ICC Dynamic Data of a CDA signature (Book 2 §6.6.1, Table 19)."""

    icc_dynamic_number: bytes
    cid: int
    application_cryptogram: bytes
    transaction_data_hash_code: bytes


def transaction_data_hash_code(
    pdol_data: bytes, cdol1_data: bytes, response_tlvs: bytes, cdol2_data: bytes = b""
) -> bytes:
    """Transaction Data Hash Code (Book 2 §6.6.1 step 2-4): SHA-1 of the transaction data.

    ``pdol_data``: the PDOL-related data values sent in GET PROCESSING OPTIONS (without
    tag 83 and length); ``cdol1_data``: the CDOL1 values of the first GENERATE AC;
    ``cdol2_data``: the CDOL2 values of the second GENERATE AC (empty for the first);
    ``response_tlvs``: the TLV data objects of the GENERATE AC response in order,
    excluding the Signed Dynamic Application Data (9F4B).
    """
    return _sha1(pdol_data, cdol1_data, cdol2_data, response_tlvs)


def cda_dynamic_data(
    dynamic_number: bytes, cid: int, application_cryptogram: bytes, transaction_hash: bytes
) -> bytes:
    """Encode CDA ICC Dynamic Data: L || IDN || CID || AC || TDHC (Book 2 Table 19)."""
    step = "CDA"
    if not 0 <= cid <= 0xFF:
        raise OdaError(f"{step}: cryptogram information data {cid}, expected one byte")
    if len(application_cryptogram) != 8:
        raise OdaError(f"{step}: application cryptogram {len(application_cryptogram)} bytes, not 8")
    if len(transaction_hash) != _SHA1_LEN:
        raise OdaError(f"{step}: transaction data hash code {len(transaction_hash)} bytes, not 20")
    return (
        _dynamic_number_data(step, dynamic_number)
        + bytes([cid])
        + application_cryptogram
        + transaction_hash
    )


def parse_cda_dynamic_data(icc_dynamic_data: bytes) -> CdaDynamicData:
    """Decode CDA ICC Dynamic Data (Book 2 Table 19)."""
    step = "CDA"
    number, rest = icc_dynamic_number(step, icc_dynamic_data)
    if len(rest) != 1 + 8 + _SHA1_LEN:
        raise OdaError(f"{step}: ICC dynamic data has {len(rest)} bytes after the IDN, expected 29")
    return CdaDynamicData(number, rest[0], rest[1:9], rest[9:])


def sign_cda(
    icc_key: RsaPrivateKey,
    *,
    dynamic_number: bytes,
    cid: int,
    application_cryptogram: bytes,
    transaction_hash: bytes,
    unpredictable_number: bytes,
) -> bytes:
    """The SDAD of a CDA GENERATE AC response (Book 2 §6.6.1)."""
    data = cda_dynamic_data(dynamic_number, cid, application_cryptogram, transaction_hash)
    return sign_dynamic_data(icc_key, data, unpredictable_number)


def verify_cda(
    icc_key: RsaPublicKey,
    sdad: bytes,
    *,
    unpredictable_number: bytes,
    cid: int,
    pdol_data: bytes,
    cdol1_data: bytes,
    response_tlvs: bytes,
    cdol2_data: bytes = b"",
) -> CdaDynamicData:
    """Verify a CDA signature (Book 2 §6.6.2 steps 1-9).

    Checks the SDAD over the terminal's Unpredictable Number, the CID inside it
    against the CID returned in the response (``cid``), and the Transaction Data
    Hash Code against one recomputed from the transaction data. The terminal
    takes the Application Cryptogram from the returned value.
    """
    step = "CDA"
    recovered = parse_cda_dynamic_data(recover_dynamic_data(icc_key, sdad, unpredictable_number))
    if recovered.cid != cid:
        raise OdaError(
            f"{step}: signed cryptogram information data 0x{recovered.cid:02X},"
            f" response has 0x{cid:02X}"
        )
    expected = transaction_data_hash_code(pdol_data, cdol1_data, response_tlvs, cdol2_data)
    if not hmac.compare_digest(recovered.transaction_data_hash_code, expected):
        raise OdaError(f"{step}: transaction data hash code does not match the transaction data")
    return recovered


# --------------------------------------------------------------------------- CA public keys


@dataclass(frozen=True)
class CaPublicKey:
    """A Certification Authority Public Key, known by RID and CA Public Key Index (Book 2 §5.2)."""

    rid: bytes
    index: int
    public_key: RsaPublicKey
    expiry: date | None = None

    @property
    def checksum(self) -> bytes:
        """SHA-1 over RID || index || modulus || exponent (Book 2 §11.2, CA key check sum)."""
        key = self.public_key
        return _sha1(
            self.rid,
            bytes([self.index]),
            key.modulus.to_bytes(key.size, "big"),
            key.exponent_bytes,
        )


class CaKeyStore:
    """CA public keys looked up by (RID, index); immutable once loaded.

    Text format, one key a line, fields separated by spaces, ``#`` starts a comment::

        RID INDEX EXPONENT MODULUS SHA1 [EXPIRY]

    RID is 10 hex digits, INDEX 2, EXPONENT ``03`` or ``010001``, MODULUS and
    SHA1 (the checksum over RID || INDEX || MODULUS || EXPONENT) in hex, EXPIRY
    as ``YYYY-MM-DD``. The checksum is checked on load.
    """

    def __init__(self, keys: Iterable[CaPublicKey] = ()) -> None:
        table: dict[tuple[bytes, int], CaPublicKey] = {}
        for key in keys:
            if (key.rid, key.index) in table:
                raise OdaError(
                    f"CA key store: duplicate key {key.rid.hex().upper()} {key.index:02X}"
                )
            table[(key.rid, key.index)] = key
        self._keys: Mapping[tuple[bytes, int], CaPublicKey] = MappingProxyType(table)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[CaPublicKey]:
        return iter(self._keys.values())

    def lookup(self, rid: bytes, index: int) -> CaPublicKey:
        """The key for (RID, CA Public Key Index), or :class:`OdaError` (§5.2)."""
        try:
            return self._keys[(rid, index)]
        except KeyError:
            raise OdaError(f"CA key store: no key {rid.hex().upper()} {index:02X}") from None

    @classmethod
    def parse(cls, text: str) -> CaKeyStore:
        """Load keys from text; errors name the line."""
        keys: dict[tuple[bytes, int], CaPublicKey] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            content = line.split("#", 1)[0].strip()
            if not content:
                continue
            key = _parse_ca_key_line(number, content)
            if (key.rid, key.index) in keys:
                raise OdaError(
                    f"CA key store line {number}: duplicate key {key.rid.hex().upper()}"
                    f" {key.index:02X}"
                )
            keys[(key.rid, key.index)] = key
        return cls(keys.values())


def _parse_ca_key_line(number: int, content: str) -> CaPublicKey:
    where = f"CA key store line {number}"
    fields = content.split()
    if len(fields) not in (5, 6):
        raise OdaError(f"{where}: {len(fields)} fields, expected 5 or 6 (see CaKeyStore)")
    names = ("RID", "index", "exponent", "modulus", "checksum")
    values: list[bytes] = []
    for name, field in zip(names, fields, strict=False):
        if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", field):
            raise OdaError(f"{where}: {name} {field[:16]!r} is not hex")
        values.append(bytes.fromhex(field))
    rid, index, exponent, modulus, checksum = values
    if len(rid) != 5 or len(index) != 1 or len(checksum) != _SHA1_LEN:
        raise OdaError(f"{where}: RID, index or checksum has the wrong length")
    public_key = RsaPublicKey.from_bytes(modulus, exponent)
    if public_key.exponent not in EMV_EXPONENTS:
        raise OdaError(f"{where}: exponent {public_key.exponent}, expected 3 or 65537")
    if modulus[0] == 0 or len(modulus) > MAX_MODULUS_BYTES:
        raise OdaError(f"{where}: modulus of {len(modulus)} bytes is not a valid CA modulus")
    expiry = None
    if len(fields) == 6:
        try:
            expiry = date.fromisoformat(fields[5])
        except ValueError:
            raise OdaError(f"{where}: expiry {fields[5]!r}, expected YYYY-MM-DD") from None
    key = CaPublicKey(rid, index[0], public_key, expiry)
    if not hmac.compare_digest(key.checksum, checksum):
        raise OdaError(
            f"{where}: checksum {checksum.hex().upper()}, computed {key.checksum.hex().upper()}"
        )
    return key


def format_ca_key(key: CaPublicKey) -> str:
    """One line of the CA key store text format for ``key``."""
    public = key.public_key
    fields = [
        key.rid.hex().upper(),
        f"{key.index:02X}",
        public.exponent_bytes.hex().upper(),
        public.modulus.to_bytes(public.size, "big").hex().upper(),
        key.checksum.hex().upper(),
    ]
    if key.expiry is not None:
        fields.append(key.expiry.isoformat())
    return " ".join(fields)
