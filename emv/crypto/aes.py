"""AES block encipherment for the AES options of EMV Book 2 (Annex A1.1, A1.3.1)."""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from emv.crypto.checks import require_blocks, require_length

BLOCK_SIZE = 16


def encrypt_aes_ecb(key: bytes, data: bytes) -> bytes:
    """Encipher ``data`` (whole 16-byte blocks) with AES in ECB mode (FIPS 197).

    ``key`` is 16, 24 or 32 bytes (AES-128, AES-192, AES-256).
    """
    require_length("key", key, 16, 24, 32)
    require_blocks("data", data, BLOCK_SIZE)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def decrypt_aes_ecb(key: bytes, data: bytes) -> bytes:
    """Decipher ``data`` (whole 16-byte blocks) with AES in ECB mode (FIPS 197)."""
    require_length("key", key, 16, 24, 32)
    require_blocks("data", data, BLOCK_SIZE)
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def kcv(key: bytes, length: int = 3) -> bytes:
    """AES key check value: the leftmost ``length`` bytes of AES-ECB of a zero block
    (the customary check value for AES keys, as for DES in ANSI X9.24-1)."""
    if not 1 <= length <= BLOCK_SIZE:
        raise ValueError(f"length must be 1 to {BLOCK_SIZE}, got {length}")
    return encrypt_aes_ecb(key, bytes(BLOCK_SIZE))[:length]
