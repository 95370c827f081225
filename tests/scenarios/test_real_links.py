"""The scenario packs and PC/SC tools over real links, with real daemons.

* pcscd with vsmartcard's vpcd driver, private to this module
  (:class:`scenarios.pcscd.PrivatePcscd`: its own mount and network namespaces, its
  socket in ``tmp``, vpcd on the namespace's loopback). Everything that talks PC/SC
  runs as a child process with ``PCSCLITE_CSOCK_NAME`` set (pcsc-lite reads it once
  per process), inside the namespace when it also serves a card to vpcd.
  - the Kernel 2 and Kernel 3 packs over ``--link pcsc``;
  - ``opensc-tool`` and ``scriptor`` talking to ``emvtap card serve`` through pcscd;
  - pcscd restarted in the middle of a pack, and the card process killed between
    taps of a terminal: every tap ends in an outcome, and taps work again after.
* nfcpy's simulated RF link (``--link nfc-udp``) and the vpcd socket without pcscd
  (``--link vpcd-direct``): the Kernel 2 and Kernel 3 packs.

Without root, pcscd or the vpcd driver the pcscd tests skip, except under CI, where
they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from plastic import make_plastic

from emv.apdu import select_ppse
from hce.card import SoftIssuer, load_profile
from scenarios.loader import load_paths
from scenarios.pcscd import PrivatePcscd, unavailable_reason
from scenarios.runner import run

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "scenarios" / "packs"
KERNEL_PACKS = [PACKS / "kernel2", PACKS / "kernel3"]
READER = "Virtual PCD 00 00"
PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
EMVTAP = [sys.executable, "-m", "scenarios.cli"]
TIMEOUT = 300  # seconds for any child process


def _ids(paths: list[Path]) -> set[str]:
    return {scenario.id for scenario in load_paths(paths)}


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePcscd]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"a private pcscd cannot run in CI: {reason}")
        pytest.skip(reason)
    with PrivatePcscd(tmp_path_factory.mktemp("pcscd")) as daemon:
        yield daemon


def _env(pcscd: PrivatePcscd) -> dict[str, str]:
    return dict(os.environ, **pcscd.env, PYTHONPATH=str(ROOT))


def _junit(path: Path) -> dict[str, str]:
    """Each testcase's verdict in a JUnit file: passed, failure or error."""
    verdicts = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error")]
        verdicts[case.get("name", "")] = kinds[0] if kinds else "passed"
    return verdicts


# --- the packs over pcscd ------------------------------------------------------------------


def test_kernel_packs_pass_over_pcscd_and_vpcd(pcscd: PrivatePcscd, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    command = [*EMVTAP, "run", *map(str, KERNEL_PACKS), "--link", "pcsc", "-q"]
    done = subprocess.run(
        pcscd.in_netns([*command, "--junit", str(junit)]),
        check=False,
        env=_env(pcscd),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = _junit(junit)
    assert set(verdicts) == _ids(KERNEL_PACKS)
    assert set(verdicts.values()) == {"passed"}


def test_a_pcscd_restart_mid_pack_ends_every_tap_in_an_outcome(
    pcscd: PrivatePcscd, tmp_path: Path
) -> None:
    """pcscd is restarted once a few scenarios are done (the run's progress says so):
    the scenarios it hits fail on their expectations (a defined outcome, not an
    error), and the link recovers: the last scenarios pass."""
    junit = tmp_path / "junit.xml"
    pack = PACKS / "kernel3"
    command = [*EMVTAP, "run", str(pack), "--link", "pcsc", "--junit", str(junit)]
    child = subprocess.Popen(
        pcscd.in_netns(command),
        env=_env(pcscd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None and child.stdout is not None
    marks = b""
    while len(marks) < 5:  # progress: one mark a scenario (not a terminal)
        mark = child.stderr.read(1)
        assert mark, f"the run ended early: {child.stdout.read().decode()}"
        marks += mark if mark in b".FE" else b""
    pcscd.restart()
    out, _ = child.communicate(timeout=TIMEOUT)
    verdicts = list(_junit(junit).values())
    assert "error" not in verdicts, out.decode()
    assert len(verdicts) == len(_ids([pack]))
    assert verdicts[-3:] == ["passed"] * 3, out.decode()


# --- a served card and the PC/SC tools -----------------------------------------------------


def _ppse_fci(profile: str) -> bytes:
    """The PPSE answer of ``profile``'s card, computed here (not what the test expects
    the served card to say: what a card of that profile says)."""
    card = make_plastic(SoftIssuer(), load_profile(profile)).card
    card.power_on()
    return card.transceive(select_ppse().to_bytes())


def _serve(pcscd: PrivatePcscd, state: Path) -> subprocess.Popen[str]:
    """``emvtap card serve visa_qvsdc_plastic`` on vpcd, its state and CA key (ca.txt) in
    ``state``; the card is in the reader when this returns (opensc-tool waits for it)."""
    command = [*EMVTAP, "card", "serve", "visa_qvsdc_plastic", "--vpcd", "127.0.0.1:35963"]
    command += ["--ca-keys", str(state / "ca.txt"), "--state", str(state)]
    card = subprocess.Popen(
        pcscd.in_netns(command),
        env=_env(pcscd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert card.stdout is not None
    banner = card.stdout.readline()
    assert "connecting to vpcd" in banner, banner
    _wait_for_card(pcscd)
    return card


@pytest.fixture
def served(pcscd: PrivatePcscd, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A served card (:func:`_serve`, state in tmp/state), stopped at the end."""
    card = _serve(pcscd, tmp_path / "state")
    yield card
    _stop(card)


def _stop(card: subprocess.Popen[str]) -> None:
    """SIGTERM (the card's clean exit), SIGKILL when that does not end it in time."""
    card.terminate()
    try:
        card.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        card.kill()
        card.communicate()
        raise


def _wait_for_card(pcscd: PrivatePcscd) -> None:
    waited = subprocess.run(
        ["opensc-tool", "--reader", READER, "--wait", "--atr"],
        check=False,
        env=_env(pcscd),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert waited.returncode == 0, waited.stderr


def _hex_dump(text: str) -> bytes:
    """The bytes of opensc-tool's or scriptor's hex dump lines."""
    pairs = re.findall(r"(?:^|(?<= ))([0-9A-F]{2})(?= |$)", text, re.MULTILINE)
    return bytes.fromhex("".join(pairs))


def test_opensc_tool_reads_the_ppse_fci_from_a_served_card(
    pcscd: PrivatePcscd, served: subprocess.Popen[str]
) -> None:
    shown = subprocess.run(
        ["opensc-tool", "-r", READER, "-s", PPSE.hex().upper()],
        check=False,
        env=_env(pcscd),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert "SW1=0x90, SW2=0x00" in shown.stdout
    fci = _ppse_fci("visa_qvsdc_plastic")[:-2]
    body = shown.stdout.split("Received (SW1=0x90, SW2=0x00):", 1)[1]
    dumped = b"".join(_hex_dump(line[:48]) for line in body.splitlines())
    assert dumped == fci


def test_scriptor_gets_the_uid_and_the_ppse_through_pcscd(
    pcscd: PrivatePcscd, served: subprocess.Popen[str], tmp_path: Path
) -> None:
    uid = (tmp_path / "state" / "uid").read_text(encoding="ascii").strip()
    script = f"FF CA 00 00 00\n{PPSE.hex(' ').upper()}\n"
    talked = subprocess.run(
        ["scriptor", "-r", READER],
        check=False,
        input=script,
        env=_env(pcscd),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert talked.returncode == 0, talked.stderr
    answers = [block for block in talked.stdout.split("< ")[1:]]
    assert len(answers) == 2, talked.stdout
    assert _hex_dump(answers[0].split(":")[0]) == bytes.fromhex(uid) + b"\x90\x00"
    assert _hex_dump(answers[1].split(":")[0]) == _ppse_fci("visa_qvsdc_plastic")


_TAPPER = """
import json, os, sys
from datetime import datetime
from emv.crypto.oda import CaKeyStore
from scenarios.links import open_reader
from terminal.config import load_config, with_ca_keys
from terminal.pos import Terminal
from terminal.transaction import Transaction
with open_reader(sys.argv[2], 5.0) as reader:
    for _ in sys.stdin:  # a card served afresh has new issuer keys: read its CA key each time
        keys = CaKeyStore.parse(open(sys.argv[1]).read())
        config = with_ca_keys(load_config("offline_only"), keys)
        tx = Transaction(100, config.currency.hex(), datetime.now(), os.urandom(4))
        result = Terminal(config, None).transact(reader, tx)
        status = result.outcome.status.name
        print(json.dumps({"status": status, "approved": result.approved}), flush=True)
"""


def test_a_card_process_killed_between_taps_ends_the_next_tap_in_an_outcome(
    pcscd: PrivatePcscd, served: subprocess.Popen[str], tmp_path: Path
) -> None:
    """A terminal process taps on request; the card process is killed (SIGKILL) after
    the first tap: the next tap ends in a defined outcome without approval; a new card
    process serves the following taps again."""
    tapper = subprocess.Popen(
        [sys.executable, "-c", _TAPPER, str(tmp_path / "state" / "ca.txt"), READER],
        env=_env(pcscd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tapper.stdin is not None and tapper.stdout is not None

    def tap() -> dict[str, object]:
        assert tapper.stdin is not None and tapper.stdout is not None
        tapper.stdin.write("tap\n")
        tapper.stdin.flush()
        line = tapper.stdout.readline()
        assert line, tapper.stderr.read() if tapper.stderr else ""
        answer: dict[str, object] = json.loads(line)
        return answer

    try:
        assert tap() == {"status": "APPROVED", "approved": True}
        served.kill()
        served.wait(30)
        lost = tap()
        assert lost["approved"] is False
        assert lost["status"] in {"END_APPLICATION", "TRY_AGAIN", "DECLINED"}, lost
        again = _serve(pcscd, tmp_path / "state")
        try:
            assert tap() == {"status": "APPROVED", "approved": True}
        finally:
            _stop(again)
    finally:
        tapper.communicate(timeout=30)  # closes its stdin: it ends


# --- the packs over the links without pcscd ------------------------------------------------


@pytest.mark.parametrize("link", ["nfc-udp", "vpcd-direct"])
def test_kernel_packs_pass_over(link: str) -> None:
    scenarios = load_paths(KERNEL_PACKS)
    results = run(scenarios, jobs=2, link=link)
    failed = [(r.scenario.id, r.verdict, r.error) for r in results if r.verdict != "passed"]
    assert failed == []
    assert len(results) == len(scenarios) > 60


# --- emvtap readers and emvtap tap --reader --------------------------------------------------


def _emvtap(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMVTAP, *argv], check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def test_emvtap_readers_and_a_tap_on_a_pcsc_reader(
    pcscd: PrivatePcscd, served: subprocess.Popen[str], tmp_path: Path
) -> None:
    listed = _emvtap(_env(pcscd), "readers")
    assert listed.returncode == 0 and listed.stdout.splitlines() == list(pcscd.readers)
    ca_keys = str(tmp_path / "state" / "ca.txt")
    tapped = _emvtap(
        _env(pcscd), "tap", "--reader", READER, "--amount", "1.00", "--config", "offline_only",
        "--ca-keys", ca_keys,
    )  # fmt: skip
    assert tapped.returncode == 0, tapped.stdout + tapped.stderr
    assert f"Card:         {READER}" in tapped.stdout
    assert "Approved" in tapped.stdout and "field on, ATR 3B80800101" in tapped.stdout
    assert "476173******0010" in tapped.stdout and "4761739001010010" not in tapped.stdout


def test_without_pcscd_the_pc_sc_commands_say_so_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "none.comm"), PYTHONPATH=str(ROOT))
    for argv in (
        ["readers"],
        ["tap", "--reader", READER, "--amount", "1.00"],
        ["run", str(PACKS / "kernel3"), "--link", "pcsc"],
    ):
        done = _emvtap(env, *argv)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "is pcscd running?" in done.stderr
        assert "Traceback" not in done.stderr
