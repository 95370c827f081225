"""Application cryptograms and issuer authentication (EMV Book 2 §8.1, §8.2).

An application cryptogram (ARQC, TC, AAC) is the ISO/IEC 9797-1 MAC
algorithm 3 of EMV Book 2 Annex A1.2.1 over the cryptogram input, under the
session key for application cryptograms. What goes into the input, in which
order, and how it is padded, is fixed by the cryptogram version number (CVN);
the ``*_input`` functions below assemble it from the data elements for the
public Visa and Mastercard CVNs.

All of them start with the data the terminal sends in CDOL1 followed by card
data, in this order (EMV Book 2 §8.1.1, Table 26, minimum recommended set):

    9F02 Amount, Authorised (6)   9F03 Amount, Other (6)
    9F1A Terminal Country Code (2)   95 TVR (5)
    5F2A Transaction Currency Code (2)   9A Transaction Date (3)
    9C Transaction Type (1)   9F37 Unpredictable Number (4)
    82 AIP (2)   9F36 ATC (2)

The per-CVN composition is as used by the public tooling the vectors come from
(pyemv's ``cvn`` module; IBM CCA's EMV services documentation for the Visa
zero padding).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal, Self

from emv.crypto import des, mac
from emv.crypto.checks import require_length

ARPC_2_LENGTH = 4

TABLE_26_TAGS: Mapping[str, int] = MappingProxyType(
    {
        "amount_authorised": 0x9F02,
        "amount_other": 0x9F03,
        "terminal_country_code": 0x9F1A,
        "tvr": 0x95,
        "transaction_currency_code": 0x5F2A,
        "transaction_date": 0x9A,
        "transaction_type": 0x9C,
        "unpredictable_number": 0x9F37,
        "aip": 0x82,
        "atc": 0x9F36,
    }
)
"""The tag of each :class:`CryptogramData` field, in Book 2 §8.1.1 Table 26 order."""

Padding = Literal["emv", "visa"]


def generate_ac(sk: bytes, data: bytes, padding: Padding = "emv") -> bytes:
    """The 8-byte application cryptogram over ``data`` (EMV Book 2 §8.1.2, A1.2.1).

    ``sk`` is the 16-byte TDEA session key (for Visa CVN 10, the ICC master
    key). ``padding`` is "emv" for ISO/IEC 9797-1 method 2 ('80' then zeros),
    which EMV and Mastercard use and Visa CVN 18/22; "visa" for method 1
    (zeros only), used by Visa CVN 10.
    """
    require_length("sk", sk, 16)
    return generate_ac_with(mac.RetailMacKey(sk), data, padding)


def generate_ac_with(key: mac.RetailMacKey, data: bytes, padding: Padding = "emv") -> bytes:
    """:func:`generate_ac` under a session key whose MAC ciphers are made already
    (:class:`~emv.crypto.mac.RetailMacKey`): for an ARQC and its ARPC method 2."""
    if padding == "emv":
        return key.mac(data, padding=2)
    if padding == "visa":
        return key.mac(data, padding=1)
    raise ValueError(f'padding must be "emv" or "visa", got {padding!r}')


@dataclass(frozen=True, kw_only=True)
class CryptogramData:
    """The ten data elements of Book 2 §8.1.1 Table 26, each checked for its length.

    The terminal supplies the first eight through CDOL1; AIP and ATC come from
    the card. :meth:`to_bytes` concatenates them in Table 26 order.
    """

    amount_authorised: bytes  # 9F02, 6
    amount_other: bytes  # 9F03, 6
    terminal_country_code: bytes  # 9F1A, 2
    tvr: bytes  # 95, 5
    transaction_currency_code: bytes  # 5F2A, 2
    transaction_date: bytes  # 9A, 3
    transaction_type: bytes  # 9C, 1
    unpredictable_number: bytes  # 9F37, 4
    aip: bytes  # 82, 2
    atc: bytes  # 9F36, 2

    FIELD_LENGTHS: ClassVar[dict[str, int]] = {
        "amount_authorised": 6,
        "amount_other": 6,
        "terminal_country_code": 2,
        "tvr": 5,
        "transaction_currency_code": 2,
        "transaction_date": 3,
        "transaction_type": 1,
        "unpredictable_number": 4,
        "aip": 2,
        "atc": 2,
    }

    def __post_init__(self) -> None:
        for name, length in self.FIELD_LENGTHS.items():
            require_length(name, getattr(self, name), length)

    @classmethod
    def from_tags(cls, values: Mapping[int, bytes]) -> Self:
        """The ten elements from data objects by tag (:data:`TABLE_26_TAGS`); other tags
        are ignored. Each must have its exact length (the constructor's ValueError); tags
        that are missing are a ValueError that names them."""
        missing = [tag for tag in TABLE_26_TAGS.values() if tag not in values]
        if missing:
            tags = ", ".join(f"{tag:02X}" for tag in missing)
            raise ValueError(f"Table 26 data object(s) missing: {tags}")
        return cls(**{name: values[tag] for name, tag in TABLE_26_TAGS.items()})

    def to_bytes(self) -> bytes:
        return b"".join(getattr(self, name) for name in self.FIELD_LENGTHS)


def visa_cvn10_input(data: CryptogramData, cvr: bytes) -> bytes:
    """Visa CVN 10 cryptogram input: the Table 26 elements, then the 4-byte CVR.

    ``cvr`` is bytes 4-7 of the Issuer Application Data (9F10) in the Visa
    format: the CVR length byte '03' and the three CVR bytes. CVN 10 uses the
    ICC master key directly and zero padding (``generate_ac(..., "visa")``).
    """
    require_length("cvr", cvr, 4)
    return data.to_bytes() + cvr


def visa_cvn18_input(data: CryptogramData, iad: bytes) -> bytes:
    """Visa CVN 18 (and CVN 22) cryptogram input: the Table 26 elements, then the IAD.

    ``iad`` is the whole Issuer Application Data (9F10, up to 32 bytes) as the
    card returns it. CVN 18/22 use the common session key with R = ATC || '00'x6
    and EMV padding (``generate_ac(..., "emv")``).
    """
    if not 1 <= len(iad) <= 32:
        raise ValueError(f"iad must be 1 to 32 bytes long, got {len(iad)}")
    return data.to_bytes() + iad


visa_cvn22_input = visa_cvn18_input
"""Visa CVN 22 takes the same input as CVN 18 (Table 26 elements || IAD)."""


def mastercard_cvn16_input(data: CryptogramData, cvr: bytes) -> bytes:
    """Mastercard CVN 16 (and CVN 20) input: the Table 26 elements, then the 6-byte CVR.

    ``cvr`` is the Card Verification Results from the M/Chip IAD (9F10 bytes
    3-8). CVN 16 uses the M/Chip session key (:func:`emv.crypto.kd.derive_mastercard_sk`),
    CVN 20 the common session key; both use EMV padding.
    """
    require_length("cvr", cvr, 6)
    return data.to_bytes() + cvr


mastercard_cvn20_input = mastercard_cvn16_input
"""Mastercard CVN 20 takes the same input as CVN 16; only the session key differs."""


def mastercard_cvn17_input(data: CryptogramData, cvr: bytes, counters: bytes) -> bytes:
    """Mastercard CVN 17 (and CVN 21) input: as CVN 16, then the counters.

    ``counters`` are the clear counters from the IAD: 8 bytes in M/Chip 4
    (cumulative offline amount, consecutive offline count, 'FF'), 8 or 16 in
    M/Chip Advance.
    """
    require_length("counters", counters, 8, 16)
    return mastercard_cvn16_input(data, cvr) + counters


mastercard_cvn21_input = mastercard_cvn17_input
"""Mastercard CVN 21 takes the same input as CVN 17; only the session key differs."""


def generate_arpc_1(sk: bytes, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1 (EMV Book 2 §8.2.1): ARPC := DES3(SK)[ARQC xor (ARC || '00'x6)].

    ``arc`` is the 2-byte Authorisation Response Code (tag 8A); the result is
    the 8-byte ARPC. ``sk`` is the key the CVN names (a session key, or for
    Visa CVN 10 and Mastercard CVN 16/17 the ICC master key).
    """
    require_length("sk", sk, 16)
    require_length("arqc", arqc, 8)
    require_length("arc", arc, 2)
    y = bytes(a ^ b for a, b in zip(arqc, arc + bytes(6), strict=True))
    return des.encrypt_tdes_ecb(sk, y)


def generate_arpc_2(sk: bytes, arqc: bytes, csu: bytes, prop_auth_data: bytes = b"") -> bytes:
    """ARPC method 2 (EMV Book 2 §8.2.2): the 4-byte MAC (A1.2.1) of ARQC || CSU || PAD.

    ``csu`` is the 4-byte Card Status Update and ``prop_auth_data`` the 0 to 8
    bytes of Proprietary Authentication Data.
    """
    require_length("sk", sk, 16)
    return generate_arpc_2_with(mac.RetailMacKey(sk), arqc, csu, prop_auth_data)


def generate_arpc_2_with(
    key: mac.RetailMacKey, arqc: bytes, csu: bytes, prop_auth_data: bytes = b""
) -> bytes:
    """:func:`generate_arpc_2` under a session key whose MAC ciphers are made already
    (:class:`~emv.crypto.mac.RetailMacKey`): the ARQC's, verified just before."""
    require_length("arqc", arqc, 8)
    require_length("csu", csu, 4)
    if len(prop_auth_data) > 8:
        raise ValueError(f"prop_auth_data must be 0 to 8 bytes long, got {len(prop_auth_data)}")
    return key.mac(arqc + csu + prop_auth_data, padding=2)[:ARPC_2_LENGTH]
