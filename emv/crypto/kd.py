"""EMV key derivation: ICC master keys and session keys (EMV Book 2 Annex A1.3, A1.4).

Conventions (those of pyemv, so the two can be compared directly):

- ``pan`` is the Application PAN (tag 5A) as a string of decimal digits,
  without the 'F' padding;
- ``psn`` is the PAN Sequence Number (tag 5F34) as its one byte, two BCD
  digits (``b"\\x00"`` when the card has none, Book 2 A1.4.1);
- derived DES keys have odd parity (Book 2 A1.4.1); the parity bits do not
  take part in enciphering, so they never change a cryptogram.
"""

import hashlib

from emv.crypto import aes, des
from emv.crypto.checks import require_digits, require_length

PAN_MIN_DIGITS = 8  # ISO/IEC 7812-1
PAN_MAX_DIGITS = 19


def _psn_digits(psn: bytes) -> str:
    require_length("psn", psn, 1)
    digits = psn.hex()
    if not digits.isdigit():
        raise ValueError(f"psn must be two BCD digits, got {digits.upper()}")
    return digits


def _pan_psn(pan: str, psn: bytes) -> str:
    """X of Book 2 A1.4.1: the PAN digits followed by the two PSN digits."""
    require_digits("pan", pan, PAN_MIN_DIGITS, PAN_MAX_DIGITS, secret=True)
    return pan + _psn_digits(psn)


def with_inverse(y: bytes) -> bytes:
    """Y || (Y xor 'FF'x8): what DES3 under a parent key turns into a DES2 child key
    (Book 2 A1.4.1). An HSM derives the same child with one encrypt-data derivation
    (PKCS#11 CKM_DES3_ECB_ENCRYPT_DATA) over these 16 bytes."""
    return y + bytes(b ^ 0xFF for b in y)


def icc_mk_derivation_data(pan: str, psn: bytes = b"\x00", option: str = "A") -> bytes:
    """Y || (Y xor 'FF'x8) for the ICC master key: Y of Option A (Book 2 A1.4.1, the 16
    rightmost digits of PAN || PSN) or Option B (A1.4.2: PANs over 16 digits,
    decimalised SHA-1; a PAN of at most 16 digits is Option A)."""
    if option not in ("A", "B"):
        raise ValueError(f"option must be 'A' or 'B', got {option!r}")
    x = _pan_psn(pan, psn)
    if option == "B" and len(pan) > 16:
        return with_inverse(bytes.fromhex(_decimalise_sha1(x)))
    return with_inverse(bytes.fromhex(x[-16:].zfill(16)))


def common_sk_derivation_data(r: bytes) -> bytes:
    """F1 || F2 of the TDEA common session key (Book 2 A1.3.1): R with its third byte
    replaced by 'F0', then by '0F'. R is 8 bytes."""
    require_length("r", r, des.BLOCK_SIZE)
    return r[:2] + b"\xf0" + r[3:] + r[:2] + b"\x0f" + r[3:]


def mastercard_sk_r(atc: bytes, un: bytes) -> bytes:
    """R of the M/Chip session key: ATC || '0000' || UN (tags 9F36, 9F37)."""
    require_length("atc", atc, 2)
    require_length("un", un, 4)
    return atc + b"\x00\x00" + un


def _derive_des2(parent: bytes, data: bytes) -> bytes:
    return derive_des2_with(des.TdeaEcb(parent), data)


def derive_des2_with(parent: des.TdeaEcb, data: bytes) -> bytes:
    """The 16-byte DES key DES3(parent)[data] with odd parity, as every DES2 derivation of
    this module makes it (ICC master keys, Book 2 A1.4.1; session keys, A1.3.1), under
    a parent whose cipher the caller keeps (its data from :func:`icc_mk_derivation_data`
    or :func:`common_sk_derivation_data`)."""
    return des.adjust_parity(parent.encrypt(data))


def _require_imk(imk: bytes) -> None:
    require_length("imk", imk, 16, 24)


def derive_icc_mk_a(imk: bytes, pan: str, psn: bytes = b"\x00") -> bytes:
    """ICC master key, Option A (EMV Book 2 Annex A1.4.1).

    Y is the 16 rightmost digits of PAN || PSN, zero-padded on the left when
    shorter; the 16-byte MK is DES3(IMK)[Y] || DES3(IMK)[Y xor 'FF'x8].
    """
    _require_imk(imk)
    return _derive_des2(imk, icc_mk_derivation_data(pan, psn, "A"))


def _decimalise_sha1(x: str) -> str:
    """Y of Book 2 A1.4.2 steps 1-3: 16 decimal digits from SHA-1(X).

    X is padded on the left to a whole number of bytes; the decimal digits of
    the hex digest are taken in order, and if fewer than 16, the letters a-f
    follow in order, decimalised as a=0 ... f=5.
    """
    digest = hashlib.sha1(bytes.fromhex(x.zfill(len(x) + len(x) % 2))).hexdigest()
    digits = [c for c in digest if c.isdigit()]
    letters = [str("abcdef".index(c)) for c in digest if not c.isdigit()]
    return "".join((digits + letters)[:16])


def derive_icc_mk_b(imk: bytes, pan: str, psn: bytes = b"\x00") -> bytes:
    """ICC master key, Option B (EMV Book 2 Annex A1.4.2), for PANs over 16 digits.

    With a PAN of at most 16 digits this is Option A. Otherwise Y is 16 digits
    decimalised from SHA-1(PAN || PSN) and MK is derived from Y as in Option A.
    """
    _require_imk(imk)
    return _derive_des2(imk, icc_mk_derivation_data(pan, psn, "B"))


def _common_sk_tdes(mk: bytes, r: bytes) -> bytes:
    require_length("mk", mk, 16)
    return _derive_des2(mk, common_sk_derivation_data(r))


def _common_sk_aes(mk: bytes, r: bytes) -> bytes:
    require_length("mk", mk, 16, 24, 32)
    if len(mk) == aes.BLOCK_SIZE:
        return aes.encrypt_aes_ecb(mk, r)
    f1 = r[:2] + b"\xf0" + r[3:]
    f2 = r[:2] + b"\x0f" + r[3:]
    return aes.encrypt_aes_ecb(mk, f1 + f2)[: len(mk)]


def derive_common_sk(mk: bytes, r: bytes) -> bytes:
    """Common Session Key derivation (EMV Book 2 Annex A1.3.1).

    The length of the diversification value R picks the cipher: R is one
    block, 8 bytes for TDEA (``mk`` 16 bytes) or 16 bytes for AES (``mk`` 16,
    24 or 32 bytes). With F1 = R0 R1 'F0' R3..Rn-1 and F2 = R0 R1 '0F' R3..Rn-1:

    - TDEA: SK := DES3(MK)[F1] || DES3(MK)[F2], odd parity;
    - AES-128 (key as long as the block): SK := AES(MK)[R];
    - AES-192/256: SK := leftmost k bits of AES(MK)[F1] || AES(MK)[F2].

    For application cryptograms R = ATC || '00'..'00'; for secure messaging
    R = AC || '00'..'00' (Book 2 A1.3.1, 9.2).
    """
    require_length("r", r, des.BLOCK_SIZE, aes.BLOCK_SIZE)
    if len(r) == des.BLOCK_SIZE:
        return _common_sk_tdes(mk, r)
    return _common_sk_aes(mk, r)


def derive_mastercard_sk(mk: bytes, atc: bytes, un: bytes) -> bytes:
    """M/Chip session key (Mastercard SKD, cryptogram versions 16/17 and M/Chip 4).

    The common session key derivation of Book 2 A1.3.1 with the 3DES
    diversification value R = ATC || '00 00' || UN (tags 9F36 and 9F37).
    """
    r = mastercard_sk_r(atc, un)
    require_length("mk", mk, 16)
    return derive_common_sk(mk, r)


def derive_visa_sm_sk(mk: bytes, atc: bytes) -> bytes:
    """Visa secure-messaging session key (VIS, CVN 10 and 18), odd parity.

    SK_L := MK_L xor ('00'x6 || ATC) and SK_R := MK_R xor ('00'x6 || ATC xor 'FFFF').
    """
    require_length("mk", mk, 16)
    require_length("atc", atc, 2)
    inverted_atc = bytes(b ^ 0xFF for b in atc)
    r = bytes(6) + atc + bytes(6) + inverted_atc
    return des.adjust_parity(bytes(a ^ b for a, b in zip(mk, r, strict=True)))
