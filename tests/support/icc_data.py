"""What a terminal sends for online authorisation, as the tests of the wallet and the
token server build it: the Table 26 data of a UK test terminal (:func:`terminal_data`)
and the ICC data, ISO 8583 DE 55 in BER-TLV (:func:`icc_data`)."""

from __future__ import annotations

from emv import tlv
from emv.crypto import ac
from emv.tlv import Tlv


def icc_data(
    pan: str,
    data: ac.CryptogramData,
    arqc: bytes,
    iad: bytes,
    psn: str | None = "00",
    *,
    cid: bytes = b"\x80",
) -> bytes:
    """The DE55-like request a terminal sends (``cid`` 9F27: an ARQC unless told)."""
    p = Tlv.primitive
    objects = [
        p(0x5A, bytes.fromhex(pan + "F" * (len(pan) % 2))),
        p(0x9F26, arqc),
        p(0x9F27, cid),
        p(0x9F36, data.atc),
        p(0x9F10, iad),
        p(0x9F02, data.amount_authorised),
        p(0x9F03, data.amount_other),
        p(0x9F1A, data.terminal_country_code),
        p(0x95, data.tvr),
        p(0x5F2A, data.transaction_currency_code),
        p(0x9A, data.transaction_date),
        p(0x9C, data.transaction_type),
        p(0x9F37, data.unpredictable_number),
        p(0x82, data.aip),
    ]
    if psn is not None:
        objects.insert(1, p(0x5F34, bytes.fromhex(psn)))
    return tlv.encode(objects)


def terminal_data(atc: bytes, amount: int) -> ac.CryptogramData:
    """Book 2 Table 26 of a purchase of ``amount`` pence in GBP on 2026-11-26 (UN
    5A1B3C4D, AIP 2020) with the card's ``atc``."""
    return ac.CryptogramData(
        amount_authorised=bytes.fromhex(f"{amount:012d}"),
        amount_other=bytes(6),
        terminal_country_code=bytes.fromhex("0826"),
        tvr=bytes(5),
        transaction_currency_code=bytes.fromhex("0826"),
        transaction_date=bytes.fromhex("261126"),
        transaction_type=b"\x00",
        unpredictable_number=bytes.fromhex("5A1B3C4D"),
        aip=bytes.fromhex("2020"),
        atc=atc,
    )
