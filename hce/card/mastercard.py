"""Mastercard M/Chip: the card side of EMV Contactless Book C-2 (Kernel 2).

An M/Chip transaction (Book C-2 §3, EMV 4.4 Book 3 §10) runs:

* GET PROCESSING OPTIONS: the card keeps the PDOL data (the CDA hash covers it)
  and answers AIP and AFL in a Format 2 response ('77');
* READ RECORD: the records, with CDOL1 (8C), CDOL2 (8D), the CVM List and, for
  CDA, the certificates; for mag-stripe mode the UDOL (9F69) and track data;
* GENERATE AC with the CDOL1 data, or in mag-stripe mode COMPUTE CRYPTOGRAPHIC
  CHECKSUM with the UDOL data; after an ARQC, a second GENERATE AC with the
  CDOL2 data; or, on a card with a DRDOL, RECOVER AC in place of the first
  GENERATE AC (below). Any other order is '6985'.

The card's decision (card action analysis, Book 3 §10.8) never upgrades what the
terminal asks for (AAC < ARQC < TC): an AAC stays an AAC; a TC is granted only by
a plastic card whose offline limits allow it (the amount and the offline totals,
:class:`hce.card.keys.Counters`, within the profile's limits), else it becomes
an ARQC. In the second GENERATE AC the card returns a TC when the terminal asks
for one and the Authorisation Response Code (8A) in the CDOL2 data is an
approval, else an AAC.

CDA (Book 2 §6.6.1) is done when P1 bit 5 asks for it, the AIP says CDA and the
card has an ICC key, and the card returns a TC or an ARQC: the AC is then not in
clear but inside the SDAD (9F4B), with the CID, an 8-byte random ICC Dynamic
Number and the Transaction Data Hash Code over the PDOL data, the CDOL1 data, the
CDOL2 data (second GENERATE AC) and the response's other data objects.

Cryptograms: plastic cards compute CVN 16/17 (M/Chip session key of the ATC and
the UN, :func:`emv.crypto.kd.derive_mastercard_sk`) or CVN 20/21 (common session
key, Book 2 A1.3.1) from the ICC MK-AC; CVN 17/21 add the offline counters to the
input. HCE cards take the single-use key of the next ATC from the wallet and
compute the emvtap CBP-M cryptogram ('C2' IAD, docs/cbp.md): the SUK-UV when the
phone verified its user with the mobile PIN (CDCVM), else the SUK.

The ATC advances once per transaction, at its first cryptogram (first GENERATE AC
or COMPUTE CRYPTOGRAPHIC CHECKSUM), from the counters that command read, and is
persisted before the answer; the second GENERATE AC belongs to the same
transaction, ATC and key, and a plastic card's CVN 17/21 counters are those the
first persisted.

Torn transaction recovery (Book C-2 RECOVER AC, as M/Chip Advance cards do it): a
card whose image has a DRDOL (9F51) remembers, before it answers each first
GENERATE AC, that command's DRDOL related data (the DRDOL filled from the CDOL1
data) and the response data it returns; nothing else, never a key. The memory
belongs to the applet, not to the transaction: power-off and SELECT keep it, the
next answered first GENERATE AC replaces it (a new :class:`hce.card.card.Card`
starts without one). A terminal that lost the answer (the card left the field)
taps again and sends RECOVER AC (``80 D0 00 00``) with the DRDOL related data of
the torn transaction, after GET PROCESSING OPTIONS and before any GENERATE AC:
when it matches, the card answers the remembered response data unchanged (the same
AC or CDA signature, the same ATC: the counter does not move, the cryptogram was
counted when it was made) and the transaction is over, so a second GENERATE AC is
'6985' (Kernel 2 never sends one, and a phone's single-use key of that ATC is
spent); other data of the DRDOL's length is '6A88', another length '6700', P1 P2
other than '0000' '6A86', the wrong moment '6985'. A card without a DRDOL does not
know the command ('6D00').

Mag-stripe mode (Book C-2 §5.5, M/Stripe): COMPUTE CRYPTOGRAPHIC CHECKSUM answers
CVC3 Track 2 (9F61), CVC3 Track 1 (9F60, when the card has Track 1 Data 56) and the
ATC, the CVC3 computed from the plastic card's MK-CVC3 over the track data (9F6B,
56) with the terminal's Unpredictable Number (Numeric) and the ATC
(:mod:`emv.crypto.cvc3`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from emv import dol
from emv.apdu import CommandApdu, CryptogramType
from emv.bitfields import AIP
from emv.crypto import ac, cbp, cvc3, kd, oda
from emv.crypto.cbp import MKeyType
from emv.tlv import Tlv
from hce.card.applet import (
    CLA_EMV,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_DATA_NOT_FOUND,
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
from hce.wallet import SukGrant, WalletError

__all__ = ["MastercardApplet", "Velocity", "mchip_counters", "mchip_cvr", "mchip_iad"]

_IAD_CVN = {"16": 0x10, "17": 0x11, "20": 0x14, "21": 0x15}
_MASTERCARD_SKD = frozenset({"16", "17"})  # the others use the common session key
_WITH_COUNTERS = frozenset({"17", "21"})
_DEFAULT_UDOL = bytes.fromhex("9F6A04")  # Book C-2: Unpredictable Number (Numeric)
_CDA_REQUESTED = 0x10  # GENERATE AC P1 bit 5 (Book 3 Table 12)
_P1_RFU = 0x2F
_CCC_P1, _CCC_P2 = 0x8E, 0x80
_ICC_DYNAMIC_NUMBER_LENGTH = 8
_APPROVED = frozenset({b"00", b"08", b"10", b"11"})  # ARC (an 2): approvals, Book 4 Annex A6
_CVR_SECOND_AC_NOT_REQUESTED = 0x80  # byte 1 bits 8-7 = 10
_CVR_CDA_FIRST = 0x40  # byte 2 bit 7: CDA returned in the first GENERATE AC
_CVR_CDA_SECOND = 0x20  # byte 2 bit 6: CDA returned in the second GENERATE AC
_CVR_CONSECUTIVE_EXCEEDED = 0x40  # byte 5 bit 7: upper consecutive offline limit exceeded
_CVR_CUMULATIVE_EXCEEDED = 0x10  # byte 5 bit 5: upper cumulative offline limit exceeded


class Velocity(NamedTuple):
    """Which offline limit this amount would pass: consecutive count, cumulative amount."""

    consecutive: bool = False
    cumulative: bool = False


def mchip_cvr(
    first: CryptogramType,
    second: CryptogramType | None,
    *,
    cda_first: bool,
    cda_second: bool,
    velocity: Velocity,
) -> bytes:
    """The six CVR bytes of the M/Chip IAD (M/Chip 4, as public decoders describe
    them): byte 1 bits 8-7 the type returned in the second GENERATE AC (00 AAC, 01 TC,
    10 not requested), bits 6-5 the one of the first (00 AAC, 01 TC, 10 ARQC); byte 2
    bits 7-6 CDA returned in the first / second GENERATE AC; byte 5 bits 7 and 5 the
    upper consecutive / cumulative offline limits exceeded."""
    first_byte = _CVR_SECOND_AC_NOT_REQUESTED if second is None else second
    first_byte |= first >> 2
    second_byte = (_CVR_CDA_FIRST if cda_first else 0) | (_CVR_CDA_SECOND if cda_second else 0)
    fifth = _CVR_CONSECUTIVE_EXCEEDED if velocity.consecutive else 0
    fifth |= _CVR_CUMULATIVE_EXCEEDED if velocity.cumulative else 0
    return bytes((first_byte, second_byte, 0, 0, fifth, 0))


def mchip_counters(counters: Counters) -> bytes:
    """The IAD counters (8 bytes): cumulative offline amount (n 12), consecutive offline
    count (1), 'FF' (the input of CVN 17/21, :func:`emv.crypto.ac.mastercard_cvn17_input`)."""
    count = min(counters.offline_count, 0xFF)
    return bytes.fromhex(f"{counters.offline_amount:012d}") + bytes((count, 0xFF))


def mchip_iad(version: str, dki: int, cvr: bytes, counters: bytes) -> bytes:
    """The M/Chip Issuer Application Data (18 bytes): DKI, cryptogram version ('10'
    CVN 16, '11' 17, '14' 20, '15' 21), CVR (6), DAC / ICC dynamic number (2, zeros),
    counters (8)."""
    return bytes((dki, _IAD_CVN[version])) + cvr + bytes(2) + counters


_MadeWith = SukGrant | Counters
"""What a transaction's cryptograms are made with: a phone's single-use key, or a plastic
card's counters as its ATC left them (MK-AC is the card's; CVN 17/21 add the counters)."""


@dataclass(frozen=True)
class _FirstAc:
    """What the first GENERATE AC leaves for the second: its CDOL1 data, its Table 26
    data (with the ATC), the card's decision, whether CDA was done, the velocity
    found, and what the transaction's cryptograms are made with (:data:`_MadeWith`)."""

    cdol1_data: bytes
    data: ac.CryptogramData
    kind: CryptogramType
    cda: bool
    velocity: Velocity
    made_with: _MadeWith


@dataclass(frozen=True)
class _Answered:
    """What RECOVER AC may give back: the DRDOL related data of a first GENERATE AC
    and the response data the card returned to it (no key, no transaction state)."""

    drdol_data: bytes
    response: bytes


class MastercardApplet(Applet):
    """One Mastercard M/Chip application (see the module docstring)."""

    def __init__(self, image: AppImage, keys: CardKeys) -> None:
        super().__init__(image, keys)
        app = image.profile
        assert app.cdol1 is not None and app.cdol2 is not None  # BrandRules.required
        self.pdol = dol.parse_dol(app.pdol or b"")
        self.cdol1 = dol.parse_dol(app.cdol1)
        self.cdol2 = dol.parse_dol(app.cdol2)
        self.udol = dol.parse_dol(image.data.get(0x9F69, _DEFAULT_UDOL))
        self.aip = AIP.from_bytes(app.aip)
        self.magstripe_keys = (
            keys
            if isinstance(keys, PlasticKeys) and keys.mk_cvc3 is not None and 0x9F6B in image.data
            else None
        )
        """The keys of mag-stripe mode: a plastic card with MK-CVC3 and Track 2 Data."""
        drdol = image.data.get(0x9F51)
        self.drdol = None if drdol is None else dol.parse_dol(drdol)
        """The DRDOL (9F51): with one, the card answers RECOVER AC."""
        self.answered: _Answered | None = None
        """The last answered first GENERATE AC, for RECOVER AC; kept across taps."""
        self.pdol_data = b""
        """The PDOL data of GET PROCESSING OPTIONS (the CDA hash covers it)."""
        self.first: _FirstAc | None = None
        """The first GENERATE AC, while its ARQC waits for the second."""
        self.done = False
        """True once the transaction's last cryptogram was given."""

    def reset(self) -> None:
        super().reset()
        self.pdol_data = b""
        self.first = None
        self.done = False

    def handlers(self) -> Mapping[int, Handler]:
        handlers = {
            **super().handlers(),
            0xA8: Handler(CLA_EMV, self.get_processing_options),
            0xAE: Handler(CLA_EMV, self.generate_ac),
        }
        if self.magstripe_keys is not None:
            handlers[0x2A] = Handler(CLA_EMV, self.compute_cryptographic_checksum)
        if self.drdol is not None:
            handlers[0xD0] = Handler(CLA_EMV, self.recover_ac)
        return handlers

    # --- GET PROCESSING OPTIONS ---------------------------------------------------------------

    def get_processing_options(self, command: CommandApdu) -> bytes:
        """GET PROCESSING OPTIONS (Book 3 §6.5.8, Book C-2 §5.3): AIP and AFL, Format 2."""
        require(command.p1 == 0 and command.p2 == 0, SW_WRONG_P1P2)
        require(not self.processing, SW_CONDITIONS_NOT_SATISFIED)
        pdol_data = command_template(command.data)
        dol_values(self.pdol, pdol_data)
        self.pdol_data = pdol_data
        self.processing = True
        app = self.image.profile
        return Tlv.template(
            0x77, Tlv.primitive(0x82, app.aip), Tlv.primitive(0x94, app.afl)
        ).to_bytes()

    # --- GENERATE AC --------------------------------------------------------------------------

    def generate_ac(self, command: CommandApdu) -> bytes:
        """GENERATE AC (Book 3 §6.5.5): the first with CDOL1 data, after an ARQC the
        second with CDOL2 data; '6985' before GET PROCESSING OPTIONS and after the
        transaction's last cryptogram."""
        requested, cda = _reference_control(command)
        require(self.processing and not self.done, SW_CONDITIONS_NOT_SATISFIED)
        if self.first is None:
            return self._first_ac(requested, cda, command.data)
        return self._second_ac(requested, cda, command.data, self.first)

    def _first_ac(self, requested: CryptogramType, cda_requested: bool, cdol1_data: bytes) -> bytes:
        """The first GENERATE AC (Book 3 §9.2, §10.8): decide, advance the ATC, compute."""
        values = dol_values(self.cdol1, cdol1_data)
        spent = amount_authorised(values.get(0x9F02, bytes(6)))
        counters = self.plastic_counters()
        velocity = self._velocity(spent, counters)
        kind = self._decide(requested, spent, velocity)
        cda = self._cda(cda_requested, kind)
        try:
            atc, made_with = self._next_atc(kind, spent, counters)
        except (WalletError, AtcExhausted):
            raise StatusError(SW_CONDITIONS_NOT_SATISFIED) from None
        data = cryptogram_data(values, self.image.profile.aip, atc)
        first = _FirstAc(cdol1_data, data, kind, cda, velocity, made_with)
        cvr = mchip_cvr(kind, None, cda_first=cda, cda_second=False, velocity=velocity)
        iad, cryptogram = self._cryptogram(data, made_with, cvr)
        self.first = first if kind == CryptogramType.ARQC else None
        self.done = kind != CryptogramType.ARQC
        answer = self._response(kind, data, iad, cryptogram, cda=cda, cdol1_data=cdol1_data)
        self._remember(values, answer)
        return answer

    def _remember(self, cdol1_values: Mapping[int, bytes], answer: bytes) -> None:
        """Keep the DRDOL related data of this first GENERATE AC (its CDOL1 values
        fitted to the DRDOL, Book 3 §5.4) and its answer, for RECOVER AC."""
        if self.drdol is not None:
            self.answered = _Answered(dol.build_dol_data(self.drdol, cdol1_values), answer)

    def _second_ac(
        self, requested: CryptogramType, cda_requested: bool, cdol2_data: bytes, first: _FirstAc
    ) -> bytes:
        """The second GENERATE AC (Book 3 §9.3, §10.11): TC or AAC after the issuer's
        answer, with the TVR and UN of the CDOL2 data, the transaction's ATC and key."""
        require(requested != CryptogramType.ARQC, SW_CONDITIONS_NOT_SATISFIED)
        values = dol_values(self.cdol2, cdol2_data)
        approved = values.get(0x8A) in _APPROVED
        kind = (
            CryptogramType.TC if requested == CryptogramType.TC and approved else CryptogramType.AAC
        )
        cda = self._cda(cda_requested, kind)
        data = _with_cdol2(first.data, values)
        cvr = mchip_cvr(
            first.kind, kind, cda_first=first.cda, cda_second=cda, velocity=first.velocity
        )
        iad, cryptogram = self._cryptogram(data, first.made_with, cvr)
        self.first = None
        self.done = True
        return self._response(
            kind, data, iad, cryptogram, cda=cda, cdol1_data=first.cdol1_data, cdol2_data=cdol2_data
        )

    def _velocity(self, spent: int, counters: Counters | None) -> Velocity:
        """The offline limits this amount would pass with a plastic card's ``counters``
        (a card that approves offline)."""
        limits = self.image.profile.limits
        if counters is None or not limits.consecutive_offline:
            return Velocity()
        return Velocity(
            consecutive=counters.offline_count >= limits.consecutive_offline,
            cumulative=counters.offline_amount + spent > limits.cumulative_offline,
        )

    def _decide(self, requested: CryptogramType, spent: int, velocity: Velocity) -> CryptogramType:
        """Card action analysis (module docstring): never more than was asked for."""
        if requested == CryptogramType.AAC:
            return CryptogramType.AAC
        limits = self.image.profile.limits
        offline = (
            requested == CryptogramType.TC
            and isinstance(self.keys, PlasticKeys)
            and limits.consecutive_offline > 0
            and spent <= limits.offline_transaction
            and not any(velocity)
        )
        return CryptogramType.TC if offline else CryptogramType.ARQC

    def _cda(self, requested: bool, kind: CryptogramType) -> bool:
        """CDA is done when asked, supported and the card does not decline (Book 2 §6.6.1)."""
        return (
            requested
            and kind != CryptogramType.AAC
            and self.aip.cda_supported
            and self.image.icc_key is not None
        )

    def _next_atc(
        self, kind: CryptogramType, spent: int, counters: Counters | None
    ) -> tuple[bytes, _MadeWith]:
        """The transaction's ATC, persisted first, and what its cryptograms are made with:
        a plastic card's ``counters`` advanced (an offline approval adds to the offline
        totals), or the wallet's next single-use key."""
        if isinstance(self.keys, PlasticKeys):
            assert counters is not None  # plastic_counters
            offline = spent if kind == CryptogramType.TC else None
            advanced = self.keys.advance(counters, offline_amount=offline)
            return advanced.atc_bytes, advanced
        if isinstance(self.keys, HceKeys):
            pin = self.keys.pin if self.keys.cdcvm else None
            grant = self.keys.take_suk(spent, pin)
            return grant.atc, grant
        raise TypeError(f"no M/Chip cryptogram for keys of type {type(self.keys).__name__}")

    def _cryptogram(
        self, data: ac.CryptogramData, made_with: _MadeWith, cvr: bytes
    ) -> tuple[bytes, bytes]:
        """IAD and AC: CBP-M under the transaction's single-use key (a phone), else the
        M/Chip cryptogram of the profile's version with the M/Chip ``cvr``, the session
        key of MK-AC (M/Chip SKD or Book 2 A1.3.1) and the card's counters."""
        if isinstance(made_with, SukGrant):
            assert isinstance(self.keys, HceKeys)
            made = made_with.cryptogram(data, _cbp_cvr(self.keys, made_with))
            return made.iad, made.arqc
        assert isinstance(self.keys, PlasticKeys)
        app = self.image.profile
        version = app.cryptogram_version
        counters = mchip_counters(made_with)
        iad = mchip_iad(version, app.dki, cvr, counters)
        if version in _MASTERCARD_SKD:
            r = kd.mastercard_sk_r(data.atc, data.unpredictable_number)
        else:
            r = data.atc + bytes(6)
        key = self.keys.common_session_key(r)
        if version in _WITH_COUNTERS:
            return iad, ac.generate_ac(key, ac.mastercard_cvn17_input(data, cvr, counters))
        return iad, ac.generate_ac(key, ac.mastercard_cvn16_input(data, cvr))

    def _response(
        self,
        kind: CryptogramType,
        data: ac.CryptogramData,
        iad: bytes,
        cryptogram: bytes,
        *,
        cda: bool,
        cdol1_data: bytes,
        cdol2_data: bytes = b"",
    ) -> bytes:
        """The Format 2 answer (Book 3 §6.5.5.4): CID, ATC, the AC or (CDA, Book 2 §6.6.1)
        the SDAD that carries it, IAD."""
        cid = Tlv.primitive(0x9F27, bytes((kind,)))
        atc = Tlv.primitive(0x9F36, data.atc)
        issuer_data = Tlv.primitive(0x9F10, iad)
        if not cda:
            ac_tlv = Tlv.primitive(0x9F26, cryptogram)
            return Tlv.template(0x77, cid, atc, ac_tlv, issuer_data).to_bytes()
        assert self.image.icc_key is not None  # _cda
        signed = cid.to_bytes() + atc.to_bytes() + issuer_data.to_bytes()
        sdad = oda.sign_cda(
            self.image.icc_key,
            dynamic_number=os.urandom(_ICC_DYNAMIC_NUMBER_LENGTH),
            cid=kind,
            application_cryptogram=cryptogram,
            transaction_hash=oda.transaction_data_hash_code(
                self.pdol_data, cdol1_data, signed, cdol2_data
            ),
            unpredictable_number=data.unpredictable_number,
        )
        return Tlv.template(0x77, cid, atc, Tlv.primitive(0x9F4B, sdad), issuer_data).to_bytes()

    # --- RECOVER AC ---------------------------------------------------------------------------

    def recover_ac(self, command: CommandApdu) -> bytes:
        """RECOVER AC (Book C-2, torn transaction recovery; P1 P2 '0000', the DRDOL
        related data): the remembered answer of the first GENERATE AC whose DRDOL
        related data this is, ending the transaction; '6985' before GET PROCESSING
        OPTIONS or once a cryptogram was given, '6700' when the data is not as long as
        the DRDOL, '6A88' when it is not the remembered one."""
        require(command.p1 == 0 and command.p2 == 0, SW_WRONG_P1P2)
        require(
            self.processing and self.first is None and not self.done, SW_CONDITIONS_NOT_SATISFIED
        )
        assert self.drdol is not None  # handlers()
        dol_values(self.drdol, command.data)
        answered = self.answered
        if answered is None or command.data != answered.drdol_data:
            raise StatusError(SW_DATA_NOT_FOUND)
        self.done = True
        return answered.response

    # --- mag-stripe mode ----------------------------------------------------------------------

    def compute_cryptographic_checksum(self, command: CommandApdu) -> bytes:
        """COMPUTE CRYPTOGRAPHIC CHECKSUM (Book C-2 §5.5, P1 P2 '8E80'): CVC3 Track 2 and
        Track 1 for the UDOL data's Unpredictable Number (Numeric) and the next ATC."""
        require((command.p1, command.p2) == (_CCC_P1, _CCC_P2), SW_WRONG_P1P2)
        require(
            self.processing and self.first is None and not self.done, SW_CONDITIONS_NOT_SATISFIED
        )
        keys = self.magstripe_keys
        assert keys is not None and keys.mk_cvc3 is not None  # handlers()
        values = dol_values(self.udol, command.data)
        un = dol.fit_value(0x9F6A, values.get(0x9F6A, bytes(4)), 4)
        try:
            atc = keys.advance(keys.counters).atc_bytes
        except AtcExhausted:
            raise StatusError(SW_CONDITIONS_NOT_SATISFIED) from None
        self.done = True
        objects = [Tlv.primitive(0x9F61, _cvc3(keys.mk_cvc3, self.image.data[0x9F6B], atc, un))]
        if 0x56 in self.image.data:
            track1 = _cvc3(keys.mk_cvc3, self.image.data[0x56], atc, un)
            objects.append(Tlv.primitive(0x9F60, track1))
        objects.append(Tlv.primitive(0x9F36, atc))
        return Tlv.template(0x77, *objects).to_bytes()


def _reference_control(command: CommandApdu) -> tuple[CryptogramType, bool]:
    """GENERATE AC P1 (Book 3 Table 12): the cryptogram type asked for and whether CDA
    is; P2 '00'. RFU bits, or the type '11' (AAR, RFU), are '6A86'."""
    require(command.p2 == 0 and not command.p1 & _P1_RFU, SW_WRONG_P1P2)
    try:
        kind = CryptogramType(command.p1 & 0xC0)
    except ValueError:
        raise StatusError(SW_WRONG_P1P2) from None
    return kind, bool(command.p1 & _CDA_REQUESTED)


def _with_cdol2(data: ac.CryptogramData, values: Mapping[int, bytes]) -> ac.CryptogramData:
    """The first cryptogram's data with the TVR and UN the CDOL2 data brings."""
    if 0x95 in values:
        data = replace(data, tvr=dol.fit_value(0x95, values[0x95], 5))
    if 0x9F37 in values:
        data = replace(data, unpredictable_number=dol.fit_value(0x9F37, values[0x9F37], 4))
    return data


def _cbp_cvr(keys: HceKeys, grant: SukGrant) -> bytes:
    """The CBP CVR (docs/cbp.md "CVR"): CDCVM performed and successful when the key is the
    SUK-UV (the PIN was entered), keys running low."""
    first = (
        cbp.CVR_CDCVM_PERFORMED | cbp.CVR_CDCVM_SUCCESSFUL
        if grant.key_type == MKeyType.SUK_UV
        else 0
    )
    first |= cbp.CVR_KEYS_LOW if keys.keys_low("SUK") else 0
    return bytes((first, 0, 0, 0))


def _cvc3(kd_cvc3: bytes, track_data: bytes, atc: bytes, un: bytes) -> bytes:
    """The CVC3 of one track as the card returns it: 2 bytes, binary (Book C-2 9F60/9F61)."""
    return int(cvc3.generate_cvc3(kd_cvc3, track_data, atc, un)).to_bytes(2, "big")
