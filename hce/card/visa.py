"""Visa qVSDC: the card side of EMV Contactless Book C-3 (Kernel 3).

A qVSDC transaction ends at GET PROCESSING OPTIONS (Book C-3 §5.2-5.4): the
terminal sends the PDOL data (TTQ 9F66, amount 9F02, UN 9F37, ...), and the card
decides, computes its cryptogram and answers everything in one Format 2 response:
AIP, AFL, Track 2 Equivalent Data, PSN, IAD, AC, CID, ATC, CTQ and, when offline
data authentication is to be done, the fDDA signature (9F4B) with the Card
Authentication Related Data (9F69). READ RECORD then serves the records (the
certificates and the data they sign). GENERATE AC is not part of qVSDC: '6985'.

The card's decision (its card action analysis, emvtap's rules in the shape of
Book C-3 §5.4 and Annex D):

* an online-capable reader that requires an online cryptogram (TTQ byte 2 bit 8)
  gets an ARQC;
* else the card approves offline (TC) when it may: plastic keys, offline data
  authentication possible, and the amount and the offline totals since the last
  online transaction within the profile's limits;
* else an online-capable reader gets an ARQC and an offline-only one (TTQ byte 1
  bit 4) a decline (AAC).

fDDA (Book C-3 Annex C, fDDA version 01) is done for an offline approval, and for
an online one when the reader says it supports ODA for online authorisations
(TTQ byte 1 bit 1); never for a decline. The ICC Dynamic Number is the ATC.

Cryptograms: plastic cards compute CVN 18 or 22 (ICC MK-AC, common session key
for the ATC, Book 2 A1.3.1; input Table 26 data || IAD,
:func:`emv.crypto.ac.visa_cvn18_input`); HCE cards ask the wallet for a LUK and
compute the emvtap CBP-V cryptogram ('C1' IAD, docs/cbp.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from emv import dol
from emv.apdu import CommandApdu, CryptogramType
from emv.bitfields import AIP, CTQ, TTQ
from emv.crypto import ac, cbp, oda
from emv.tlv import Tlv
from hce.card.applet import (
    CLA_EMV,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_WRONG_P1P2,
    Applet,
    Handler,
    StatusError,
    amount_authorised,
    command_template,
    cryptogram_data,
    dol_values,
    require,
)
from hce.card.keys import AtcExhausted, CardKeys, Counters, HceKeys, PlasticKeys
from hce.card.personalise import AppImage
from hce.wallet import WalletError

__all__ = ["VisaApplet", "visa_cvr", "visa_iad"]

_IAD_CVN = {"18": 0x12, "22": 0x22}
_CVR_SECOND_AC_NOT_REQUESTED = 0x80  # CVR byte 1 bits 8-7 = 10
_CVR_UNABLE_TO_GO_ONLINE = 0x01  # CVR byte 1 bit 1
_CVR_VELOCITY_EXCEEDED = 0x20  # CVR byte 2 bit 6: exceeded velocity checking counters
_FDDA_VERSION = 0x01
_CARD_UN_LENGTH = 4


def visa_cvr(kind: CryptogramType, *, unable_online: bool, velocity_exceeded: bool) -> bytes:
    """The three CVR bytes of the Visa IAD (VIS 1.5 Appendix A, as public tools decode
    them): byte 1 bits 8-7 '10' (no second GENERATE AC), bits 6-5 the cryptogram type
    returned (00 AAC, 01 TC, 10 ARQC), bit 1 unable to go online; byte 2 bit 6 exceeded
    velocity checking counters."""
    first = _CVR_SECOND_AC_NOT_REQUESTED | (kind >> 6) << 4
    first |= _CVR_UNABLE_TO_GO_ONLINE if unable_online else 0
    second = _CVR_VELOCITY_EXCEEDED if velocity_exceeded else 0
    return bytes((first, second, 0))


def visa_iad(version: str, dki: int, cvr: bytes) -> bytes:
    """Visa Issuer Application Data for CVN 18 (format 0/1: '06' DKI '12' '03' CVR, 7
    bytes) or CVN 22 (format 2: '1F' '22' DKI CVR on 5 bytes, then 24 bytes of issuer
    discretionary data, here zeros; 32 bytes)."""
    cvn = _IAD_CVN[version]
    if cvn == 0x12:
        return bytes((0x06, dki, cvn, 0x03)) + cvr
    return bytes((0x1F, cvn, dki)) + cvr + bytes(2) + bytes(24)


class VisaApplet(Applet):
    """One Visa qVSDC application (see the module docstring)."""

    def __init__(self, image: AppImage, keys: CardKeys) -> None:
        super().__init__(image, keys)
        app = image.profile
        assert app.pdol is not None and app.ctq is not None  # BrandRules.required for visa
        self.pdol = dol.parse_dol(app.pdol)
        self.ctq = CTQ.from_bytes(app.ctq)
        self.aip = AIP.from_bytes(app.aip)

    def handlers(self) -> Mapping[int, Handler]:
        return {
            **super().handlers(),
            0xA8: Handler(CLA_EMV, self.get_processing_options),
            0xAE: Handler(CLA_EMV, self.generate_ac),
        }

    def generate_ac(self, command: CommandApdu) -> bytes:
        """qVSDC ends at GET PROCESSING OPTIONS (Book C-3 §5.2): no GENERATE AC."""
        raise StatusError(SW_CONDITIONS_NOT_SATISFIED)

    def data_object(self, tag: int) -> bytes | None:
        """GET DATA adds the Available Offline Spending Amount (9F5D, Book C-3 Annex A)
        for a plastic card that may approve offline."""
        limits = self.image.profile.limits
        if tag == 0x9F5D and isinstance(self.keys, PlasticKeys) and limits.cumulative_offline:
            left = max(0, limits.cumulative_offline - self.keys.counters.offline_amount)
            return bytes.fromhex(f"{left:012d}")
        return super().data_object(tag)

    # --- GET PROCESSING OPTIONS ---------------------------------------------------------------

    def get_processing_options(self, command: CommandApdu) -> bytes:
        """GET PROCESSING OPTIONS (Book 3 §6.5.8, Book C-3 §5.2): the whole qVSDC answer."""
        require(command.p1 == 0 and command.p2 == 0, SW_WRONG_P1P2)
        require(not self.processing, SW_CONDITIONS_NOT_SATISFIED)
        values = self._pdol_values(command.data)
        ttq = TTQ.from_bytes(dol.fit_value(0x9F66, values.get(0x9F66, bytes(4)), 4))
        require(ttq.emv_mode_supported, SW_CONDITIONS_NOT_SATISFIED)
        amount = amount_authorised(values.get(0x9F02, bytes(6)))
        counters = self.plastic_counters()
        kind = self._decide(ttq, amount, counters)
        ctq = self._ctq(ttq, amount, kind)
        try:
            atc, iad, cryptogram = self._cryptogram(kind, values, amount, ttq, counters)
        except (WalletError, AtcExhausted):
            raise StatusError(SW_CONDITIONS_NOT_SATISFIED) from None
        self.processing = True
        objects = self._response_objects(atc, iad, cryptogram, kind, ctq)
        if self.image.icc_key is not None and self._fdda_wanted(ttq, kind):
            objects += _fdda(self.image.icc_key, values, atc, ctq)
        return Tlv.template(0x77, *objects).to_bytes()

    def _pdol_values(self, data: bytes) -> dict[int, bytes]:
        """The PDOL data out of the Command Template '83' (Book 3 §6.5.8.3), by tag."""
        return dol_values(self.pdol, command_template(data))

    def _decide(self, ttq: TTQ, amount: int, counters: Counters | None) -> CryptogramType:
        """The card's decision (module docstring), from the plastic card's ``counters``."""
        online_capable = not ttq.offline_only_reader
        if online_capable and ttq.online_cryptogram_required:
            return CryptogramType.ARQC
        if self._may_approve_offline(amount, counters):
            return CryptogramType.TC
        return CryptogramType.ARQC if online_capable else CryptogramType.AAC

    def _may_approve_offline(self, amount: int, counters: Counters | None) -> bool:
        limits = self.image.profile.limits
        return (
            counters is not None
            and self.image.icc_key is not None
            and limits.consecutive_offline > 0
            and amount <= limits.offline_transaction
            and not self._velocity_exceeded(amount, counters)
        )

    def _velocity_exceeded(self, amount: int, counters: Counters | None) -> bool:
        """The plastic card's offline ``counters`` (:class:`~hce.card.keys.Counters`)
        would pass the card's limits with this amount (VIS CVR byte 2 bit 6)."""
        limits = self.image.profile.limits
        if counters is None or not limits.consecutive_offline:
            return False
        return (
            counters.offline_count >= limits.consecutive_offline
            or counters.offline_amount + amount > limits.cumulative_offline
        )

    def _ctq(self, ttq: TTQ, amount: int, kind: CryptogramType) -> CTQ:
        """The CTQ with the CVM the card asks for (Book C-3 §5.3 and Annex A): the
        phone's own verification when done and supported, else above the card CVM
        limit (or when the reader asks for a CVM) online PIN for an ARQC, or signature."""
        if isinstance(self.keys, HceKeys) and self.keys.cdcvm and ttq.consumer_device_cvm_supported:
            return replace(self.ctq, consumer_device_cvm_performed=True)
        limit = self.image.profile.limits.cvm
        if not (ttq.cvm_required or (limit and amount > limit)):
            return self.ctq
        if ttq.online_pin_supported and kind == CryptogramType.ARQC:
            return replace(self.ctq, online_pin_required=True)
        if ttq.signature_supported:
            return replace(self.ctq, signature_required=True)
        return self.ctq

    def _cryptogram(
        self,
        kind: CryptogramType,
        values: Mapping[int, bytes],
        amount: int,
        ttq: TTQ,
        counters: Counters | None,
    ) -> tuple[bytes, bytes, bytes]:
        """ATC (persisted first), IAD and application cryptogram for this key mode, over
        the Table 26 data of the PDOL ``values`` with that ATC; a plastic card's ATC
        advances from its ``counters``."""
        app = self.image.profile
        if isinstance(self.keys, PlasticKeys):
            assert counters is not None  # plastic_counters
            velocity_exceeded = self._velocity_exceeded(amount, counters)
            offline = amount if kind == CryptogramType.TC else None
            atc = self.keys.advance(counters, offline_amount=offline).atc_bytes
            cvr = visa_cvr(
                kind, unable_online=ttq.offline_only_reader, velocity_exceeded=velocity_exceeded
            )
            iad = visa_iad(app.cryptogram_version, app.dki, cvr)
            session_key = self.keys.common_session_key(atc + bytes(6))
            data = cryptogram_data(values, app.aip, atc)
            return atc, iad, ac.generate_ac(session_key, ac.visa_cvn18_input(data, iad))
        if isinstance(self.keys, HceKeys):
            grant = self.keys.take_luk(amount)
            data = cryptogram_data(values, app.aip, grant.atc)
            cryptogram = grant.cryptogram(data, _cbp_cvr(self.keys))
            return grant.atc, cryptogram.iad, cryptogram.arqc
        raise TypeError(f"no Visa cryptogram for keys of type {type(self.keys).__name__}")

    def _response_objects(
        self, atc: bytes, iad: bytes, cryptogram: bytes, kind: CryptogramType, ctq: CTQ
    ) -> list[Tlv]:
        """The data objects of the qVSDC GPO response (Book C-3 §5.4), in its order."""
        data = self.image.data
        objects = [
            Tlv.primitive(0x82, self.image.profile.aip),
            Tlv.primitive(0x94, self.image.profile.afl),
            Tlv.primitive(0x57, data[0x57]),
            Tlv.primitive(0x5F34, data[0x5F34]),
            Tlv.primitive(0x9F10, iad),
            Tlv.primitive(0x9F26, cryptogram),
            Tlv.primitive(0x9F27, bytes((kind,))),
            Tlv.primitive(0x9F36, atc),
            Tlv.primitive(0x9F6C, ctq.to_bytes()),
        ]
        if 0x9F6E in data:
            objects.append(Tlv.primitive(0x9F6E, data[0x9F6E]))
        return objects

    def _fdda_wanted(self, ttq: TTQ, kind: CryptogramType) -> bool:
        if not self.aip.dda_supported:
            return False
        if kind == CryptogramType.TC:
            return True
        return kind == CryptogramType.ARQC and ttq.oda_for_online_authorizations_supported


def _fdda(
    icc_key: oda.RsaPrivateKey, values: Mapping[int, bytes], atc: bytes, ctq: CTQ
) -> list[Tlv]:
    """fDDA version 01 (Book C-3 Annex C): Card Authentication Related Data 9F69 =
    '01' || card UN || CTQ, and the SDAD 9F4B over UN || amount || currency || 9F69."""
    card_data = bytes((_FDDA_VERSION,)) + os.urandom(_CARD_UN_LENGTH) + ctq.to_bytes()
    terminal = oda.fdda_terminal_data(
        dol.fit_value(0x9F37, values.get(0x9F37, bytes(4)), 4),
        dol.fit_value(0x9F02, values.get(0x9F02, bytes(6)), 6),
        dol.fit_value(0x5F2A, values.get(0x5F2A, bytes(2)), 2),
        card_data,
    )
    sdad = oda.sign_dda(icc_key, atc, terminal)
    return [Tlv.primitive(0x9F4B, sdad), Tlv.primitive(0x9F69, card_data)]


def _cbp_cvr(keys: HceKeys) -> bytes:
    """The CBP CVR (docs/cbp.md "CVR"): CDCVM performed and successful, keys low."""
    first = cbp.CVR_CDCVM_PERFORMED | cbp.CVR_CDCVM_SUCCESSFUL if keys.cdcvm else 0
    first |= cbp.CVR_KEYS_LOW if keys.keys_low() else 0
    return bytes((first, 0, 0, 0))
