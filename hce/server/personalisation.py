"""Personalising a card profile for an enrolled token: the ICC key's certificate.

The phone makes the ICC RSA key pair of its card and sends only the public key;
its private key never leaves the phone. The server builds the same card image
the phone will build (the shipped HCE profile with the token's PAN, PSN and
expiry, :func:`hce.card.personalise.for_token`) and signs the ICC Public Key
Certificate over the key and the image's static data (EMV Book 2 §6.1, Table 14)
with the issuer key inside the HSM (:class:`hce.card.personalise.HsmSigner`). It
returns that certificate, the issuer certificate the test CA signed at
initialisation, and the CA's RID, index and public key; the phone puts them into its
image (:func:`hce.card.personalise.personalise_certified`), and a test harness that
reaches the server only over HTTPS (``emvtap run --server``) gives its terminal the
CA key (public data: schemes publish theirs to terminals).

Only the profiles emvtap ships can be named (a path would let a caller read the
server's files), only HCE ones (a token's cryptograms are CBP), and only of the
token's scheme.
"""

from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass

from emv.crypto import oda
from hce.card.personalise import HsmSigner, IccCertificates, certify_icc_key, for_token
from hce.card.profile import CardProfile, load_profile, shipped_profiles
from hce.hsm.interface import Hsm
from hce.server.errors import InvalidRequest, NotFound

__all__ = ["Personalisation", "certify", "key_digest", "token_profile"]


@dataclass(frozen=True)
class Personalisation:
    """The server's answer: what the phone needs besides its own key and token PAN."""

    token_id: str
    profile: str
    psn: bytes  # 5F34
    expiry: bytes  # 5F24, YYMMDD
    ca_rid: bytes
    ca_index: int  # 8F
    certificates: IccCertificates
    ca_key: oda.RsaPublicKey | None = None  # the CA's public key (None: not told)


def token_profile(
    name: str, scheme: str, *, pan: str, psn: str, expiry: str, ca_index: int
) -> CardProfile:
    """The shipped HCE profile ``name`` as the card of a ``scheme`` token (``expiry``
    YYMM: the card expires on the month's last day)."""
    shipped = {path.stem: path for path in shipped_profiles()}
    if name not in shipped:
        raise NotFound(f"profile {name!r}: no such shipped profile")
    profile = load_profile(shipped[name])
    if profile.key_mode != "hce":
        raise InvalidRequest(f"profile {name!r}: a token's card needs an HCE profile")
    if profile.brand != scheme:
        raise InvalidRequest(f"profile {name!r} is {profile.brand}; the token is {scheme}")
    if not any(app.oda.enabled for app in profile.applications):
        raise InvalidRequest(f"profile {name!r} does no offline data authentication")
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    last_day = calendar.monthrange(year, month)[1]
    return for_token(
        profile,
        pan=pan,
        psn=bytes.fromhex(psn),
        expiry=bytes.fromhex(f"{expiry}{last_day:02d}"),
        ca_index=ca_index,
    )


def certify(
    hsm: Hsm,
    issuer_label: str,
    issuer_certificate: oda.PublicKeyCertificate,
    profile: CardProfile,
    icc_key: oda.RsaPublicKey,
) -> IccCertificates:
    """The certificates of ``icc_key`` for ``profile``, which must be the size and
    exponent the profile names (EMV exponents 3 or 65537)."""
    for app in profile.applications:
        spec = app.oda
        if spec.enabled and (icc_key.size * 8, icc_key.exponent) != (
            spec.icc_key_bits,
            spec.icc_exponent,
        ):
            raise InvalidRequest(
                f"ICC key: profile {profile.name!r} needs {spec.icc_key_bits} bits, "
                f"exponent {spec.icc_exponent}"
            )
    signer = HsmSigner(hsm, issuer_label, issuer_certificate)
    try:
        return certify_icc_key(profile, signer, icc_key)
    except ValueError as err:  # ProfileError, OdaError: the server's keys do not fit
        raise InvalidRequest(f"profile {profile.name!r}: {err}") from None


def key_digest(key: oda.RsaPublicKey) -> str:
    """A short fingerprint of a public key for the audit log: SHA-256 of its modulus."""
    return hashlib.sha256(key.modulus.to_bytes(key.size, "big")).hexdigest()[:16]
