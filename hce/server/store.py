"""The token server's persistence: the `Store` seam and its SQLite implementation.

A store holds no secret in clear: PANs only sealed by the HSM's vault key and as
keyed digests, credentials only as SHA-256 digests, keys never (a batch is
recorded by the key indexes or ATCs it carried and their limits). Every service
operation runs in one :meth:`Store.transaction`; operations that allocate
counters or record decisions open it with ``write=True`` (SQLite ``BEGIN
IMMEDIATE``: one writer at a time, so checks and the insert that follows them
see the same state). The rule "one approval per ATC of a token" is also a
UNIQUE index, so it holds whatever the code above does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, cast

from hce.server.errors import StoreError

__all__ = [
    "AuditEntry",
    "AuthorisationRow",
    "BatchRow",
    "CredentialRow",
    "DeviceRow",
    "DuplicateApproval",
    "IssuedKeyRow",
    "IssuerCertificateRow",
    "KeyFamily",
    "KeyUsage",
    "ReconciliationRow",
    "Role",
    "SqliteStore",
    "Store",
    "StoreTransaction",
    "TokenAtAtc",
    "TokenKind",
    "TokenRow",
    "TokenStatus",
]

SCHEMA_VERSION = 2

Role = Literal["admin", "acquirer", "device"]
TokenStatus = Literal["active", "suspended"]
TokenKind = Literal["token", "card"]
KeyFamily = Literal["LUK", "SUK"]
Decision = Literal["approved", "declined"]


class DuplicateApproval(StoreError):
    """A second approval for one ATC of one token: the UNIQUE index refused it."""


# --- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialRow:
    """A credential, known only by the SHA-256 of its secret."""

    digest: bytes
    role: Role
    name: str
    device_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class IssuerCertificateRow:
    """The issuer public key certificate for one scheme's BIN (EMV Book 2 Table 6)."""

    scheme: str
    issuer_identifier: str
    certificate: bytes
    remainder: bytes
    exponent: bytes
    created_at: datetime


@dataclass(frozen=True)
class TokenRow:
    """A token, or (``kind`` "card") a plastic card of the issuer host: its PANs only
    sealed (HSM vault key) and as keyed digests. A card is its own funding account: its
    PAN is in both PAN fields, and ``cryptogram_version`` says how it makes its ARQC."""

    token_id: str
    scheme: str
    token_pan_digest: bytes
    token_pan_sealed: bytes
    funding_pan_digest: bytes
    funding_pan_sealed: bytes
    psn: str
    expiry: str
    status: TokenStatus
    next_atc: int
    created_at: datetime
    kind: TokenKind = "token"
    cryptogram_version: str | None = None  # cards only: '18', '22', '16', '17', '20', '21'


@dataclass(frozen=True)
class DeviceRow:
    """A device: the token it carries and its P-256 public point (fingerprint = id)."""

    device_id: str
    token_id: str
    public_point: bytes
    created_at: datetime


@dataclass(frozen=True)
class BatchRow:
    """One batch handed to a device."""

    batch_id: str
    device_id: str
    token_id: str
    family: KeyFamily
    created_at: datetime


@dataclass(frozen=True)
class IssuedKeyRow:
    """What was issued, never the key: a LUK by key index, an SUK by ATC (docs/cbp.md)."""

    token_id: str
    device_id: str
    family: KeyFamily
    ident: int  # LUK: the 4-byte key index as an integer; SUK: the ATC
    batch_id: str
    user_verified: bool  # SUK: a masked SUK-UV was issued for this ATC too
    max_transactions: int
    max_amount: int
    expiry_hour: int


class TokenAtAtc(NamedTuple):
    """A token, and whether one ATC of it is approved already: an authorisation's first read."""

    token: TokenRow
    atc_approved: bool


class KeyUsage(NamedTuple):
    """An issued key and what was approved on it: an authorisation's read of a token's key."""

    key: IssuedKeyRow
    approvals: int
    approved_amount: int


@dataclass(frozen=True)
class AuthorisationRow:
    """One decision on an ARQC. Fields the request did not yield are None."""

    authorisation_id: str
    at: datetime
    token_id: str | None
    device_id: str | None
    atc: int | None
    family: KeyFamily | None
    key_ident: int | None
    amount: int | None
    arqc: bytes | None
    decision: Decision
    reason: str


@dataclass(frozen=True)
class ReconciliationRow:
    """A reconciliation of one device's log; ``report`` is its JSON."""

    reconciliation_id: str
    device_id: str
    at: datetime
    report: str
    chain_end: bytes | None = None  # the last verified MAC: where the next upload chains from


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to which object, with which result: never a secret."""

    at: datetime
    actor_role: str
    actor_name: str
    action: str
    subject: str
    result: str
    detail: str = ""


# --- the seam ------------------------------------------------------------------------------


class StoreTransaction(Protocol):
    """The reads and writes of one service operation, all in one transaction."""

    def add_credential(self, row: CredentialRow) -> None: ...
    def credential(self, digest: bytes) -> CredentialRow | None: ...
    def has_role(self, role: Role) -> bool: ...

    def put_issuer_certificate(self, row: IssuerCertificateRow) -> None: ...
    def issuer_certificates(self) -> list[IssuerCertificateRow]: ...

    def add_token(self, row: TokenRow) -> None: ...
    def token(self, token_id: str) -> TokenRow | None: ...
    def token_by_pan_digest(self, digest: bytes) -> TokenRow | None: ...
    def token_at_atc(self, digest: bytes, atc: int) -> TokenAtAtc | None:
        """The token of a PAN digest, and whether that ``atc`` of it is approved already."""
        ...

    def set_token_status(self, token_id: str, status: TokenStatus) -> None: ...
    def allocate_atcs(self, token_id: str, count: int) -> int:
        """Reserve ``count`` ATCs of the token; returns the first."""
        ...

    def add_device(self, row: DeviceRow) -> None: ...
    def device(self, device_id: str) -> DeviceRow | None: ...
    def token_device(self, token_id: str) -> DeviceRow | None:
        """The device a token is bound to, if any (one per token)."""
        ...

    def add_batch(self, row: BatchRow, keys: list[IssuedKeyRow]) -> None: ...
    def last_key_ident(self, token_id: str, family: KeyFamily) -> int | None: ...
    def key_usage(self, token_id: str, family: KeyFamily, ident: int) -> KeyUsage | None:
        """An issued key of the token with its approvals and approved amount, if issued."""
        ...

    def issued_keys(self, device_id: str) -> list[IssuedKeyRow]: ...

    def add_authorisation(self, row: AuthorisationRow) -> None:
        """Record a decision; :class:`DuplicateApproval` for a second approved ATC."""
        ...

    def authorisations(self, device_id: str) -> list[AuthorisationRow]: ...

    def add_reconciliation(self, row: ReconciliationRow) -> None: ...

    def log_chain_ends(self, device_id: str) -> set[bytes]:
        """Every MAC a verified upload of this device ended on."""
        ...

    def add_audit(self, entry: AuditEntry) -> None: ...
    def audit_entries(self) -> list[AuditEntry]: ...


class Store(Protocol):
    """The server's persistence (SQLite by default)."""

    def transaction(self, *, write: bool = False) -> AbstractContextManager[StoreTransaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...

    def close(self) -> None: ...


# --- SQLite --------------------------------------------------------------------------------

_SCHEMA_1 = """
CREATE TABLE credentials (
    digest      BLOB PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'acquirer', 'device')),
    name        TEXT NOT NULL,
    device_id   TEXT REFERENCES devices (device_id),
    created_at  TEXT NOT NULL
);
CREATE TABLE issuer_certificates (
    scheme             TEXT PRIMARY KEY,
    issuer_identifier  TEXT NOT NULL,
    certificate        BLOB NOT NULL,
    remainder          BLOB NOT NULL,
    exponent           BLOB NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE TABLE tokens (
    token_id            TEXT PRIMARY KEY,
    scheme              TEXT NOT NULL,
    token_pan_digest    BLOB NOT NULL UNIQUE,
    token_pan_sealed    BLOB NOT NULL,
    funding_pan_digest  BLOB NOT NULL,
    funding_pan_sealed  BLOB NOT NULL,
    psn                 TEXT NOT NULL,
    expiry              TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    next_atc            INTEGER NOT NULL CHECK (next_atc BETWEEN 1 AND 65536),
    created_at          TEXT NOT NULL
);
CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    token_id      TEXT NOT NULL UNIQUE REFERENCES tokens (token_id),
    public_point  BLOB NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE batches (
    batch_id    TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (device_id),
    token_id    TEXT NOT NULL REFERENCES tokens (token_id),
    family      TEXT NOT NULL CHECK (family IN ('LUK', 'SUK')),
    created_at  TEXT NOT NULL
);
CREATE TABLE issued_keys (
    token_id          TEXT NOT NULL REFERENCES tokens (token_id),
    family            TEXT NOT NULL CHECK (family IN ('LUK', 'SUK')),
    ident             INTEGER NOT NULL,
    device_id         TEXT NOT NULL REFERENCES devices (device_id),
    batch_id          TEXT NOT NULL REFERENCES batches (batch_id),
    user_verified     INTEGER NOT NULL,
    max_transactions  INTEGER NOT NULL,
    max_amount        INTEGER NOT NULL,
    expiry_hour       INTEGER NOT NULL,
    PRIMARY KEY (token_id, family, ident)
);
CREATE TABLE authorisations (
    authorisation_id  TEXT PRIMARY KEY,
    at                TEXT NOT NULL,
    token_id          TEXT REFERENCES tokens (token_id),
    device_id         TEXT REFERENCES devices (device_id),
    atc               INTEGER,
    family            TEXT,
    key_ident         INTEGER,
    amount            INTEGER,
    arqc              BLOB,
    decision          TEXT NOT NULL CHECK (decision IN ('approved', 'declined')),
    reason            TEXT NOT NULL
);
CREATE UNIQUE INDEX one_approval_per_atc ON authorisations (token_id, atc)
    WHERE decision = 'approved';
CREATE INDEX authorisations_by_key ON authorisations (token_id, family, key_ident);
CREATE INDEX authorisations_by_device ON authorisations (device_id);
CREATE TABLE reconciliations (
    reconciliation_id  TEXT PRIMARY KEY,
    device_id          TEXT NOT NULL REFERENCES devices (device_id),
    at                 TEXT NOT NULL,
    report             TEXT NOT NULL,
    chain_end          BLOB
);
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
"""

_SCHEMA_2 = """
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'token'
    CHECK (kind IN ('token', 'card'));
ALTER TABLE tokens ADD COLUMN cryptogram_version TEXT
    CHECK (cryptogram_version IS NULL OR kind = 'card');
"""

_MIGRATIONS = (_SCHEMA_1, _SCHEMA_2)
"""The schema of version n is _MIGRATIONS[:n], run in order (version 2: plastic cards)."""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class _SqliteTransaction:
    """:class:`StoreTransaction` over one SQLite connection inside BEGIN ... COMMIT."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        return cast(sqlite3.Row | None, self._db.execute(sql, args).fetchone())

    def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self._db.execute(sql, args).fetchall()

    # credentials
    def add_credential(self, row: CredentialRow) -> None:
        self._db.execute(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?)",
            (row.digest, row.role, row.name, row.device_id, row.created_at.isoformat()),
        )

    def credential(self, digest: bytes) -> CredentialRow | None:
        r = self._one("SELECT * FROM credentials WHERE digest = ?", digest)
        if r is None:
            return None
        return CredentialRow(
            r["digest"], r["role"], r["name"], r["device_id"], _at(r["created_at"])
        )

    def has_role(self, role: Role) -> bool:
        return self._one("SELECT 1 FROM credentials WHERE role = ?", role) is not None

    # issuer certificates
    def put_issuer_certificate(self, row: IssuerCertificateRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO issuer_certificates VALUES (?, ?, ?, ?, ?, ?)",
            (
                row.scheme,
                row.issuer_identifier,
                row.certificate,
                row.remainder,
                row.exponent,
                row.created_at.isoformat(),
            ),
        )

    def issuer_certificates(self) -> list[IssuerCertificateRow]:
        return [
            IssuerCertificateRow(
                r["scheme"],
                r["issuer_identifier"],
                r["certificate"],
                r["remainder"],
                r["exponent"],
                _at(r["created_at"]),
            )
            for r in self._all("SELECT * FROM issuer_certificates ORDER BY scheme")
        ]

    # tokens
    def add_token(self, row: TokenRow) -> None:
        self._db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.token_id,
                row.scheme,
                row.token_pan_digest,
                row.token_pan_sealed,
                row.funding_pan_digest,
                row.funding_pan_sealed,
                row.psn,
                row.expiry,
                row.status,
                row.next_atc,
                row.created_at.isoformat(),
                row.kind,
                row.cryptogram_version,
            ),
        )

    @staticmethod
    def _token(r: sqlite3.Row) -> TokenRow:
        return TokenRow(
            r["token_id"],
            r["scheme"],
            r["token_pan_digest"],
            r["token_pan_sealed"],
            r["funding_pan_digest"],
            r["funding_pan_sealed"],
            r["psn"],
            r["expiry"],
            r["status"],
            r["next_atc"],
            _at(r["created_at"]),
            r["kind"],
            r["cryptogram_version"],
        )

    def token(self, token_id: str) -> TokenRow | None:
        r = self._one("SELECT * FROM tokens WHERE token_id = ?", token_id)
        return None if r is None else self._token(r)

    def token_by_pan_digest(self, digest: bytes) -> TokenRow | None:
        r = self._one("SELECT * FROM tokens WHERE token_pan_digest = ?", digest)
        return None if r is None else self._token(r)

    def token_at_atc(self, digest: bytes, atc: int) -> TokenAtAtc | None:
        r = self._one(
            "SELECT *, EXISTS (SELECT 1 FROM authorisations AS a WHERE a.token_id ="
            " tokens.token_id AND a.atc = ? AND a.decision = 'approved') AS atc_approved"
            " FROM tokens WHERE token_pan_digest = ?",
            atc,
            digest,
        )
        return None if r is None else TokenAtAtc(self._token(r), bool(r["atc_approved"]))

    def set_token_status(self, token_id: str, status: TokenStatus) -> None:
        self._db.execute("UPDATE tokens SET status = ? WHERE token_id = ?", (status, token_id))

    def allocate_atcs(self, token_id: str, count: int) -> int:
        # The CHECK on next_atc refuses running past ATC 'FFFF'.
        r = self._one(
            "UPDATE tokens SET next_atc = next_atc + ? WHERE token_id = ? RETURNING next_atc",
            count,
            token_id,
        )
        if r is None:
            raise StoreError(f"token {token_id}: not found")
        return int(r["next_atc"]) - count

    # devices
    def add_device(self, row: DeviceRow) -> None:
        self._db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?)",
            (row.device_id, row.token_id, row.public_point, row.created_at.isoformat()),
        )

    def device(self, device_id: str) -> DeviceRow | None:
        return self._device("SELECT * FROM devices WHERE device_id = ?", device_id)

    def token_device(self, token_id: str) -> DeviceRow | None:
        return self._device("SELECT * FROM devices WHERE token_id = ?", token_id)

    def _device(self, query: str, key: str) -> DeviceRow | None:
        r = self._one(query, key)
        if r is None:
            return None
        return DeviceRow(r["device_id"], r["token_id"], r["public_point"], _at(r["created_at"]))

    # batches and issued keys
    def add_batch(self, row: BatchRow, keys: list[IssuedKeyRow]) -> None:
        self._db.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
            (row.batch_id, row.device_id, row.token_id, row.family, row.created_at.isoformat()),
        )
        self._db.executemany(
            "INSERT INTO issued_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    k.token_id,
                    k.family,
                    k.ident,
                    k.device_id,
                    k.batch_id,
                    int(k.user_verified),
                    k.max_transactions,
                    k.max_amount,
                    k.expiry_hour,
                )
                for k in keys
            ],
        )

    def last_key_ident(self, token_id: str, family: KeyFamily) -> int | None:
        r = self._one(
            "SELECT max(ident) AS last FROM issued_keys WHERE token_id = ? AND family = ?",
            token_id,
            family,
        )
        return None if r is None or r["last"] is None else int(r["last"])

    @staticmethod
    def _issued_key(r: sqlite3.Row) -> IssuedKeyRow:
        return IssuedKeyRow(
            r["token_id"],
            r["device_id"],
            r["family"],
            r["ident"],
            r["batch_id"],
            bool(r["user_verified"]),
            r["max_transactions"],
            r["max_amount"],
            r["expiry_hour"],
        )

    def key_usage(self, token_id: str, family: KeyFamily, ident: int) -> KeyUsage | None:
        r = self._one(
            "SELECT k.*, count(a.authorisation_id) AS approvals,"
            " coalesce(sum(a.amount), 0) AS approved_amount"
            " FROM issued_keys AS k LEFT JOIN authorisations AS a"
            " ON a.token_id = k.token_id AND a.family = k.family AND a.key_ident = k.ident"
            " AND a.decision = 'approved'"
            " WHERE k.token_id = ? AND k.family = ? AND k.ident = ?"
            " GROUP BY k.token_id, k.family, k.ident",
            token_id,
            family,
            ident,
        )
        if r is None:
            return None
        return KeyUsage(self._issued_key(r), int(r["approvals"]), int(r["approved_amount"]))

    def issued_keys(self, device_id: str) -> list[IssuedKeyRow]:
        rows = self._all(
            "SELECT * FROM issued_keys WHERE device_id = ? ORDER BY family, ident",
            device_id,
        )
        return [self._issued_key(r) for r in rows]

    # authorisations
    def add_authorisation(self, row: AuthorisationRow) -> None:
        try:
            self._db.execute(
                "INSERT INTO authorisations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.authorisation_id,
                    row.at.isoformat(),
                    row.token_id,
                    row.device_id,
                    row.atc,
                    row.family,
                    row.key_ident,
                    row.amount,
                    row.arqc,
                    row.decision,
                    row.reason,
                ),
            )
        except sqlite3.IntegrityError as err:
            if "authorisations.token_id, authorisations.atc" in str(err):
                raise DuplicateApproval(
                    f"token {row.token_id}: ATC {row.atc} is already approved"
                ) from None
            raise

    def authorisations(self, device_id: str) -> list[AuthorisationRow]:
        rows = self._all(
            "SELECT * FROM authorisations WHERE device_id = ? ORDER BY at, authorisation_id",
            device_id,
        )
        return [
            AuthorisationRow(
                r["authorisation_id"],
                _at(r["at"]),
                r["token_id"],
                r["device_id"],
                r["atc"],
                r["family"],
                r["key_ident"],
                r["amount"],
                r["arqc"],
                r["decision"],
                r["reason"],
            )
            for r in rows
        ]

    # reconciliations and audit
    def add_reconciliation(self, row: ReconciliationRow) -> None:
        self._db.execute(
            "INSERT INTO reconciliations VALUES (?, ?, ?, ?, ?)",
            (row.reconciliation_id, row.device_id, row.at.isoformat(), row.report, row.chain_end),
        )

    def log_chain_ends(self, device_id: str) -> set[bytes]:
        rows = self._db.execute(
            "SELECT chain_end FROM reconciliations WHERE device_id = ? AND chain_end IS NOT NULL",
            (device_id,),
        ).fetchall()
        return {bytes(r["chain_end"]) for r in rows}

    def add_audit(self, entry: AuditEntry) -> None:
        self._db.execute(
            "INSERT INTO audit (at, actor_role, actor_name, action, subject, result, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.at.isoformat(),
                entry.actor_role,
                entry.actor_name,
                entry.action,
                entry.subject,
                entry.result,
                entry.detail,
            ),
        )

    def audit_entries(self) -> list[AuditEntry]:
        return [
            AuditEntry(
                _at(r["at"]),
                r["actor_role"],
                r["actor_name"],
                r["action"],
                r["subject"],
                r["result"],
                r["detail"],
            )
            for r in self._all("SELECT * FROM audit ORDER BY id")
        ]


class SqliteStore:
    """:class:`Store` in one SQLite file: WAL journal, foreign keys, schema version 2.

    One connection shared by every thread under a lock (SQLite writes one
    transaction at a time anyway); ``busy_timeout`` lets several processes share
    the file, and write transactions start with ``BEGIN IMMEDIATE``.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        """Bring an empty file or an older schema to :data:`SCHEMA_VERSION`, in one
        transaction; refuse a file of a newer or unknown schema version."""
        with self.transaction(write=True):
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if not 0 <= version <= SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {version}, this server knows {SCHEMA_VERSION}"
                )
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[StoreTransaction]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTransaction(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def transaction(self, *, write: bool = False) -> AbstractContextManager[StoreTransaction]:
        """One transaction; ``write`` takes the write lock at once (BEGIN IMMEDIATE)."""
        return self._transaction(write)

    def close(self) -> None:
        with self._lock:
            self._db.close()
