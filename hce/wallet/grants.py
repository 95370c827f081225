"""What the wallet hands a card applet for one tap, and the cryptogram made with it
(docs/cbp.md "Cryptograms").

A grant is issued only after the wallet has persisted the ATC and the key use it
stands for, so the applet can compute with it at once. Key values stay out of
reprs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emv.crypto import ac, cbp
from emv.crypto.cbp import CbpMIad, CbpVIad, KeyIndex, MKeyType
from hce.wallet.errors import WalletError

__all__ = ["Cryptogram", "Grant", "LukGrant", "SukGrant"]


@dataclass(frozen=True)
class Cryptogram:
    """An ARQC and the Issuer Application Data (9F10) that goes with it."""

    arqc: bytes
    iad: bytes


def _check_data(data: ac.CryptogramData, atc: bytes, amount: int) -> None:
    """The terminal data must carry the ATC and the amount the key was granted for."""
    if data.atc != atc:
        raise WalletError(
            f"cryptogram data has ATC {data.atc.hex().upper()}, granted {atc.hex().upper()}"
        )
    if data.amount_authorised.hex() != f"{amount:012d}":
        raise WalletError("cryptogram data amount differs from the amount the key was granted for")


@dataclass(frozen=True)
class LukGrant:
    """CBP-V: the LUK, its key index, this tap's use count (1 for its first) and ATC."""

    key: bytes = field(repr=False)
    key_index: KeyIndex
    use_count: int
    atc: bytes
    amount: int

    @property
    def key_ident(self) -> bytes:
        """Tag C2 of the log entry: the key index."""
        return self.key_index.to_bytes()

    def cryptogram(self, data: ac.CryptogramData, cvr: bytes) -> Cryptogram:
        """IAD 'C1' || key index || CVR || use count, and the ARQC under the LUK's
        session key for this ATC (:func:`emv.crypto.cbp.cbp_v_arqc`)."""
        _check_data(data, self.atc, self.amount)
        iad = CbpVIad(self.key_index, cvr, self.use_count)
        return Cryptogram(cbp.cbp_v_arqc(self.key, data, iad), iad.to_bytes())


@dataclass(frozen=True)
class SukGrant:
    """CBP-M: the single-use key of one ATC, the SUK or (PIN entered) the unmasked SUK-UV."""

    key: bytes = field(repr=False)
    key_type: MKeyType
    atc: bytes
    amount: int

    @property
    def key_ident(self) -> bytes:
        """Tag C2 of the log entry: '0000' || ATC."""
        return b"\x00\x00" + self.atc

    def cryptogram(self, data: ac.CryptogramData, cvr: bytes) -> Cryptogram:
        """IAD 'C2' || key type || CVR, and the ARQC under the key
        (:func:`emv.crypto.cbp.cbp_m_arqc`)."""
        _check_data(data, self.atc, self.amount)
        iad = CbpMIad(self.key_type, cvr)
        return Cryptogram(cbp.cbp_m_arqc(self.key, data, iad), iad.to_bytes())


Grant = LukGrant | SukGrant
