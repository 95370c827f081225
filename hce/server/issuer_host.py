"""Issuer host for plastic cards: what a card's ARQC is the MAC of, under which key,
and how it is answered, by cryptogram version (CVN).

A plastic card enrolled with the token server (``TokenService.enrol_card``) has its
MK-AC by Option A from the server's IMK-AC (EMV Book 2 A1.4.1), as
:class:`hce.card.issuer.SoftIssuer` makes it. By CVN, as the emulated cards of
:mod:`hce.card.visa` and :mod:`hce.card.mastercard` compute it and as pyemv's CVN
classes (``pyemv.cvn``) and the published chains of ``emv/crypto/vectors/ac.json``
state it:

=====  ==========================  ===============================  =====================
CVN    AC session key              cryptogram input (Book 2 §8.1)   ARPC (Book 2 §8.2)
=====  ==========================  ===============================  =====================
18,22  common, R = ATC || '00'x6   Table 26 data || IAD             method 2, session key
16     M/Chip, ATC || '0000' || UN Table 26 data || CVR             method 1, ICC MK
17     M/Chip, ATC || '0000' || UN Table 26 data || CVR || counters method 1, ICC MK
20     common, R = ATC || '00'x6   Table 26 data || CVR             method 1, session key
21     common, R = ATC || '00'x6   Table 26 data || CVR || counters method 1, session key
=====  ==========================  ===============================  =====================

The Visa IAD is the one of VIS (CVN 18: '06' DKI '12' '03' CVR, 7 bytes; CVN 22:
'1F' '22' DKI ..., 32 bytes); the M/Chip IAD is DKI, CVN byte ('10', '11', '14',
'15'), CVR (6), DAC / ICC dynamic number (2), counters (8): 18 bytes. Every
cryptogram uses EMV padding (ISO/IEC 9797-1 method 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emv.crypto import ac
from hce.hsm.interface import CommonSession, MastercardSession, Session
from hce.server.authorisation import AuthorisationRequest, MalformedRequest

__all__ = ["CRYPTOGRAM_VERSIONS", "PlasticCryptogram", "plastic_cryptogram"]

CRYPTOGRAM_VERSIONS: dict[str, str] = {
    "18": "visa",
    "22": "visa",
    "16": "mastercard",
    "17": "mastercard",
    "20": "mastercard",
    "21": "mastercard",
}
"""The cryptogram versions the issuer host verifies, with their scheme."""

_MCHIP_IAD_LENGTH = 18
_MCHIP_CVN = {"16": 0x10, "17": 0x11, "20": 0x14, "21": 0x15}
_MCHIP_SKD = frozenset({"16", "17"})  # the others use the common session key
_MCHIP_COUNTERS = frozenset({"17", "21"})


@dataclass(frozen=True)
class PlasticCryptogram:
    """How to verify and answer one plastic card's ARQC inside the HSM: the MAC input,
    the session key of the AC, the ARPC method and the session key of the ARPC (None:
    the ICC master key itself)."""

    mac_input: bytes
    session: Session
    arpc_method: Literal[1, 2]
    arpc_session: Session | None


def plastic_cryptogram(version: str, request: AuthorisationRequest) -> PlasticCryptogram:
    """The verification of ``request`` for a card of cryptogram ``version`` (module
    docstring); MalformedRequest when its IAD is not of that version."""
    if CRYPTOGRAM_VERSIONS.get(version) == "visa":
        return _visa(version, request)
    if CRYPTOGRAM_VERSIONS.get(version) == "mastercard":
        return _mastercard(version, request)
    raise ValueError(f"cryptogram version {version!r}: not verified by the issuer host")


def _visa(version: str, request: AuthorisationRequest) -> PlasticCryptogram:
    """Visa CVN 18/22 (pyemv ``VisaCVN18``/``VisaCVN22``): common session key of the
    ATC (Book 2 A1.3.1), input Table 26 data || IAD, ARPC method 2 (§8.2.2) under the
    same session key."""
    iad = request.iad
    if not _visa_iad_fits(version, iad):
        raise MalformedRequest(f"tag 9F10: not a Visa CVN {version} IAD")
    session = CommonSession(request.data.atc + bytes(6))
    return PlasticCryptogram(ac.visa_cvn18_input(request.data, iad), session, 2, session)


def _visa_iad_fits(version: str, iad: bytes) -> bool:
    """The VIS IAD of the version: CVN 18 '06' DKI '12' '03' CVR (7 bytes, format 0/1),
    CVN 22 '1F' '22' DKI ... (32 bytes, format 2)."""
    if version == "18":
        return len(iad) == 7 and iad[0] == 0x06 and iad[2:4] == b"\x12\x03"
    return len(iad) == 32 and iad[:2] == b"\x1f\x22"


def _mastercard(version: str, request: AuthorisationRequest) -> PlasticCryptogram:
    """Mastercard CVN 16/17 (pyemv ``MasterCardCVN16``/``17``): M/Chip session key of
    the ATC and UN, ARPC method 1 (§8.2.1) under the ICC MK; CVN 20/21 (``20``/``21``):
    common session key, ARPC method 1 under it. CVN 17/21 add the IAD's counters."""
    iad, data = request.iad, request.data
    if len(iad) != _MCHIP_IAD_LENGTH or iad[1] != _MCHIP_CVN[version]:
        raise MalformedRequest(f"tag 9F10: not an M/Chip CVN {version} IAD")
    cvr, counters = iad[2:8], iad[10:18]
    if version in _MCHIP_COUNTERS:
        mac_input = ac.mastercard_cvn17_input(data, cvr, counters)
    else:
        mac_input = ac.mastercard_cvn16_input(data, cvr)
    if version in _MCHIP_SKD:
        return PlasticCryptogram(
            mac_input, MastercardSession(data.atc, data.unpredictable_number), 1, None
        )
    session = CommonSession(data.atc + bytes(6))
    return PlasticCryptogram(mac_input, session, 1, session)
