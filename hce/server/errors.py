"""What a token server operation can refuse, one class per answer a client gets.

The HTTP layer maps them to status codes (400, 401, 403, 404, 409); every message
names the object and what is wrong with it, never a PAN, key, PIN or credential.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An operation was refused; the message says why."""


class InvalidRequest(ServiceError):
    """The arguments are malformed or do not fit together."""


class Unauthorised(ServiceError):
    """No principal holds the credential presented."""


class Forbidden(ServiceError):
    """The principal's role may not do this (or not to this object)."""


class NotFound(ServiceError):
    """No token, device or batch with that id."""


class Conflict(ServiceError):
    """The object is in a state that forbids the operation (suspended, exhausted, taken)."""


class StoreError(ServiceError):
    """The database cannot be used (unknown schema version, corrupt file)."""
