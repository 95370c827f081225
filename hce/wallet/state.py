"""What the wallet file holds, and its JSON encoding (sealed by :mod:`hce.wallet.store`).

Version 1, bytes as uppercase hex::

    {"version": 1, "device_key": PKCS#8 DER, "token_pan": str | null, "token_ref": hex | null,
     "atc": last ATC handed out, "batches": [batch ids loaded],
     "luks": [{"index", "key", "max_transactions", "max_amount", "expiry_hour",
               "uses", "amount_used"}],
     "suks": [{"kind": "SUK" | "SUK_UV", "atc", "key", "max_amount", "expiry_hour"}],
     "log_key": hex | null,
     "log": {"previous": MAC before the first pending entry, "entries": [...], "macs": [...]}}

An SUK-UV is stored as it came in the batch, masked with the PIN mask (docs/cbp.md
"Keys"); the wallet never holds it in clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hce.wallet.errors import WalletCorrupt

__all__ = ["LogState", "LukRecord", "SukRecord", "WalletState"]

VERSION = 1
LOG_START = bytes(8)


def _hex(data: bytes) -> str:
    return data.hex().upper()


@dataclass
class LukRecord:
    """A Visa-like limited-use key and how much of it has been used (docs/cbp.md
    "Limits of a LUK")."""

    index: bytes
    key: bytes = field(repr=False)
    max_transactions: int
    max_amount: int
    expiry_hour: int
    uses: int = 0
    amount_used: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": _hex(self.index),
            "key": _hex(self.key),
            "max_transactions": self.max_transactions,
            "max_amount": self.max_amount,
            "expiry_hour": self.expiry_hour,
            "uses": self.uses,
            "amount_used": self.amount_used,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LukRecord:
        return cls(
            bytes.fromhex(data["index"]),
            bytes.fromhex(data["key"]),
            data["max_transactions"],
            data["max_amount"],
            data["expiry_hour"],
            data["uses"],
            data["amount_used"],
        )


@dataclass
class SukRecord:
    """A Mastercard-like single-use key for one ATC: ``kind`` "SUK", or "SUK_UV" with
    ``key`` still masked by the PIN mask."""

    kind: str
    atc: int
    key: bytes = field(repr=False)
    max_amount: int
    expiry_hour: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "atc": self.atc,
            "key": _hex(self.key),
            "max_amount": self.max_amount,
            "expiry_hour": self.expiry_hour,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SukRecord:
        return cls(
            data["kind"],
            data["atc"],
            bytes.fromhex(data["key"]),
            data["max_amount"],
            data["expiry_hour"],
        )


@dataclass
class LogState:
    """The entries not yet uploaded, their chained MACs, and the MAC before the first
    of them (docs/cbp.md "The transaction log")."""

    previous: bytes = LOG_START
    entries: list[bytes] = field(default_factory=list)
    macs: list[bytes] = field(default_factory=list)

    @property
    def last_mac(self) -> bytes:
        return self.macs[-1] if self.macs else self.previous

    def to_json(self) -> dict[str, Any]:
        return {
            "previous": _hex(self.previous),
            "entries": [_hex(e) for e in self.entries],
            "macs": [_hex(m) for m in self.macs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogState:
        return cls(
            bytes.fromhex(data["previous"]),
            [bytes.fromhex(e) for e in data["entries"]],
            [bytes.fromhex(m) for m in data["macs"]],
        )


@dataclass
class WalletState:
    """Everything the wallet keeps; encoded as one JSON document."""

    device_key: bytes = field(repr=False)
    token_pan: str | None = field(default=None, repr=False)
    token_ref: bytes | None = None
    atc: int = 0
    batches: list[bytes] = field(default_factory=list)
    luks: list[LukRecord] = field(default_factory=list)
    suks: list[SukRecord] = field(default_factory=list)
    log_key: bytes | None = field(default=None, repr=False)
    log: LogState = field(default_factory=LogState)

    def to_bytes(self) -> bytes:
        document = {
            "version": VERSION,
            "device_key": _hex(self.device_key),
            "token_pan": self.token_pan,
            "token_ref": None if self.token_ref is None else _hex(self.token_ref),
            "atc": self.atc,
            "batches": [_hex(b) for b in self.batches],
            "luks": [luk.to_json() for luk in self.luks],
            "suks": [suk.to_json() for suk in self.suks],
            "log_key": None if self.log_key is None else _hex(self.log_key),
            "log": self.log.to_json(),
        }
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> WalletState:
        """Decode; :class:`WalletCorrupt` naming ``where`` for anything unexpected."""
        try:
            document = json.loads(data)
            if document["version"] != VERSION:
                raise WalletCorrupt(f"{where}: unsupported version {document['version']!r}")
            return cls(
                bytes.fromhex(document["device_key"]),
                document["token_pan"],
                _optional_bytes(document["token_ref"]),
                document["atc"],
                [bytes.fromhex(b) for b in document["batches"]],
                [LukRecord.from_json(luk) for luk in document["luks"]],
                [SukRecord.from_json(suk) for suk in document["suks"]],
                _optional_bytes(document["log_key"]),
                LogState.from_json(document["log"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise WalletCorrupt(f"{where}: malformed state ({type(err).__name__})") from None


def _optional_bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)
