"""The vpcd link end to end: hce.card.vpcd's card and terminal.readers.vpcd's reader
against each other over loopback, a TapEnvironment with ``link="vpcd-direct"``, and
``emvtap tap|run --link vpcd-direct``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emv import apdu
from emv.link import CardRemoved
from emv.trace import EventKind
from hce.card import Card, FileCounterStore, SoftIssuer, load_profile, personalise
from hce.card.vpcd import VpcdCard
from scenarios.cli import main
from scenarios.tap import TapEnvironment
from terminal.readers import VpcdReader

ATR = bytes.fromhex("3B80800101")
PACKS = Path(__file__).parents[2] / "scenarios" / "packs"
WAIT_S = 5.0


@dataclass
class Linked:
    card: Card
    vicc: VpcdCard
    reader: VpcdReader


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[Linked]:
    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    image = personalise(profile, issuer.signer(profile))
    card = Card(image, issuer.plastic_keys(profile, FileCounterStore(tmp_path / "c.json")))
    with VpcdReader() as reader:
        vicc = VpcdCard(card, "127.0.0.1", reader.port)
        thread = threading.Thread(target=vicc.serve_once)
        thread.start()
        try:
            reader.accept(WAIT_S)
            yield Linked(card, vicc, reader)
        finally:
            vicc.close()
            reader.close()
            thread.join(WAIT_S)
    assert not thread.is_alive()


def test_ppse_over_the_socket(linked: Linked) -> None:
    assert linked.reader.power_on() == ATR
    response = linked.reader.transceive(apdu.select_ppse().to_bytes())
    assert response == linked.card.image.ppse_fci + b"\x90\x00"


def test_power_cycles_are_new_taps(linked: Linked) -> None:
    reader, card = linked.reader, linked.card
    reader.power_on()
    assert reader.transceive(apdu.select(card.applets[0].aid).to_bytes())[-2:] == b"\x90\x00"
    reader.power_off()
    with pytest.raises(CardRemoved):  # an unpowered card answers nothing
        reader.transceive(apdu.select_ppse().to_bytes())
    assert reader.power_on() == ATR
    assert card.selected is None
    gpo = bytes.fromhex("80A8000002830000")
    assert reader.transceive(gpo)[-2:] == b"\x69\x85"  # nothing selected


def test_a_card_that_goes_away_is_removed(linked: Linked) -> None:
    linked.reader.power_on()
    linked.vicc.close()
    with pytest.raises(CardRemoved):
        linked.reader.transceive(apdu.select_ppse().to_bytes())


def test_a_tap_over_vpcd_records_what_the_terminal_saw() -> None:
    with TapEnvironment("visa_qvsdc_plastic", link="vpcd-direct") as env:
        result, trace = env.tap(1000)
        (thread,) = [t for t in threading.enumerate() if t.name == "emvtap-vpcd-card"]
        assert result.approved
        assert trace.events[0].kind is EventKind.FIELD_ON
        assert trace.events[0].data == ATR
        again, _ = env.tap(500)
        assert again.approved
    assert not thread.is_alive()


def test_an_unknown_link_is_refused() -> None:
    with pytest.raises(ValueError, match="--link 'bogus': expected inprocess, vpcd-direct"):
        TapEnvironment("visa_qvsdc_plastic", link="bogus")


def test_emvtap_tap_over_vpcd(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["tap", "--card", "visa_qvsdc_plastic", "--amount", "1.00", "--link", "vpcd-direct"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "field on, ATR 3B80800101" in out


def _handful(pack: str, count: int = 4) -> list[str]:
    files = sorted(p for p in (PACKS / pack).glob("*.yaml") if not p.name.startswith("_"))
    return [str(p) for p in files[:count]]


def test_emvtap_run_over_vpcd_passes_kernel3_and_kernel2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _handful("kernel3") + _handful("kernel2")
    status = main(["run", *paths, "--link", "vpcd-direct", "-q"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 failed, 0 errored" in out
