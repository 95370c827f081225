"""emv.crypto.kd: pyemv as an oracle, the AES options of A1.3.1, malformed input."""

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from pyemv import kd as pyemv_kd

from emv.crypto import kd

imks = st.binary(min_size=16, max_size=16)
pans = st.text(alphabet="0123456789", min_size=12, max_size=19)
psns = st.integers(min_value=0, max_value=99)
atcs = st.binary(min_size=2, max_size=2)
uns = st.binary(min_size=4, max_size=4)


def _psn(n: int) -> bytes:
    return bytes.fromhex(f"{n:02d}")


@given(imk=imks, pan=pans, psn=psns)
def test_option_a_agrees_with_pyemv(imk: bytes, pan: str, psn: int) -> None:
    expected = pyemv_kd.derive_icc_mk_a(imk, pan, f"{psn:02d}")
    assert kd.derive_icc_mk_a(imk, pan, _psn(psn)) == expected


@given(imk=imks, pan=pans, psn=psns)
def test_option_b_agrees_with_pyemv(imk: bytes, pan: str, psn: int) -> None:
    expected = pyemv_kd.derive_icc_mk_b(imk, pan, f"{psn:02d}")
    assert kd.derive_icc_mk_b(imk, pan, _psn(psn)) == expected


@given(imk=imks, pan=st.text(alphabet="0123456789", min_size=8, max_size=16), psn=psns)
def test_option_b_is_option_a_up_to_16_digits(imk: bytes, pan: str, psn: int) -> None:
    assert kd.derive_icc_mk_b(imk, pan, _psn(psn)) == kd.derive_icc_mk_a(imk, pan, _psn(psn))


@given(imk=imks, pan=pans)
def test_psn_defaults_to_00(imk: bytes, pan: str) -> None:
    assert kd.derive_icc_mk_a(imk, pan) == kd.derive_icc_mk_a(imk, pan, b"\x00")
    assert kd.derive_icc_mk_b(imk, pan) == kd.derive_icc_mk_b(imk, pan, b"\x00")


@given(mk=imks, r=st.binary(min_size=8, max_size=8))
def test_common_sk_agrees_with_pyemv(mk: bytes, r: bytes) -> None:
    assert kd.derive_common_sk(mk, r) == pyemv_kd.derive_common_sk(mk, r)


@given(mk=imks, atc=atcs, un=uns)
def test_mastercard_sk_agrees_with_pyemv(mk: bytes, atc: bytes, un: bytes) -> None:
    expected = pyemv_kd.derive_common_sk(mk, atc + b"\x00\x00" + un)
    assert kd.derive_mastercard_sk(mk, atc, un) == expected


@given(mk=imks, atc=atcs)
def test_visa_sm_sk_agrees_with_pyemv(mk: bytes, atc: bytes) -> None:
    assert kd.derive_visa_sm_sk(mk, atc) == pyemv_kd.derive_visa_sm_sk(mk, atc)


def _aes(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@given(mk=imks, r=st.binary(min_size=16, max_size=16))
def test_common_sk_aes_128_is_the_enciphered_r(mk: bytes, r: bytes) -> None:
    assert kd.derive_common_sk(mk, r) == _aes(mk, r)


@given(
    mk=st.sampled_from([24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    r=st.binary(min_size=16, max_size=16),
)
def test_common_sk_aes_192_256_is_leftmost_of_f1_f2(mk: bytes, r: bytes) -> None:
    f1 = r[:2] + b"\xf0" + r[3:]
    f2 = r[:2] + b"\x0f" + r[3:]
    sk = kd.derive_common_sk(mk, r)
    assert sk == (_aes(mk, f1) + _aes(mk, f2))[: len(mk)]
    assert len(sk) == len(mk)


def test_r_length_selects_the_cipher() -> None:
    mk = bytes(range(16))
    tdes = kd.derive_common_sk(mk, bytes(8))
    aes = kd.derive_common_sk(mk, bytes(16))
    assert tdes != aes
    assert aes == _aes(mk, bytes(16))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kd.derive_icc_mk_a(bytes(8), "1234567890123456"), r"^imk must be 16 or 24"),
        (lambda: kd.derive_icc_mk_b(bytes(32), "1234567890123456"), r"^imk must be 16 or 24"),
        (lambda: kd.derive_icc_mk_a(bytes(16), "12345678901234X6"), r"^pan must contain decimal"),
        (lambda: kd.derive_icc_mk_a(bytes(16), "１２３４５６７８９"), r"^pan must contain decimal"),
        (lambda: kd.derive_icc_mk_b(bytes(16), ""), r"^pan must contain decimal"),
        (lambda: kd.derive_icc_mk_a(bytes(16), "1234567"), r"^pan must be 8 to 19 digits"),
        (lambda: kd.derive_icc_mk_b(bytes(16), "1" * 20), r"^pan must be 8 to 19 digits"),
        (
            lambda: kd.derive_icc_mk_a(bytes(16), "1234567890123456", b"00"),
            r"^psn must be 1 byte long",
        ),
        (
            lambda: kd.derive_icc_mk_b(bytes(16), "1234567890123456", b"\x0a"),
            r"^psn must be two BCD",
        ),
        (lambda: kd.derive_common_sk(bytes(16), bytes(7)), r"^r must be 8 or 16 bytes"),
        (lambda: kd.derive_common_sk(bytes(24), bytes(8)), r"^mk must be 16 bytes"),
        (lambda: kd.derive_common_sk(bytes(20), bytes(16)), r"^mk must be 16 or 24 or 32"),
        (lambda: kd.derive_mastercard_sk(bytes(16), bytes(3), bytes(4)), r"^atc must be 2 bytes"),
        (lambda: kd.derive_mastercard_sk(bytes(16), bytes(2), bytes(8)), r"^un must be 4 bytes"),
        (lambda: kd.derive_mastercard_sk(bytes(24), bytes(2), bytes(4)), r"^mk must be 16 bytes"),
        (lambda: kd.derive_visa_sm_sk(bytes(8), bytes(2)), r"^mk must be 16 bytes"),
        (lambda: kd.derive_visa_sm_sk(bytes(16), bytes(1)), r"^atc must be 2 bytes"),
    ],
)
def test_malformed_input_names_the_parameter(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
