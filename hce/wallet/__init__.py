"""The phone's wallet for cloud-based payments (DESIGN.md hce/wallet, docs/cbp.md):
device key, limited-use keys, ATC and MACed transaction log in one file sealed to
the device, and replenishment from the token server."""

from hce.wallet.client import HttpTokenServer
from hce.wallet.errors import (
    AmountExceeded,
    ForeignWallet,
    KeyExpired,
    KeysExhausted,
    ServerError,
    WalletChanged,
    WalletCorrupt,
    WalletError,
)
from hce.wallet.grants import Cryptogram, Grant, LukGrant, SukGrant
from hce.wallet.log import Outcome, first_bad_entry, log_entry
from hce.wallet.store import WalletFile
from hce.wallet.wallet import (
    Clock,
    KeyFamily,
    TokenServer,
    Wallet,
    hours_since_2020,
    system_clock,
)

__all__ = [
    "AmountExceeded",
    "Clock",
    "Cryptogram",
    "ForeignWallet",
    "Grant",
    "HttpTokenServer",
    "KeyExpired",
    "KeyFamily",
    "KeysExhausted",
    "LukGrant",
    "Outcome",
    "ServerError",
    "SukGrant",
    "TokenServer",
    "Wallet",
    "WalletChanged",
    "WalletCorrupt",
    "WalletError",
    "WalletFile",
    "first_bad_entry",
    "hours_since_2020",
    "log_entry",
    "system_clock",
]
