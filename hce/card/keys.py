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

A command that needs a plastic card's counters reads them once
(:attr:`PlasticKeys.counters`), decides from them, and advances the ATC from those
(:meth:`PlasticKeys.advance`).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, Protocol

from emv.crypto import des, kd
from emv.crypto.checks import require_length
from hce.atomic import replace_atomically
from hce.wallet import KeyFamily, LukGrant, SukGrant, Wallet

__all__ = [
    "MAX_ATC",
    "RECORD_SIZE",
    "SLOT_OFFSETS",
    "AtcExhausted",
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
    """The card's counters cannot be read or written: their file is unreadable or holds
    no valid record, a write fell short, or they do not fit a record.

    The card answers such a command '6F00' (no precise diagnosis, ISO/IEC 7816-4 §5.6,
    :class:`hce.card.card.Card`), whichever command met it (GET DATA, GET PROCESSING
    OPTIONS, GENERATE AC, COMPUTE CRYPTOGRAPHIC CHECKSUM): the failure is inside the
    card and no other command, order or interface would get past it. '6985' (conditions
    of use not satisfied) is kept for what the card refuses by its own rules, as
    :class:`AtcExhausted`; a kernel takes it as "try another interface" (Book C-3) or
    "select next" (Book C-2), which a card with broken counters does not deserve.
    """


class AtcExhausted(CounterError):
    """The ATC has reached FFFF (Book 3 Annex A, 9F36 is 2 bytes): the card is at its end
    of life and refuses every new cryptogram, '6985' (conditions of use not satisfied)."""


@dataclass(frozen=True)
class Counters:
    """The card's persistent counters: the last ATC used (Book 3 Annex A, 9F36), and
    the offline approvals counted (count and amount). A card resets those after an
    online transaction with issuer authentication (a verified ARPC or CSU, VIS 1.5
    §13.6.2.2), which a contactless tap does not bring; emvtap's cards keep them."""

    atc: int = 0
    offline_count: int = 0
    offline_amount: int = 0

    @property
    def atc_bytes(self) -> bytes:
        """The ATC as the card sends it (9F36, b 2)."""
        return self.atc.to_bytes(2, "big")


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


SLOT_OFFSETS = (0, 4096)
"""Where the two slots of a counter file start: 4 KiB apart, each in its own block."""
_MAGIC = b"ETC1"
_BODY = struct.Struct(">4sQQQQ")  # magic, sequence, ATC, offline count, offline amount
_CRC = struct.Struct(">I")
RECORD_SIZE = _BODY.size + _CRC.size
"""The bytes of one counter record: 36 of data and a CRC-32."""


class _Slot(NamedTuple):
    """A valid record: where it is, its sequence number, its counters."""

    offset: int
    sequence: int
    counters: Counters


class _BadSlot(Exception):
    """A slot that holds no valid record; the message says why."""


def _sequence(slot: _Slot) -> int:
    return slot.sequence


def _record(sequence: int, counters: Counters) -> bytes:
    """One slot's bytes: the record and its CRC-32."""
    try:
        body = _BODY.pack(
            _MAGIC, sequence, counters.atc, counters.offline_count, counters.offline_amount
        )
    except struct.error:
        raise CounterError(f"{counters} do not fit a counter record (8 bytes each)") from None
    return body + _CRC.pack(zlib.crc32(body))


def _parse_slot(offset: int, raw: bytes) -> _Slot:
    """The record read at ``offset`` (up to :data:`RECORD_SIZE` bytes), or :class:`_BadSlot`."""
    if not raw:
        raise _BadSlot("missing (the file ends before it)")
    if len(raw) < RECORD_SIZE:
        raise _BadSlot(f"short: {len(raw)} of {RECORD_SIZE} bytes")
    body = raw[: _BODY.size]
    magic, sequence, atc, offline_count, offline_amount = _BODY.unpack(body)
    if magic != _MAGIC:
        raise _BadSlot(f"not a counter record (it starts {magic.hex().upper()})")
    if _CRC.unpack_from(raw, _BODY.size)[0] != zlib.crc32(body):
        raise _BadSlot("CRC-32 mismatch (a torn or damaged record)")
    return _Slot(offset, sequence, Counters(atc, offline_count, offline_amount))


def _read_slots(fd: int) -> tuple[list[_Slot], list[str]]:
    """The valid records of the file open as ``fd`` (read at once: one system call), and
    what is wrong with the other slots."""
    content = os.pread(fd, SLOT_OFFSETS[-1] + RECORD_SIZE, 0)
    slots: list[_Slot] = []
    problems: list[str] = []
    for offset in SLOT_OFFSETS:
        try:
            slots.append(_parse_slot(offset, content[offset : offset + RECORD_SIZE]))
        except _BadSlot as bad:
            problems.append(f"slot at offset {offset}: {bad}")
    return slots, problems


class FileCounterStore:
    """Counters in a file of two fixed-size record slots: a save is one write and one
    ``fdatasync``, and a crash at any point leaves the counters of the last completed
    save, or the ones before it; never a reused ATC.

    The file (all numbers big-endian) has two slots (:data:`SLOT_OFFSETS`), each in its
    own 4 KiB block so that tearing one cannot touch the other. A slot holds one record
    of :data:`RECORD_SIZE` bytes: the magic ``ETC1``, a sequence number, the ATC, the
    offline count and the offline amount (8 bytes each), then the CRC-32 of those 36
    bytes (4 bytes).

    * :meth:`load` takes the valid record with the highest sequence number. A slot
      that is missing, short, not a record or fails its CRC does not count (a save torn
      by a crash leaves its slot so); a file with no valid record is a
      :class:`CounterError` that names the file and, for each slot, its offset and
      what is wrong. No file at all: the counters of a new card.
    * :meth:`save` writes the next sequence number into the slot that does not hold the
      newest valid record (``pwrite``, then ``fdatasync``) and returns only then, so a
      cryptogram never leaves the card before its ATC is on disk. A torn save leaves
      the newest record standing, and the ATC the torn save was writing never left the
      card. The first save makes the file whole through
      :func:`hce.atomic.replace_atomically`, so a new file is never torn either.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"FileCounterStore({self.path})"

    def load(self) -> Counters:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return Counters()
        except OSError as err:
            raise CounterError(f"counter file {self.path} is unreadable: {err}") from None
        try:
            slots, problems = _read_slots(fd)
        except OSError as err:
            raise CounterError(f"counter file {self.path} is unreadable: {err}") from None
        finally:
            os.close(fd)
        if not slots:
            raise CounterError(
                f"counter file {self.path} holds no valid record: {'; '.join(problems)}"
            )
        return max(slots, key=_sequence).counters

    def save(self, counters: Counters) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            replace_atomically(self.path, _record(1, counters))
            return
        try:
            newest = max(_read_slots(fd)[0], key=_sequence, default=None)
            if newest is None:
                offset, sequence = SLOT_OFFSETS[0], 1
            else:
                offset = SLOT_OFFSETS[1] if newest.offset == SLOT_OFFSETS[0] else SLOT_OFFSETS[0]
                sequence = newest.sequence + 1
            record = _record(sequence, counters)
            if os.pwrite(fd, record, offset) != len(record):
                raise CounterError(f"counter file {self.path}: short write at offset {offset}")
            os.fdatasync(fd)
        finally:
            os.close(fd)


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


@dataclass(frozen=True)
class PlasticKeys:
    """A chip card's ICC master keys and its counter store. MK-AC is a DES2 key (Book 2
    A1.4.1), fixed for the life of the card: its cipher is made once, at the first
    session key (one thread at a time, as the card itself)."""

    mk_ac: bytes = field(repr=False)
    store: CounterStore
    mk_cvc3: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        require_length("mk_ac", self.mk_ac, 16)

    @property
    def atc(self) -> int:
        return self.store.load().atc

    @property
    def offline_capable(self) -> bool:
        return True

    @property
    def counters(self) -> Counters:
        """The counters as the store holds them now (one read)."""
        return self.store.load()

    def advance(self, counters: Counters, *, offline_amount: int | None = None) -> Counters:
        """``counters``, read by this command, with the ATC advanced by one (and, for an
        offline approval of ``offline_amount``, the offline counters; an online or
        declined one, None, leaves them), persisted before they are returned: the new
        ATC is the one to use. :class:`AtcExhausted` at FFFF."""
        if counters.atc >= MAX_ATC:
            raise AtcExhausted("ATC has reached FFFF: the card is at its end of life")
        if offline_amount is None:
            advanced = Counters(counters.atc + 1, counters.offline_count, counters.offline_amount)
        else:
            advanced = Counters(
                counters.atc + 1,
                counters.offline_count + 1,
                counters.offline_amount + offline_amount,
            )
        self.store.save(advanced)
        return advanced

    def common_session_key(self, r: bytes) -> bytes:
        """The TDEA common session key of MK-AC for the 8-byte diversification value R
        (Book 2 A1.3.1, :func:`emv.crypto.kd.derive_common_sk`): DES3(MK-AC)[F1] ||
        DES3(MK-AC)[F2], odd parity."""
        return kd.derive_des2_with(self._mk_ac_cipher, kd.common_sk_derivation_data(r))

    @cached_property
    def _mk_ac_cipher(self) -> des.TdeaEcb:
        return des.TdeaEcb(self.mk_ac)


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
