"""Mastercard dynamic CVC3 for mag-stripe mode (PayPass M/Stripe, as in pyemv.cvv).

The card holds KD_CVC3, the ICC key derived from the issuer's IMK_CVC3 with
:func:`emv.crypto.kd.derive_icc_mk_a` (or ``_b``), and a personalised IVCVC3
per track: the 2 rightmost bytes of the MAC (EMV Book 2 Annex A1.2.1, ISO/IEC
9797-1 algorithm 3, padding method 2) of the static track data. For each
transaction it computes CVC3 := DES3(KD_CVC3)[IVCVC3 || UN || ATC], keeps the
2 rightmost bytes and shows them as a decimal number; the terminal places as
many least significant digits as the track has room for.

Track 2 data is the packed nibbles PAN 'D' YYMM service code discretionary
data ('F'-padded to whole bytes); track 1 data is its ASCII bytes
("B" PAN "^" name "^" YYMM service code discretionary data).
"""

from emv.crypto import des, mac
from emv.crypto.checks import require_length

CVC3_DIGITS = 5


def _require_kd_cvc3(kd_cvc3: bytes) -> None:
    require_length("kd_cvc3", kd_cvc3, 16)


def iv_cvc3(kd_cvc3: bytes, track_data: bytes) -> bytes:
    """IVCVC3 for one track: the 2 rightmost bytes of MAC(KD_CVC3)[track data]."""
    _require_kd_cvc3(kd_cvc3)
    if not track_data:
        raise ValueError("track_data must not be empty")
    return mac.mac_iso9797_1_alg3(kd_cvc3, track_data, padding=2)[-2:]


def cvc3_from_iv(kd_cvc3: bytes, iv: bytes, un: bytes, atc: bytes) -> str:
    """CVC3 := the 2 rightmost bytes of DES3(KD_CVC3)[IVCVC3 || UN || ATC], in decimal.

    ``un`` is the 4-byte Unpredictable Number (numeric) and ``atc`` the
    2-byte ATC. The result is zero-padded to 5 digits (0 to 65535).
    """
    _require_kd_cvc3(kd_cvc3)
    require_length("iv", iv, 2)
    require_length("un", un, 4)
    require_length("atc", atc, 2)
    block = des.encrypt_tdes_ecb(kd_cvc3, iv + un + atc)
    return str(int.from_bytes(block[-2:], "big")).zfill(CVC3_DIGITS)


def generate_cvc3(kd_cvc3: bytes, track_data: bytes, atc: bytes, un: bytes) -> str:
    """CVC3 for ``track_data`` (parameter order as ``pyemv.cvv.generate_cvc3``).

    The 5-digit, zero-padded CVC3 from the IVCVC3 of ``track_data``.
    """
    return cvc3_from_iv(kd_cvc3, iv_cvc3(kd_cvc3, track_data), un, atc)
