"""Where a card's cryptogram keys and counters come from: the two key modes.

* :class:`PlasticKeys`: a classic chip card. The ICC master keys (MK-AC, and MK-CVC3
  for Mastercard mag-stripe) are personalised once (EMV Book 2 Annex A1.4, derived
  from the issuer's IMKs by :mod:`hce.card.issuer`); a session key is derived per
  ATC by the applet. The ATC and the offline counters live in a
  :class:`CounterStore` and are written before any cryptogram leaves the card.
* :class:`HceKeys`: a phone. The keys are limited-use keys in a
  :class:`hce.wallet.Wallet`, which persists the ATC and the key use before it
  grants them (docs/cbp.md).

Both answer :attr:`atc` (the last ATC used, for GET DATA) and
:attr:`offline_capable`; an applet takes the mode-specific path by type
(``match keys: case PlasticKeys(): ...``). No key value appears in a repr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hce.atomic import replace_atomically
from hce.wallet import KeyFamily, LukGrant, SukGrant, Wallet

__all__ = [
    "MAX_ATC",
    "CardKeys",
    "CounterError",
    "CounterStore",
    "Counters",
    "FileCounterStore",
    "HceKeys",
    "MemoryCounterStore",
    "PlasticKeys",
]

MAX_ATC = 0xFFFF


class CounterError(RuntimeError):
    """The card's counters cannot advance (ATC at FFFF) or their file is unreadable."""


@dataclass(frozen=True)
class Counters:
    """The card's persistent counters: the last ATC used (Book 3 Annex A, 9F36), and
    the offline approvals since the last online cryptogram (count and amount)."""

    atc: int = 0
    offline_count: int = 0
    offline_amount: int = 0


class CounterStore(Protocol):
    """Keeps :class:`Counters` across taps (and across process restarts, for a file)."""

    def load(self) -> Counters: ...

    def save(self, counters: Counters) -> None: ...


class MemoryCounterStore:
    """Counters in memory, for tests and throw-away cards."""

    def __init__(self, counters: Counters = Counters()) -> None:
        self._counters = counters

    def load(self) -> Counters:
        return self._counters

    def save(self, counters: Counters) -> None:
        self._counters = counters


class FileCounterStore:
    """Counters in a small JSON file, replaced atomically (:func:`hce.atomic.replace_atomically`):
    a crash leaves the old counters or the new ones, never a reused ATC."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"FileCounterStore({self.path})"

    def load(self) -> Counters:
        if not self.path.exists():
            return Counters()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Counters(int(raw["atc"]), int(raw["offline_count"]), int(raw["offline_amount"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CounterError(f"counter file {self.path} is unreadable: {err}") from None

    def save(self, counters: Counters) -> None:
        data = {
            "atc": counters.atc,
            "offline_count": counters.offline_count,
            "offline_amount": counters.offline_amount,
        }
        replace_atomically(self.path, json.dumps(data).encode("utf-8"))


class CardKeys(Protocol):
    """What every key mode answers."""

    @property
    def atc(self) -> int:
        """The last ATC used (0 before the first cryptogram)."""
        ...

    @property
    def offline_capable(self) -> bool:
        """Whether the card may approve offline in this mode."""
        ...


@dataclass
class PlasticKeys:
    """A chip card's ICC master keys and its counter store."""

    mk_ac: bytes = field(repr=False)
    store: CounterStore
    mk_cvc3: bytes | None = field(default=None, repr=False)

    @property
    def atc(self) -> int:
        return self.store.load().atc

    @property
    def offline_capable(self) -> bool:
        return True

    @property
    def counters(self) -> Counters:
        return self.store.load()

    def next_atc(self, *, offline_amount: int | None = None) -> bytes:
        """Advance the ATC by one and persist it (with the offline counters: an offline
        approval of ``offline_amount`` adds to them, an online or declined one, None,
        leaves them) before returning the new ATC (2 bytes) to use."""
        counters = self.store.load()
        if counters.atc >= MAX_ATC:
            raise CounterError("ATC has reached FFFF: the card is at its end of life")
        if offline_amount is None:
            advanced = Counters(counters.atc + 1, counters.offline_count, counters.offline_amount)
        else:
            advanced = Counters(
                counters.atc + 1,
                counters.offline_count + 1,
                counters.offline_amount + offline_amount,
            )
        self.store.save(advanced)
        return advanced.atc.to_bytes(2, "big")


@dataclass
class HceKeys:
    """A phone's card: limited-use keys from the wallet.

    ``cdcvm`` says the phone verified its user before this tap (Consumer Device
    CVM, Book C-3 CTQ byte 2 bit 8); ``pin`` is the mobile PIN the user entered for
    it, which unmasks the user-verified single-use key (CBP-M SUK-UV, docs/cbp.md);
    ``low_keys`` is the threshold below which the CVR tells the server keys are
    running low (docs/cbp.md "CVR").
    """

    wallet: Wallet
    cdcvm: bool = False
    low_keys: int = 2
    pin: str | None = field(default=None, repr=False)

    @property
    def atc(self) -> int:
        return self.wallet.atc

    @property
    def offline_capable(self) -> bool:
        return False

    def take_luk(self, amount: int) -> LukGrant:
        """CBP-V: the wallet's next ATC and LUK, persisted first (:meth:`Wallet.take_luk`)."""
        return self.wallet.take_luk(amount)

    def take_suk(self, amount: int, pin: str | None = None) -> SukGrant:
        """CBP-M: the wallet's next single-use key, persisted first (:meth:`Wallet.take_suk`)."""
        return self.wallet.take_suk(amount, pin)

    def keys_low(self, family: KeyFamily = "LUK") -> bool:
        """Fewer taps left in ``family`` than :attr:`low_keys`."""
        return self.wallet.usable_keys(family) < self.low_keys
