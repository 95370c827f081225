"""The nfcpy link end to end: hce.card.nfc's NfcCard serving an emvtap card and
terminal.readers.nfc's NfcReader, over nfcpy's simulated RF link (udp) on
127.0.0.1: APDUs, chaining both ways, taps, a card that goes away, whole terminal
transactions, and the card in a process of its own."""

from __future__ import annotations

import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emv import apdu, tlv
from emv.link import CardRemoved
from hce.card import Card, FileCounterStore, SoftIssuer, load_profile, personalise
from hce.card.nfc import NfcCard
from scenarios.tap import TapEnvironment
from terminal.readers.nfc import NfcReader

UID = bytes.fromhex("08A1B2C3")
ATS = bytes.fromhex("057880E000")
WAIT_S = 5.0
SHORT_S = 0.2
CHILD_WAIT_S = 30.0  # the child makes its RSA keys first
OK = b"\x90\x00"


@dataclass
class Linked:
    card: Card
    target: NfcCard
    reader: NfcReader


def _card(tmp_path: Path) -> Card:
    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    image = personalise(profile, issuer.signer(profile))
    return Card(image, issuer.plastic_keys(profile, FileCounterStore(tmp_path / "c.json")))


def _served(card: Card, **options: object) -> tuple[NfcCard, threading.Thread]:
    target = NfcCard(card, "udp:127.0.0.1:0", uid=UID, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=target.serve, args=(threading.Event(),))
    thread.start()
    assert target.ready.wait(WAIT_S)
    return target, thread


@pytest.fixture
def linked(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Linked]:
    """``@pytest.mark.parametrize("linked", [{"fsci": 0, "fsd": 16}], indirect=True)``
    sets the card's FSCI and the reader's FSD."""
    options = getattr(request, "param", {})
    card = _card(tmp_path)
    target, thread = _served(card, fsci=options.get("fsci", 8))
    try:
        with NfcReader(target.path, timeout=WAIT_S, fsd=options.get("fsd", 256)) as reader:
            yield Linked(card, target, reader)
    finally:
        target.close()
        thread.join(WAIT_S)
    assert not thread.is_alive()


def test_ppse_over_the_simulated_rf_link(linked: Linked) -> None:
    assert linked.reader.power_on() == ATS
    response = linked.reader.transceive(apdu.select_ppse().to_bytes())
    assert response == linked.card.image.ppse_fci + OK


@pytest.mark.parametrize("linked", [{"fsci": 0, "fsd": 16}], indirect=True)
def test_16_byte_frames_chain_every_command_and_response(linked: Linked) -> None:
    """FSC 16 and FSD 16: 13 bytes a block each way, so SELECT (20 bytes) goes in two
    blocks and its FCI (56 bytes) comes back in five."""
    reader, card = linked.reader, linked.card
    reader.power_on()
    assert reader.transceive(apdu.select_ppse().to_bytes()) == card.image.ppse_fci + OK
    aid = card.applets[0].aid
    answer = reader.transceive(apdu.select(aid).to_bytes())
    assert answer[-2:] == OK
    assert tlv.find(tlv.decode(answer[:-2]), 0x84) is not None
    assert card.selected is card.applets[0]


def test_power_cycles_are_new_taps(linked: Linked) -> None:
    reader, card = linked.reader, linked.card
    reader.power_on()
    assert reader.transceive(apdu.select(card.applets[0].aid).to_bytes())[-2:] == OK
    reader.power_off()
    assert not card.powered  # off before the DESELECT answer came back
    with pytest.raises(CardRemoved):
        reader.transceive(apdu.select_ppse().to_bytes())
    assert reader.power_on() == ATS
    assert card.selected is None
    assert reader.transceive(bytes.fromhex("80A8000002830000"))[-2:] == b"\x69\x85"
    assert linked.target.sessions == 2


def test_a_card_that_goes_away_is_removed(tmp_path: Path) -> None:
    card = _card(tmp_path)
    target, thread = _served(card)
    with NfcReader(target.path, timeout=SHORT_S) as reader:
        reader.power_on()
        target.close()
        thread.join(WAIT_S)
        assert not card.powered
        with pytest.raises(CardRemoved, match="the card left the field"):
            reader.transceive(apdu.select_ppse().to_bytes())
        with pytest.raises(CardRemoved, match="no card in the field"):
            reader.power_on()


@pytest.mark.parametrize(
    ("profile", "fsci", "fsd"),
    [("visa_qvsdc_plastic", 8, 256), ("mastercard_mchip_plastic", 0, 16)],
)
def test_a_transaction_is_approved_over_the_link(profile: str, fsci: int, fsd: int) -> None:
    """The terminal's whole transaction (Entry Point, kernel, ODA, online authorisation)
    with the card behind the simulated RF link; M/Chip with CDA in 16-byte frames."""
    with TapEnvironment(profile) as env:
        target, thread = _served(env.emulated, fsci=fsci)
        try:
            with NfcReader(target.path, timeout=WAIT_S, fsd=fsd) as reader:
                result = env.terminal.transact(reader, env.transaction(1000))
                assert result.approved, result.outcome
                again = env.terminal.transact(reader, env.transaction(500))
                assert again.approved, again.outcome
        finally:
            target.close()
            thread.join(WAIT_S)
        assert not thread.is_alive()
        assert target.sessions >= 2


CHILD = """
import sys, threading
from pathlib import Path
from hce.card import Card, FileCounterStore, SoftIssuer, load_profile, personalise
from hce.card.nfc import NfcCard

issuer = SoftIssuer()
profile = load_profile("visa_qvsdc_plastic")
image = personalise(profile, issuer.signer(profile))
card = Card(image, issuer.plastic_keys(profile, FileCounterStore(Path(sys.argv[1]))))
target = NfcCard(card, "udp:127.0.0.1:0", uid=bytes.fromhex("08A1B2C3"))
thread = threading.Thread(target=target.serve, args=(threading.Event(),))
thread.start()
target.ready.wait()
print(target.path, image.ppse_fci.hex(), flush=True)
sys.stdin.read()  # until the test closes our stdin
target.close()
thread.join()
print("sessions", target.sessions, target.ended, flush=True)
"""


def test_the_card_in_another_process(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", CHILD, str(tmp_path / "c.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready, _, _ = select.select([child.stdout], [], [], CHILD_WAIT_S)
        assert ready, "the card process did not start listening"
        path, fci = child.stdout.readline().split()
        with NfcReader(path, timeout=WAIT_S) as reader:
            assert reader.power_on() == ATS
            assert reader.transceive(apdu.select_ppse().to_bytes()) == bytes.fromhex(fci) + OK
        out, err = child.communicate(input="", timeout=CHILD_WAIT_S)  # end of its stdin
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out.split() == ["sessions", "1", "deselected"]
