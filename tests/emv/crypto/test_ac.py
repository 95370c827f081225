"""emv.crypto.ac: pyemv (ac and cvn modules) as an oracle, malformed input."""

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import cvn as pyemv_cvn

from emv.crypto import ac, kd, mac

keys = st.binary(min_size=16, max_size=16)
arqcs = st.binary(min_size=8, max_size=8)
pans = st.text(alphabet="0123456789", min_size=12, max_size=19)
psns = st.integers(min_value=0, max_value=99)


def _fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


table26 = st.fixed_dictionaries(
    {
        "amount_authorised": _fixed(6),
        "amount_other": _fixed(6),
        "terminal_country_code": _fixed(2),
        "tvr": _fixed(5),
        "transaction_currency_code": _fixed(2),
        "transaction_date": _fixed(3),
        "transaction_type": _fixed(1),
        "unpredictable_number": _fixed(4),
        "aip": _fixed(2),
        "atc": _fixed(2),
    }
)
PYEMV_TAGS = {
    "amount_authorised": "tag_9f02",
    "amount_other": "tag_9f03",
    "terminal_country_code": "tag_9f1a",
    "tvr": "tag_95",
    "transaction_currency_code": "tag_5f2a",
    "transaction_date": "tag_9a",
    "transaction_type": "tag_9c",
    "unpredictable_number": "tag_9f37",
    "aip": "tag_82",
    "atc": "tag_9f36",
}


def _as_pyemv(elements: dict[str, bytes]) -> dict[str, bytes]:
    return {PYEMV_TAGS[name]: value for name, value in elements.items()}


@given(sk=keys, data=st.binary(max_size=64), padding=st.sampled_from(["emv", "visa"]))
def test_generate_ac_agrees_with_pyemv(sk: bytes, data: bytes, padding: ac.Padding) -> None:
    pyemv_padding = {"emv": pyemv_ac.PaddingType.EMV, "visa": pyemv_ac.PaddingType.VISA}
    expected = pyemv_ac.generate_ac(sk, data, pyemv_padding[padding])
    assert ac.generate_ac(sk, data, padding) == expected


@given(sk=keys, data=st.binary(max_size=64))
def test_generate_ac_default_is_emv_padding(sk: bytes, data: bytes) -> None:
    assert ac.generate_ac(sk, data) == ac.generate_ac(sk, data, "emv")


@given(sk=keys, arqc=arqcs, arc=_fixed(2))
def test_arpc_1_agrees_with_pyemv(sk: bytes, arqc: bytes, arc: bytes) -> None:
    assert ac.generate_arpc_1(sk, arqc, arc) == pyemv_ac.generate_arpc_1(sk, arqc, arc)


@given(sk=keys, arqc=arqcs, csu=_fixed(4), pad=st.binary(max_size=8))
def test_arpc_2_agrees_with_pyemv(sk: bytes, arqc: bytes, csu: bytes, pad: bytes) -> None:
    assert ac.generate_arpc_2(sk, arqc, csu, pad) == pyemv_ac.generate_arpc_2(sk, arqc, csu, pad)


@given(sk=keys, data=st.binary(max_size=64), arqc=arqcs, csu=_fixed(4), pad=st.binary(max_size=8))
def test_one_mac_key_gives_the_ac_and_arpc_2_of_the_session_key(
    sk: bytes, data: bytes, arqc: bytes, csu: bytes, pad: bytes
) -> None:
    key = mac.RetailMacKey(sk)
    for padding in ("emv", "visa"):
        assert ac.generate_ac_with(key, data, padding) == ac.generate_ac(sk, data, padding)
    assert ac.generate_arpc_2_with(key, arqc, csu, pad) == ac.generate_arpc_2(sk, arqc, csu, pad)


def _issuer(pan: str, psn: int) -> dict[str, Any]:
    imk = bytes(range(16))
    return {"iss_mk_ac": imk, "iss_mk_smi": imk, "iss_mk_smc": imk, "pan": pan, "psn": f"{psn:02d}"}


@given(pan=pans, psn=psns, elements=table26, cvr=_fixed(4))
def test_visa_cvn10_agrees_with_pyemv(
    pan: str, psn: int, elements: dict[str, bytes], cvr: bytes
) -> None:
    oracle = pyemv_cvn.VisaCVN10(**_issuer(pan, psn))
    expected = oracle.generate_ac(**_as_pyemv(elements), cvr=cvr)
    mk = kd.derive_icc_mk_a(bytes(range(16)), pan, bytes.fromhex(f"{psn:02d}"))
    assert (
        ac.generate_ac(mk, ac.visa_cvn10_input(ac.CryptogramData(**elements), cvr=cvr), "visa")
        == expected
    )


@pytest.mark.parametrize("cvn", [18, 22])
@given(pan=pans, psn=psns, elements=table26, iad=st.binary(min_size=1, max_size=32))
def test_visa_cvn18_22_agree_with_pyemv(
    cvn: int, pan: str, psn: int, elements: dict[str, bytes], iad: bytes
) -> None:
    oracle_classes: dict[int, Any] = {18: pyemv_cvn.VisaCVN18, 22: pyemv_cvn.VisaCVN22}
    oracle = oracle_classes[cvn](**_issuer(pan, psn))
    expected = oracle.generate_ac(**_as_pyemv(elements), tag_9f10=iad)
    mk = kd.derive_icc_mk_b(bytes(range(16)), pan, bytes.fromhex(f"{psn:02d}"))
    sk = kd.derive_common_sk(mk, elements["atc"] + bytes(6))
    assemble: Callable[..., bytes] = {18: ac.visa_cvn18_input, 22: ac.visa_cvn22_input}[cvn]
    assert ac.generate_ac(sk, assemble(ac.CryptogramData(**elements), iad=iad)) == expected


@pytest.mark.parametrize("cvn", [16, 17, 20, 21])
@given(
    pan=pans,
    psn=psns,
    elements=table26,
    cvr=_fixed(6),
    counters=st.sampled_from([8, 16]).flatmap(_fixed),
)
def test_mastercard_cvns_agree_with_pyemv(
    *, cvn: int, pan: str, psn: int, elements: dict[str, bytes], cvr: bytes, counters: bytes
) -> None:
    oracle_class: Any = {
        16: pyemv_cvn.MasterCardCVN16,
        17: pyemv_cvn.MasterCardCVN17,
        20: pyemv_cvn.MasterCardCVN20,
        21: pyemv_cvn.MasterCardCVN21,
    }[cvn]
    with_counters = {"counters": counters} if cvn in (17, 21) else {}
    expected = oracle_class(**_issuer(pan, psn)).generate_ac(
        **_as_pyemv(elements), cvr=cvr, **with_counters
    )
    mk = kd.derive_icc_mk_a(bytes(range(16)), pan, bytes.fromhex(f"{psn:02d}"))
    if cvn in (16, 17):
        sk = kd.derive_mastercard_sk(mk, elements["atc"], elements["unpredictable_number"])
    else:
        sk = kd.derive_common_sk(mk, elements["atc"] + bytes(6))
    assemble: Any = {
        16: ac.mastercard_cvn16_input,
        17: ac.mastercard_cvn17_input,
        20: ac.mastercard_cvn20_input,
        21: ac.mastercard_cvn21_input,
    }[cvn]
    assert (
        ac.generate_ac(sk, assemble(ac.CryptogramData(**elements), cvr=cvr, **with_counters))
        == expected
    )


@given(elements=table26, cvr=_fixed(6))
def test_inputs_start_with_table26_in_order(elements: dict[str, bytes], cvr: bytes) -> None:
    data = ac.mastercard_cvn16_input(ac.CryptogramData(**elements), cvr=cvr)
    assert data == b"".join(elements[name] for name in PYEMV_TAGS) + cvr
    assert ac.visa_cvn18_input(ac.CryptogramData(**elements), iad=cvr) == data


VALID: dict[str, bytes] = {
    "amount_authorised": bytes(6),
    "amount_other": bytes(6),
    "terminal_country_code": bytes(2),
    "tvr": bytes(5),
    "transaction_currency_code": bytes(2),
    "transaction_date": bytes(3),
    "transaction_type": bytes(1),
    "unpredictable_number": bytes(4),
    "aip": bytes(2),
    "atc": bytes(2),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_data_element_length_is_checked(name: str) -> None:
    elements = {**VALID, name: VALID[name] + b"\x00"}
    with pytest.raises(ValueError, match=rf"^{name} must be {len(VALID[name])} bytes? long"):
        ac.visa_cvn18_input(ac.CryptogramData(**elements), iad=bytes(7))


def test_table_26_tags_are_the_fields_in_table_26_order() -> None:
    assert list(ac.TABLE_26_TAGS) == list(ac.CryptogramData.FIELD_LENGTHS) == list(PYEMV_TAGS)
    assert list(ac.TABLE_26_TAGS.values()) == [
        0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36
    ]  # fmt: skip


def _by_tag(elements: dict[str, bytes]) -> dict[int, bytes]:
    return {ac.TABLE_26_TAGS[name]: value for name, value in elements.items()}


@given(
    elements=table26,
    others=st.dictionaries(st.sampled_from([0x5A, 0x9F10, 0x9F26, 0x9F27]), st.binary(max_size=9)),
)
def test_from_tags_round_trips_with_to_bytes(
    elements: dict[str, bytes], others: dict[int, bytes]
) -> None:
    values = {**others, **_by_tag(elements)}
    data = ac.CryptogramData.from_tags(values)
    assert data == ac.CryptogramData(**elements)
    assert data.to_bytes() == b"".join(values[tag] for tag in ac.TABLE_26_TAGS.values())


@pytest.mark.parametrize("name", list(VALID))
def test_from_tags_names_a_missing_tag(name: str) -> None:
    values = _by_tag({key: value for key, value in VALID.items() if key != name})
    tag = f"{ac.TABLE_26_TAGS[name]:02X}"
    with pytest.raises(ValueError, match=rf"missing: {tag}$"):
        ac.CryptogramData.from_tags(values)


def test_from_tags_names_every_missing_tag() -> None:
    with pytest.raises(
        ValueError, match=r"missing: 9F02, 9F03, 9F1A, 95, 5F2A, 9A, 9C, 9F37, 82, 9F36$"
    ):
        ac.CryptogramData.from_tags({0x5A: bytes(8)})


@pytest.mark.parametrize("name", sorted(VALID))
@pytest.mark.parametrize("change", [1, -1], ids=["long", "short"])
def test_from_tags_checks_each_length(name: str, change: int) -> None:
    value = VALID[name] + b"\x00" if change > 0 else VALID[name][:-1]
    values = _by_tag({**VALID, name: value})
    with pytest.raises(ValueError, match=rf"^{name} must be {len(VALID[name])} bytes? long"):
        ac.CryptogramData.from_tags(values)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ac.generate_ac(bytes(24), b"x"), r"^sk must be 16 bytes"),
        (lambda: ac.generate_ac(bytes(16), b"x", "mc"), r"^padding must be \"emv\" or \"visa\""),  # type: ignore[arg-type]
        (
            lambda: ac.visa_cvn10_input(ac.CryptogramData(**VALID), cvr=bytes(3)),
            r"^cvr must be 4 bytes",
        ),
        (
            lambda: ac.visa_cvn18_input(ac.CryptogramData(**VALID), iad=b""),
            r"^iad must be 1 to 32 bytes",
        ),
        (
            lambda: ac.visa_cvn22_input(ac.CryptogramData(**VALID), iad=bytes(33)),
            r"^iad must be 1 to 32 bytes",
        ),
        (
            lambda: ac.mastercard_cvn16_input(ac.CryptogramData(**VALID), cvr=bytes(4)),
            r"^cvr must be 6 bytes",
        ),
        (
            lambda: ac.mastercard_cvn17_input(
                ac.CryptogramData(**VALID), cvr=bytes(6), counters=bytes(9)
            ),
            r"^counters must be 8 or 16 bytes",
        ),
        (lambda: ac.generate_arpc_1(bytes(8), bytes(8), bytes(2)), r"^sk must be 16 bytes"),
        (lambda: ac.generate_arpc_1(bytes(16), bytes(7), bytes(2)), r"^arqc must be 8 bytes"),
        (lambda: ac.generate_arpc_1(bytes(16), bytes(8), bytes(3)), r"^arc must be 2 bytes"),
        (lambda: ac.generate_arpc_2(bytes(16), bytes(9), bytes(4)), r"^arqc must be 8 bytes"),
        (lambda: ac.generate_arpc_2(bytes(16), bytes(8), bytes(2)), r"^csu must be 4 bytes"),
        (
            lambda: ac.generate_arpc_2(bytes(16), bytes(8), bytes(4), bytes(9)),
            r"^prop_auth_data must be 0 to 8 bytes",
        ),
    ],
)
def test_malformed_input_names_the_parameter(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
