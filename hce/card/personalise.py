"""Personalisation: a profile becomes a card image, the static part of a card.

For each application this lays out (EMV 4.4 Book 3 §10.2-10.3, Book 1 §11.3.4,
EMV Contactless Book B §3.3):

* the data objects, built from the profile's fields (PAN 5A, Track 2 Equivalent
  Data 57, expiry 5F24, ...) and its extra ``data``;
* the records, each a READ RECORD Response Message Template '70';
* the static data to be authenticated: the records the AFL marks for offline data
  authentication (their contents for SFI 1-10, the whole record for SFI 11-30),
  then the AIP named by the SDA Tag List 9F4A;
* for offline data authentication: a fresh ICC RSA key, the ICC Public Key
  Certificate over it and the static data (EMV Book 2 §6.1, Table 14), signed
  by the issuer, and the Issuer Public Key Certificate the issuer got from the
  CA (Table 6);
* the FCI that SELECT returns and the PPSE directory entry.

The issuer signs through :class:`IssuerSigner`: :class:`hce.card.issuer.SoftIssuer`
holds its keys in memory; :class:`HsmSigner` asks an :class:`hce.hsm.interface.Hsm`
for the raw RSA operation so the issuer key never leaves it.

A phone makes its ICC key itself, and its private key never leaves the phone: the
issuer (the token server) certifies the public key for one token's card
(:func:`for_token`, :func:`certify_icc_key`) and the phone builds its image with
the certificates it got back (:func:`personalise_certified`). Both build the same
static data, so the certificate the issuer signed is the one the terminal checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import Protocol

from emv import tlv
from emv.apdu import PPSE
from emv.crypto import oda
from emv.tlv import Tlv
from hce.card.profile import Application, CardProfile, ProfileError
from hce.hsm.interface import Hsm

__all__ = [
    "AppImage",
    "CardImage",
    "HsmSigner",
    "IccCertificates",
    "IssuerSigner",
    "certify_icc_key",
    "for_token",
    "personalise",
    "personalise_certified",
]

MAX_RECORD = 254  # a READ RECORD response's data field: 256 bytes less SW1 SW2
SDA_TAG_LIST = b"\x82"  # 9F4A: the AIP is signed too (Book 3 §10.3; C-3 fDDA)
_REMAINDERS = frozenset({0x92, 0x9F48})


class IssuerSigner(Protocol):
    """The issuer's side of personalisation: its public key, its certificate from the
    CA, and the raw RSA operation with its private key (Book 2 Annex A2.1)."""

    def issuer_public_key(self) -> oda.RsaPublicKey: ...

    def issuer_certificate(self) -> oda.PublicKeyCertificate: ...

    def sign_raw(self, message: bytes) -> bytes: ...


class HsmSigner:
    """An issuer key held in an HSM (``Hsm.rsa_sign_raw``), with the certificate the
    CA gave it (``hce.server.certificates.sign_issuer_certificate``)."""

    def __init__(self, hsm: Hsm, issuer_label: str, certificate: oda.PublicKeyCertificate) -> None:
        self._hsm = hsm
        self._label = issuer_label
        self._certificate = certificate

    def __repr__(self) -> str:
        return f"HsmSigner({self._label!r})"

    def issuer_public_key(self) -> oda.RsaPublicKey:
        return self._hsm.rsa_public_key(self._label).oda_key()

    def issuer_certificate(self) -> oda.PublicKeyCertificate:
        return self._certificate

    def sign_raw(self, message: bytes) -> bytes:
        return self._hsm.rsa_sign_raw(self._label, message)


@dataclass(frozen=True)
class AppImage:
    """One personalised application: its data objects by tag, its records by
    (SFI, record number), the static data they sign, its ICC key, FCI and PPSE entry."""

    profile: Application
    data: Mapping[int, bytes]
    records: Mapping[tuple[int, int], bytes]
    static_data: bytes
    fci: bytes
    directory_entry: Tlv
    icc_key: oda.RsaPrivateKey | None = field(default=None, repr=False)

    @property
    def aid(self) -> bytes:
        return self.profile.aid


@dataclass(frozen=True)
class CardImage:
    """A personalised card: the profile, its applications and the PPSE's FCI."""

    profile: CardProfile
    applications: tuple[AppImage, ...]
    ppse_fci: bytes

    def application(self, aid: bytes) -> AppImage | None:
        """The application with exactly this AID."""
        return next((app for app in self.applications if app.aid == aid), None)


@dataclass(frozen=True)
class IccCertificates:
    """What an issuer returns for an ICC key the card made itself: the issuer's own
    certificate from the CA (90, 92, 9F32) and, by AID, the ICC certificate (9F46,
    9F48, 9F47) of each application that does offline data authentication."""

    issuer: oda.PublicKeyCertificate
    icc: Mapping[bytes, oda.PublicKeyCertificate]


_IccKey = oda.RsaPrivateKey | oda.RsaPublicKey
_Certify = Callable[[Application, oda.RsaPublicKey, bytes], oda.PublicKeyCertificate]


@dataclass(frozen=True)
class _Certification:
    """Where an ODA application's keys and certificates come from: the issuer
    certificate, the ICC key of an application (a private key when the card holds it
    here), and the ICC certificate over its public key and its static data."""

    issuer: oda.PublicKeyCertificate
    icc_key: Callable[[Application], _IccKey]
    certify: _Certify


def personalise(
    profile: CardProfile,
    signer: IssuerSigner | None = None,
    rsa_keys: oda.RsaKeySource = oda.generate_rsa_key,
) -> CardImage:
    """The card image of ``profile``, with an ICC key from ``rsa_keys`` (a fresh one by
    default) per application; ``signer`` is needed when an application does offline
    data authentication (a :class:`ProfileError` says so otherwise)."""
    if signer is None:
        return _image(profile, None)
    return _image(
        profile,
        _Certification(
            signer.issuer_certificate(),
            partial(_icc_key, rsa_keys),
            partial(_sign_icc, profile, signer),
        ),
    )


def _icc_key(rsa_keys: oda.RsaKeySource, app: Application) -> oda.RsaPrivateKey:
    """An ICC key of the size and exponent the profile asks for, from ``rsa_keys``."""
    return rsa_keys(app.oda.icc_key_bits, app.oda.icc_exponent)


def for_token(
    profile: CardProfile, *, pan: str, psn: bytes, expiry: bytes, ca_index: int
) -> CardProfile:
    """``profile`` as the card of one token: its PAN, PSN (5F34) and expiry (5F24,
    YYMMDD), and the index (8F) of the CA that certified the issuer key."""
    applications = tuple(
        replace(app, oda=replace(app.oda, ca_index=ca_index)) if app.oda.enabled else app
        for app in profile.applications
    )
    return replace(profile, pan=pan, psn=psn, expiry=expiry, applications=applications)


def certify_icc_key(
    profile: CardProfile, signer: IssuerSigner, icc_key: oda.RsaPublicKey
) -> IccCertificates:
    """The issuer's side for a card that made its own ICC key: the certificates of
    ``icc_key`` over the static data of each ODA application of ``profile``."""
    certification = _Certification(
        signer.issuer_certificate(), lambda _app: icc_key, partial(_sign_icc, profile, signer)
    )
    image = _image(profile, certification)
    return IccCertificates(
        certification.issuer,
        {
            app.aid: oda.PublicKeyCertificate(app.data[0x9F46], app.data[0x9F48], app.data[0x9F47])
            for app in image.applications
            if app.profile.oda.enabled
        },
    )


def personalise_certified(
    profile: CardProfile, icc_key: oda.RsaPrivateKey, certificates: IccCertificates
) -> CardImage:
    """The card's side: the image of ``profile`` with its own ``icc_key`` and the
    certificates the issuer returned for it (:func:`certify_icc_key`)."""

    def issued(
        app: Application, _key: oda.RsaPublicKey, _static: bytes
    ) -> oda.PublicKeyCertificate:
        certificate = certificates.icc.get(app.aid)
        if certificate is None:
            raise ProfileError(
                str(profile.path), "applications", f"no ICC certificate for {app.aid.hex().upper()}"
            )
        return certificate

    return _image(profile, _Certification(certificates.issuer, lambda _app: icc_key, issued))


def _image(profile: CardProfile, certification: _Certification | None) -> CardImage:
    apps = tuple(
        _application(profile, app, certification, f"applications[{i}]")
        for i, app in enumerate(profile.applications)
    )
    return CardImage(profile, apps, _ppse_fci(apps))


def _application(
    profile: CardProfile, app: Application, certification: _Certification | None, where: str
) -> AppImage:
    data = {**_card_data(profile), **_application_data(app), **app.data}
    icc_key = None
    if app.oda.enabled:
        if certification is None:
            raise ProfileError(str(profile.path), f"{where}.oda", "needs an issuer to sign")
        data.update(_issuer_data(app, certification.issuer))
        key = certification.icc_key(app)
        public = key.public_key if isinstance(key, oda.RsaPrivateKey) else key
        icc_key = key if isinstance(key, oda.RsaPrivateKey) else None
        signed = _static_data(app, _records(profile, app, data, where))
        certificate = certification.certify(app, public, signed)
        data.update(
            {
                0x9F46: certificate.certificate,
                0x9F47: certificate.exponent,
                0x9F48: certificate.remainder,
            }
        )
    records = _records(profile, app, data, where)
    static_data = _static_data(app, records)
    return AppImage(
        profile=app,
        data=MappingProxyType(data),
        records=MappingProxyType(records),
        static_data=static_data,
        fci=_fci(app),
        directory_entry=_directory_entry(app),
        icc_key=icc_key,
    )


def _cn(digits: str) -> bytes:
    """Compressed numeric: digits left justified, padded with 'F' (Book 3 §4.3)."""
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


def _card_data(profile: CardProfile) -> dict[int, bytes]:
    """The cardholder and card data objects (Book 3 Annex A)."""
    expiry = profile.expiry.hex()
    track2 = f"{profile.pan}D{expiry[:4]}{profile.service_code}{profile.track2_discretionary}"
    data = {
        0x5A: _cn(profile.pan),
        0x57: _cn(track2),
        0x5F24: profile.expiry,
        0x5F28: profile.issuer_country,
        0x5F30: bytes.fromhex("0" + profile.service_code),
        0x5F34: profile.psn,
    }
    if profile.effective is not None:
        data[0x5F25] = profile.effective
    if profile.cardholder_name is not None:
        data[0x5F20] = profile.cardholder_name.encode("ascii", "replace")
    return data


def _application_data(app: Application) -> dict[int, bytes]:
    data = {
        0x8E: app.cvm_list,
        0x9F07: app.auc,
        0x9F0D: app.iac_default,
        0x9F0E: app.iac_denial,
        0x9F0F: app.iac_online,
        0x9F42: app.currency,
        0x9F4A: SDA_TAG_LIST,
    }
    if app.cdol1 is not None:
        data[0x8C] = app.cdol1
    if app.cdol2 is not None:
        data[0x8D] = app.cdol2
    return data


def _issuer_data(app: Application, certificate: oda.PublicKeyCertificate) -> dict[int, bytes]:
    """8F, and the issuer certificate 90 with remainder 92 and exponent 9F32."""
    return {
        0x8F: bytes((app.oda.ca_index,)),
        0x90: certificate.certificate,
        0x92: certificate.remainder,
        0x9F32: certificate.exponent,
    }


def _sign_icc(
    profile: CardProfile,
    signer: IssuerSigner,
    _app: Application,
    icc_key: oda.RsaPublicKey,
    static_data: bytes,
) -> oda.PublicKeyCertificate:
    """The ICC certificate over the key and the static data, signed by the issuer."""
    expiry = profile.expiry.hex()
    unsigned = oda.icc_certificate_message(
        signer.issuer_public_key().size,
        icc_key,
        pan=profile.pan,
        expiry=expiry[2:4] + expiry[:2],
        serial_number=os.urandom(3),
        static_data=static_data,
    )
    return unsigned.signed(signer.sign_raw(unsigned.message))


def _records(
    profile: CardProfile, app: Application, data: Mapping[int, bytes], where: str
) -> dict[tuple[int, int], bytes]:
    """Each record as its '70' template; a remainder with no bytes is left out. Tags
    still to be made (the ICC certificate before it is signed) are skipped."""
    records: dict[tuple[int, int], bytes] = {}
    for i, record in enumerate(app.records):
        content = b"".join(
            Tlv(tag, data[tag]).to_bytes()
            for tag in record.tags
            if tag in data and (data[tag] or tag not in _REMAINDERS)
        )
        encoded = Tlv(0x70, content).to_bytes()
        if len(encoded) > MAX_RECORD:
            raise ProfileError(
                str(profile.path),
                f"{where}.records[{i}]",
                f"record is {len(encoded)} bytes; a READ RECORD answer holds at most {MAX_RECORD}",
            )
        records[record.sfi, record.number] = encoded
    return records


def _static_data(app: Application, records: Mapping[tuple[int, int], bytes]) -> bytes:
    """The static data to be authenticated (Book 3 §10.3): the ODA records (without
    tag '70' and length for SFI 1-10), then the AIP (SDA Tag List '82')."""
    out = bytearray()
    for record in app.records:
        if record.oda:
            encoded = records[record.sfi, record.number]
            out += tlv.decode(encoded)[0].value if record.sfi <= 10 else encoded
    return bytes(out) + app.aip


def _fci(app: Application) -> bytes:
    """The FCI of the application (Book 1 §11.3.4 Table 45; Book C-3 §4.1)."""
    proprietary = [Tlv.primitive(0x50, app.label.encode("ascii", "replace"))]
    proprietary.append(Tlv.primitive(0x87, bytes((app.priority,))))
    if app.pdol is not None:
        proprietary.append(Tlv.primitive(0x9F38, app.pdol))
    return Tlv.template(
        0x6F, Tlv.primitive(0x84, app.aid), Tlv.template(0xA5, *proprietary)
    ).to_bytes()


def _directory_entry(app: Application) -> Tlv:
    """One Directory Entry '61' of the PPSE (Book B §3.3.2, Table 3-3)."""
    return Tlv.template(
        0x61,
        Tlv.primitive(0x4F, app.aid),
        Tlv.primitive(0x50, app.label.encode("ascii", "replace")),
        Tlv.primitive(0x87, bytes((app.priority,))),
        Tlv.primitive(0x9F2A, app.kernel_id),
    )


def _ppse_fci(apps: tuple[AppImage, ...]) -> bytes:
    """The PPSE's FCI (Book B §3.3.2): its DF name and the directory entries in BF0C."""
    directory = Tlv.template(0xBF0C, *(app.directory_entry for app in apps))
    return Tlv.template(0x6F, Tlv.primitive(0x84, PPSE), Tlv.template(0xA5, directory)).to_bytes()
