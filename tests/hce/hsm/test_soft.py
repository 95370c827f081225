"""SoftHsm only: the key file, its master key, atomic writes, threads."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emv.crypto import aes, des, kd
from hce.hsm import keyfile
from hce.hsm.interface import HsmError, IccMaster, KeyKind, KeyPath
from hce.hsm.soft import SoftHsm

MASTER_KEY = bytes(range(32))
OTHER_MASTER_KEY = bytes(range(1, 33))
IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AES_256 = bytes.fromhex("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4")
PATH = KeyPath("imk", IccMaster("4761739001010010"))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A key file holding a DES2 key "imk", an AES-256 key "vault" and an RSA key "ca"."""
    path = tmp_path / "keys.hsm"
    hsm = SoftHsm.create(path, MASTER_KEY)
    hsm.import_key("imk", KeyKind.DES2, IMK, des.kcv(IMK))
    hsm.import_key("vault", KeyKind.AES256, AES_256, aes.encrypt_aes_ecb(AES_256, bytes(16))[:3])
    hsm.generate_rsa_key("ca", 1024, 3)
    return path


def test_keys_survive_a_reopen(key_file: Path) -> None:
    before = SoftHsm.open(key_file, MASTER_KEY)
    sealed = before.encrypt_data("vault", b"5413330089010434", b"token-1")
    after = SoftHsm.open(key_file, MASTER_KEY)
    assert after.labels() == before.labels() == ["ca", "imk", "vault"]
    assert after.key_info("imk") == before.key_info("imk")
    assert after.application_cryptogram(PATH, b"data", "emv") == before.application_cryptogram(
        PATH, b"data", "emv"
    )
    assert after.decrypt_data("vault", sealed, b"token-1") == b"5413330089010434"
    assert after.keyed_digest("vault", b"x") == before.keyed_digest("vault", b"x")
    assert after.rsa_public_key("ca") == before.rsa_public_key("ca")
    message = b"\x6a" + bytes(127)
    assert after.rsa_sign_raw("ca", message) == before.rsa_sign_raw("ca", message)


def test_a_wrong_master_key_is_refused_naming_the_file(key_file: Path) -> None:
    with pytest.raises(HsmError, match="wrong master key") as raised:
        SoftHsm.open(key_file, OTHER_MASTER_KEY)
    assert str(key_file) in str(raised.value)
    for key in (MASTER_KEY, OTHER_MASTER_KEY):
        assert key.hex() not in str(raised.value).lower()


def test_any_altered_byte_of_the_key_file_is_refused(key_file: Path) -> None:
    original = key_file.read_bytes()
    variants = [original[:-1], original + b"\x00", b""]
    for position in range(len(original)):
        for flip in (0x01, 0xFF):
            altered = bytearray(original)
            altered[position] ^= flip
            variants.append(bytes(altered))
    for variant in variants:
        key_file.write_bytes(variant)
        with pytest.raises(HsmError, match=f"key file {key_file}"):
            SoftHsm.open(key_file, MASTER_KEY)


def test_the_key_file_holds_no_key_in_clear(key_file: Path) -> None:
    content = key_file.read_bytes()
    for key in (IMK, AES_256, MASTER_KEY):
        for form in (key, key.hex().encode(), key.hex().upper().encode()):
            assert form not in content
    assert stat.S_IMODE(key_file.stat().st_mode) & 0o077 == 0


def test_repr_shows_no_key(key_file: Path) -> None:
    text = repr(SoftHsm.open(key_file, MASTER_KEY))
    assert str(key_file) in text
    for key in (IMK, AES_256, MASTER_KEY):
        assert key.hex() not in text.lower()


def test_create_refuses_an_existing_file_and_open_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.hsm"
    SoftHsm.create(path, MASTER_KEY)
    with pytest.raises(HsmError, match="already exists"):
        SoftHsm.create(path, MASTER_KEY)
    with pytest.raises(HsmError, match=f"key file {tmp_path / 'other.hsm'}"):
        SoftHsm.open(tmp_path / "other.hsm", MASTER_KEY)
    with pytest.raises(HsmError, match="32 bytes"):
        SoftHsm.open(path, MASTER_KEY[:16])


def test_a_failed_write_leaves_the_old_file_and_key_set(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hsm = SoftHsm.open(key_file, MASTER_KEY)
    original = key_file.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(HsmError, match=f"key file {key_file}: cannot write"):
        hsm.generate_key("new", KeyKind.AES128)
    monkeypatch.undo()
    assert key_file.read_bytes() == original
    assert os.listdir(key_file.parent) == [key_file.name]
    assert hsm.labels() == ["ca", "imk", "vault"]
    hsm.generate_key("new", KeyKind.AES128)
    assert SoftHsm.open(key_file, MASTER_KEY).labels() == ["ca", "imk", "new", "vault"]


def test_concurrent_imports_all_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.hsm"
    hsm = SoftHsm.create(path, MASTER_KEY)
    labels = [f"key-{thread}-{n}" for thread in range(8) for n in range(5)]

    def generate(mine: list[str]) -> None:
        for label in mine:
            hsm.generate_key(label, KeyKind.AES128)

    threads = [threading.Thread(target=generate, args=(labels[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert hsm.labels() == sorted(labels)
    assert SoftHsm.open(path, MASTER_KEY).labels() == sorted(labels)


def test_threads_share_the_cipher_of_an_issuer_master_key(key_file: Path) -> None:
    hsm = SoftHsm.open(key_file, MASTER_KEY)
    paths = [KeyPath("imk", IccMaster(f"47617390010100{n:02d}")) for n in range(32)] * 8
    with ThreadPoolExecutor(8) as pool:
        kcvs = list(pool.map(hsm.key_check_value, paths))
    assert kcvs == [des.kcv(kd.derive_icc_mk_a(IMK, path.icc.pan), 3) for path in paths]


# --- the master key ---------------------------------------------------------------------


def test_master_key_from_the_environment() -> None:
    environ = {keyfile.MASTER_KEY_ENV: MASTER_KEY.hex().upper()}
    assert keyfile.read_master_key(environ=environ) == MASTER_KEY


def test_master_key_from_a_file_comes_first(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_KEY.hex() + "\n")
    environ = {keyfile.MASTER_KEY_ENV: OTHER_MASTER_KEY.hex()}
    assert keyfile.read_master_key(path, environ=environ) == MASTER_KEY


def test_a_missing_master_key_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(HsmError, match=keyfile.MASTER_KEY_ENV):
        keyfile.read_master_key(environ={})
    with pytest.raises(HsmError, match=f"master key file {tmp_path / 'absent'}: cannot read"):
        keyfile.read_master_key(tmp_path / "absent", environ={})


@pytest.mark.parametrize(
    "text",
    [MASTER_KEY.hex()[:-1], MASTER_KEY.hex() + "00", "zz" + MASTER_KEY.hex()[2:], "", "\xff" * 64],
    ids=["63 digits", "66 digits", "not hex", "empty", "not ascii"],
)
def test_a_malformed_master_key_is_refused_without_echoing_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(HsmError, match="expected 64 hex digits") as from_file:
        keyfile.read_master_key(path, environ={})
    with pytest.raises(HsmError, match="expected 64 hex digits") as from_environment:
        keyfile.read_master_key(environ={keyfile.MASTER_KEY_ENV: text})
    for raised in (from_file, from_environment):
        assert MASTER_KEY.hex()[:16] not in str(raised.value)
