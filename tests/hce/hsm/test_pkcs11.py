"""Pkcs11Hsm only (SoftHSMv2): what the token holds, what it keeps, how it is opened.

The shared suite (test_hsm.py) checks the outputs; this file looks inside the
token through the backend's own session: stored secrets cannot be read, only the
kept ICC master keys outlive a call (at most CARD_KEYS of them), an authorisation
derives its key path once, a master key handle that turned invalid is found again,
the envelope is the ECW2 one, and opening a token fails with a clear HsmError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pytest
import softhsm
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, ObjectClass

from emv.crypto import ac, aes, cbp, des, kd, wrap
from emv.crypto.wrap import BatchHeader, BatchKind
from hce.hsm import pkcs11 as backend
from hce.hsm.interface import (
    ArpcMethod1,
    ArpcMethod2,
    BatchRequest,
    CommonSession,
    HsmError,
    IccMaster,
    KeyKind,
    KeyNotFound,
    KeyPath,
    LimitedUse,
    MastercardSession,
    Session,
)
from hce.hsm.pkcs11 import CARD_KEYS, Pkcs11Hsm, library

# The hsm fixture of conftest.py, pkcs11 backend only (skipped without SoftHSMv2).
pytestmark = pytest.mark.parametrize("hsm", ["pkcs11"], indirect=True)

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AES_256 = bytes.fromhex("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4")
PAN = "4761739001010010"
ICC = IccMaster(PAN, b"\x01")
ATC = bytes.fromhex("002A")
LUK = LimitedUse(BatchKind.LUK, bytes.fromhex("00CB2003"))
SUK_UV = LimitedUse(BatchKind.SUK_UV, b"\x00\x00" + ATC)
DEVICE = ec.generate_private_key(ec.SECP256R1())
DEVICE_POINT = wrap.public_point(DEVICE.public_key())
HEADER = BatchHeader(b"batch-01", b"token-1", wrap.device_fingerprint(DEVICE_POINT), BatchKind.SUK)
PIN_KEY = cbp.pin_key("1234", PAN)
REQUESTS = [
    BatchRequest(LUK, max_transactions=10, max_amount=50_000, expiry_hour=60_024),
    BatchRequest(SUK_UV, max_transactions=1, max_amount=20_000, expiry_hour=60_100),
]


@pytest.fixture
def stocked(hsm: Pkcs11Hsm) -> Pkcs11Hsm:
    """The HSM with an imported and a generated DES2 key, an AES key and an RSA pair."""
    hsm.import_key("imk", KeyKind.DES2, IMK, des.kcv(IMK))
    hsm.generate_key("imk-new", KeyKind.DES2)
    hsm.import_key("vault", KeyKind.AES256, AES_256, aes.kcv(AES_256))
    hsm.generate_rsa_key("ca", 1024, 3)
    return hsm


def _session(hsm: Pkcs11Hsm) -> pkcs11.Session:
    """The backend's own session: white-box inspection of the token."""
    session: pkcs11.Session = hsm._session
    return session


def _session_objects(hsm: Pkcs11Hsm) -> list[pkcs11.Object]:
    return list(_session(hsm).get_objects({Attribute.TOKEN: False}))


def _only_kept_card_keys(hsm: Pkcs11Hsm, cards: int) -> None:
    """The session objects left are ICC master keys kept for at most ``cards`` cards (up
    to three forms each), secret, and each for derivation or encipherment only."""
    kept = _session_objects(hsm)
    assert len(kept) <= 3 * cards
    for key in kept:
        assert key[Attribute.CLASS] is ObjectClass.SECRET_KEY
        assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
        uses = {use for use in USES if key[use]}
        assert uses in ({Attribute.DERIVE}, {Attribute.ENCRYPT})


def test_stored_secrets_cannot_be_read(stocked: Pkcs11Hsm) -> None:
    secrets = [
        *_session(stocked).get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}),
        *_session(stocked).get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}),
    ]
    assert sorted(key[Attribute.LABEL] for key in secrets) == ["ca", "imk", "imk-new", "vault"]
    for key in secrets:
        assert key[Attribute.TOKEN] and key[Attribute.SENSITIVE]
        assert not key[Attribute.EXTRACTABLE]
        with pytest.raises(pkcs11.AttributeSensitive):
            key[
                Attribute.VALUE
                if key[Attribute.CLASS] is ObjectClass.SECRET_KEY
                else Attribute.PRIVATE_EXPONENT
            ]
        if key[Attribute.LABEL] in ("imk-new", "ca"):
            assert key[Attribute.NEVER_EXTRACTABLE] and key[Attribute.ALWAYS_SENSITIVE]


USES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)
GRANTED = {
    "imk": {Attribute.DERIVE},
    "imk-new": {Attribute.DERIVE},
    "vault": {Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN},
    "ca": {Attribute.SIGN},
}


@pytest.mark.parametrize("label", GRANTED)
def test_stored_secrets_have_only_their_uses(stocked: Pkcs11Hsm, label: str) -> None:
    """An IMK only derives: DES3 under it of chosen data would be an ICC master key in clear."""
    template = {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
    uses = USES
    if label == "ca":
        template[Attribute.CLASS] = ObjectClass.PRIVATE_KEY
        uses = (Attribute.DECRYPT, Attribute.UNWRAP, Attribute.SIGN, Attribute.DERIVE)
    (key,) = _session(stocked).get_objects(template)
    assert {use for use in uses if key[use]} == GRANTED[label]


SESSIONS = [None, CommonSession(ATC + bytes(6)), MastercardSession(ATC, bytes(4))]
PATHS = [
    KeyPath("imk", ICC, limited_use, session)
    for limited_use in (None, LUK, SUK_UV)
    for session in SESSIONS
]
CALLS: list[Callable[[Pkcs11Hsm], object]] = [
    lambda hsm: hsm.arpc_method_1(KeyPath("imk", ICC, LUK, SESSIONS[1]), bytes(8), b"00"),
    lambda hsm: hsm.arpc_method_2(KeyPath("imk", ICC, SUK_UV), bytes(8), bytes(4)),
    lambda hsm: hsm.key_check_value(KeyPath("imk", IccMaster("5413330089010434567"), LUK)),
    lambda hsm: hsm.wrap_batch(
        "imk", ICC, REQUESTS, device_point=DEVICE_POINT, header=HEADER.to_bytes(), pin_key=PIN_KEY
    ),
    lambda hsm: hsm.decrypt_data("vault", hsm.encrypt_data("vault", b"pan", b"aad"), b"aad"),
    lambda hsm: hsm.keyed_digest("vault", b"pan"),
    lambda hsm: hsm.rsa_sign_raw("ca", bytes(128)),
]
FAILING_CALLS: list[Callable[[Pkcs11Hsm], object]] = [
    lambda hsm: hsm.arpc_method_1(KeyPath("imk", ICC, LUK, SESSIONS[1]), bytes(7), b"00"),
    lambda hsm: hsm.arpc_method_2(KeyPath("imk", ICC, LUK), bytes(8), bytes(4), bytes(9)),
    lambda hsm: hsm.wrap_batch(
        "imk", ICC, REQUESTS, device_point=DEVICE_POINT, header=b"", pin_key=PIN_KEY[:16]
    ),
    lambda hsm: hsm.decrypt_data("vault", bytes(40), b""),
    lambda hsm: hsm.import_key("imk-2", KeyKind.DES2, IMK, b"\x00\x00\x00"),
]


@pytest.mark.parametrize("path", PATHS)
def test_only_card_keys_outlive_a_cryptogram(stocked: Pkcs11Hsm, path: KeyPath) -> None:
    stocked.application_cryptogram(path, bytes(40), "emv")
    _only_kept_card_keys(stocked, cards=1)
    kept = len(_session_objects(stocked))
    stocked.application_cryptogram(path, bytes(40), "emv")
    assert len(_session_objects(stocked)) == kept


@pytest.mark.parametrize("call", CALLS)
def test_only_card_keys_outlive_a_call(stocked: Pkcs11Hsm, call: Callable[..., object]) -> None:
    call(stocked)
    _only_kept_card_keys(stocked, cards=1)


@pytest.mark.parametrize("call", FAILING_CALLS)
def test_only_card_keys_outlive_a_failed_call(
    stocked: Pkcs11Hsm, call: Callable[..., object]
) -> None:
    with pytest.raises(HsmError):
        call(stocked)
    _only_kept_card_keys(stocked, cards=1)


def test_the_kept_card_keys_are_bounded(stocked: Pkcs11Hsm) -> None:
    pans = [f"47617390010{number:05d}" for number in range(CARD_KEYS + 2)]
    kcvs = [stocked.key_check_value(KeyPath("imk", IccMaster(pan))) for pan in pans]
    assert len(_session_objects(stocked)) == CARD_KEYS
    first = IccMaster(pans[0])  # the least recently used: no longer kept, derived again
    assert stocked.key_check_value(KeyPath("imk", first)) == kcvs[0]
    assert kcvs[0] == des.kcv(kd.derive_icc_mk_a(IMK, first.pan, first.psn))


def test_closing_destroys_the_kept_card_keys(stocked: Pkcs11Hsm) -> None:
    stocked.key_check_value(KeyPath("imk", ICC))
    stocked.close()
    with Pkcs11Hsm(softhsm.softhsm_module(), softhsm.TOKEN_LABEL, softhsm.USER_PIN) as reopened:
        assert _session_objects(reopened) == []


# Two plastic cards' authorisations, the session of an ATC and the ARPC: Visa CVN 18
# (method 2 under the AC's session key), Mastercard CVN 16 (method 1 under the ICC
# master key).
AUTHORISATIONS: list[tuple[Callable[[bytes], Session], ArpcMethod1 | ArpcMethod2]] = [
    (lambda atc: CommonSession(atc + bytes(6)), ArpcMethod2(bytes.fromhex("00800000"))),
    (lambda atc: MastercardSession(atc, bytes.fromhex("5A1B3C4D")), ArpcMethod1(b"00")),
]


@pytest.mark.parametrize(("session_of", "arpc"), AUTHORISATIONS)
def test_an_authorisation_derives_its_key_path_once(
    stocked: Pkcs11Hsm,
    monkeypatch: pytest.MonkeyPatch,
    session_of: Callable[[bytes], Session],
    arpc: ArpcMethod1 | ArpcMethod2,
) -> None:
    """The first finds the IMK and derives the card's keys (the ICC master key to derive
    from, and to encipher with for method 1), the session key and its twin; the next,
    with the card's keys kept, only the session key and its twin."""
    derived: list[bytes] = []
    found: list[str] = []
    derive, find = backend._derive_des2, Pkcs11Hsm._find

    def counting_derive(*args: Any) -> Any:
        derived.append(args[1])
        return derive(*args)

    def counting_find(hsm: Pkcs11Hsm, object_class: ObjectClass, label: str) -> Any:
        found.append(label)
        return find(hsm, object_class, label)

    monkeypatch.setattr(backend, "_derive_des2", counting_derive)
    monkeypatch.setattr(Pkcs11Hsm, "_find", counting_find)
    mk = kd.derive_icc_mk_a(IMK, PAN, ICC.psn)
    data = bytes(range(40))
    method_1 = isinstance(arpc, ArpcMethod1)
    counts = []
    for atc in (b"\x00\x01", b"\x00\x02"):
        session = session_of(atc)
        if isinstance(session, CommonSession):
            sk = kd.derive_common_sk(mk, session.r)
        else:
            sk = kd.derive_mastercard_sk(mk, session.atc, session.un)
        arqc = ac.generate_ac(sk, data)
        answer = stocked.verify_arqc_and_generate_arpc(
            KeyPath("imk", ICC, session=session),
            data,
            "emv",
            arqc,
            arpc=arpc,
            arpc_session=None if method_1 else session,
        )
        if isinstance(arpc, ArpcMethod1):
            assert answer == ac.generate_arpc_1(mk, arqc, arpc.arc)
        else:
            assert answer == ac.generate_arpc_2(sk, arqc, arpc.csu)
        counts.append(len(derived) - sum(counts))
    assert found == ["imk"]
    assert counts == [4 if method_1 else 3, 2]


def test_a_master_key_destroyed_elsewhere_is_found_again(stocked: Pkcs11Hsm) -> None:
    """Another process destroys the IMK and imports another under its label: the kept
    handle turns invalid at its next use, the keys kept below it are destroyed."""
    other_card = IccMaster("5413330089010434", b"\x00")
    stocked.key_check_value(KeyPath("imk", ICC))
    (imk,) = _session(stocked).get_objects(
        {Attribute.LABEL: "imk", Attribute.CLASS: ObjectClass.SECRET_KEY}
    )
    imk.destroy()  # as another process would (same effect on this session's handle)
    new_imk = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    stocked.import_key("imk", KeyKind.DES2, new_imk, des.kcv(new_imk))
    for card in (other_card, ICC):
        expected = des.kcv(kd.derive_icc_mk_a(new_imk, card.pan, card.psn))
        assert stocked.key_check_value(KeyPath("imk", card)) == expected


def test_the_envelope_is_ecw2_with_wrapped_keys(stocked: Pkcs11Hsm) -> None:
    header = HEADER.to_bytes()
    envelope = stocked.wrap_batch(
        "imk", ICC, REQUESTS, device_point=DEVICE_POINT, header=header, pin_key=PIN_KEY
    )
    fixed = len(wrap.MAGIC) + wrap.POINT_LENGTH + wrap.TAG_LENGTH
    assert envelope.startswith(b"ECW2")
    sealed = wrap.decode_batch(envelope[fixed:], wrap.WRAPPED_KEY_LENGTH)
    assert [key.kind for key in sealed] == [BatchKind.LUK, BatchKind.SUK_UV]
    luk, suk_uv = wrap.decode_batch(wrap.unwrap_batch(DEVICE, envelope, header))
    mk = kd.derive_icc_mk_a(IMK, PAN, ICC.psn)
    assert luk.value == cbp.derive_luk(mk, LUK.ident)
    assert cbp.unmask_key(suk_uv.value, PIN_KEY) == cbp.derive_suk_uv(mk, ATC)
    assert cbp.unmask_key(suk_uv.value, cbp.pin_key("1235", PAN)) != cbp.derive_suk_uv(mk, ATC)


def test_threads_share_one_hsm(stocked: Pkcs11Hsm) -> None:
    paths = [KeyPath("imk", ICC, LUK, CommonSession(n.to_bytes(2) + bytes(6))) for n in range(8)]
    expected = [stocked.application_cryptogram(path, bytes(40), "emv") for path in paths]
    results: dict[int, list[bytes]] = {}

    def work(number: int) -> None:
        results[number] = [stocked.application_cryptogram(p, bytes(40), "emv") for p in paths]

    threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(range(4), expected)


def test_a_closed_hsm_refuses_calls(hsm: Pkcs11Hsm) -> None:
    hsm.close()
    hsm.close()
    with pytest.raises(HsmError, match="closed"):
        hsm.labels()


def test_a_wrong_pin_is_refused(hsm: Pkcs11Hsm) -> None:
    hsm.close()  # PKCS#11 logins are per process: log the fixture's session out first
    with pytest.raises(HsmError, match="login refused") as raised:
        Pkcs11Hsm(softhsm.softhsm_module(), softhsm.TOKEN_LABEL, "9999")
    assert "9999" not in str(raised.value)


def test_an_unknown_token_is_refused(hsm: Pkcs11Hsm) -> None:
    with pytest.raises(HsmError, match=r"'no-such-token'.*: no such token"):
        Pkcs11Hsm(softhsm.softhsm_module(), "no-such-token", softhsm.USER_PIN)


def test_a_missing_module_is_refused(hsm: Pkcs11Hsm, tmp_path: Path) -> None:
    missing = tmp_path / "libnothere.so"
    with pytest.raises(HsmError, match=f"PKCS#11 module {missing}: no such file"):
        Pkcs11Hsm(missing, softhsm.TOKEN_LABEL, softhsm.USER_PIN)
    not_a_module = tmp_path / "softhsm2.conf"
    with pytest.raises(HsmError, match="cannot be loaded"):
        library(not_a_module)


def test_label_prefixes_keep_namespaces_apart(hsm: Pkcs11Hsm) -> None:
    hsm.import_key("imk", KeyKind.DES2, IMK, des.kcv(IMK))
    hsm.close()  # one logged-in Pkcs11Hsm per token and process at a time
    module = softhsm.softhsm_module()
    for prefix in ("env-a/", "env-b/"):
        with Pkcs11Hsm(module, None, softhsm.USER_PIN, label_prefix=prefix) as spaced:
            assert spaced.label_prefix == prefix
            assert spaced.labels() == []  # neither the unprefixed key nor the other space's
            with pytest.raises(KeyNotFound):
                spaced.key_info("imk")
            made = spaced.import_key("imk", KeyKind.DES2, IMK, des.kcv(IMK))
            assert made.label == "imk" and made.kcv == des.kcv(IMK)
            spaced.generate_rsa_key("ca", 1024, 3)
            assert spaced.labels() == ["ca", "imk"]
            assert spaced.rsa_public_key("ca").label == "ca"
            stored = list(_session(spaced).get_objects({Attribute.ID: prefix.encode()}))
            assert sorted(obj[Attribute.LABEL] for obj in stored) == [
                f"{prefix}ca",
                f"{prefix}ca",
                f"{prefix}imk",
            ]
    with Pkcs11Hsm(module, softhsm.TOKEN_LABEL, softhsm.USER_PIN) as whole:
        assert whole.labels() == ["env-a/ca", "env-a/imk", "env-b/ca", "env-b/imk", "imk"]
        with pytest.raises(HsmError, match="no label prefix"):
            whole.destroy_namespace()
    with Pkcs11Hsm(module, None, softhsm.USER_PIN, label_prefix="env-a/") as spaced:
        assert spaced.destroy_namespace() == 3  # the key and both halves of the RSA pair
        assert spaced.labels() == []
    with Pkcs11Hsm(module, None, softhsm.USER_PIN) as whole:
        assert whole.labels() == ["env-b/ca", "env-b/imk", "imk"]
