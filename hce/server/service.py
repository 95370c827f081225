"""The token server's operations: `TokenService` over an `Hsm` and a `Store`.

It enrols funding PANs as tokens (the vault), registers devices, issues batches
of limited-use keys wrapped for one device (docs/cbp.md "The batch and its
envelope"), authorises CBP cryptograms (EMV Book 2 §8.1 ARQC, §8.2 ARPC) and
reconciles device logs. As an issuer host it also enrols plastic cards and
authorises their Visa / M/Chip cryptograms (:mod:`hce.server.issuer_host`).
Every operation runs in one store transaction, is allowed by the caller's role
(:mod:`hce.server.credentials`), and leaves one audit entry naming who did what
to which object, with no secret in it: tokens and cards by id, never by PAN; no
key, PIN or credential.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec

from emv.crypto import cbp, oda
from emv.crypto.wrap import POINT_LENGTH, BatchHeader, BatchKind, device_fingerprint
from hce.hsm.interface import (
    Arpc,
    ArpcMethod1,
    ArpcMethod2,
    Hsm,
    IccMaster,
    KeyKind,
    KeyPath,
    LimitedUse,
    Session,
    verify_arqc_and_generate_arpc,
)
from hce.server import authorisation as authz
from hce.server import issuer_host, personalisation, provisioning, reconciliation, vault
from hce.server.authorisation import Authorisation, AuthorisationRequest, ClaimedKey, Reason
from hce.server.certificates import sign_issuer_certificate
from hce.server.credentials import ROLES, Principal, new_secret, require, secret_digest
from hce.server.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorised
from hce.server.personalisation import Personalisation
from hce.server.reconciliation import ReconciliationReport
from hce.server.store import (
    AuditEntry,
    AuthorisationRow,
    BatchRow,
    CredentialRow,
    DeviceRow,
    DuplicateApproval,
    IssuedKeyRow,
    IssuerCertificateRow,
    KeyFamily,
    KeyUsage,
    ReconciliationRow,
    Role,
    Store,
    StoreTransaction,
    TokenKind,
    TokenRow,
    TokenStatus,
)

__all__ = [
    "CA_KEY",
    "IMK_AC",
    "ISSUER_KEY",
    "CardRecord",
    "DeviceRecord",
    "InitSummary",
    "IssuedBatch",
    "KeyImport",
    "Personalisation",
    "Principal",
    "ServerConfig",
    "TokenRecord",
    "TokenService",
    "Unauthorised",
]

IMK_AC = "imk-ac"
CA_KEY = "ca"
ISSUER_KEY = "issuer"
SYMMETRIC_KEYS = (
    (IMK_AC, KeyKind.DES2),
    (vault.VAULT_KEY, KeyKind.AES256),
    (vault.LOOKUP_KEY, KeyKind.AES128),
)
INIT = Principal("admin", "server-init")
FAMILY_OF_SCHEME: Mapping[str, KeyFamily] = {"visa": "LUK", "mastercard": "SUK"}
TOKEN_PAN_ATTEMPTS = 16

audit_logger = logging.getLogger("emvtap.server.audit")


@dataclass(frozen=True)
class ServerConfig:
    """Limits of issued keys, token BINs and the test PKI."""

    max_transactions: int = 5  # per LUK
    max_amount: int = 20_000  # per LUK (cumulative) and per SUK, minor units
    ttl_hours: int = 72
    max_batch_keys: int = 100
    token_bins: Mapping[str, str] = field(
        default_factory=lambda: {"visa": "489537", "mastercard": "541333"}
    )
    token_pan_length: int = 16
    ca_rid: bytes = bytes.fromhex("A000000999")
    ca_index: int = 0x99
    ca_bits: int = 1408
    issuer_bits: int = 1152
    rsa_exponent: int = 3
    certificate_years: int = 5


@dataclass(frozen=True)
class InitSummary:
    """What ``emvtap server init`` prints. The admin credential is shown this once
    (None when an admin credential already existed)."""

    kcvs: Mapping[str, str]  # label -> KCV, hex
    ca_key: str  # one line of the CA key store format (oda.format_ca_key)
    issuer_certificates: tuple[IssuerCertificateRow, ...]
    created: tuple[str, ...]  # HSM labels created by this call
    admin_credential: str | None


@dataclass(frozen=True)
class TokenRecord:
    """A token as its owner (an admin) sees it."""

    token_id: str
    scheme: str
    token_pan: str
    psn: str
    expiry: str  # YYMM
    status: TokenStatus


@dataclass(frozen=True)
class CardRecord:
    """A plastic card of the issuer host as an admin sees it."""

    card_id: str
    scheme: str
    pan: str
    psn: str
    expiry: str  # YYMM
    cryptogram_version: str
    status: TokenStatus


@dataclass(frozen=True)
class KeyImport:
    """A key given in clear to :meth:`TokenService.initialise` (key ceremony, tests),
    with the check value it must have."""

    value: bytes = field(repr=False)
    kcv: bytes


@dataclass(frozen=True)
class DeviceRecord:
    """A registered device; ``credential`` is shown this once."""

    device_id: str  # hex of the SHA-256 fingerprint of its public point
    token_id: str
    credential: str


class IssuedBatch(NamedTuple):
    """A batch for one device: the header travels in clear beside the envelope."""

    batch_id: str  # hex of the header's 8-byte batch id
    header: BatchHeader
    envelope: bytes


@dataclass(frozen=True)
class _Decision:
    """An authorisation decision before it is recorded and answered."""

    reason: Reason
    request: AuthorisationRequest | None = None
    token: TokenRow | None = None
    key: ClaimedKey | None = None
    device_id: str | None = None
    arpc: bytes | None = None  # the cryptogram verified: the ARPC of the reason's ARC or CSU
    csu: bytes | None = None  # ARPC method 2 only
    detail: str = ""


def _arc(reason: Reason) -> bytes:
    """The Authorisation Response Code (tag 8A) that answers ``reason``."""
    return authz.ARC_APPROVED if reason == "approved" else authz.ARC_DECLINED


class TokenService:
    """The token server's domain operations (no HTTP here). Every method but
    :meth:`initialise` and :meth:`authenticate` takes the calling principal."""

    def __init__(
        self,
        hsm: Hsm,
        store: Store,
        clock: Callable[[], datetime],
        config: ServerConfig | None = None,
    ) -> None:
        self._hsm = hsm
        self._store = store
        self._clock = clock
        self.config = config or ServerConfig()

    # --- plumbing ------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now

    def _audit(
        self,
        tx: StoreTransaction,
        actor: Principal | None,
        action: str,
        subject: str,
        result: str,
        *,
        detail: str = "",
    ) -> None:
        """One audit entry (and a log line, formatted only when the logger is on);
        ``actor`` None for an anonymous caller."""
        role, name = ("anonymous", "-") if actor is None else (actor.role, actor.name)
        entry = AuditEntry(self._now(), role, name, action, subject, result, detail)
        tx.add_audit(entry)
        if not audit_logger.isEnabledFor(logging.INFO):
            return
        audit_logger.info(
            "%s %s:%s %s %s -> %s %s",
            entry.at.isoformat(),
            entry.actor_role,
            entry.actor_name,
            action,
            subject,
            result,
            detail,
        )

    @contextmanager
    def _allowed(
        self,
        actor: Principal,
        action: str,
        subject: str,
        *roles: Role,
        device_id: str | None = None,
    ) -> Iterator[StoreTransaction]:
        """A write transaction for ``action``; a refusal (by role, or because of the
        request or the state) is audited in a transaction of its own."""
        try:
            require(actor, *roles, device_id=device_id)
        except Forbidden as err:
            with self._store.transaction(write=True) as tx:
                self._audit(tx, actor, action, subject, "forbidden", detail=str(err))
            raise
        try:
            with self._store.transaction(write=True) as tx:
                yield tx
        except (InvalidRequest, NotFound, Conflict) as err:
            # the operation's transaction is rolled back: the refusal is audited on its own
            with self._store.transaction(write=True) as tx:
                self._audit(tx, actor, action, subject, "refused", detail=str(err))
            raise

    @staticmethod
    def _token_row(tx: StoreTransaction, token_id: str, kind: TokenKind = "token") -> TokenRow:
        """The token (or with ``kind`` "card", the plastic card) of that id."""
        token = tx.token(token_id)
        if token is None or token.kind != kind:
            raise NotFound(f"{kind} {token_id}: not found")
        return token

    def _token_pan(self, token: TokenRow) -> str:
        return vault.open_pan(self._hsm, token.token_pan_sealed, token.token_id, "token")

    def _icc(self, token: TokenRow, pan: str) -> IccMaster:
        return IccMaster(pan, bytes.fromhex(token.psn))

    def _card_record(self, card: TokenRow) -> CardRecord:
        assert card.cryptogram_version is not None  # every card row has one (enrol_card)
        return CardRecord(
            card.token_id,
            card.scheme,
            self._token_pan(card),
            card.psn,
            card.expiry,
            card.cryptogram_version,
            card.status,
        )

    def _record(self, token: TokenRow) -> TokenRecord:
        return TokenRecord(
            token.token_id,
            token.scheme,
            self._token_pan(token),
            token.psn,
            token.expiry,
            token.status,
        )

    # --- initialisation and credentials --------------------------------------------------

    def initialise(self, *, imk_ac: KeyImport | None = None) -> InitSummary:
        """Create what is missing: the symmetric keys (IMK-AC, vault, lookup), the test CA
        and issuer RSA keys, the issuer certificate of each token BIN under the CA
        (Book 2 Table 6), and a first admin credential.

        With ``imk_ac`` the IMK-AC is imported (its KCV checked by the HSM) instead of
        made, so that plastic cards personalised under it by their issuer can be
        authorised (:meth:`enrol_card`); a server that already has an IMK-AC with
        another KCV refuses it (Conflict)."""
        with self._store.transaction(write=True) as tx:
            created = self._create_keys(tx, imk_ac)
            certificates = self._certify_issuer(tx, renew=bool({CA_KEY, ISSUER_KEY} & set(created)))
            admin = None
            if not tx.has_role("admin"):
                admin = self._add_credential(tx, INIT, "admin", "admin", None)
            ca = oda.CaPublicKey(
                self.config.ca_rid,
                self.config.ca_index,
                self._hsm.rsa_public_key(CA_KEY).oda_key(),
            )
            kcvs = {
                label: self._hsm.key_info(label).kcv.hex().upper() for label, _ in SYMMETRIC_KEYS
            }
            self._audit(
                tx, INIT, "initialise", "server", "ok", detail=f"created={','.join(created)}"
            )
        return InitSummary(kcvs, oda.format_ca_key(ca), certificates, tuple(created), admin)

    def _create_keys(self, tx: StoreTransaction, imk_ac: KeyImport | None) -> list[str]:
        present = set(self._hsm.labels())
        created = []
        if imk_ac is not None:
            created += self._import_imk_ac(tx, imk_ac, present)
        for label, kind in SYMMETRIC_KEYS:
            if label not in present and label not in created:
                info = self._hsm.generate_key(label, kind)
                self._audit(
                    tx, INIT, "generate_key", label, "ok", detail=f"kcv={info.kcv.hex().upper()}"
                )
                created.append(label)
        for label, bits in ((CA_KEY, self.config.ca_bits), (ISSUER_KEY, self.config.issuer_bits)):
            if label not in present:
                self._hsm.generate_rsa_key(label, bits, self.config.rsa_exponent)
                self._audit(tx, INIT, "generate_rsa_key", label, "ok", detail=f"bits={bits}")
                created.append(label)
        return created

    def _import_imk_ac(
        self, tx: StoreTransaction, imk_ac: KeyImport, present: set[str]
    ) -> list[str]:
        """Import the IMK-AC unless the HSM holds it already with the same KCV."""
        kcv = imk_ac.kcv.hex().upper()
        if IMK_AC in present:
            if self._hsm.key_info(IMK_AC).kcv != imk_ac.kcv:
                raise Conflict(f"key {IMK_AC}: present with another KCV than {kcv}")
            return []
        self._hsm.import_key(IMK_AC, KeyKind.DES2, imk_ac.value, imk_ac.kcv)
        self._audit(tx, INIT, "import_key", IMK_AC, "ok", detail=f"kcv={kcv}")
        return [IMK_AC]

    def _certify_issuer(
        self, tx: StoreTransaction, *, renew: bool
    ) -> tuple[IssuerCertificateRow, ...]:
        """One issuer certificate per token BIN (issuer identifier = the BIN)."""
        existing = {row.scheme: row for row in tx.issuer_certificates()}
        now = self._now()
        expiry = f"{now.month:02d}{(now.year + self.config.certificate_years) % 100:02d}"
        for scheme, bin_prefix in sorted(self.config.token_bins.items()):
            if (
                not renew
                and scheme in existing
                and existing[scheme].issuer_identifier == bin_prefix
            ):
                continue
            certificate = sign_issuer_certificate(
                self._hsm,
                CA_KEY,
                ISSUER_KEY,
                issuer_identifier=bin_prefix,
                expiry=expiry,
                serial_number=secrets.token_bytes(3),
            )
            tx.put_issuer_certificate(
                IssuerCertificateRow(
                    scheme,
                    bin_prefix,
                    certificate.certificate,
                    certificate.remainder,
                    certificate.exponent,
                    now,
                )
            )
            self._audit(
                tx, INIT, "sign_issuer_certificate", scheme, "ok", detail=f"expiry={expiry}"
            )
        return tuple(tx.issuer_certificates())

    def _add_credential(
        self,
        tx: StoreTransaction,
        actor: Principal,
        role: Role,
        name: str,
        device_id: str | None,
    ) -> str:
        secret = new_secret()
        tx.add_credential(CredentialRow(secret_digest(secret), role, name, device_id, self._now()))
        self._audit(tx, actor, "create_credential", f"{role}:{name}", "ok")
        return secret

    def create_credential(
        self, role: Role, name: str, device_id: str | None = None, *, actor: Principal
    ) -> str:
        """A new credential for ``role`` (admins only); returns its secret, shown once."""
        if role not in ROLES:
            raise InvalidRequest(f"role {role!r}: expected one of {', '.join(ROLES)}")
        if (role == "device") != (device_id is not None):
            raise InvalidRequest("a device credential names its device, no other does")
        with self._allowed(actor, "create_credential", f"{role}:{name}", "admin") as tx:
            if device_id is not None and tx.device(device_id) is None:
                raise NotFound(f"device {device_id}: not found")
            return self._add_credential(tx, actor, role, name, device_id)

    def authenticate(self, secret: str) -> Principal:
        """The principal holding ``secret``, or :class:`Unauthorised` (audited)."""
        with self._store.transaction() as tx:
            row = tx.credential(secret_digest(secret))
        if row is None:
            with self._store.transaction(write=True) as tx:
                self._audit(tx, None, "authenticate", "-", "unauthorised")
            raise Unauthorised("unknown credential")
        return Principal(row.role, row.name, row.device_id)

    # --- tokens and devices --------------------------------------------------------------

    def enrol_token(
        self,
        funding_pan: str,
        expiry: str,
        psn: str = "00",
        scheme: str = "visa",
        *,
        actor: Principal,
    ) -> TokenRecord:
        """A new token for ``funding_pan``: a fresh Luhn-valid token PAN in the scheme's
        BIN; both PANs are stored only sealed and as keyed digests (the vault)."""
        vault.check_pan("funding PAN", funding_pan)
        _check_expiry_and_psn(expiry, psn)
        if scheme not in self.config.token_bins:
            raise InvalidRequest(
                f"scheme {scheme!r}: expected one of {sorted(self.config.token_bins)}"
            )
        token_id = secrets.token_hex(8)
        with self._allowed(actor, "enrol_token", token_id, "admin") as tx:
            token_pan = self._fresh_token_pan(tx, scheme)
            row = TokenRow(
                token_id=token_id,
                scheme=scheme,
                token_pan_digest=vault.pan_digest(self._hsm, token_pan),
                token_pan_sealed=vault.seal_pan(self._hsm, token_pan, token_id, "token"),
                funding_pan_digest=vault.pan_digest(self._hsm, funding_pan),
                funding_pan_sealed=vault.seal_pan(self._hsm, funding_pan, token_id, "funding"),
                psn=psn,
                expiry=expiry,
                status="active",
                next_atc=1,
                created_at=self._now(),
            )
            tx.add_token(row)
            self._audit(tx, actor, "enrol_token", token_id, "ok", detail=f"scheme={scheme}")
        return TokenRecord(token_id, scheme, token_pan, psn, expiry, "active")

    def _fresh_token_pan(self, tx: StoreTransaction, scheme: str) -> str:
        for _ in range(TOKEN_PAN_ATTEMPTS):
            pan = vault.new_token_pan(self.config.token_bins[scheme], self.config.token_pan_length)
            if tx.token_by_pan_digest(vault.pan_digest(self._hsm, pan)) is None:
                return pan
        raise Conflict(f"no free token PAN found in the {scheme} BIN")

    def enrol_card(
        self,
        pan: str,
        expiry: str,
        psn: str,
        scheme: str,
        cryptogram_version: str,
        *,
        actor: Principal,
    ) -> CardRecord:
        """Enrol a plastic card for the issuer host (admins only): its ARQCs are then
        verified under MK-AC Option A from the IMK-AC (EMV Book 2 A1.4.1) by its
        cryptogram version (:mod:`hce.server.issuer_host`). The PAN is stored only
        sealed and as a keyed digest; a card has no devices and no batches."""
        vault.check_pan("PAN", pan)
        _check_expiry_and_psn(expiry, psn)
        if issuer_host.CRYPTOGRAM_VERSIONS.get(cryptogram_version) != scheme:
            raise InvalidRequest(
                f"cryptogram version {cryptogram_version!r} of scheme {scheme!r}: expected one "
                f"of {sorted(issuer_host.CRYPTOGRAM_VERSIONS.items())}"
            )
        card_id = secrets.token_hex(8)
        with self._allowed(actor, "enrol_card", card_id, "admin") as tx:
            digest = vault.pan_digest(self._hsm, pan)
            if tx.token_by_pan_digest(digest) is not None:
                raise Conflict("PAN: a card or token with this PAN is enrolled")
            row = TokenRow(
                token_id=card_id,
                scheme=scheme,
                token_pan_digest=digest,
                token_pan_sealed=vault.seal_pan(self._hsm, pan, card_id, "token"),
                funding_pan_digest=digest,
                funding_pan_sealed=vault.seal_pan(self._hsm, pan, card_id, "funding"),
                psn=psn,
                expiry=expiry,
                status="active",
                next_atc=1,
                created_at=self._now(),
                kind="card",
                cryptogram_version=cryptogram_version,
            )
            tx.add_token(row)
            self._audit(
                tx,
                actor,
                "enrol_card",
                card_id,
                "ok",
                detail=f"scheme={scheme} cvn={cryptogram_version}",
            )
        return CardRecord(card_id, scheme, pan, psn, expiry, cryptogram_version, "active")

    def suspend_card(self, card_id: str, *, actor: Principal) -> CardRecord:
        """Stop approving the plastic card (admins only): its ARQCs are declined with
        reason ``suspended_token``, still with an ARPC when they verify."""
        return self._card_record(self._set_status(card_id, "suspended", actor, "card"))

    def resume_card(self, card_id: str, *, actor: Principal) -> CardRecord:
        """Undo :meth:`suspend_card`."""
        return self._card_record(self._set_status(card_id, "active", actor, "card"))

    def token(self, token_id: str, *, actor: Principal) -> TokenRecord:
        """A token, with its token PAN (admins only)."""
        with self._allowed(actor, "read_token", token_id, "admin") as tx:
            token = self._token_row(tx, token_id)
            self._audit(tx, actor, "read_token", token_id, "ok")
        return self._record(token)

    def suspend(self, token_id: str, *, actor: Principal) -> TokenRecord:
        """Stop authorising and provisioning the token (admins only)."""
        return self._record(self._set_status(token_id, "suspended", actor, "token"))

    def resume(self, token_id: str, *, actor: Principal) -> TokenRecord:
        """Undo :meth:`suspend`."""
        return self._record(self._set_status(token_id, "active", actor, "token"))

    def _set_status(
        self, token_id: str, status: TokenStatus, actor: Principal, kind: TokenKind
    ) -> TokenRow:
        action = "suspend" if status == "suspended" else "resume"
        with self._allowed(actor, action, token_id, "admin") as tx:
            self._token_row(tx, token_id, kind)
            tx.set_token_status(token_id, status)
            self._audit(tx, actor, action, token_id, "ok")
            return self._token_row(tx, token_id, kind)

    def register_device(
        self, token_id: str, public_point: bytes, *, actor: Principal
    ) -> DeviceRecord:
        """Bind a device's P-256 key (uncompressed point) to a token; the device id is
        the hex SHA-256 fingerprint of the point. Returns the device's credential.

        A token lives on one device (as a scheme token is bound to one wallet): a
        second device for the same token is refused, so two phones never spend the
        same key indexes or ATCs."""
        if len(public_point) != POINT_LENGTH or public_point[0] != 0x04:
            raise InvalidRequest("public point: not an uncompressed P-256 point")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
        except ValueError:
            raise InvalidRequest("public point: not on P-256") from None
        device_id = device_fingerprint(public_point).hex()
        with self._allowed(actor, "register_device", device_id, "admin") as tx:
            self._token_row(tx, token_id)
            if tx.device(device_id) is not None:
                raise Conflict(f"device {device_id}: already registered")
            if tx.token_device(token_id) is not None:
                raise Conflict(f"token {token_id}: already bound to a device")
            tx.add_device(DeviceRow(device_id, token_id, public_point, self._now()))
            self._audit(tx, actor, "register_device", device_id, "ok", detail=f"token={token_id}")
            credential = self._add_credential(tx, actor, "device", device_id, device_id)
        return DeviceRecord(device_id, token_id, credential)

    # --- personalisation -------------------------------------------------------------------

    def personalise_device(
        self, device_id: str, profile: str, icc_key: oda.RsaPublicKey, *, actor: Principal
    ) -> Personalisation:
        """Certify the ICC key a device made for its token's card of the shipped HCE
        ``profile`` (the device itself, or an admin; :mod:`hce.server.personalisation`)."""
        with self._allowed(
            actor, "personalise", device_id, "admin", "device", device_id=device_id
        ) as tx:
            device = tx.device(device_id)
            if device is None:
                raise NotFound(f"device {device_id}: not found")
            return self._personalise(
                tx, actor, device.token_id, profile, icc_key=icc_key, device_id=device_id
            )

    def personalise_token(
        self, token_id: str, profile: str, icc_key: oda.RsaPublicKey, *, actor: Principal
    ) -> Personalisation:
        """As :meth:`personalise_device`, for a token named by its id (admins only)."""
        with self._allowed(actor, "personalise", token_id, "admin") as tx:
            return self._personalise(tx, actor, token_id, profile, icc_key=icc_key, device_id=None)

    def _personalise(
        self,
        tx: StoreTransaction,
        actor: Principal,
        token_id: str,
        name: str,
        *,
        icc_key: oda.RsaPublicKey,
        device_id: str | None,
    ) -> Personalisation:
        token = self._token_row(tx, token_id)
        if token.status != "active":
            raise Conflict(f"token {token_id}: {token.status}")
        row = next((r for r in tx.issuer_certificates() if r.scheme == token.scheme), None)
        if row is None:
            raise Conflict(f"no issuer certificate for {token.scheme}: run init again")
        profile = personalisation.token_profile(
            name,
            token.scheme,
            pan=self._token_pan(token),
            psn=token.psn,
            expiry=token.expiry,
            ca_index=self.config.ca_index,
        )
        issuer = oda.PublicKeyCertificate(row.certificate, row.remainder, row.exponent)
        certificates = personalisation.certify(self._hsm, ISSUER_KEY, issuer, profile, icc_key)
        self._audit(
            tx,
            actor,
            "personalise",
            token_id,
            "ok",
            detail=f"profile={name} device={device_id or '-'} "
            f"icc_key={personalisation.key_digest(icc_key)}",
        )
        return Personalisation(
            token_id,
            name,
            profile.psn,
            profile.expiry,
            self.config.ca_rid,
            self.config.ca_index,
            certificates,
            self._hsm.rsa_public_key(CA_KEY).oda_key(),
        )

    # --- provisioning ----------------------------------------------------------------------

    def issue_batch(
        self,
        device_id: str,
        kind: Literal["LUK", "SUK"],
        count: int,
        pin: str | None = None,
        *,
        actor: Principal,
    ) -> IssuedBatch:
        """Issue ``count`` LUKs (visa-like tokens) or the next ``count`` ATCs' SUKs
        (mastercard-like; with ``pin``, each ATC's masked SUK-UV too), plus the device's
        log key, wrapped for the device (docs/cbp.md). Stores what was issued, never a
        key; the PIN is used for the mask and forgotten."""
        if kind not in ("LUK", "SUK"):
            raise InvalidRequest(f"kind {kind!r}: expected LUK or SUK")
        if not 1 <= count <= self.config.max_batch_keys:
            raise InvalidRequest(f"count {count}: expected 1 to {self.config.max_batch_keys}")
        if pin is not None and (kind == "LUK" or not re.fullmatch(r"\d{4,12}", pin)):
            raise InvalidRequest("pin: 4 to 12 digits, for SUK batches only")
        batch_id = secrets.token_bytes(8)
        with self._allowed(
            actor, "issue_batch", batch_id.hex(), "admin", "device", device_id=device_id
        ) as tx:
            device = tx.device(device_id)
            if device is None:
                raise NotFound(f"device {device_id}: not found")
            token = self._token_row(tx, device.token_id)
            if token.status != "active":
                raise Conflict(f"token {token.token_id}: {token.status}")
            if FAMILY_OF_SCHEME[token.scheme] != kind:
                raise InvalidRequest(
                    f"a {token.scheme} token takes {FAMILY_OF_SCHEME[token.scheme]} batches"
                )
            issued = self._allocate(
                tx,
                token,
                device_id,
                batch_id.hex(),
                kind,
                count=count,
                user_verified=pin is not None,
            )
            header = BatchHeader(
                batch_id, bytes.fromhex(token.token_id), bytes.fromhex(device_id), BatchKind[kind]
            )
            envelope = self._wrap(token, device, header, issued, pin)
            tx.add_batch(
                BatchRow(batch_id.hex(), device_id, token.token_id, kind, self._now()), issued
            )
            idents = f"{issued[0].ident}..{issued[-1].ident}"
            self._audit(
                tx,
                actor,
                "issue_batch",
                batch_id.hex(),
                "ok",
                detail=f"device={device_id} token={token.token_id} kind={kind} idents={idents}",
            )
        return IssuedBatch(batch_id.hex(), header, envelope)

    def _allocate(
        self,
        tx: StoreTransaction,
        token: TokenRow,
        device_id: str,
        batch_id: str,
        kind: KeyFamily,
        *,
        count: int,
        user_verified: bool,
    ) -> list[IssuedKeyRow]:
        """Key indexes (LUK) or ATCs (SUK) for a batch, never handed out twice."""
        hour = provisioning.hour_of(self._now())
        expiry_hour = hour + self.config.ttl_hours
        if kind == "LUK":
            idents = provisioning.luk_idents(tx.last_key_ident(token.token_id, "LUK"), hour, count)
            limits = (self.config.max_transactions, self.config.max_amount, expiry_hour)
        else:
            if token.next_atc + count - 1 > provisioning.MAX_ATC:
                raise Conflict(f"token {token.token_id}: its ATCs are spent")
            first = tx.allocate_atcs(token.token_id, count)
            idents = list(range(first, first + count))
            limits = (1, self.config.max_amount, expiry_hour)
        return [
            IssuedKeyRow(token.token_id, device_id, kind, ident, batch_id, user_verified, *limits)
            for ident in idents
        ]

    def _wrap(
        self,
        token: TokenRow,
        device: DeviceRow,
        header: BatchHeader,
        issued: Sequence[IssuedKeyRow],
        pin: str | None,
    ) -> bytes:
        first = issued[0]
        expiry_hour = first.expiry_hour
        if first.family == "LUK":
            requests = provisioning.luk_requests(
                [k.ident for k in issued], first.max_transactions, first.max_amount, expiry_hour
            )
        else:
            requests = provisioning.suk_requests(
                first.ident,
                len(issued),
                first.max_amount,
                expiry_hour,
                user_verified=pin is not None,
            )
        requests.append(provisioning.log_key(header.device))
        pan = self._token_pan(token)
        return self._hsm.wrap_batch(
            IMK_AC,
            self._icc(token, pan),
            requests,
            device_point=device.public_point,
            header=header.to_bytes(),
            pin_key=None if pin is None else cbp.pin_key(pin, pan),
        )

    # --- authorisation ---------------------------------------------------------------------

    def authorise(self, icc_data: bytes, *, actor: Principal) -> Authorisation:
        """Decide on an ARQC (acquirers and admins). Checks, in order: the request reads
        (malformed), the token exists (unknown_token), the key was issued to it
        (unknown_key), the ATC was not approved before (replay: before any crypto), the
        cryptogram verifies (bad_cryptogram), then token status, key expiry, count and
        amount. One transaction with the write lock, and a UNIQUE index, make one
        approval per ATC however many requests race. The ARPC (method 1 for CBP-V,
        method 2 with a CSU for CBP-M) comes whenever the cryptogram verified.

        A plastic card's PAN is decided by the issuer host (:meth:`_decide_plastic`):
        malformed (also an IAD not of its cryptogram version), replay, bad_cryptogram,
        suspended_token; it has no key limits."""
        authorisation_id = secrets.token_hex(8)
        with self._allowed(actor, "authorise", authorisation_id, "acquirer", "admin") as tx:
            decision = self._decide(tx, icc_data)
            decision = self._record_decision(tx, authorisation_id, decision)
            answer = self._answer(authorisation_id, decision)
            subject = decision.token.token_id if decision.token else "-"
            atc = decision.request.atc if decision.request else "-"
            self._audit(
                tx,
                actor,
                "authorise",
                subject,
                answer.decision,
                detail=f"id={authorisation_id} reason={answer.reason} atc={atc} {decision.detail}",
            )
        return answer

    def _decide(self, tx: StoreTransaction, icc_data: bytes) -> _Decision:
        try:
            request = authz.parse_request(icc_data)
        except authz.MalformedRequest as err:
            return _Decision("malformed", detail=str(err))
        found_token = tx.token_at_atc(vault.pan_digest(self._hsm, request.pan), request.atc)
        if found_token is None or not _same_card(found_token.token, request):
            return _Decision("unknown_token", request)
        token, replay = found_token
        if token.kind == "card":
            return self._decide_plastic(token, request, replay=replay)
        try:
            key = authz.claimed_key(request)
        except authz.MalformedRequest as err:
            return _Decision("malformed", request, token, detail=str(err))
        usage = tx.key_usage(token.token_id, key.family, key.ident)
        if usage is None or (key.user_verified and not usage.key.user_verified):
            return _Decision("unknown_key", request, token)
        found = _Decision("approved", request, token, key, usage.key.device_id)
        if replay:
            return dataclasses.replace(found, reason="replay")
        reason = self._limits(token, usage, request, key.use_count)
        path = KeyPath(IMK_AC, self._icc(token, request.pan), key.limited_use, key.session)
        method: Literal[1, 2] = 1 if key.family == "LUK" else 2  # CBP-V: 1, CBP-M: 2 with a CSU
        return self._verified(
            found, reason, path, request.mac_input, arpc_method=method, arpc_session=key.session
        )

    def _decide_plastic(
        self, card: TokenRow, request: AuthorisationRequest, *, replay: bool
    ) -> _Decision:
        """The issuer host's checks on a plastic card's ARQC (EMV Book 2 §8.1), by its
        cryptogram version, inside the HSM under MK-AC Option A from the IMK-AC; ``replay``
        when the card's ATC is approved already."""
        assert card.cryptogram_version is not None  # every card row has one (enrol_card)
        try:
            plastic = issuer_host.plastic_cryptogram(card.cryptogram_version, request)
        except authz.MalformedRequest as err:
            return _Decision("malformed", request, card, detail=str(err))
        found = _Decision("approved", request, card)
        if replay:
            return dataclasses.replace(found, reason="replay")
        reason: Reason = "approved" if card.status == "active" else "suspended_token"
        path = KeyPath(IMK_AC, self._icc(card, request.pan), session=plastic.session)
        return self._verified(
            found,
            reason,
            path,
            plastic.mac_input,
            arpc_method=plastic.arpc_method,
            arpc_session=plastic.arpc_session,
        )

    def _verified(
        self,
        found: _Decision,
        reason: Reason,
        path: KeyPath,
        mac_input: bytes,
        *,
        arpc_method: Literal[1, 2],
        arpc_session: Session | None,
    ) -> _Decision:
        """``found`` decided ``reason`` with its ARPC (EMV Book 2 §8.2: method 1 over the
        ARC, method 2 over the CSU; under the key with ``arpc_session``) if the ARQC
        verifies under the key at ``path`` (§8.1), else bad_cryptogram. The reason is
        decided before the cryptogram is verified, so that one HSM operation verifies
        it and makes the ARPC; bad_cryptogram still comes first."""
        request = found.request
        assert request is not None  # the request was parsed
        arpc: Arpc
        csu = None
        if arpc_method == 1:
            arpc = ArpcMethod1(_arc(reason))
        else:
            csu = authz.CSU_APPROVED if reason == "approved" else authz.CSU_DECLINED
            arpc = ArpcMethod2(csu)
        answer = verify_arqc_and_generate_arpc(
            self._hsm, path, mac_input, "emv", request.arqc, arpc=arpc, arpc_session=arpc_session
        )
        if answer is None:
            return dataclasses.replace(found, reason="bad_cryptogram")
        return dataclasses.replace(found, reason=reason, arpc=answer, csu=csu)

    def _limits(
        self, token: TokenRow, usage: KeyUsage, request: AuthorisationRequest, use_count: int
    ) -> Reason:
        """docs/cbp.md "Limits of a LUK": status, expiry, count, cumulative amount."""
        issued = usage.key
        if token.status != "active":
            return "suspended_token"
        if provisioning.hour_of(self._now()) >= issued.expiry_hour:
            return "expired_key"
        if usage.approvals >= issued.max_transactions or use_count > issued.max_transactions:
            return "over_count"
        if usage.approved_amount + request.amount > issued.max_amount:
            return "over_amount"
        return "approved"

    def _record_decision(
        self, tx: StoreTransaction, authorisation_id: str, decision: _Decision
    ) -> _Decision:
        """Record it; should the UNIQUE index find the ATC approved after all, it is a replay."""
        try:
            tx.add_authorisation(self._row(authorisation_id, decision))
        except DuplicateApproval:
            decision = dataclasses.replace(decision, reason="replay", arpc=None, csu=None)
            tx.add_authorisation(self._row(authorisation_id, decision))
        return decision

    def _row(self, authorisation_id: str, decision: _Decision) -> AuthorisationRow:
        request, key = decision.request, decision.key
        return AuthorisationRow(
            authorisation_id=authorisation_id,
            at=self._now(),
            token_id=decision.token.token_id if decision.token else None,
            device_id=decision.device_id,
            atc=request.atc if request else None,
            family=key.family if key else None,
            key_ident=key.ident if key else None,
            amount=request.amount if request else None,
            arqc=request.arqc if request else None,
            decision="approved" if decision.reason == "approved" else "declined",
            reason=decision.reason,
        )

    def _answer(self, authorisation_id: str, decision: _Decision) -> Authorisation:
        approved = decision.reason == "approved"
        verdict: Literal["approved", "declined"] = "approved" if approved else "declined"
        return Authorisation(
            authorisation_id,
            verdict,
            decision.reason,
            _arc(decision.reason),
            decision.arpc,
            decision.csu,
            decision.detail,
        )

    # --- reconciliation and audit ----------------------------------------------------------

    def reconcile(
        self,
        device_id: str,
        entries: Sequence[bytes],
        macs: Sequence[bytes],
        previous: bytes = reconciliation.MAC_0,
        *,
        actor: Principal,
    ) -> ReconciliationReport:
        """Check a device's log chain under its log key (inside the HSM) and match it
        with what the server issued and authorised (docs/cbp.md "The transaction log").

        ``previous`` is the MAC the entries chain from: MAC_0 for a device's first
        upload, else the end of a chain this server already verified (so an upload
        repeated after a lost answer is accepted again)."""
        if len(entries) != len(macs) or any(len(mac) != 8 for mac in macs):
            raise InvalidRequest("one 8-byte MAC per log entry expected")
        if len(previous) != 8:
            raise InvalidRequest("previous: the MAC the log chains from must be 8 bytes")
        reconciliation_id = secrets.token_hex(8)
        with self._allowed(
            actor, "reconcile", reconciliation_id, "admin", "device", device_id=device_id
        ) as tx:
            device = tx.device(device_id)
            if device is None:
                raise NotFound(f"device {device_id}: not found")
            token = self._token_row(tx, device.token_id)
            fingerprint = bytes.fromhex(device_id)
            path = KeyPath(
                IMK_AC,
                self._icc(token, self._token_pan(token)),
                LimitedUse(BatchKind.LOG, fingerprint[:4]),
            )
            if previous != reconciliation.MAC_0 and previous not in tx.log_chain_ends(device_id):
                raise InvalidRequest("previous: not the end of a log chain this server verified")
            broken = reconciliation.first_broken_link(
                lambda data: self._hsm.application_cryptogram(path, data, "emv"),
                entries,
                macs,
                previous,
            )
            report = reconciliation.reconcile_entries(
                reconciliation_id,
                device_id,
                entries,
                broken,
                issued=tx.issued_keys(device_id),
                authorisations=tx.authorisations(device_id),
                first_upload=previous == reconciliation.MAC_0,
            )
            tx.add_reconciliation(
                ReconciliationRow(
                    reconciliation_id,
                    device_id,
                    self._now(),
                    json.dumps(report.as_dict()),
                    macs[-1] if macs and broken is None else None,
                )
            )
            self._audit(
                tx,
                actor,
                "reconcile",
                device_id,
                "consistent" if report.consistent else "inconsistent",
                detail=f"id={reconciliation_id} entries={report.entries}"
                f" verified={report.verified}",
            )
        return report

    def audit_log(self, *, actor: Principal) -> list[AuditEntry]:
        """Every audit entry, oldest first (admins only)."""
        with self._allowed(actor, "read_audit", "audit", "admin") as tx:
            return tx.audit_entries()


def _check_expiry_and_psn(expiry: str, psn: str) -> None:
    if not re.fullmatch(r"\d\d(0[1-9]|1[0-2])", expiry):
        raise InvalidRequest("expiry: expected YYMM")
    if not re.fullmatch(r"\d\d", psn):
        raise InvalidRequest("psn: expected two digits")


def _same_card(token: TokenRow, request: AuthorisationRequest) -> bool:
    """The PSN (5F34) and track 2's expiry date, when sent, must be the token's."""
    return request.psn in (None, token.psn) and request.track2_expiry in (None, token.expiry)
