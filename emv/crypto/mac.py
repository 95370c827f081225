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


class RetailMacKey:
    """The 16-byte key K_L || K_R of MAC algorithm 3 with its two ciphers made once (single
    DES under K_L, TDEA under K_L K_R K_L): for several MACs under one key, such as an
    ARQC verified and its ARPC (method 2) made under one session key. One thread at a
    time, as :class:`~emv.crypto.des.TdeaEcb`; the repr shows no key."""

    __slots__ = ("_chain", "_final")

    def __init__(self, key: bytes) -> None:
        require_length("key", key, 16)
        self._chain = des.TdeaEcb(key[:8])
        self._final = des.TdeaEcb(key)

    def __repr__(self) -> str:
        return "RetailMacKey(<key>)"

    def mac(self, data: bytes, padding: Padding = 2) -> bytes:
        """ISO/IEC 9797-1 MAC algorithm 3 of ``data`` (Book 2 A1.2.1): every block but the
        last chained with single DES under K_L, H := DES(K_L)[H xor D], from H = 0; the
        last is D_L xor H enciphered with TDEA (K_L K_R K_L), which is deciphering with
        K_R and enciphering again with K_L."""
        padded = _pad(data, padding)
        last = len(padded) - des.BLOCK_SIZE
        chain = 0
        for start in range(0, last, des.BLOCK_SIZE):
            block = int.from_bytes(padded[start : start + des.BLOCK_SIZE], "big")
            chain = int.from_bytes(self._chain.encrypt(_block(chain ^ block)), "big")
        return self._final.encrypt(_block(chain ^ int.from_bytes(padded[last:], "big")))


def _block(value: int) -> bytes:
    return value.to_bytes(des.BLOCK_SIZE, "big")


def mac_iso9797_1_alg3(key: bytes, data: bytes, padding: Padding = 2) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3, the retail MAC of EMV Book 2 Annex A1.2.1.

    ``key`` is the 16-byte K_L || K_R: every block is chained with single DES under
    K_L, and the last block is then deciphered with K_R and enciphered again with K_L
    (:meth:`RetailMacKey.mac`).
    """
    return RetailMacKey(key).mac(data, padding)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (RFC 4493 §2.4; NIST SP 800-38B §6.2): the 16-byte tag.

    ``key`` is 16, 24 or 32 bytes.
    """
    return AesCmacKey(key).mac(data)


class AesCmacKey:
    """An AES key for AES-CMAC (:func:`aes_cmac`) with its context made once: each MAC
    starts from a copy, which costs less than a new context, for a key that MACs again
    and again (a look-up key digesting every authorisation's PAN). One thread at a
    time, as :class:`~emv.crypto.des.TdeaEcb`; the repr shows no key."""

    __slots__ = ("_start",)

    def __init__(self, key: bytes) -> None:
        require_length("key", key, 16, 24, 32)
        self._start = CMAC(algorithms.AES(key))

    def __repr__(self) -> str:
        return "AesCmacKey(<key>)"

    def mac(self, data: bytes) -> bytes:
        """The 16-byte tag of ``data`` (RFC 4493 §2.4)."""
        context = self._start.copy()
        context.update(data)
        return context.finalize()
