"""Online authorisation of a CBP cryptogram: the request, the key it names, the answer.

The terminal sends the card's data as BER-TLV (like ISO 8583 DE 55). This
module reads it strictly (:func:`parse_request`), says which issued key a token's
cryptogram claims (:func:`claimed_key`: the LUK of the key index in a CBP-V IAD,
or the SUK / SUK-UV of the ATC for CBP-M, docs/cbp.md "Cryptograms"; a plastic
card's cryptogram is read by :mod:`hce.server.issuer_host`), and
defines the answer's codes: the Authorisation Response Code (tag 8A, EMV Book 4
§A6: ASCII '00' approved, '05' declined) and, for CBP-M's ARPC method 2 (Book 2
§8.2.2), emvtap's Card Status Update.

The CSU follows the layout of the Common Core Definitions (EMV Book 3 Annex C):
byte 2 bit 8 "issuer approves online transaction"; emvtap sets no other bit, so
the approved CSU is '00800000' and the declined one '00000000'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emv import tlv
from emv.crypto import ac, cbp
from emv.crypto.wrap import BatchKind
from hce.hsm.interface import CommonSession, LimitedUse, Session
from hce.server.store import KeyFamily

__all__ = [
    "ARC_APPROVED",
    "ARC_DECLINED",
    "CSU_APPROVED",
    "CSU_DECLINED",
    "Authorisation",
    "AuthorisationRequest",
    "ClaimedKey",
    "MalformedRequest",
    "Reason",
    "claimed_key",
    "parse_request",
]

ARC_APPROVED = b"00"
ARC_DECLINED = b"05"
CSU_APPROVED = bytes.fromhex("00800000")
CSU_DECLINED = bytes(4)
CID_ARQC = 0x80
CID_TC = 0x40

Reason = Literal[
    "approved",
    "malformed",
    "unknown_token",
    "suspended_token",
    "unknown_key",
    "expired_key",
    "over_count",
    "over_amount",
    "replay",
    "bad_cryptogram",
]

# The ten Table 26 elements (Book 2 §8.1.1) with their lengths, by tag, then the rest.
_TABLE_26: dict[int, tuple[str, int]] = {
    tag: (name, ac.CryptogramData.FIELD_LENGTHS[name]) for name, tag in ac.TABLE_26_TAGS.items()
}
_FIXED = {0x9F26: 8, 0x9F27: 1, 0x5F34: 1}
_MAX_IAD = 32  # Book 3 Annex A: 9F10 is 1 to 32 bytes


class MalformedRequest(ValueError):
    """The request cannot be read; the message names the tag (never its value)."""


@dataclass(frozen=True)
class AuthorisationRequest:
    """What the server needs from the card's data."""

    pan: str
    psn: str | None  # 5F34 as two digits, when sent
    track2_expiry: str | None  # YYMM from tag 57, when sent
    arqc: bytes
    data: ac.CryptogramData
    iad: bytes  # 9F10 as sent: its format depends on the card or token the PAN names

    @property
    def atc(self) -> int:
        return int.from_bytes(self.data.atc, "big")

    @property
    def amount(self) -> int:
        return int(self.data.amount_authorised.hex())

    @property
    def mac_input(self) -> bytes:
        """Table 26 data || IAD: what a CBP ARQC is the MAC of (docs/cbp.md), as is a
        Visa CVN 18/22 one (:func:`emv.crypto.ac.visa_cvn18_input`)."""
        return self.data.to_bytes() + self.iad


@dataclass(frozen=True)
class ClaimedKey:
    """The issued key a cryptogram says it was made with, and how to reach it in the HSM."""

    family: KeyFamily
    ident: int  # as the store knows it: the key index as an integer, or the ATC
    limited_use: LimitedUse
    session: Session | None
    user_verified: bool
    use_count: int  # CBP-V: the LUK's uses the IAD counts, this one included; CBP-M: 1


@dataclass(frozen=True)
class Authorisation:
    """The answer: the ARPC is there only when the cryptogram verified (also on declines)."""

    authorisation_id: str
    decision: Literal["approved", "declined"]
    reason: Reason
    arc: bytes
    arpc: bytes | None
    csu: bytes | None  # CBP-M only, with its ARPC
    detail: str = ""  # what was malformed (names a tag, never a value)


def _values(icc_data: bytes) -> dict[int, bytes]:
    try:
        objects = tlv.decode(icc_data)
    except tlv.TlvError as err:
        raise MalformedRequest(str(err)) from None
    return tlv.index(objects)


def _require(values: dict[int, bytes], tag: int, length: int | None = None) -> bytes:
    value = values.get(tag)
    if value is None:
        raise MalformedRequest(f"tag {tlv.tag_hex(tag)} is missing")
    if length is not None and len(value) != length:
        raise MalformedRequest(f"tag {tlv.tag_hex(tag)} has {len(value)} bytes, expected {length}")
    return value


def _digits(tag: int, value: bytes) -> str:
    """cn / n digits of a numeric element, trailing 'F' padding removed."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit():
        raise MalformedRequest(f"tag {tlv.tag_hex(tag)} is not numeric")
    return text


def _pan_and_expiry(values: dict[int, bytes]) -> tuple[str, str | None]:
    """The PAN from 5A, else from the track 2 equivalent data 57 (Book 3 Annex A);
    when both are sent they must agree. Also track 2's expiry date (YYMM)."""
    pan = _digits(0x5A, values[0x5A]) if 0x5A in values else None
    if 0x57 not in values:
        if pan is None:
            raise MalformedRequest("tag 5A (or 57) is missing")
        return pan, None
    track2 = values[0x57].hex().upper().rstrip("F")
    track2_pan, separator, rest = track2.partition("D")
    if not separator or not track2_pan.isdigit() or not rest[:4].isdigit() or len(rest) < 7:
        raise MalformedRequest("tag 57 is not track 2 equivalent data")
    if pan is not None and pan != track2_pan:
        raise MalformedRequest("tags 5A and 57 name different PANs")
    return track2_pan, rest[:4]


def parse_request(icc_data: bytes) -> AuthorisationRequest:
    """Read the request strictly: every tag present with its length, numeric where
    numeric, CID an ARQC ('80') or a TC ('40': Book C-3 sends a TC online when fDDA
    failed and the CTQ says "go online"; emvtap cards set no other bit), an IAD of 1 to 32
    bytes (its format is checked once the PAN says whose it is)."""
    values = _values(icc_data)
    pan, track2_expiry = _pan_and_expiry(values)
    fields = {name: _require(values, tag, length) for tag, (name, length) in _TABLE_26.items()}
    _digits(0x9F02, fields["amount_authorised"])
    _digits(0x9F03, fields["amount_other"])
    arqc = _require(values, 0x9F26, _FIXED[0x9F26])
    if _require(values, 0x9F27, _FIXED[0x9F27])[0] not in (CID_ARQC, CID_TC):
        raise MalformedRequest("tag 9F27 is neither an ARQC ('80') nor a TC ('40')")
    psn = None
    if 0x5F34 in values:
        psn = _digits(0x5F34, _require(values, 0x5F34, _FIXED[0x5F34])).rjust(2, "0")
    iad = _require(values, 0x9F10)
    if not 1 <= len(iad) <= _MAX_IAD:
        raise MalformedRequest(f"tag 9F10 has {len(iad)} bytes, expected 1 to {_MAX_IAD}")
    return AuthorisationRequest(pan, psn, track2_expiry, arqc, ac.CryptogramData(**fields), iad)


def claimed_key(request: AuthorisationRequest) -> ClaimedKey:
    """The key of a token's cryptogram, from its CBP IAD (MalformedRequest if the IAD is
    not one). CBP-V: the LUK of the IAD's key index, common session key on ATC ||
    '00'x6; CBP-M: the ATC's SUK or SUK-UV as the IAD's key type says, no session key."""
    try:
        iad = cbp.parse_iad(request.iad)
    except cbp.CbpError as err:
        raise MalformedRequest(f"tag 9F10: {err}") from None
    atc = request.data.atc
    if isinstance(iad, cbp.CbpVIad):
        index = iad.key_index.to_bytes()
        return ClaimedKey(
            "LUK",
            int.from_bytes(index, "big"),
            LimitedUse(BatchKind.LUK, index),
            CommonSession(atc + bytes(6)),
            user_verified=False,
            use_count=iad.use_count,
        )
    user_verified = iad.key_type == cbp.MKeyType.SUK_UV
    kind = BatchKind.SUK_UV if user_verified else BatchKind.SUK
    return ClaimedKey(
        "SUK",
        request.atc,
        LimitedUse(kind, b"\x00\x00" + atc),
        None,
        user_verified,
        use_count=1,
    )
