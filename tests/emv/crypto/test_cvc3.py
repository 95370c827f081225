"""emv.crypto.cvc3: pyemv.cvv as an oracle, malformed input."""

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyemv import cvv

from emv.crypto import cvc3

keys = st.binary(min_size=16, max_size=16)
tracks = st.binary(min_size=1, max_size=79)
atcs = st.binary(min_size=2, max_size=2)
uns = st.binary(min_size=4, max_size=4)


@given(key=keys, track=tracks, atc=atcs, un=uns)
def test_agrees_with_pyemv(key: bytes, track: bytes, atc: bytes, un: bytes) -> None:
    ours = cvc3.generate_cvc3(key, track, atc, un)
    assert len(ours) == cvc3.CVC3_DIGITS
    assert ours == cvv.generate_cvc3(key, track, atc, un).zfill(cvc3.CVC3_DIGITS)


@given(key=keys, track=tracks, atc=atcs, un=uns)
def test_card_side_from_personalised_iv(key: bytes, track: bytes, atc: bytes, un: bytes) -> None:
    iv = cvc3.iv_cvc3(key, track)
    assert len(iv) == 2
    assert cvc3.cvc3_from_iv(key, iv, un, atc) == cvc3.generate_cvc3(key, track, atc, un)


def test_small_values_keep_five_digits() -> None:
    key = bytes(range(16))
    values = {
        cvc3.cvc3_from_iv(key, b"\x00\x00", n.to_bytes(4, "big"), b"\x00\x01") for n in range(300)
    }
    assert all(len(v) == 5 and v.isdigit() for v in values)
    assert any(v.startswith("0") for v in values)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cvc3.generate_cvc3(bytes(8), b"x", bytes(2), bytes(4)), r"^kd_cvc3 must be 16"),
        (lambda: cvc3.generate_cvc3(bytes(16), b"", bytes(2), bytes(4)), r"^track_data must not"),
        (lambda: cvc3.generate_cvc3(bytes(16), b"x", bytes(1), bytes(4)), r"^atc must be 2 bytes"),
        (lambda: cvc3.generate_cvc3(bytes(16), b"x", bytes(2), bytes(2)), r"^un must be 4 bytes"),
        (
            lambda: cvc3.cvc3_from_iv(bytes(16), bytes(3), bytes(4), bytes(2)),
            r"^iv must be 2 bytes",
        ),
        (lambda: cvc3.iv_cvc3(bytes(24), b"x"), r"^kd_cvc3 must be 16"),
    ],
)
def test_malformed_input_names_the_parameter(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
