"""Crash consistency: a wallet process killed with SIGKILL at any point never loses an
ATC, never hands a key out twice and leaves a file that opens with a verifying log
(DESIGN.md hce/wallet: "a torn write never loses an ATC or reuses a key").

The kill points come from a seeded generator: after the child has reported N grants
(N from 0), so the kill lands anywhere in its loop of take, compute, record. Only the
state left on disk is asserted, never timing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from emv import tlv
from emv.crypto import cbp
from emv.crypto.wrap import BatchKind
from hce.wallet import Wallet, WalletFile, first_bad_entry

if TYPE_CHECKING:
    from conftest import Clock, Issuer

ROOT = Path(__file__).resolve().parents[3]
KILLS = 40
TAPS_AVAILABLE = 300

# The child: taps in a loop (LUK, SUK, SUK-UV by turns), printing every grant before use.
# With step > 0 it kills itself just before its step-th fsync or rename: every point of
# an atomic write is hit exactly.
CHILD = """
import os, signal, sys
from pathlib import Path
from emv.crypto import ac
from hce.wallet import KeysExhausted, LukGrant, Outcome, Wallet, WalletFile

path, secret, binding, hour, pin, step = sys.argv[1:7]
calls = 0

def killing(call):
    def hooked(*args):
        global calls
        calls += 1
        if calls == int(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return call(*args)
    return hooked

os.fsync, os.replace = killing(os.fsync), killing(os.replace)
wallet = Wallet.open(WalletFile(Path(path), Path(secret), binding), lambda: int(hour))
while True:
    turn = (wallet.atc + 1) % 3
    try:
        if turn == 0:
            grant = wallet.take_luk(100)
        else:
            grant = wallet.take_suk(100, pin if turn == 2 else None)
    except KeysExhausted:
        print("DONE", flush=True)
        break
    use = grant.use_count if isinstance(grant, LukGrant) else 0
    print(grant.atc.hex(), grant.key_ident.hex(), use, flush=True)
    data = ac.CryptogramData(
        amount_authorised=bytes.fromhex("000000000100"), amount_other=bytes(6),
        terminal_country_code=b"\\x08\\x26", tvr=bytes(5), transaction_currency_code=b"\\x08\\x26",
        transaction_date=b"\\x26\\x11\\x26", transaction_type=b"\\x00",
        unpredictable_number=bytes(4), aip=b"\\x20\\x20", atc=grant.atc,
    )
    cryptogram = grant.cryptogram(data, bytes(4))
    wallet.record(grant, data, cryptogram, b"\\x80", Outcome.ONLINE_REQUESTED)
"""


def _run_and_kill(
    file: WalletFile, issuer: Issuer, after: int, step: int
) -> tuple[list[str], bool]:
    """Start the child, SIGKILL it once it has reported ``after`` grants (or it kills
    itself at ``step``); every grant it reported (including those still in the pipe)
    and whether it ran out of keys."""
    argv = [str(file.path), str(file.secret_path), file.binding, str(issuer.NOW), issuer.PIN]
    argv.append(str(step))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    lines: list[str] = []
    while len(lines) < after:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
    os.kill(child.pid, signal.SIGKILL)
    lines += child.stdout.readlines()
    child.wait()
    child.stdout.close()
    done = "DONE\n" in lines
    return [line for line in lines if line != "DONE\n"], done


def test_sigkill_at_random_points_loses_nothing(
    wallet: Wallet, wallet_file: WalletFile, issuer: Issuer, clock: Clock
) -> None:
    luk = issuer.luk(0, max_transactions=TAPS_AVAILABLE, max_amount=10**9)
    wallet.load_batch(*issuer.seal(wallet.device_point, [luk]))
    suks = issuer.suks(range(1, TAPS_AVAILABLE + 1))
    wallet.load_batch(*issuer.seal(wallet.device_point, suks, BatchKind.SUK))
    log_key = cbp.derive_log_key(issuer.MK, wallet.fingerprint)
    rng = random.Random(20261126)
    handed: list[tuple[int, str, int]] = []
    last_atc = 0
    for _ in range(KILLS):
        if rng.random() < 0.5:
            lines, done = _run_and_kill(wallet_file, issuer, rng.randint(0, 6), 0)
        else:
            lines, done = _run_and_kill(wallet_file, issuer, 10**6, rng.randint(1, 30))
        assert not done, "the batch ran out: make TAPS_AVAILABLE larger"
        grants = [(int(atc, 16), ident, int(use)) for atc, ident, use in map(str.split, lines)]
        reopened = Wallet.open(wallet_file, clock)  # never torn, never refused
        assert reopened.atc >= last_atc
        assert all(atc <= reopened.atc for atc, _, _ in grants), "a grant was not persisted"
        handed += grants
        last_atc = reopened.atc
        previous, entries, macs = reopened.pending_log()
        assert first_bad_entry(log_key, previous, entries, macs) is None
        logged = [int.from_bytes(tlv.index(tlv.decode(e))[0x9F36], "big") for e in entries]
        assert logged == sorted(set(logged))
        assert set(logged) <= {atc for atc, _, _ in handed}
    atcs = [atc for atc, _, _ in handed]
    assert len(atcs) == len(set(atcs)), "an ATC was handed out twice"
    luk_uses = [(ident, use) for _, ident, use in handed if use]
    assert len(luk_uses) == len(set(luk_uses)), "a LUK use count was handed out twice"
    assert len(handed) >= KILLS
    assert atcs == sorted(atcs)
