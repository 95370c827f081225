"""Message authentication codes used by EMV (EMV Book 2 Annex A1.2).

- ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC) and algorithm 3 (the "retail MAC",
  Book 2 A1.2.1), with padding method 1 (zeros) or 2 ('80' then zeros).
- AES-CMAC (RFC 4493, NIST SP 800-38B; ISO/IEC 9797-1 MAC algorithm 5), the MAC
  for 16-byte block ciphers (Book 2 A1.2.2).

The functions return the full MAC block; EMV takes its leftmost s bytes
(4 <= s <= 8, Book 2 A1.2).
"""

from typing import Literal

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from emv.crypto import des
from emv.crypto.checks import require_length

Padding = Literal[1, 2]


def pad_iso9797_1_method_1(data: bytes, block_size: int = des.BLOCK_SIZE) -> bytes:
    """ISO/IEC 9797-1 padding method 1: append the fewest zero bytes to fill a block.

    Empty data becomes one block of zeros (ISO/IEC 9797-1:2011 §6.3.1).
    """
    if not data:
        return bytes(block_size)
    return data + bytes(-len(data) % block_size)


def pad_iso9797_1_method_2(data: bytes, block_size: int = des.BLOCK_SIZE) -> bytes:
    """ISO/IEC 9797-1 padding method 2: append '80', then zeros to fill a block.

    This is the padding of EMV Book 2 Annex A1.2.1 step 1.
    """
    return pad_iso9797_1_method_1(data + b"\x80", block_size)


def _pad(data: bytes, padding: Padding) -> bytes:
    if padding == 1:
        return pad_iso9797_1_method_1(data)
    if padding == 2:
        return pad_iso9797_1_method_2(data)
    raise ValueError(f"padding must be 1 or 2 (ISO/IEC 9797-1 method), got {padding!r}")


def _cbc_mac(key: bytes, padded: bytes) -> bytes:
    return des.encrypt_tdes_cbc(key, padded)[-des.BLOCK_SIZE :]


def mac_iso9797_1_alg1(key: bytes, data: bytes, padding: Padding = 2) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: CBC-MAC, the last CBC block, zero IV.

    ``key`` is a DES (8 bytes) or TDEA (16 or 24 bytes) key; with DES and
    padding method 1 this is the FIPS 113 Data Authentication Algorithm.
    """
    require_length("key", key, 8, 16, 24)
    return _cbc_mac(key, _pad(data, padding))


def mac_iso9797_1_alg3(key: bytes, data: bytes, padding: Padding = 2) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, the retail MAC of EMV Book 2 Annex A1.2.1.

    ``key`` is the 16-byte K_L || K_R: every block is chained with single DES
    under K_L, and the last block is then deciphered with K_R and enciphered
    again with K_L, which is TDEA (K_L K_R K_L) on the last chained block.
    """
    require_length("key", key, 16)
    padded = _pad(data, padding)
    head, last = padded[: -des.BLOCK_SIZE], padded[-des.BLOCK_SIZE :]
    chain = _cbc_mac(key[:8], head) if head else des.ZERO_IV
    return des.encrypt_tdes_ecb(key, bytes(a ^ b for a, b in zip(chain, last, strict=True)))


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (RFC 4493 §2.4; NIST SP 800-38B §6.2): the 16-byte tag.

    ``key`` is 16, 24 or 32 bytes.
    """
    require_length("key", key, 16, 24, 32)
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()
