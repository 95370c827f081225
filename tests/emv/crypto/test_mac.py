"""emv.crypto.mac: behaviour, pyemv as an oracle, malformed input."""

from collections.abc import Callable
from typing import Literal

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from pyemv import mac as pyemv_mac

from emv.crypto import des, mac

data_strategy = st.binary(max_size=64)
paddings = st.sampled_from([1, 2])


@given(data=data_strategy, block_size=st.sampled_from([8, 16]))
def test_padding_agrees_with_pyemv(data: bytes, block_size: int) -> None:
    assert mac.pad_iso9797_1_method_1(data, block_size) == pyemv_mac.pad_iso9797_1(data, block_size)
    assert mac.pad_iso9797_1_method_2(data, block_size) == pyemv_mac.pad_iso9797_2(data, block_size)


@given(data=data_strategy)
def test_method_2_always_adds_a_marker(data: bytes) -> None:
    padded = mac.pad_iso9797_1_method_2(data)
    assert padded.startswith(data + b"\x80")
    assert len(padded) % 8 == 0
    assert len(padded) - len(data) in range(1, 9)


@given(key=st.binary(min_size=16, max_size=16), data=data_strategy, padding=paddings)
def test_alg3_agrees_with_pyemv(key: bytes, data: bytes, padding: Literal[1, 2]) -> None:
    expected = pyemv_mac.mac_iso9797_3(key[:8], key[8:], data, padding)
    assert mac.mac_iso9797_1_alg3(key, data, padding) == expected


@given(key=st.binary(min_size=16, max_size=16), messages=st.lists(data_strategy, max_size=4))
def test_a_retail_mac_key_serves_several_macs(key: bytes, messages: list[bytes]) -> None:
    prepared = mac.RetailMacKey(key)
    for data in messages:  # nothing carries over from one MAC to the next
        for padding in (1, 2):
            expected = pyemv_mac.mac_iso9797_3(key[:8], key[8:], data, padding)
            assert prepared.mac(data, padding) == expected
    assert key.hex() not in repr(prepared).lower()


@given(k=st.binary(min_size=8, max_size=8), data=data_strategy, padding=paddings)
def test_alg3_with_equal_halves_is_des_alg1(k: bytes, data: bytes, padding: Literal[1, 2]) -> None:
    assert mac.mac_iso9797_1_alg3(k + k, data, padding) == mac.mac_iso9797_1_alg1(k, data, padding)


@given(
    key=st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    data=data_strategy,
    padding=paddings,
)
def test_alg1_is_the_last_cbc_block(key: bytes, data: bytes, padding: Literal[1, 2]) -> None:
    padded = mac.pad_iso9797_1_method_1(data) if padding == 1 else mac.pad_iso9797_1_method_2(data)
    assert mac.mac_iso9797_1_alg1(key, data, padding) == des.encrypt_tdes_cbc(key, padded)[-8:]


@given(key=st.binary(min_size=16, max_size=16), data=data_strategy)
def test_alg3_default_padding_is_method_2(key: bytes, data: bytes) -> None:
    assert mac.mac_iso9797_1_alg3(key, data) == mac.mac_iso9797_1_alg3(key, data, 2)


def _cmac_by_the_rfc(key: bytes, data: bytes) -> bytes:
    """RFC 4493 §2.3-2.4 written out on raw AES, an oracle independent of CMAC()."""

    def aes(block: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def double(block: bytes) -> bytes:
        value = int.from_bytes(block, "big") << 1
        if value >> 128:
            value = (value ^ 0x87) & ((1 << 128) - 1)
        return value.to_bytes(16, "big")

    k1 = double(aes(bytes(16)))
    k2 = double(k1)
    complete = bool(data) and len(data) % 16 == 0
    last_key = k1 if complete else k2
    padded = data if complete else data + b"\x80" + bytes(-(len(data) + 1) % 16)
    *head, last = (padded[i : i + 16] for i in range(0, len(padded), 16))
    x = bytes(16)
    for block in head:
        x = aes(bytes(a ^ b for a, b in zip(x, block, strict=True)))
    return aes(bytes(a ^ b ^ c for a, b, c in zip(x, last, last_key, strict=True)))


@given(
    key=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    data=data_strategy,
)
def test_aes_cmac_agrees_with_rfc_4493_construction(key: bytes, data: bytes) -> None:
    assert mac.aes_cmac(key, data) == _cmac_by_the_rfc(key, data)


@given(
    key=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    messages=st.lists(data_strategy, max_size=4),
)
def test_an_aes_cmac_key_serves_several_macs(key: bytes, messages: list[bytes]) -> None:
    prepared = mac.AesCmacKey(key)
    for data in messages * 2:  # nothing carries over from one MAC to the next
        assert prepared.mac(data) == _cmac_by_the_rfc(key, data)
    assert key.hex() not in repr(prepared).lower()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mac.mac_iso9797_1_alg3(bytes(8), b"x"), r"^key must be 16 bytes"),
        (lambda: mac.mac_iso9797_1_alg3(bytes(24), b"x"), r"^key must be 16 bytes"),
        (lambda: mac.mac_iso9797_1_alg1(bytes(12), b"x"), r"^key must be 8 or 16 or 24"),
        (lambda: mac.mac_iso9797_1_alg1(bytes(16), b"x", 3), r"^padding must be 1 or 2"),  # type: ignore[arg-type]
        (lambda: mac.mac_iso9797_1_alg3(bytes(16), b"x", 0), r"^padding must be 1 or 2"),  # type: ignore[arg-type]
        (lambda: mac.aes_cmac(bytes(8), b"x"), r"^key must be 16 or 24 or 32"),
    ],
)
def test_malformed_input_names_the_parameter(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
