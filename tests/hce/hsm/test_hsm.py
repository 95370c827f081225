"""The shared HSM suite: every backend, and the same bytes as the pure ``emv.crypto`` functions.

Keys are imported in clear with their check value, so every result can be
recomputed from those clear keys with ``emv.crypto``: two backends that pass
this suite give identical outputs. The ``hsm`` fixture (conftest.py) runs each
test once per backend on a fresh, empty HSM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emv.crypto import ac, aes, cbp, des, kd, mac, oda, wrap
from emv.crypto.wrap import BatchHeader, BatchKey, BatchKind, WrapError
from hce.hsm.interface import (
    Arpc,
    ArpcMethod1,
    ArpcMethod2,
    BatchRequest,
    CommonSession,
    Hsm,
    HsmError,
    IccMaster,
    KeyInfo,
    KeyKind,
    KeyNotFound,
    KeyPath,
    LimitedUse,
    MastercardSession,
    RsaPublic,
    verify_arqc_and_generate_arpc,
)

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AES_128 = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
AES_256 = bytes.fromhex("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4")
CLEAR_KEYS = {KeyKind.DES2: IMK, KeyKind.AES128: AES_128, KeyKind.AES256: AES_256}
AES_KINDS = [KeyKind.AES128, KeyKind.AES256]

PAN = "4761739001010010"
ICC_A = IccMaster(PAN, b"\x01", "A")
ICC_B = IccMaster("5413330089010434567", b"\x00", "B")  # 19 digits: option B differs from A
ATC = bytes.fromhex("002A")
UN = bytes.fromhex("DEADBEEF")
KEY_INDEX = cbp.KeyIndex(hour=52_000, sequence=3).to_bytes()

DEVICE = ec.generate_private_key(ec.SECP256R1())
DEVICE_POINT = wrap.public_point(DEVICE.public_key())
FINGERPRINT = wrap.device_fingerprint(DEVICE_POINT)

LUK = LimitedUse(BatchKind.LUK, KEY_INDEX)
SUK = LimitedUse(BatchKind.SUK, b"\x00\x00" + ATC)
SUK_UV = LimitedUse(BatchKind.SUK_UV, b"\x00\x00" + ATC)
LOG = LimitedUse(BatchKind.LOG, FINGERPRINT[:4])
SESSIONS = [None, CommonSession(ATC + bytes(6)), MastercardSession(ATC, UN)]
PATHS = [
    KeyPath("imk", icc, limited_use, session)
    for icc in (ICC_A, ICC_B)
    for limited_use in (None, LUK, SUK, SUK_UV, LOG)
    for session in SESSIONS
]

TRANSACTION = ac.CryptogramData(
    amount_authorised=bytes.fromhex("000000001000"),
    amount_other=bytes(6),
    terminal_country_code=bytes.fromhex("0840"),
    tvr=bytes(5),
    transaction_currency_code=bytes.fromhex("0840"),
    transaction_date=bytes.fromhex("250314"),
    transaction_type=b"\x00",
    unpredictable_number=UN,
    aip=bytes.fromhex("1980"),
    atc=ATC,
)
V_IAD = cbp.CbpVIad(cbp.KeyIndex.from_bytes(KEY_INDEX), bytes.fromhex("80000000"), 1)
DATA = TRANSACTION.to_bytes() + V_IAD.to_bytes()
ARQC = bytes.fromhex("1234567890ABCDEF")


def _path_id(path: KeyPath) -> str:
    limited = path.limited_use.kind.name if path.limited_use else "MK"
    session = type(path.session).__name__ if path.session else "-"
    return f"{path.icc.option}-{limited}-{session}"


def _kcv_of(kind: KeyKind, key: bytes) -> bytes:
    return des.kcv(key) if kind is KeyKind.DES2 else aes.kcv(key)


def _clear_limited_use(mk: bytes, limited_use: LimitedUse) -> bytes:
    atc = limited_use.ident[2:]
    if limited_use.kind is BatchKind.LUK:
        return cbp.derive_luk(mk, limited_use.ident)
    if limited_use.kind is BatchKind.SUK:
        return cbp.derive_suk(mk, atc)
    if limited_use.kind is BatchKind.SUK_UV:
        return cbp.derive_suk_uv(mk, atc)
    return cbp.derive_log_key(mk, FINGERPRINT)


def _clear_key(path: KeyPath) -> bytes:
    """The key at ``path`` computed in clear from IMK with the pure functions."""
    derive_mk = kd.derive_icc_mk_a if path.icc.option == "A" else kd.derive_icc_mk_b
    key = derive_mk(IMK, path.icc.pan, path.icc.psn)
    if path.limited_use is not None:
        key = _clear_limited_use(key, path.limited_use)
    if isinstance(path.session, CommonSession):
        return kd.derive_common_sk(key, path.session.r)
    if isinstance(path.session, MastercardSession):
        return kd.derive_mastercard_sk(key, path.session.atc, path.session.un)
    return key


@pytest.fixture
def issuer(hsm: Hsm) -> Hsm:
    """The HSM with IMK imported as "imk"."""
    hsm.import_key("imk", KeyKind.DES2, IMK, des.kcv(IMK))
    return hsm


@pytest.fixture
def vault(hsm: Hsm) -> Hsm:
    """The HSM with AES_256 imported as "vault" and AES_128 as "vault-old"."""
    hsm.import_key("vault", KeyKind.AES256, AES_256, aes.kcv(AES_256))
    hsm.import_key("vault-old", KeyKind.AES128, AES_128, aes.kcv(AES_128))
    return hsm


def test_every_backend_is_an_hsm(hsm: Hsm) -> None:
    assert isinstance(hsm, Hsm)
    assert hsm.labels() == []


# --- symmetric keys ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KeyKind))
def test_import_key_checks_and_reports_the_kcv(hsm: Hsm, kind: KeyKind) -> None:
    value = CLEAR_KEYS[kind]
    info = hsm.import_key("k", kind, value, _kcv_of(kind, value))
    assert info == KeyInfo("k", kind, _kcv_of(kind, value))
    assert hsm.key_info("k") == info
    assert hsm.labels() == ["k"]


@pytest.mark.parametrize("kind", list(KeyKind))
def test_import_key_refuses_a_wrong_kcv(hsm: Hsm, kind: KeyKind) -> None:
    value = CLEAR_KEYS[kind]
    wrong = bytes([_kcv_of(kind, value)[0] ^ 0x01]) + _kcv_of(kind, value)[1:]
    with pytest.raises(HsmError, match="check value") as raised:
        hsm.import_key("k", kind, value, wrong)
    assert value.hex() not in str(raised.value).lower()
    assert hsm.labels() == []


def test_import_key_refuses_a_wrong_length(hsm: Hsm) -> None:
    with pytest.raises(HsmError, match="'k'"):
        hsm.import_key("k", KeyKind.AES256, AES_128, aes.kcv(AES_128))
    assert hsm.labels() == []


def test_a_label_is_taken_once(hsm: Hsm) -> None:
    hsm.generate_key("k", KeyKind.AES128)
    with pytest.raises(HsmError, match="'k'"):
        hsm.import_key("k", KeyKind.DES2, IMK, des.kcv(IMK))
    with pytest.raises(HsmError, match="'k'"):
        hsm.generate_key("k", KeyKind.DES2)
    assert hsm.key_info("k").kind is KeyKind.AES128


@pytest.mark.parametrize("kind", list(KeyKind))
def test_generated_keys_are_new_and_usable(hsm: Hsm, kind: KeyKind) -> None:
    first, second = hsm.generate_key("a", kind), hsm.generate_key("b", kind)
    assert (first.label, first.kind, len(first.kcv)) == ("a", kind, 3)
    assert first.kcv != second.kcv
    assert hsm.key_info("a") == first
    assert hsm.labels() == ["a", "b"]
    if kind is KeyKind.DES2:
        path = KeyPath("a", ICC_A, LUK, SESSIONS[1])
        cryptogram = hsm.application_cryptogram(path, DATA, "emv")
        assert hsm.verify_application_cryptogram(path, DATA, "emv", cryptogram)
        assert hsm.application_cryptogram(KeyPath("b", ICC_A), DATA, "emv") != cryptogram
    else:
        assert hsm.decrypt_data("a", hsm.encrypt_data("a", b"pan", b""), b"") == b"pan"


def test_labels_are_sorted(hsm: Hsm) -> None:
    for label in ("vault", "imk-2", "imk-1"):
        hsm.generate_key(label, KeyKind.AES128)
    assert hsm.labels() == ["imk-1", "imk-2", "vault"]


UNKNOWN_LABEL_CALLS: list[Callable[[Hsm], object]] = [
    lambda hsm: hsm.key_info("missing"),
    lambda hsm: hsm.key_check_value(KeyPath("missing", ICC_A)),
    lambda hsm: hsm.application_cryptogram(KeyPath("missing", ICC_A), DATA, "emv"),
    lambda hsm: hsm.arpc_method_1(KeyPath("missing", ICC_A), ARQC, b"00"),
    lambda hsm: verify_arqc_and_generate_arpc(
        hsm, KeyPath("missing", ICC_A), DATA, "emv", ARQC, arpc=ARPCS[0], arpc_session=None
    ),
    lambda hsm: hsm.wrap_batch("missing", ICC_A, [], device_point=DEVICE_POINT, header=_header()),
    lambda hsm: hsm.rsa_public_key("missing"),
    lambda hsm: hsm.rsa_sign_raw("missing", bytes(128)),
    lambda hsm: hsm.encrypt_data("missing", b"", b""),
    lambda hsm: hsm.decrypt_data("missing", bytes(28), b""),
    lambda hsm: hsm.keyed_digest("missing", b""),
]


@pytest.mark.parametrize("call", UNKNOWN_LABEL_CALLS)
def test_an_unknown_label_is_key_not_found(issuer: Hsm, call: Callable[[Hsm], object]) -> None:
    with pytest.raises(KeyNotFound, match="'missing'"):
        call(issuer)


def test_operations_refuse_a_key_of_the_wrong_kind(issuer: Hsm, vault: Hsm) -> None:
    with pytest.raises(HsmError, match="'vault'"):
        issuer.application_cryptogram(KeyPath("vault", ICC_A), DATA, "emv")
    with pytest.raises(HsmError, match="'imk'"):
        issuer.encrypt_data("imk", b"pan", b"")
    with pytest.raises(HsmError, match="'imk'"):
        issuer.keyed_digest("imk", b"pan")
    with pytest.raises(HsmError, match="'imk'"):
        issuer.rsa_sign_raw("imk", bytes(128))


# --- key paths and cryptograms ----------------------------------------------------------


@pytest.mark.parametrize("path", PATHS, ids=_path_id)
def test_key_check_value_is_that_of_the_pure_derivation(issuer: Hsm, path: KeyPath) -> None:
    assert issuer.key_check_value(path) == des.kcv(_clear_key(path))


@pytest.mark.parametrize("padding", ["emv", "visa"])
@pytest.mark.parametrize("path", PATHS, ids=_path_id)
def test_application_cryptogram_is_that_of_the_pure_functions(
    issuer: Hsm, path: KeyPath, padding: ac.Padding
) -> None:
    expected = ac.generate_ac(_clear_key(path), DATA, padding)
    assert issuer.application_cryptogram(path, DATA, padding) == expected
    assert issuer.verify_application_cryptogram(path, DATA, padding, expected)


def _flip(data: bytes, bit: int) -> bytes:
    altered = bytearray(data)
    altered[bit // 8] ^= 0x80 >> bit % 8
    return bytes(altered)


@pytest.mark.parametrize(
    "path",
    [PATHS[0], KeyPath("imk", ICC_A, LUK, SESSIONS[1]), KeyPath("imk", ICC_B, SUK_UV, SESSIONS[2])],
    ids=_path_id,
)
def test_verify_refuses_any_flipped_bit(issuer: Hsm, path: KeyPath) -> None:
    cryptogram = issuer.application_cryptogram(path, DATA, "emv")
    for bit in range(len(cryptogram) * 8):
        assert not issuer.verify_application_cryptogram(path, DATA, "emv", _flip(cryptogram, bit))
    for bit in range(len(DATA) * 8):
        assert not issuer.verify_application_cryptogram(path, _flip(DATA, bit), "emv", cryptogram)
    assert not issuer.verify_application_cryptogram(path, DATA, "visa", cryptogram)
    assert not issuer.verify_application_cryptogram(path, DATA, "emv", cryptogram[:4])


def test_cbp_cryptograms_are_those_of_the_profile(issuer: Hsm) -> None:
    mk = kd.derive_icc_mk_a(IMK, PAN, ICC_A.psn)
    luk = cbp.derive_luk(mk, KEY_INDEX)
    v_path = KeyPath("imk", ICC_A, LUK, CommonSession(ATC + bytes(6)))
    assert issuer.application_cryptogram(v_path, DATA, "emv") == cbp.cbp_v_arqc(
        luk, TRANSACTION, V_IAD
    )
    m_iad = cbp.CbpMIad(cbp.MKeyType.SUK_UV, bytes.fromhex("C0000000"))
    m_data = TRANSACTION.to_bytes() + m_iad.to_bytes()
    m_path = KeyPath("imk", ICC_A, SUK_UV)
    assert issuer.application_cryptogram(m_path, m_data, "emv") == cbp.cbp_m_arqc(
        cbp.derive_suk_uv(mk, ATC), TRANSACTION, m_iad
    )


@pytest.mark.parametrize("path", PATHS, ids=_path_id)
def test_arpc_methods_are_those_of_the_pure_functions(issuer: Hsm, path: KeyPath) -> None:
    key = _clear_key(path)
    assert issuer.arpc_method_1(path, ARQC, b"00") == ac.generate_arpc_1(key, ARQC, b"00")
    csu, pad = bytes.fromhex("00820000"), bytes.fromhex("0102")
    assert issuer.arpc_method_2(path, ARQC, csu) == ac.generate_arpc_2(key, ARQC, csu)
    assert issuer.arpc_method_2(path, ARQC, csu, pad) == ac.generate_arpc_2(key, ARQC, csu, pad)


ARPCS: list[Arpc] = [
    ArpcMethod1(b"00"),
    ArpcMethod2(bytes.fromhex("00820000")),
    ArpcMethod2(bytes.fromhex("00820000"), bytes.fromhex("0102")),
]


def _clear_arpc(key: bytes, arqc: bytes, arpc: Arpc) -> bytes:
    if isinstance(arpc, ArpcMethod1):
        return ac.generate_arpc_1(key, arqc, arpc.arc)
    return ac.generate_arpc_2(key, arqc, arpc.csu, arpc.prop_auth_data)


class _ThreeOperations:
    """An HSM with only the operations the default :func:`verify_arqc_and_generate_arpc`
    uses (not an ArqcVerifier), so the default is tested on every backend."""

    def __init__(self, hsm: Hsm) -> None:
        self.verify_application_cryptogram = hsm.verify_application_cryptogram
        self.arpc_method_1 = hsm.arpc_method_1
        self.arpc_method_2 = hsm.arpc_method_2


@pytest.mark.parametrize("default", [False, True], ids=["backend", "default"])
@pytest.mark.parametrize("path", PATHS, ids=_path_id)
def test_verify_arqc_and_generate_arpc_is_the_verification_then_the_arpc(
    issuer: Hsm, path: KeyPath, default: bool
) -> None:
    hsm: Hsm = _ThreeOperations(issuer) if default else issuer  # type: ignore[assignment]
    arqc = ac.generate_ac(_clear_key(path), DATA)
    for arpc_session in (path.session, None):
        arpc_key = _clear_key(KeyPath("imk", path.icc, path.limited_use, arpc_session))
        for arpc in ARPCS:
            answer = verify_arqc_and_generate_arpc(
                hsm, path, DATA, "emv", arqc, arpc=arpc, arpc_session=arpc_session
            )
            assert answer == _clear_arpc(arpc_key, arqc, arpc)
    for altered in (_flip(arqc, 63), arqc[:4]):
        refused = verify_arqc_and_generate_arpc(
            hsm, path, DATA, "emv", altered, arpc=ARPCS[0], arpc_session=path.session
        )
        assert refused is None
    assert (
        verify_arqc_and_generate_arpc(
            hsm, path, DATA, "visa", arqc, arpc=ARPCS[1], arpc_session=path.session
        )
        is None
    )


BAD_INPUTS: list[Callable[[Hsm], object]] = [
    lambda hsm: hsm.key_check_value(KeyPath("imk", IccMaster("47617390A1010010"))),
    lambda hsm: hsm.key_check_value(KeyPath("imk", ICC_A, LimitedUse(BatchKind.LUK, b"\x00"))),
    lambda hsm: hsm.key_check_value(KeyPath("imk", ICC_A, session=CommonSession(bytes(16)))),
    lambda hsm: hsm.key_check_value(KeyPath("imk", ICC_A, session=MastercardSession(ATC, b""))),
    lambda hsm: hsm.arpc_method_1(KeyPath("imk", ICC_A), ARQC[:7], b"00"),
    lambda hsm: hsm.arpc_method_2(KeyPath("imk", ICC_A), ARQC, b"\x00"),
    lambda hsm: verify_arqc_and_generate_arpc(
        hsm,
        KeyPath("imk", IccMaster("47617390A1010010")),
        DATA,
        "emv",
        ARQC,
        arpc=ARPCS[0],
        arpc_session=None,
    ),
    lambda hsm: verify_arqc_and_generate_arpc(
        hsm,
        KeyPath("imk", ICC_A),
        DATA,
        "emv",
        hsm.application_cryptogram(KeyPath("imk", ICC_A), DATA, "emv"),
        arpc=ArpcMethod2(bytes(4), bytes(9)),
        arpc_session=None,
    ),
]


@pytest.mark.parametrize("call", BAD_INPUTS)
def test_malformed_input_is_an_hsm_error_without_key_values(
    issuer: Hsm, call: Callable[[Hsm], object]
) -> None:
    with pytest.raises(HsmError, match="'imk'") as raised:
        call(issuer)
    assert not isinstance(raised.value, KeyNotFound)
    assert IMK.hex() not in str(raised.value).lower()


# --- device batches ---------------------------------------------------------------------

PIN_KEY = cbp.pin_key("1234", PAN)
REQUESTS = [
    BatchRequest(LUK, max_transactions=10, max_amount=50_000, expiry_hour=60_024),
    BatchRequest(SUK, max_transactions=1, max_amount=999_999_999_999, expiry_hour=60_100),
    BatchRequest(SUK_UV, max_transactions=1, max_amount=20_000, expiry_hour=60_100),
    BatchRequest(LOG, max_transactions=0, max_amount=0, expiry_hour=60_100),
]


def _header(batch_id: bytes = b"batch-01", device: bytes = FINGERPRINT) -> bytes:
    return BatchHeader(batch_id, b"token-1", device, BatchKind.SUK).to_bytes()


def _wrap(hsm: Hsm, header: bytes) -> bytes:
    return hsm.wrap_batch(
        "imk", ICC_A, REQUESTS, device_point=DEVICE_POINT, header=header, pin_key=PIN_KEY
    )


def test_wrap_batch_opens_to_the_pure_keys(issuer: Hsm) -> None:
    header = _header()
    keys = wrap.decode_batch(wrap.unwrap_batch(DEVICE, _wrap(issuer, header), header))
    mk = kd.derive_icc_mk_a(IMK, PAN, ICC_A.psn)
    values = [
        cbp.derive_luk(mk, KEY_INDEX),
        cbp.derive_suk(mk, ATC),
        cbp.mask_key(cbp.derive_suk_uv(mk, ATC), PIN_KEY),
        cbp.derive_log_key(mk, FINGERPRINT),
    ]
    assert keys == [
        BatchKey(
            request.key.kind,
            request.key.ident,
            value,
            request.max_transactions,
            request.max_amount,
            request.expiry_hour,
        )
        for request, value in zip(REQUESTS, values, strict=True)
    ]


def test_a_batch_opens_only_on_its_device_under_its_header(issuer: Hsm) -> None:
    envelope = _wrap(issuer, _header())
    other_device = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(WrapError, match="authentication failed"):
        wrap.unwrap_batch(other_device, envelope, _header())
    with pytest.raises(WrapError, match="authentication failed"):
        wrap.unwrap_batch(DEVICE, envelope, _header(batch_id=b"batch-02"))


def test_every_envelope_is_sealed_afresh(issuer: Hsm) -> None:
    header = _header()
    first, second = _wrap(issuer, header), _wrap(issuer, header)
    assert first != second
    assert wrap.unwrap_batch(DEVICE, first, header) == wrap.unwrap_batch(DEVICE, second, header)


def test_wrap_batch_hands_out_an_suk_uv_only_masked(issuer: Hsm) -> None:
    with pytest.raises(HsmError, match="pin_key"):
        issuer.wrap_batch("imk", ICC_A, REQUESTS, device_point=DEVICE_POINT, header=_header())


def test_wrap_batch_refuses_a_bad_device_key(issuer: Hsm) -> None:
    with pytest.raises(HsmError, match="device public key"):
        issuer.wrap_batch(
            "imk", ICC_A, REQUESTS[:1], device_point=DEVICE_POINT[:64], header=_header()
        )


# --- RSA --------------------------------------------------------------------------------


def _signs_raw(hsm: Hsm, public: RsaPublic, message: bytes) -> bool:
    modulus = int.from_bytes(public.modulus, "big")
    signature = hsm.rsa_sign_raw(public.label, message)
    recovered = pow(int.from_bytes(signature, "big"), public.exponent, modulus)
    return len(signature) == len(public.modulus) and recovered.to_bytes(len(message)) == message


@pytest.mark.parametrize(("bits", "exponent"), [(1024, 3), (1152, 65537), (1408, 3)])
def test_rsa_keys_sign_raw(hsm: Hsm, bits: int, exponent: int) -> None:
    public = hsm.generate_rsa_key("ca", bits, exponent)
    assert public == hsm.rsa_public_key("ca")
    assert (public.label, len(public.modulus), public.exponent) == ("ca", bits // 8, exponent)
    assert public.modulus[0] & 0x80
    size = bits // 8
    top = (int.from_bytes(public.modulus, "big") - 1).to_bytes(size)
    for message in (
        b"\x6a" + hashlib.shake_256(b"m").digest(size - 1),
        bytes(size - 1) + b"\x02",
        top,
    ):
        assert _signs_raw(hsm, public, message)
    assert hsm.labels() == ["ca"]


def test_rsa_refuses_what_emv_does_not_sign(hsm: Hsm) -> None:
    public = hsm.generate_rsa_key("ca", 1024, 3)
    with pytest.raises(HsmError, match="'ca'"):
        hsm.rsa_sign_raw("ca", public.modulus)  # not below the modulus
    with pytest.raises(HsmError, match="'ca'"):
        hsm.rsa_sign_raw("ca", bytes(127))  # shorter than the modulus
    with pytest.raises(HsmError, match="'ca'"):
        hsm.generate_rsa_key("ca", 1024, 3)
    with pytest.raises(HsmError, match="'ca2'"):
        hsm.generate_rsa_key("ca2", 1024, 5)
    with pytest.raises(HsmError, match="'ca'"):
        hsm.key_info("ca")
    assert hsm.labels() == ["ca"]


def test_an_rsa_key_signs_an_emv_issuer_certificate(hsm: Hsm) -> None:
    ca = hsm.generate_rsa_key("ca", 1408, 3)
    issuer = hsm.generate_rsa_key("issuer", 1152, 65537)
    ca_key = oda.RsaPublicKey(int.from_bytes(ca.modulus, "big"), ca.exponent)
    issuer_key = oda.RsaPublicKey(int.from_bytes(issuer.modulus, "big"), issuer.exponent)
    unsigned = oda.issuer_certificate_message(
        len(ca.modulus),
        issuer_key,
        issuer_identifier=PAN[:6],
        expiry="1230",
        serial_number=b"\x00\x00\x01",
    )
    signed = unsigned.signed(hsm.rsa_sign_raw("ca", unsigned.message))
    recovered = oda.recover_issuer_public_key(ca_key, signed, PAN, date(2025, 3, 14))
    assert recovered.public_key == issuer_key
    assert recovered.issuer_identifier == PAN[:6]
    forged = oda.PublicKeyCertificate(
        _flip(signed.certificate, 700), signed.remainder, signed.exponent
    )
    with pytest.raises(oda.OdaError):
        oda.recover_issuer_public_key(ca_key, forged, PAN, date(2025, 3, 14))


# --- the vault's data key ---------------------------------------------------------------

ANY_FIXTURE = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@ANY_FIXTURE
@given(plaintext=st.binary(max_size=64), aad=st.binary(max_size=16))
def test_encrypt_data_round_trips(vault: Hsm, plaintext: bytes, aad: bytes) -> None:
    for label in ("vault", "vault-old"):
        sealed = vault.encrypt_data(label, plaintext, aad)
        assert vault.decrypt_data(label, sealed, aad) == plaintext
        assert vault.encrypt_data(label, plaintext, aad) != sealed


@ANY_FIXTURE
@given(data=st.data())
def test_decrypt_data_refuses_altered_ciphertext_and_other_aad(
    vault: Hsm, data: st.DataObject
) -> None:
    sealed = vault.encrypt_data("vault", b"5413330089010434", b"token-1")
    position = data.draw(st.integers(0, len(sealed) - 1))
    altered = bytearray(sealed)
    altered[position] ^= data.draw(st.integers(1, 255))
    for ciphertext, aad in [
        (bytes(altered), b"token-1"),
        (sealed, b"token-2"),
        (sealed[:-1], b"token-1"),
        (sealed[:20], b"token-1"),
    ]:
        with pytest.raises(HsmError, match="'vault'"):
            vault.decrypt_data("vault", ciphertext, aad)
    with pytest.raises(HsmError, match="'vault-old'"):
        vault.decrypt_data("vault-old", sealed, b"token-1")


@ANY_FIXTURE
@given(data=st.binary(max_size=64), other=st.binary(max_size=64))
def test_keyed_digest_is_the_aes_cmac_of_the_key(vault: Hsm, data: bytes, other: bytes) -> None:
    digest = vault.keyed_digest("vault", data)
    assert digest == mac.aes_cmac(AES_256, data) == vault.keyed_digest("vault", data)
    assert vault.keyed_digest("vault-old", data) == mac.aes_cmac(AES_128, data) != digest
    assert (vault.keyed_digest("vault", other) == digest) == (other == data)
