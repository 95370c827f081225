"""The phone's key store for cloud-based payments (DESIGN.md hce/wallet, docs/cbp.md).

A :class:`Wallet` holds the device key pair made at registration, the limited-use
keys of the batches it has opened, the ATC and the MACed transaction log, all in
one sealed file (:mod:`hce.wallet.store`). Every change is written before it
takes effect: a key is handed out for a tap only once its use and its ATC are on
disk, so a crash at any point never reuses an ATC or a key.

Time is injected: ``clock`` returns hours since 2020-01-01T00:00Z (the unit of a
key's expiry, docs/cbp.md "The batch and its envelope") or an aware datetime.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emv.crypto import ac, cbp, wrap
from emv.crypto.cbp import KeyIndex, MKeyType
from emv.crypto.wrap import BatchHeader, BatchKey, BatchKind
from hce.wallet.errors import (
    AmountExceeded,
    KeyExpired,
    KeysExhausted,
    WalletChanged,
    WalletError,
)
from hce.wallet.grants import Cryptogram, Grant, LukGrant, SukGrant
from hce.wallet.log import Outcome, log_entry
from hce.wallet.state import LukRecord, SukRecord, WalletState
from hce.wallet.store import WalletFile, create_device_secret

__all__ = ["Clock", "KeyFamily", "TokenServer", "Wallet", "hours_since_2020", "system_clock"]

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
MAX_ATC = 0xFFFF
MAX_AMOUNT = 999_999_999_999  # 9F02: 12 BCD digits
PIN_DIGITS = (4, 12)

Clock = Callable[[], "int | datetime"]
KeyFamily = Literal["LUK", "SUK"]


def hours_since_2020(moment: datetime) -> int:
    """Whole hours from 2020-01-01T00:00Z to ``moment`` (an aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return int((moment - EPOCH).total_seconds() // 3600)


def system_clock() -> datetime:
    """The real time, for production use."""
    return datetime.now(UTC)


class TokenServer(Protocol):
    """What the wallet needs from the token server (hce.wallet.client has the HTTP one)."""

    def fetch_batch(self, kind: KeyFamily, count: int, pin: str | None) -> tuple[bytes, bytes]:
        """A new batch for this device: (header, envelope)."""
        ...

    def upload_log(
        self, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
    ) -> dict[str, Any]:
        """Hand the pending log entries (chained from the MAC ``previous``) over for
        reconciliation; the server's report."""
        ...


class Wallet:
    """One device's wallet for one token. Create with :meth:`register`, reopen with
    :meth:`open`; every mutating method persists before it returns."""

    def __init__(self, file: WalletFile, state: WalletState, clock: Clock) -> None:
        self._file = file
        self._state = state
        self._clock = clock
        device_key = serialization.load_der_private_key(state.device_key, None)
        if not isinstance(device_key, ec.EllipticCurvePrivateKey):
            raise WalletError(f"wallet file {file.path}: device key is not an EC key")
        self._device_key = device_key
        self.device_point = wrap.public_point(self._device_key.public_key())
        self.fingerprint = wrap.device_fingerprint(self.device_point)

    # --- life cycle ---------------------------------------------------------------------

    @classmethod
    def register(cls, file: WalletFile, clock: Clock = system_clock) -> Wallet:
        """Make the device's P-256 key pair and a new wallet file (and the device secret,
        if the device has none yet). The server learns the device by :attr:`device_point`
        and names it by :attr:`fingerprint`."""
        if file.exists():
            raise WalletError(f"wallet file {file.path} already exists")
        if not file.secret_path.exists():
            create_device_secret(file.secret_path)
        private = ec.generate_private_key(ec.SECP256R1())
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        state = WalletState(device_key=der)
        file.save(state.to_bytes())
        return cls(file, state, clock)

    @classmethod
    def open(cls, file: WalletFile, clock: Clock = system_clock) -> Wallet:
        """Open an existing wallet; ForeignWallet / WalletCorrupt when it cannot be."""
        return cls(file, WalletState.from_bytes(file.load(), f"wallet file {file.path}"), clock)

    def __repr__(self) -> str:
        device = self.fingerprint[:4].hex().upper()
        return f"Wallet({self._file.path}, device {device}, ATC {self.atc})"

    def _commit(self, state: WalletState) -> None:
        """Persist ``state`` (atomically), then make it the wallet's.

        Under the wallet's lock the file must still hold what this wallet last read or
        wrote: if another process has changed it since (a second wallet on the same
        file), :class:`WalletChanged` is raised and nothing is written, so two
        processes can never hand out the same ATC or key."""
        with self._file.locked():
            if self._file.load() != self._state.to_bytes():
                raise WalletChanged(
                    f"wallet file {self._file.path} was changed by another process: open it again"
                )
            self._file.save(state.to_bytes())
        self._state = state

    def _hour(self) -> int:
        now = self._clock()
        return hours_since_2020(now) if isinstance(now, datetime) else now

    # --- what it holds --------------------------------------------------------------------

    @property
    def atc(self) -> int:
        """The last ATC handed out (0 before the first tap)."""
        return self._state.atc

    @property
    def token_ref(self) -> bytes | None:
        return self._state.token_ref

    def enrol(self, token_pan: str, token_ref: bytes) -> None:
        """Bind the wallet to its token: the token PAN (salt of the PIN mask) and the
        token reference that batch headers carry. Once only."""
        if self._state.token_ref is not None:
            raise WalletError("wallet is already enrolled for a token")
        if not (token_pan.isascii() and token_pan.isdigit() and 12 <= len(token_pan) <= 19):
            raise WalletError("token PAN must be 12 to 19 digits")
        state = copy.deepcopy(self._state)
        state.token_pan, state.token_ref = token_pan, token_ref
        self._commit(state)

    def usable_keys(self, family: KeyFamily) -> int:
        """Taps left: remaining LUK transactions, or SUKs ahead of the ATC, unexpired."""
        hour = self._hour()
        if family == "LUK":
            return sum(
                luk.max_transactions - luk.uses
                for luk in self._state.luks
                if hour < luk.expiry_hour
            )
        return sum(
            1
            for suk in self._state.suks
            if suk.kind == "SUK" and suk.atc > self.atc and hour < suk.expiry_hour
        )

    # --- batches ----------------------------------------------------------------------------

    def load_batch(self, header: bytes, envelope: bytes) -> int:
        """Open a batch sealed for this device (:func:`emv.crypto.wrap.unwrap_batch`) and
        add its keys; the number of keys added. Refuses a batch for another device or
        token, or one already loaded."""
        if self._state.token_ref is None:
            raise WalletError("wallet is not enrolled: no token to load keys for")
        try:
            parsed = BatchHeader.from_bytes(header)
            if parsed.device != self.fingerprint:
                raise WalletError("batch header names another device")
            if parsed.token != self._state.token_ref:
                raise WalletError("batch header names another token")
            if parsed.batch_id in self._state.batches:
                raise WalletError(f"batch {parsed.batch_id.hex().upper()} is already loaded")
            keys = wrap.decode_batch(wrap.unwrap_batch(self._device_key, envelope, header))
        except wrap.WrapError as err:
            raise WalletError(f"batch refused: {err}") from None
        state = copy.deepcopy(self._state)
        state.batches.append(parsed.batch_id)
        added = sum(self._add_key(state, key) for key in keys)
        self._commit(state)
        return added

    def _add_key(self, state: WalletState, key: BatchKey) -> bool:
        """Put one batch key into ``state``; False when it adds nothing (an ATC already
        passed, a LUK index or the log key already held). Every batch carries the log key."""
        if key.kind == BatchKind.LOG:
            if key.ident != self.fingerprint[:4]:
                raise WalletError("batch log key is for another device")
            if state.log_key not in (None, key.value):
                raise WalletError("batch log key differs from the wallet's")
            added = state.log_key is None
            state.log_key = key.value
            return added
        if key.kind == BatchKind.LUK:
            if any(luk.index == key.ident for luk in state.luks):
                return False
            state.luks.append(
                LukRecord(
                    key.ident, key.value, key.max_transactions, key.max_amount, key.expiry_hour
                )
            )
            return True
        atc = int.from_bytes(key.ident, "big")
        if atc <= state.atc or atc > MAX_ATC:
            return False
        state.suks.append(SukRecord(key.kind.name, atc, key.value, key.max_amount, key.expiry_hour))
        return True

    # --- taps -------------------------------------------------------------------------------

    def take_luk(self, amount: int) -> LukGrant:
        """CBP-V: the next ATC and a LUK good for ``amount`` (minor units), its use
        recorded on disk first (docs/cbp.md "Limits of a LUK")."""
        _check_amount(amount)
        hour = self._hour()
        atc = self._next_atc(self._state.atc)
        luks = self._state.luks
        usable = [k for k in luks if k.uses < k.max_transactions and hour < k.expiry_hour]
        fits = [k for k in usable if k.amount_used + amount <= k.max_amount]
        if not fits:
            raise _refusal("LUK", bool(usable), bool(luks), amount)
        state = copy.deepcopy(self._state)
        luk = state.luks[luks.index(fits[0])]
        luk.uses += 1
        luk.amount_used += amount
        state.atc = atc
        state.luks = [k for k in state.luks if k.uses < k.max_transactions]
        state.suks = [s for s in state.suks if s.atc > atc]
        self._commit(state)
        return LukGrant(luk.key, KeyIndex.from_bytes(luk.index), luk.uses, _atc(atc), amount)

    def take_suk(self, amount: int, pin: str | None = None) -> SukGrant:
        """CBP-M: the single-use key of the next ATC that has one; with ``pin`` the SUK-UV,
        unmasked with :func:`emv.crypto.cbp.pin_key` (a wrong PIN gives a wrong key that
        fails online). Keys of the ATCs passed over are dropped."""
        if pin is not None and not (
            pin.isascii() and pin.isdigit() and PIN_DIGITS[0] <= len(pin) <= PIN_DIGITS[1]
        ):
            raise WalletError("PIN must be 4 to 12 digits")
        _check_amount(amount)
        kind = "SUK" if pin is None else "SUK_UV"
        hour = self._hour()
        ahead = [s for s in self._state.suks if s.kind == kind and s.atc > self._state.atc]
        usable = [s for s in ahead if hour < s.expiry_hour]
        fits = sorted((s for s in usable if amount <= s.max_amount), key=lambda s: s.atc)
        if not fits:
            raise _refusal(kind, bool(usable), bool(ahead), amount)
        chosen = fits[0]
        state = copy.deepcopy(self._state)
        state.atc = chosen.atc
        state.suks = [s for s in state.suks if s.atc > chosen.atc]
        self._commit(state)
        if pin is None:
            return SukGrant(chosen.key, MKeyType.SUK, _atc(chosen.atc), amount)
        assert self._state.token_pan is not None  # enrolled before any key was loaded
        key = cbp.unmask_key(chosen.key, cbp.pin_key(pin, self._state.token_pan))
        return SukGrant(key, MKeyType.SUK_UV, _atc(chosen.atc), amount)

    @staticmethod
    def _next_atc(atc: int) -> int:
        if atc >= MAX_ATC:
            raise KeysExhausted("ATC has reached FFFF: the token needs a new card profile")
        return atc + 1

    # --- the transaction log --------------------------------------------------------------

    def record(
        self,
        grant: Grant,
        data: ac.CryptogramData,
        cryptogram: Cryptogram,
        cid: bytes,
        outcome: Outcome,
    ) -> bytes:
        """Append the tap's E2 entry, chained under the log key; its MAC."""
        if self._state.log_key is None:
            raise WalletError("no log key loaded: the log cannot be MACed")
        entry = log_entry(data, cryptogram.arqc, cid, grant.key_ident, outcome)
        state = copy.deepcopy(self._state)
        mac = cbp.chain_log_mac(self._state.log_key, state.log.last_mac, entry)
        state.log.entries.append(entry)
        state.log.macs.append(mac)
        self._commit(state)
        return mac

    def pending_log(self) -> tuple[bytes, list[bytes], list[bytes]]:
        """The log not yet uploaded: the MAC it chains from, its entries and their MACs."""
        log = self._state.log
        return log.previous, list(log.entries), list(log.macs)

    # --- the server -------------------------------------------------------------------------

    def upload_log(self, server: TokenServer) -> dict[str, Any]:
        """Upload the pending entries; once the server has taken them, drop them (the
        chain goes on from the last MAC)."""
        log = self._state.log
        if not log.entries:
            return {}
        report = server.upload_log(log.previous, log.entries, log.macs)
        state = copy.deepcopy(self._state)
        state.log.previous = log.last_mac
        state.log.entries, state.log.macs = [], []
        self._commit(state)
        return report

    def replenish_if_low(
        self,
        server: TokenServer,
        threshold: int,
        *,
        family: KeyFamily = "LUK",
        count: int = 10,
        pin: str | None = None,
    ) -> int:
        """Fetch and load a batch of ``count`` keys when fewer than ``threshold`` taps are
        left in ``family``; the number of keys added (0 if none was needed)."""
        if self.usable_keys(family) >= threshold:
            return 0
        header, envelope = server.fetch_batch(family, count, pin)
        return self.load_batch(header, envelope)


def _atc(atc: int) -> bytes:
    return atc.to_bytes(2, "big")


def _check_amount(amount: int) -> None:
    if not 0 <= amount <= MAX_AMOUNT:
        raise WalletError(f"amount {amount} is not 0 to 12 digits of minor units")


def _refusal(kind: str, unexpired: bool, any_left: bool, amount: int) -> WalletError:
    """The most useful reason no key fits: amount, then expiry, then exhaustion."""
    if unexpired:
        return AmountExceeded(f"no {kind} allows an amount of {amount} more")
    if any_left:
        return KeyExpired(f"every {kind} left has expired")
    return KeysExhausted(f"no {kind} left")
