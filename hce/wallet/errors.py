"""What can go wrong in the wallet: one exception family, messages without secrets.

No message, repr or log line of the wallet carries a key, the PIN or a full PAN
(docs/cbp.md: the phone holds limited-use keys; the PIN only ever unmasks one).
"""

from __future__ import annotations

__all__ = [
    "AmountExceeded",
    "ForeignWallet",
    "KeyExpired",
    "KeysExhausted",
    "ServerError",
    "WalletCorrupt",
    "WalletError",
]


class WalletError(Exception):
    """The wallet refused or failed an operation; the message says why."""


class ForeignWallet(WalletError):
    """The wallet file was sealed under another device secret or device binding."""


class WalletCorrupt(WalletError):
    """The wallet file is not a wallet file, or was altered."""


class WalletChanged(WalletError):
    """Another process changed the wallet file since this wallet read it: open it again."""


class KeysExhausted(WalletError):
    """No key left for this tap: every key used up (or none loaded, or the ATC at its end)."""


class KeyExpired(WalletError):
    """The only keys left are past their expiry hour."""


class AmountExceeded(WalletError):
    """Keys are left, but this amount would take each past its maximum cumulative amount."""


class ServerError(WalletError):
    """The token server could not be reached or refused the request."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
