"""Credentials and principals: who may call the token server, and as whom.

A credential is a random secret shown once (32 bytes, URL-safe base64); the
store keeps only its SHA-256, so a copy of the database lets no one in. A
principal is what a credential proves: a role (``admin`` runs the server,
``acquirer`` sends authorisation requests, ``device`` fetches its own batches and
uploads its own log) and a name for the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from hce.server.errors import Forbidden
from hce.server.store import Role

__all__ = ["ROLES", "Principal", "new_secret", "require", "secret_digest"]

ROLES: tuple[Role, ...] = ("admin", "acquirer", "device")
SECRET_BYTES = 32


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; ``device_id`` only for the device role."""

    role: Role
    name: str
    device_id: str | None = None


def new_secret() -> str:
    """A fresh credential secret: 32 random bytes, URL-safe base64 without padding."""
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_digest(secret: str) -> bytes:
    """What the store keeps of a credential: SHA-256 of its text."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def require(actor: Principal, *roles: Role, device_id: str | None = None) -> None:
    """Refuse unless ``actor`` has one of ``roles``; a device may act only on itself."""
    if actor.role not in roles:
        raise Forbidden(f"{actor.role} {actor.name!r} may not do this")
    if actor.role == "device" and actor.device_id != device_id:
        raise Forbidden(f"device {actor.name!r} may act only on its own device")
