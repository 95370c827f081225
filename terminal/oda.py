"""Offline data authentication in the terminal: the CA key store, the certificate chain,
and the fDDA (Book C-3 Annex C) and CDA (Book 2 §6.6) checks, through :mod:`emv.crypto.oda`.

The kernels decide what a failure means (TVR bit, outcome); this module says
whether and why it failed. :func:`retrieve_icc_key` does Book 2 §6.2-§6.4: the CA
key by RID (the AID's first 5 bytes) and index (8F), the issuer key from 90/92/9F32
and the ICC key from 9F46/9F48/9F47 over the static data to authenticate (records,
then the AIP when the SDA Tag List 9F4A says '82'). Every failure is an
:class:`OdaFailure` whose message names the step and the data object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from emv.crypto import oda

__all__ = [
    "OdaFailure",
    "OdaResult",
    "pan_digits",
    "retrieve_icc_key",
    "static_data_to_authenticate",
    "verify_cda",
    "verify_fdda",
]

Method = Literal["fDDA", "CDA", "none"]
Result = Literal["passed", "failed", "not performed"]


@dataclass(frozen=True)
class OdaResult:
    """What offline data authentication did: the method and its result, and why."""

    method: Method = "none"
    result: Result = "not performed"
    reason: str = ""

    def __str__(self) -> str:
        if self.method == "none":
            return f"not performed{': ' + self.reason if self.reason else ''}"
        return f"{self.method} {self.result}{': ' + self.reason if self.reason else ''}"


class OdaFailure(Exception):
    """Offline data authentication failed; the message names the step and the data object."""


def _need(data: Mapping[int, bytes], tag: int, name: str) -> bytes:
    value = data.get(tag)
    if value is None:
        raise OdaFailure(f"{name} ({tag:X}) missing")
    return value


def static_data_to_authenticate(records: bytes, data: Mapping[int, bytes]) -> bytes:
    """Book 2 §5.4: the ODA records, then the values of the SDA Tag List (9F4A), which
    may only name the AIP (82)."""
    tag_list = data.get(0x9F4A, b"")
    if tag_list not in (b"", b"\x82"):
        raise OdaFailure("SDA Tag List (9F4A) names something other than the AIP (82)")
    return records + (data.get(0x82, b"") if tag_list else b"")


def pan_digits(data: Mapping[int, bytes]) -> str:
    """The Application PAN (5A) as digits, trailing 'F' padding removed."""
    return _need(data, 0x5A, "Application PAN").hex().upper().rstrip("F")


def retrieve_icc_key(
    ca_keys: oda.CaKeyStore,
    rid: bytes,
    data: Mapping[int, bytes],
    static_data: bytes,
    today: date,
) -> oda.RsaPublicKey:
    """The ICC public key, certified under the CA key the card names (Book 2 §6.2-§6.4)."""
    index = _need(data, 0x8F, "CA Public Key Index")
    if len(index) != 1:
        raise OdaFailure(f"CA Public Key Index (8F) has {len(index)} bytes, expected 1")
    try:
        ca_key = ca_keys.lookup(rid, index[0])
    except oda.OdaError:
        raise OdaFailure(f"no CA public key {rid.hex().upper()} index {index[0]:02X}") from None
    pan = pan_digits(data)
    try:
        issuer = oda.recover_issuer_public_key(
            ca_key.public_key,
            oda.PublicKeyCertificate(
                _need(data, 0x90, "Issuer Public Key Certificate"),
                data.get(0x92, b""),
                _need(data, 0x9F32, "Issuer Public Key Exponent"),
            ),
            pan=pan,
            today=today,
        )
        return oda.recover_icc_public_key(
            issuer.public_key,
            oda.PublicKeyCertificate(
                _need(data, 0x9F46, "ICC Public Key Certificate"),
                data.get(0x9F48, b""),
                _need(data, 0x9F47, "ICC Public Key Exponent"),
            ),
            pan=pan,
            static_data=static_data,
            today=today,
        ).public_key
    except oda.OdaError as err:
        raise OdaFailure(str(err)) from None


def verify_fdda(
    icc_key: oda.RsaPublicKey, card: Mapping[int, bytes], terminal: Mapping[int, bytes]
) -> None:
    """fDDA (Book C-3 Annex C): the SDAD (9F4B) over the terminal's UN, amount and currency
    and the Card Authentication Related Data (9F69); the ICC Dynamic Number inside must
    be the ATC (9F36)."""
    sdad = _need(card, 0x9F4B, "Signed Dynamic Application Data")
    try:
        signed = oda.fdda_terminal_data(
            terminal[0x9F37], terminal[0x9F02], terminal[0x5F2A], card.get(0x9F69, b"")
        )
        number = oda.verify_dda(icc_key, sdad, signed)
    except oda.OdaError as err:
        raise OdaFailure(str(err)) from None
    if number != card.get(0x9F36):
        raise OdaFailure("fDDA: the ICC Dynamic Number is not the ATC (9F36)")


def verify_cda(
    icc_key: oda.RsaPublicKey,
    sdad: bytes,
    *,
    unpredictable_number: bytes,
    cid: int,
    pdol_data: bytes,
    cdol1_data: bytes,
    response_tlvs: bytes,
    cdol2_data: bytes = b"",
) -> bytes:
    """CDA (Book 2 §6.6.2): verify the SDAD of a GENERATE AC response; return the
    Application Cryptogram it carries."""
    try:
        recovered = oda.verify_cda(
            icc_key,
            sdad,
            unpredictable_number=unpredictable_number,
            cid=cid,
            pdol_data=pdol_data,
            cdol1_data=cdol1_data,
            response_tlvs=response_tlvs,
            cdol2_data=cdol2_data,
        )
    except oda.OdaError as err:
        raise OdaFailure(str(err)) from None
    return recovered.application_cryptogram
