"""emv.crypto.des: behaviour, pyemv as an oracle, malformed input."""

import warnings
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import tools

from emv.crypto import des

tdes_keys = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=24, max_size=24))
blocks = st.integers(min_value=0, max_value=8).flatmap(
    lambda n: st.binary(min_size=8 * n, max_size=8 * n)
)
ivs = st.binary(min_size=8, max_size=8)


@given(key=tdes_keys, data=blocks)
def test_ecb_agrees_with_pyemv(key: bytes, data: bytes) -> None:
    assert des.encrypt_tdes_ecb(key, data) == tools.encrypt_tdes_ecb(key, data)


@given(key=tdes_keys, data=blocks, iv=ivs)
def test_cbc_agrees_with_pyemv(key: bytes, data: bytes, iv: bytes) -> None:
    assert des.encrypt_tdes_cbc(key, data, iv) == tools.encrypt_tdes_cbc(key, iv, data)


@given(key=tdes_keys, length=st.integers(min_value=1, max_value=8))
def test_kcv_agrees_with_pyemv(key: bytes, length: int) -> None:
    assert des.kcv(key, length) == tools.key_check_digits(key, length)


@given(key=st.binary(min_size=0, max_size=32))
def test_adjust_parity_agrees_with_pyemv(key: bytes) -> None:
    adjusted = des.adjust_parity(key)
    assert adjusted == tools.adjust_key_parity(key)
    assert all(bin(b).count("1") % 2 == 1 for b in adjusted)


@given(key=st.binary(min_size=8, max_size=8) | tdes_keys, data=blocks, iv=ivs)
def test_decryption_inverts_encryption(key: bytes, data: bytes, iv: bytes) -> None:
    assert des.decrypt_tdes_ecb(key, des.encrypt_tdes_ecb(key, data)) == data
    assert des.decrypt_tdes_cbc(key, des.encrypt_tdes_cbc(key, data, iv), iv) == data


@given(k1=ivs, k2=ivs, data=blocks)
def test_short_keys_are_keying_options(k1: bytes, k2: bytes, data: bytes) -> None:
    assert des.encrypt_tdes_ecb(k1 + k2, data) == des.encrypt_tdes_ecb(k1 + k2 + k1, data)
    assert des.encrypt_tdes_ecb(k1, data) == des.encrypt_tdes_ecb(k1 * 3, data)


@given(key=st.binary(min_size=8, max_size=8) | tdes_keys, data=blocks)
def test_a_prepared_key_enciphers_as_encrypt_tdes_ecb(key: bytes, data: bytes) -> None:
    cipher = des.TdeaEcb(key)
    assert cipher.encrypt(data) == des.encrypt_tdes_ecb(key, data)
    assert cipher.encrypt(data) == des.encrypt_tdes_ecb(key, data)  # nothing carried over


def test_a_prepared_key_hides_its_key() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert key.hex() not in repr(des.TdeaEcb(key)).lower()


def test_default_iv_is_zero() -> None:
    key, data = bytes(range(16)), bytes(range(24))
    assert des.encrypt_tdes_cbc(key, data) == des.encrypt_tdes_cbc(key, data, bytes(8))
    assert des.encrypt_tdes_cbc(key, data) != des.encrypt_tdes_cbc(key, data, b"\x01" * 8)


@pytest.mark.parametrize("key_length", [8, 16, 24])
def test_no_deprecation_warning_for_any_key_length(key_length: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        des.encrypt_tdes_cbc(bytes(range(key_length)), bytes(16))
        des.decrypt_tdes_ecb(bytes(range(key_length)), bytes(16))


Call = Callable[[], object]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: des.encrypt_tdes_ecb(bytes(15), bytes(8)), r"^key must be 8 or 16 or 24 bytes"),
        (lambda: des.decrypt_tdes_ecb(bytes(32), bytes(8)), r"^key must be"),
        (lambda: des.encrypt_tdes_ecb(bytes(16), bytes(7)), r"^data must be a multiple of 8"),
        (lambda: des.decrypt_tdes_cbc(bytes(16), bytes(9)), r"^data must be a multiple of 8"),
        (lambda: des.encrypt_tdes_cbc(bytes(16), bytes(8), bytes(16)), r"^iv must be 8 bytes"),
        (lambda: des.kcv(bytes(16), 0), r"^length must be 1 to 8"),
        (lambda: des.kcv(bytes(16), 9), r"^length must be 1 to 8"),
        (lambda: des.kcv(bytes(5)), r"^key must be"),
        (lambda: des.TdeaEcb(bytes(15)), r"^key must be 8 or 16 or 24 bytes"),
        (lambda: des.TdeaEcb(bytes(16)).encrypt(bytes(12)), r"^data must be a multiple of 8"),
    ],
)
def test_malformed_input_names_the_parameter(call: Call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_aes_kcv_is_the_zero_block_encrypted() -> None:
    from emv.crypto import aes  # noqa: PLC0415

    key = bytes(range(16))
    # FIPS 197 Appendix C.1 (AES-128): 00112233..FF under 000102..0F
    plaintext = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert aes.encrypt_aes_ecb(key, plaintext).hex().upper() == "69C4E0D86A7B0430D8CDB78070B4C55A"
    assert aes.kcv(key) == aes.encrypt_aes_ecb(key, bytes(16))[:3]
    assert aes.kcv(key, 16) != aes.kcv(bytes(16), 16)
    with pytest.raises(ValueError, match="length must be 1 to 16"):
        aes.kcv(key, 0)
