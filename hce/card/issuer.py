"""A software issuer for plastic cards and tests: IMKs, CA and issuer RSA keys by name.

Profiles name their keys (``keys: {imk_ac: visa-imk-ac, ca: visa-test-ca, issuer:
visa-test-issuer}``); a :class:`SoftIssuer` makes each named key the first time it
is asked for, at run time, and keeps it for its own lifetime. No key ships with
emvtap. It plays every role a card needs from its issuer:

* the ICC master keys of a plastic card, Option A from the named IMK (EMV Book 2
  Annex A1.4.1), behind :class:`hce.card.keys.PlasticKeys`;
* the CA that certifies the issuer key (Book 2 §6.1, Table 6), and whose public key
  a terminal loads (:meth:`SoftIssuer.ca_public_key`);
* the issuer that signs ICC certificates (:class:`hce.card.personalise.IssuerSigner`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from emv.crypto import des, kd, oda
from hce.card.keys import CounterStore, PlasticKeys
from hce.card.profile import CardProfile, OdaSpec

__all__ = ["ISSUER_CERTIFICATE_EXPIRY", "SoftIssuer", "SoftSigner"]

ISSUER_CERTIFICATE_EXPIRY = "1249"  # MMYY
ISSUER_IDENTIFIER_DIGITS = 6  # the BIN: leftmost PAN digits (Book 2 Table 6, 3 to 8)
CA_EXPONENT = 65537
ISSUER_EXPONENT = 65537


@dataclass(frozen=True)
class SoftSigner:
    """An issuer key held in memory with its certificate from the CA."""

    key: oda.RsaPrivateKey = field(repr=False)
    certificate: oda.PublicKeyCertificate = field(repr=False)

    def issuer_public_key(self) -> oda.RsaPublicKey:
        return self.key.public_key

    def issuer_certificate(self) -> oda.PublicKeyCertificate:
        return self.certificate

    def sign_raw(self, message: bytes) -> bytes:
        return oda.rsa_sign(self.key, message)


class SoftIssuer:
    """Named keys made on first use (see the module docstring)."""

    def __init__(
        self,
        imks: Mapping[str, bytes] | None = None,
        rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
    ) -> None:
        """``imks`` gives named issuer master keys instead of making them (e.g. the
        IMK-AC a token server imported with ``emvtap server init --import-imk-ac``);
        ``rsa_keys`` makes the RSA keys (the scenario runner passes its key pool)."""
        self._imks: dict[str, bytes] = dict(imks or {})
        self._rsa_keys = rsa_keys
        self._rsa: dict[str, oda.RsaPrivateKey] = {}
        self._certificates: dict[tuple[str, str, str], oda.PublicKeyCertificate] = {}
        self._serial = 0

    def __repr__(self) -> str:
        return f"SoftIssuer(IMKs {sorted(self._imks)}, RSA keys {sorted(self._rsa)})"

    def imk(self, name: str) -> bytes:
        """The 2-key 3DES issuer master key ``name`` (odd parity)."""
        if name not in self._imks:
            self._imks[name] = des.adjust_parity(os.urandom(16))
        return self._imks[name]

    def rsa_key(self, name: str, bits: int, exponent: int) -> oda.RsaPrivateKey:
        """The RSA key ``name``; asking again with another size or exponent is an error."""
        key = self._rsa.get(name)
        if key is None:
            key = self._rsa[name] = self._rsa_keys(bits, exponent)
        if (key.public_key.size * 8, key.public_key.exponent) != (bits, exponent):
            raise ValueError(f"RSA key {name!r} exists with another size or exponent")
        return key

    def plastic_keys(self, profile: CardProfile, store: CounterStore) -> PlasticKeys:
        """MK-AC (and MK-CVC3 when named) for the profile's PAN and PSN, Option A."""
        mk_cvc3 = None
        if "imk_cvc3" in profile.keys:
            mk_cvc3 = kd.derive_icc_mk_a(
                self.imk(profile.keys["imk_cvc3"]), profile.pan, profile.psn
            )
        mk_ac = kd.derive_icc_mk_a(self.imk(profile.keys["imk_ac"]), profile.pan, profile.psn)
        return PlasticKeys(mk_ac, store, mk_cvc3)

    def signer(self, profile: CardProfile) -> SoftSigner:
        """The issuer key the profile names, certified by its CA for the PAN's BIN."""
        spec = _oda_spec(profile)
        ca = self.rsa_key(profile.keys["ca"], spec.ca_key_bits, CA_EXPONENT)
        issuer = self.rsa_key(profile.keys["issuer"], spec.issuer_key_bits, ISSUER_EXPONENT)
        identifier = profile.pan[:ISSUER_IDENTIFIER_DIGITS]
        cache = (profile.keys["ca"], profile.keys["issuer"], identifier)
        if cache not in self._certificates:
            self._serial += 1
            self._certificates[cache] = oda.build_issuer_certificate(
                ca,
                issuer.public_key,
                issuer_identifier=identifier,
                expiry=ISSUER_CERTIFICATE_EXPIRY,
                serial_number=self._serial.to_bytes(3, "big"),
            )
        return SoftSigner(issuer, self._certificates[cache])

    def ca_public_key(self, profile: CardProfile) -> oda.CaPublicKey:
        """The CA public key a terminal needs for the profile: RID from the AID, index 8F."""
        spec = _oda_spec(profile)
        ca = self.rsa_key(profile.keys["ca"], spec.ca_key_bits, CA_EXPONENT)
        rid = next(app.aid[:5] for app in profile.applications if app.oda.enabled)
        return oda.CaPublicKey(rid, spec.ca_index, ca.public_key)


def _oda_spec(profile: CardProfile) -> OdaSpec:
    """The key sizes of the card's first application that does ODA."""
    for app in profile.applications:
        if app.oda.enabled:
            return app.oda
    raise ValueError(f"profile {profile.name!r} does no offline data authentication")
