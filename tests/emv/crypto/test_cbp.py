"""The emvtap CBP profile (docs/cbp.md): key diversification, key index, PIN mask,
IAD layouts and cryptograms, checked against pyemv's primitives as an oracle."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import kd as pyemv_kd
from pyemv import tools as pyemv_tools

from emv.crypto import ac, cbp, kd
from emv.crypto.cbp import CbpError, CbpMIad, CbpVIad, KeyDomain, KeyIndex, MKeyType

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "4761739001010010"
MK = kd.derive_icc_mk_a(IMK, PAN, b"\x01")
KEYS = st.binary(min_size=16, max_size=16)
FOUR = st.binary(min_size=4, max_size=4)
TWO = st.binary(min_size=2, max_size=2)
DATA = ac.CryptogramData(
    amount_authorised=bytes.fromhex("000000001500"),
    amount_other=bytes(6),
    terminal_country_code=bytes.fromhex("0826"),
    tvr=bytes(5),
    transaction_currency_code=bytes.fromhex("0826"),
    transaction_date=bytes.fromhex("261126"),
    transaction_type=b"\x00",
    unpredictable_number=bytes.fromhex("5A1B3C4D"),
    aip=bytes.fromhex("2020"),
    atc=bytes.fromhex("0011"),
)


def _oracle_diversify(mk: bytes, domain: int, value: bytes) -> bytes:
    """docs/cbp.md, written with pyemv's 3DES and parity instead of ours."""
    y = bytes((domain,)) + value + bytes(3)
    z = pyemv_tools.encrypt_tdes_ecb(mk, y + pyemv_tools.xor(y, b"\xff" * 8))
    return bytes(pyemv_tools.adjust_key_parity(z))


@given(KEYS, st.sampled_from(list(KeyDomain)), FOUR)
def test_diversification_matches_the_profile(mk: bytes, domain: KeyDomain, value: bytes) -> None:
    assert cbp.diversify_cbp_key(mk, domain, value) == _oracle_diversify(mk, domain, value)


@given(KEYS, TWO)
def test_the_three_key_families_are_apart(mk: bytes, atc: bytes) -> None:
    luk = cbp.derive_luk(mk, b"\x00\x00" + atc)
    suk = cbp.derive_suk(mk, atc)
    suk_uv = cbp.derive_suk_uv(mk, atc)
    assert len({luk, suk, suk_uv}) == 3
    assert suk == _oracle_diversify(mk, 0x53, b"\x00\x00" + atc)


def test_key_index() -> None:
    index = KeyIndex(hour=60_000, sequence=7)
    assert index.to_bytes().hex().upper() == "00EA6007"
    assert KeyIndex.from_bytes(index.to_bytes()) == index
    with pytest.raises(CbpError, match="hour"):
        KeyIndex(1 << 24, 0)
    with pytest.raises(CbpError, match="sequence"):
        KeyIndex(0, 256)
    with pytest.raises(CbpError, match="expected 4 bytes"):
        KeyIndex.from_bytes(b"\x00")


def test_pin_key_unmasks_only_with_the_right_pin() -> None:
    suk_uv = cbp.derive_suk_uv(MK, b"\x00\x11")
    masked = cbp.mask_key(suk_uv, cbp.pin_key("1234", PAN))
    assert masked != suk_uv
    assert cbp.unmask_key(masked, cbp.pin_key("1234", PAN)) == suk_uv
    assert cbp.unmask_key(masked, cbp.pin_key("1235", PAN)) != suk_uv
    assert cbp.pin_key("1234", PAN) != cbp.pin_key("1234", "4761739001010028")
    # the profile's PIN key, written with the standard library's PBKDF2 as the oracle
    salt = b"emvtap-cbp-pin/1" + PAN.encode()
    assert cbp.pin_key("1234", PAN) == hashlib.pbkdf2_hmac("sha256", b"1234", salt, 10_000)
    # the mask is one AES-256-ECB block, checked with pyemv-independent cryptography
    encryptor = Cipher(algorithms.AES(cbp.pin_key("1234", PAN)), modes.ECB()).encryptor()
    assert masked == encryptor.update(suk_uv) + encryptor.finalize()
    with pytest.raises(ValueError, match=r"^pin must contain decimal digits only$"):
        cbp.pin_key("12a4", PAN)
    with pytest.raises(ValueError, match=r"^pin must be 4 to 12 digits"):
        cbp.pin_key("123", PAN)


def test_iad_layouts_round_trip_and_reject_garbage() -> None:
    v = CbpVIad(KeyIndex(1, 2), bytes.fromhex("80000000"), 3)
    assert v.to_bytes().hex().upper() == "C1000001028000000000" + "03"
    assert cbp.parse_iad(v.to_bytes()) == v
    m = CbpMIad(MKeyType.SUK_UV, bytes.fromhex("C0000000"))
    assert m.to_bytes().hex().upper() == "C201C0000000"
    assert cbp.parse_iad(m.to_bytes()) == m
    for bad, message in [
        (b"", "empty"),
        (bytes.fromhex("06011203A00000"), "not an emvtap CBP"),
        (bytes.fromhex("C10000"), "expected 11 bytes"),
        (bytes.fromhex("C202C0000000"), "key type 02"),
        (bytes.fromhex("C10000010280000000" + "0000"), "use count 0"),
    ]:
        with pytest.raises(CbpError, match=message):
            cbp.parse_iad(bad)


@given(FOUR, TWO, st.binary(min_size=4, max_size=4), st.integers(1, 0xFFFF))
def test_cbp_v_arqc_against_pyemv(index: bytes, atc: bytes, cvr: bytes, count: int) -> None:
    luk = cbp.derive_luk(MK, index)
    data = ac.CryptogramData(**{**DATA.__dict__, "atc": atc})
    iad = CbpVIad(KeyIndex.from_bytes(index), cvr, count)
    session_key = pyemv_kd.derive_common_sk(luk, atc + bytes(6))
    expected = pyemv_ac.generate_ac(session_key, data.to_bytes() + iad.to_bytes())
    assert cbp.cbp_v_arqc(luk, data, iad) == expected


@given(TWO, st.sampled_from(list(MKeyType)))
def test_cbp_m_arqc_against_pyemv(atc: bytes, key_type: MKeyType) -> None:
    derive = cbp.derive_suk if key_type is MKeyType.SUK else cbp.derive_suk_uv
    suk = derive(MK, atc)
    data = ac.CryptogramData(**{**DATA.__dict__, "atc": atc})
    iad = CbpMIad(key_type, bytes(4))
    assert cbp.cbp_m_arqc(suk, data, iad) == pyemv_ac.generate_ac(
        suk, data.to_bytes() + iad.to_bytes()
    )


def test_the_cryptogram_depends_on_every_input() -> None:
    luk = cbp.derive_luk(MK, KeyIndex(5, 0).to_bytes())
    iad = CbpVIad(KeyIndex(5, 0), bytes(4), 1)
    reference = cbp.cbp_v_arqc(luk, DATA, iad)
    assert cbp.cbp_v_arqc(luk, DATA, CbpVIad(KeyIndex(5, 0), bytes(4), 2)) != reference
    other_amount = ac.CryptogramData(
        **{**DATA.__dict__, "amount_authorised": bytes.fromhex("000000001501")}
    )
    assert cbp.cbp_v_arqc(luk, other_amount, iad) != reference
    assert cbp.cbp_v_arqc(cbp.derive_luk(MK, KeyIndex(5, 1).to_bytes()), DATA, iad) != reference


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"^mk must be 16"):
        cbp.diversify_cbp_key(bytes(8), KeyDomain.LUK, bytes(4))
    with pytest.raises(ValueError, match=r"^value must be 4"):
        cbp.diversify_cbp_key(MK, KeyDomain.LUK, bytes(3))
    with pytest.raises(ValueError, match=r"^atc must be 2"):
        cbp.derive_suk(MK, bytes(3))
    with pytest.raises(ValueError, match=r"^pin_key must be 32"):
        cbp.mask_key(MK, bytes(8))
    with pytest.raises(ValueError, match=r"^masked must be 16"):
        cbp.unmask_key(bytes(8), bytes(32))


def test_log_chain_detects_removal_reordering_and_change() -> None:
    key = cbp.derive_log_key(MK, bytes(range(32)))
    assert key == _oracle_diversify(MK, 0x54, bytes(range(4)))
    entries = [b"entry-1", b"entry-2", b"entry-3"]

    def chain(items: list[bytes]) -> list[bytes]:
        macs, previous = [], bytes(8)
        for item in items:
            previous = cbp.chain_log_mac(key, previous, item)
            macs.append(previous)
        return macs

    genuine = chain(entries)
    assert genuine[-1] == pyemv_mac_alg3(key, genuine[1] + entries[2])
    assert chain([entries[0], entries[2]])[-1] != genuine[-1]
    assert chain([entries[1], entries[0], entries[2]])[-1] != genuine[-1]
    assert chain([entries[0], b"entry-X", entries[2]])[-1] != genuine[-1]
    with pytest.raises(ValueError, match=r"^previous must be 8"):
        cbp.chain_log_mac(key, bytes(4), b"")
    with pytest.raises(ValueError, match=r"^device must be at least 4"):
        cbp.derive_log_key(MK, b"\x01")


def pyemv_mac_alg3(key: bytes, data: bytes) -> bytes:
    from pyemv import mac as pyemv_mac  # noqa: PLC0415

    return bytes(pyemv_mac.mac_iso9797_3(key[:8], key[8:], data, 2))
