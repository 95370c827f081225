"""The token server: vault, device provisioning, authorisation, reconciliation, audit.

:class:`TokenService` is the domain API over an ``Hsm`` (``hce.hsm``) and a
:class:`Store` (:class:`SqliteStore` by default); the HTTP API and the CLI are
thin layers over it. The CBP profile it serves is docs/cbp.md.
"""

from hce.server.authorisation import Authorisation
from hce.server.credentials import Principal
from hce.server.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceError,
    StoreError,
    Unauthorised,
)
from hce.server.reconciliation import ReconciliationReport
from hce.server.service import (
    CardRecord,
    DeviceRecord,
    InitSummary,
    IssuedBatch,
    KeyImport,
    ServerConfig,
    TokenRecord,
    TokenService,
)
from hce.server.store import AuditEntry, SqliteStore, Store

__all__ = [
    "AuditEntry",
    "Authorisation",
    "CardRecord",
    "Conflict",
    "DeviceRecord",
    "Forbidden",
    "InitSummary",
    "InvalidRequest",
    "IssuedBatch",
    "KeyImport",
    "NotFound",
    "Principal",
    "ReconciliationReport",
    "ServerConfig",
    "ServiceError",
    "SqliteStore",
    "Store",
    "StoreError",
    "TokenRecord",
    "TokenService",
    "Unauthorised",
]
