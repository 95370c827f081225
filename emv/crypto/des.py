"""DES and triple DES (TDEA) for EMV: ECB and CBC, key check values, parity.

EMV uses the 2-key (K1 K2) and 3-key (K1 K2 K3) triple DES of NIST SP 800-67 /
ISO/IEC 18033-3 (EMV Book 2 Annex A1.1), and single DES inside the ISO/IEC
9797-1 retail MAC (Book 2 Annex A1.2.1).

``cryptography`` keeps TripleDES in ``hazmat.decrepit`` and deprecates 8- and
16-byte keys, so every key goes through :func:`_tdea_key` (the only place that
expands K -> K K K and K1 K2 -> K1 K2 K1) and reaches the cipher as 24 bytes.
"""

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from emv.crypto.checks import require_blocks, require_length

BLOCK_SIZE = 8
ZERO_IV = bytes(BLOCK_SIZE)
_ECB = modes.ECB()  # a mode without an IV holds no state: one serves every cipher


def _tdea_key(key: bytes) -> bytes:
    """The 24-byte keying option 1 key equivalent to a DES, 2-key or 3-key TDEA key.

    NIST SP 800-67 Rev. 2 §3.2: K1 K2 K1 is 2-key TDEA and K K K is single DES.
    """
    require_length("key", key, 8, 16, 24)
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def _ecb(key: bytes) -> Cipher[modes.ECB]:
    return Cipher(TripleDES(_tdea_key(key)), _ECB)


def _cbc(key: bytes, data: bytes, iv: bytes) -> Cipher[modes.CBC]:
    require_blocks("data", data, BLOCK_SIZE)
    require_length("iv", iv, BLOCK_SIZE)
    return Cipher(TripleDES(_tdea_key(key)), modes.CBC(iv))


class TdeaEcb:
    """TDEA encipherment in ECB mode under one key (SP 800-67 §3.1), its cipher made once:
    for a key that enciphers again and again, such as an issuer master key held in an
    HSM. ``key`` is as for :func:`encrypt_tdes_ecb`. One thread at a time: a TdeaEcb
    shared between threads needs a lock around it. The repr shows no key."""

    __slots__ = ("_encryptor",)

    def __init__(self, key: bytes) -> None:
        self._encryptor = _ecb(key).encryptor()

    def __repr__(self) -> str:
        return "TdeaEcb(<key>)"

    def encrypt(self, data: bytes) -> bytes:
        """``data`` (whole 8-byte blocks) enciphered; ECB carries nothing from one block
        to the next and leaves nothing to finalise, so one encryptor serves every call."""
        require_blocks("data", data, BLOCK_SIZE)
        return self._encryptor.update(data)


def encrypt_tdes_ecb(key: bytes, data: bytes) -> bytes:
    """Encipher ``data`` (whole 8-byte blocks) with TDEA in ECB mode (SP 800-67 §3.1).

    ``key`` is 16 (K1 K2) or 24 (K1 K2 K3) bytes; an 8-byte key gives single DES.
    """
    return TdeaEcb(key).encrypt(data)


def decrypt_tdes_ecb(key: bytes, data: bytes) -> bytes:
    """Decipher ``data`` (whole 8-byte blocks) with TDEA in ECB mode (SP 800-67 §3.1)."""
    require_blocks("data", data, BLOCK_SIZE)
    decryptor = _ecb(key).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def encrypt_tdes_cbc(key: bytes, data: bytes, iv: bytes = ZERO_IV) -> bytes:
    """Encipher ``data`` (whole 8-byte blocks) with TDEA in CBC mode (SP 800-38A §6.2).

    The IV defaults to zeros, as in EMV Book 2 Annex A1.1.
    """
    encryptor = _cbc(key, data, iv).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def decrypt_tdes_cbc(key: bytes, data: bytes, iv: bytes = ZERO_IV) -> bytes:
    """Decipher ``data`` (whole 8-byte blocks) with TDEA in CBC mode (SP 800-38A §6.2)."""
    decryptor = _cbc(key, data, iv).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def kcv(key: bytes, length: int = 3) -> bytes:
    """Key check value: the leftmost ``length`` bytes of the key enciphering 8 zero bytes.

    This is the customary DES/TDEA check value (ANSI X9.24-1 Annex; shown as
    2 or 3 bytes by HSMs).
    """
    if not 1 <= length <= BLOCK_SIZE:
        raise ValueError(f"length must be 1 to {BLOCK_SIZE}, got {length}")
    return encrypt_tdes_ecb(key, ZERO_IV)[:length]


def _odd_parity(byte: int) -> int:
    """``byte`` with its low bit set so that it has an odd number of 1 bits."""
    return byte & 0xFE | (bin(byte >> 1).count("1") + 1) % 2


_ODD_PARITY = bytes(_odd_parity(byte) for byte in range(256))
"""Every byte value with odd parity, as a :meth:`bytes.translate` table."""


def adjust_parity(key: bytes) -> bytes:
    """Set the low bit of each byte so every byte has odd parity (FIPS 46-3 §1).

    EMV Book 2 Annex A1.4.1 derives ICC master keys this way; the bit is not
    used by the cipher, so parity never changes a cryptogram.
    """
    return key.translate(_ODD_PARITY)
