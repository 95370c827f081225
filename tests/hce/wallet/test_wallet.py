"""The wallet (DESIGN.md hce/wallet, docs/cbp.md): registration, batches, taps and
their limits, cryptograms, the MACed log, the sealed file, replenishment."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from emv import tlv
from emv.crypto import cbp, wrap
from emv.crypto.cbp import CbpMIad, CbpVIad, KeyIndex, MKeyType
from emv.crypto.wrap import BatchKind
from hce.wallet import (
    AmountExceeded,
    ForeignWallet,
    KeyExpired,
    KeysExhausted,
    Outcome,
    Wallet,
    WalletCorrupt,
    WalletError,
    WalletFile,
    first_bad_entry,
    hours_since_2020,
)
from hce.wallet import store as store_module

if TYPE_CHECKING:
    from conftest import Clock, Issuer

CVR = bytes.fromhex("00000000")
Load = Callable[..., int]


def _tap_luk(wallet: Wallet, issuer: Issuer, amount: int = 100) -> bytes:
    grant = wallet.take_luk(amount)
    data = issuer.terminal_data(grant.atc, amount)
    return wallet.record(
        grant, data, grant.cryptogram(data, CVR), b"\x80", Outcome.ONLINE_REQUESTED
    )


# --- registration -------------------------------------------------------------------------


def test_registration_makes_a_p256_key_pair_named_by_its_fingerprint(
    wallet_file: WalletFile, clock: Clock
) -> None:
    wallet = Wallet.register(wallet_file, clock)
    assert len(wallet.device_point) == 65 and wallet.device_point[0] == 0x04
    assert wallet.fingerprint == wrap.device_fingerprint(wallet.device_point)
    assert wallet_file.secret_path.stat().st_size == 32
    assert Wallet.open(wallet_file, clock).device_point == wallet.device_point
    with pytest.raises(WalletError, match="already exists"):
        Wallet.register(wallet_file, clock)


def test_two_registrations_make_two_devices(tmp_path: Path, clock: Clock) -> None:
    secret = tmp_path / "secret"
    one = Wallet.register(WalletFile(tmp_path / "a", secret, "hw"), clock)
    two = Wallet.register(WalletFile(tmp_path / "b", secret, "hw"), clock)
    assert one.fingerprint != two.fingerprint


# --- batches ------------------------------------------------------------------------------


def test_load_batch_adds_keys_once(wallet: Wallet, issuer: Issuer) -> None:
    header, envelope = issuer.seal(wallet.device_point, [issuer.luk(0), issuer.luk(1)])
    assert wallet.load_batch(header, envelope) == 2
    assert wallet.usable_keys("LUK") == 6
    with pytest.raises(WalletError, match="already loaded"):
        wallet.load_batch(header, envelope)
    assert wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(1)])) == 0


def test_load_batch_refuses_batches_not_for_this_wallet(wallet: Wallet, issuer: Issuer) -> None:
    other = wrap.public_point(wrap.ec.generate_private_key(wrap.ec.SECP256R1()).public_key())
    with pytest.raises(WalletError, match="another device"):
        wallet.load_batch(*issuer.seal(other, [issuer.luk(0)]))
    with pytest.raises(WalletError, match="another token"):
        wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(0)], token=b"token-02"))
    sealed_for_other = issuer.seal(other, [issuer.luk(0)], device=wallet.fingerprint)
    with pytest.raises(WalletError, match="authentication failed"):
        wallet.load_batch(*sealed_for_other)
    assert wallet.usable_keys("LUK") == 0


def test_load_batch_needs_enrolment(wallet_file: WalletFile, clock: Clock, issuer: Issuer) -> None:
    wallet = Wallet.register(wallet_file, clock)
    with pytest.raises(WalletError, match="not enrolled"):
        wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(0)]))
    wallet.enrol(issuer.PAN, issuer.TOKEN)
    with pytest.raises(WalletError, match="already enrolled"):
        wallet.enrol(issuer.PAN, issuer.TOKEN)


# --- CBP-V taps ---------------------------------------------------------------------------


def test_luk_taps_advance_the_atc_and_the_use_count(
    wallet: Wallet, load: Load, issuer: Issuer
) -> None:
    load([issuer.luk(0, max_transactions=2), issuer.luk(1, max_transactions=2)])
    grants = [wallet.take_luk(100) for _ in range(4)]
    assert [g.atc for g in grants] == [bytes((0, n)) for n in (1, 2, 3, 4)]
    assert [g.use_count for g in grants] == [1, 2, 1, 2]
    assert [g.key_index.sequence for g in grants] == [0, 0, 1, 1]
    assert wallet.atc == 4
    with pytest.raises(KeysExhausted, match="no LUK left"):
        wallet.take_luk(100)
    assert wallet.atc == 4


def test_luk_refuses_an_amount_past_its_maximum(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(0, max_transactions=5, max_amount=1_000)])
    wallet.take_luk(600)
    with pytest.raises(AmountExceeded, match="amount of 500"):
        wallet.take_luk(500)
    assert wallet.take_luk(400).use_count == 2
    assert wallet.atc == 2


def test_luk_refuses_once_expired(wallet: Wallet, load: Load, clock: Clock, issuer: Issuer) -> None:
    load([issuer.luk(0)])
    clock.hour = issuer.NOW + 23
    assert wallet.take_luk(1).atc == b"\x00\x01"
    clock.hour = issuer.NOW + 24
    with pytest.raises(KeyExpired):
        wallet.take_luk(1)
    assert wallet.usable_keys("LUK") == 0


def test_a_datetime_clock_works_too(wallet_file: WalletFile, issuer: Issuer) -> None:
    moment = datetime(2026, 11, 5, 0, 30, tzinfo=UTC)
    assert hours_since_2020(moment) == issuer.NOW
    wallet = Wallet.register(wallet_file, lambda: moment)
    wallet.enrol(issuer.PAN, issuer.TOKEN)
    wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(0)]))
    assert wallet.usable_keys("LUK") == 3
    later = Wallet.open(wallet_file, lambda: datetime(2026, 11, 6, 0, 0, tzinfo=UTC))
    with pytest.raises(KeyExpired):
        later.take_luk(1)


def test_cbp_v_arqc_equals_the_profile(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(7)])
    wallet.take_luk(100)
    grant = wallet.take_luk(1500)
    data = issuer.terminal_data(grant.atc, 1500)
    cryptogram = grant.cryptogram(data, CVR)
    index = KeyIndex(issuer.NOW, 7)
    expected_iad = CbpVIad(index, CVR, 2)
    luk = cbp.derive_luk(issuer.MK, index.to_bytes())
    assert grant.key == luk
    assert cryptogram.iad == expected_iad.to_bytes()
    assert cryptogram.arqc == cbp.cbp_v_arqc(luk, data, expected_iad)
    with pytest.raises(WalletError, match="ATC"):
        grant.cryptogram(issuer.terminal_data(b"\x00\x09", 1500), CVR)
    with pytest.raises(WalletError, match="amount"):
        grant.cryptogram(issuer.terminal_data(grant.atc, 1501), CVR)


# --- CBP-M taps ---------------------------------------------------------------------------


def test_suk_taps_use_the_key_of_each_atc(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load(issuer.suks([1, 2, 5]), BatchKind.SUK)
    grants = [wallet.take_suk(100) for _ in range(3)]
    assert [g.atc for g in grants] == [b"\x00\x01", b"\x00\x02", b"\x00\x05"]
    for grant in grants:
        assert grant.key_type == MKeyType.SUK
        assert grant.key == cbp.derive_suk(issuer.MK, grant.atc)
        data = issuer.terminal_data(grant.atc, 100)
        iad = CbpMIad(MKeyType.SUK, CVR)
        assert grant.cryptogram(data, CVR).arqc == cbp.cbp_m_arqc(grant.key, data, iad)
    with pytest.raises(KeysExhausted, match="no SUK left"):
        wallet.take_suk(100)


def test_suk_uv_unmasks_only_with_the_right_pin(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load(issuer.suks([1, 2]), BatchKind.SUK)
    right = wallet.take_suk(100, pin=issuer.PIN)
    wrong = wallet.take_suk(100, pin="1357")
    assert right.key_type == wrong.key_type == MKeyType.SUK_UV
    assert right.key == cbp.derive_suk_uv(issuer.MK, b"\x00\x01")
    assert wrong.key != cbp.derive_suk_uv(issuer.MK, b"\x00\x02")
    data = issuer.terminal_data(right.atc, 100)
    iad = CbpMIad(MKeyType.SUK_UV, CVR)
    assert right.cryptogram(data, CVR).iad == iad.to_bytes()
    assert right.cryptogram(data, CVR).arqc == cbp.cbp_m_arqc(right.key, data, iad)


def test_suk_keys_of_passed_atcs_are_dropped(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load(issuer.suks([1, 2, 3]), BatchKind.SUK)
    load([issuer.luk(0)])
    assert wallet.take_suk(100, pin=issuer.PIN).atc == b"\x00\x01"
    assert wallet.take_luk(100).atc == b"\x00\x02"
    assert wallet.take_suk(100).atc == b"\x00\x03"
    assert wallet.usable_keys("SUK") == 0
    assert load(issuer.suks([2, 3, 4]), BatchKind.SUK) == 2  # only ATC 4 is ahead


def test_suk_refusals(wallet: Wallet, load: Load, issuer: Issuer, clock: Clock) -> None:
    load(issuer.suks([1], max_amount=500), BatchKind.SUK)
    with pytest.raises(AmountExceeded):
        wallet.take_suk(501)
    clock.hour = issuer.NOW + 24
    with pytest.raises(KeyExpired):
        wallet.take_suk(100, pin=issuer.PIN)
    with pytest.raises(WalletError, match="PIN must be") as refused:
        wallet.take_suk(100, pin="12a45")
    assert "12a45" not in str(refused.value)
    assert wallet.atc == 0


# --- the transaction log ------------------------------------------------------------------


def test_log_entries_chain_under_the_log_key(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(0)])
    macs = [_tap_luk(wallet, issuer, amount) for amount in (100, 200, 300)]
    previous, entries, pending_macs = wallet.pending_log()
    assert previous == bytes(8) and pending_macs == macs
    log_key = cbp.derive_log_key(issuer.MK, wallet.fingerprint)
    chained = bytes(8)
    for entry, mac in zip(entries, macs, strict=True):
        chained = cbp.chain_log_mac(log_key, chained, entry)
        assert mac == chained
    fields = tlv.index(tlv.decode(entries[1]))
    assert tlv.decode(entries[1])[0].tag == 0xE2
    assert fields[0x9F36] == b"\x00\x02"
    assert fields[0x9F02] == bytes.fromhex("000000000200")
    assert fields[0xC2] == KeyIndex(issuer.NOW, 0).to_bytes()
    assert fields[0xCB] == b"\x01"
    assert first_bad_entry(log_key, previous, entries, macs) is None


def test_log_tampering_is_detected(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(0)])
    for _ in range(3):
        _tap_luk(wallet, issuer)
    previous, entries, macs = wallet.pending_log()
    log_key = cbp.derive_log_key(issuer.MK, wallet.fingerprint)
    altered = [entries[0], entries[1][:-1] + b"\x03", entries[2]]
    assert first_bad_entry(log_key, previous, altered, macs) == 1
    assert first_bad_entry(log_key, previous, [entries[0], entries[2]], [macs[0], macs[2]]) == 1
    assert first_bad_entry(log_key, previous, entries[1:], macs[1:]) == 0
    assert first_bad_entry(log_key, previous, entries, macs[:2]) == 2


def test_record_needs_the_log_key(wallet_file: WalletFile, clock: Clock, issuer: Issuer) -> None:
    wallet = Wallet.register(wallet_file, clock)
    wallet.enrol(issuer.PAN, issuer.TOKEN)
    wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(0)]))
    grant = wallet.take_luk(100)
    data = issuer.terminal_data(grant.atc, 100)
    with pytest.raises(WalletError, match="no log key"):
        wallet.record(grant, data, grant.cryptogram(data, CVR), b"\x80", Outcome.DECLINED)


# --- the sealed file ----------------------------------------------------------------------


def test_reopening_keeps_the_state(
    wallet: Wallet, wallet_file: WalletFile, load: Load, issuer: Issuer, clock: Clock
) -> None:
    load([issuer.luk(0)])
    _tap_luk(wallet, issuer)
    reopened = Wallet.open(wallet_file, clock)
    assert reopened.atc == 1
    assert reopened.pending_log() == wallet.pending_log()
    grant = reopened.take_luk(100)
    assert (grant.atc, grant.use_count) == (b"\x00\x02", 2)


@pytest.mark.parametrize("change", ["secret", "binding"])
def test_a_copied_wallet_does_not_open_on_another_device(
    wallet: Wallet, wallet_file: WalletFile, tmp_path: Path, clock: Clock, change: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "wallet.bin"
    shutil.copy(wallet_file.path, copy)
    if change == "secret":
        (elsewhere / "secret").write_bytes(bytes(32))
        moved = WalletFile(copy, elsewhere / "secret", wallet_file.binding)
    else:
        moved = WalletFile(copy, wallet_file.secret_path, "hw-id-B")
    with pytest.raises(ForeignWallet, match=rf"^wallet file {copy} was made for another device$"):
        Wallet.open(moved, clock)


def test_any_flipped_byte_is_refused(wallet: Wallet, wallet_file: WalletFile, clock: Clock) -> None:
    original = wallet_file.path.read_bytes()
    for position in range(0, len(original), max(1, len(original) // 97)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        wallet_file.path.write_bytes(bytes(damaged))
        with pytest.raises(WalletError, match="wallet file"):
            Wallet.open(wallet_file, clock)
    wallet_file.path.write_bytes(original[:-1] + bytes((original[-1] ^ 0x80,)))
    with pytest.raises(WalletCorrupt, match="altered or damaged"):
        Wallet.open(wallet_file, clock)
    wallet_file.path.write_bytes(original[:20])
    with pytest.raises(WalletCorrupt, match="not an emvtap wallet file"):
        Wallet.open(wallet_file, clock)


def test_missing_secret_is_a_clear_error(wallet: Wallet, wallet_file: WalletFile) -> None:
    wallet_file.secret_path.unlink()
    with pytest.raises(WalletError, match=r"device secret .* is missing"):
        Wallet.open(wallet_file)


def test_a_failed_write_leaves_file_and_wallet_as_they_were(
    wallet: Wallet,
    wallet_file: WalletFile,
    issuer: Issuer,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wallet.load_batch(*issuer.seal(wallet.device_point, [issuer.luk(0)]))
    before = wallet_file.path.read_bytes()

    def power_cut(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(store_module.os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        wallet.take_luk(100)
    monkeypatch.undo()
    assert wallet_file.path.read_bytes() == before
    assert [p.name for p in wallet_file.path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert wallet.atc == 0
    assert Wallet.open(wallet_file, clock).take_luk(100).use_count == 1


def test_no_secret_in_reprs_or_messages(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(0, max_transactions=1)])
    load(issuer.suks([2]), BatchKind.SUK)
    luk_grant = wallet.take_luk(100)
    suk_grant = wallet.take_suk(100, pin=issuer.PIN)
    with pytest.raises(KeysExhausted) as refused:
        wallet.take_suk(100, pin=issuer.PIN)
    shown = " ".join(
        [repr(wallet), repr(luk_grant), repr(suk_grant), repr(wallet._state), str(refused.value)]
    )
    secrets = [luk_grant.key, suk_grant.key, cbp.derive_log_key(issuer.MK, wallet.fingerprint)]
    for secret in secrets:
        assert secret.hex().upper() not in shown.upper()
    assert issuer.PAN not in shown and issuer.PIN not in shown


# --- replenishment ------------------------------------------------------------------------


class FakeTokenServer:
    """Issues LUK batches for one wallet and keeps the logs it is sent."""

    def __init__(self, wallet: Wallet, issuer: Issuer) -> None:
        self.wallet, self.issuer = wallet, issuer
        self.requests: list[tuple[str, int, str | None]] = []
        self.uploads: list[tuple[list[bytes], list[bytes]]] = []
        self.previous: list[bytes] = []

    def fetch_batch(self, kind: str, count: int, pin: str | None) -> tuple[bytes, bytes]:
        self.requests.append((kind, count, pin))
        first = len(self.requests) * 10
        log_key = self.issuer.log_key(self.wallet.fingerprint)  # in every batch, like the server
        if kind == "LUK":
            keys = [self.issuer.luk(first + n) for n in range(count)]
            return self.issuer.seal(self.wallet.device_point, [*keys, log_key])
        atcs = range(self.wallet.atc + 1, self.wallet.atc + 1 + count)
        keys = self.issuer.suks(atcs)
        return self.issuer.seal(self.wallet.device_point, [*keys, log_key], BatchKind.SUK)

    def upload_log(
        self, previous: bytes, entries: Sequence[bytes], macs: Sequence[bytes]
    ) -> dict[str, Any]:
        self.uploads.append((list(entries), list(macs)))
        self.previous.append(previous)
        return {"accepted": len(entries)}


def test_replenish_only_when_low(wallet: Wallet, issuer: Issuer) -> None:
    server = FakeTokenServer(wallet, issuer)
    assert wallet.replenish_if_low(server, 4, count=2) == 2
    assert wallet.usable_keys("LUK") == 6
    assert wallet.replenish_if_low(server, 4, count=2) == 0
    for _ in range(3):
        wallet.take_luk(100)
    assert wallet.replenish_if_low(server, 4, count=1) == 1
    assert wallet.replenish_if_low(server, 3, family="SUK", count=5, pin=issuer.PIN) == 10
    assert server.requests == [("LUK", 2, None), ("LUK", 1, None), ("SUK", 5, issuer.PIN)]
    assert wallet.take_suk(100, pin=issuer.PIN).key == cbp.derive_suk_uv(issuer.MK, b"\x00\x04")


def test_log_upload_empties_the_log_and_the_chain_goes_on(
    wallet: Wallet, load: Load, issuer: Issuer
) -> None:
    server = FakeTokenServer(wallet, issuer)
    load([issuer.luk(0)])
    assert wallet.upload_log(server) == {}
    macs = [_tap_luk(wallet, issuer), _tap_luk(wallet, issuer)]
    assert wallet.upload_log(server) == {"accepted": 2}
    assert server.uploads[0][1] == macs
    after = _tap_luk(wallet, issuer)
    previous, entries, pending = wallet.pending_log()
    log_key = cbp.derive_log_key(issuer.MK, wallet.fingerprint)
    assert previous == macs[-1] and pending == [after]
    assert wallet.upload_log(server) == {"accepted": 1}
    assert server.previous == [bytes(8), macs[-1]]
    assert cbp.chain_log_mac(log_key, macs[-1], entries[0]) == after


def test_a_log_key_for_another_device_is_refused(
    wallet: Wallet, load: Load, issuer: Issuer
) -> None:
    with pytest.raises(WalletError, match="log key is for another device"):
        load([issuer.luk(0), issuer.log_key(bytes(32))])
    assert wallet.usable_keys("LUK") == 0


def test_the_atc_ends_at_ffff(wallet: Wallet, load: Load, issuer: Issuer) -> None:
    load([issuer.luk(0)])
    load(issuer.suks([0xFFFF]), BatchKind.SUK)
    assert wallet.take_suk(100).atc == b"\xff\xff"
    with pytest.raises(KeysExhausted, match="ATC has reached FFFF"):
        wallet.take_luk(100)


def test_two_wallets_on_one_file_never_hand_out_one_atc(
    wallet: Wallet, load: Load, issuer: Issuer
) -> None:
    """A second process (here: a second Wallet on the same file) changes the file: the
    first one's next write is refused, so an ATC is never handed out twice."""
    from hce.wallet import WalletChanged  # noqa: PLC0415

    load([issuer.luk(0)])
    other = Wallet.open(wallet._file, wallet._clock)
    taken = other.take_luk(100).atc
    with pytest.raises(WalletChanged, match="changed by another process"):
        wallet.take_luk(100)
    again = Wallet.open(wallet._file, wallet._clock)
    assert again.take_luk(100).atc == bytes((0, taken[1] + 1))
