"""scenarios.links: the --link forms, and the card slot a pcsc station serves."""

from __future__ import annotations

import pytest

from emv.link import CardRemoved
from hce.card.vpcd import CardSlot
from scenarios.links import LinkSpec, parse_link

SLOT_ATS = bytes.fromhex("057880E000")


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("inprocess", LinkSpec()),
        ("vpcd-direct", LinkSpec("vpcd-direct")),
        ("nfc-udp", LinkSpec("nfc-udp")),
        ("pcsc", LinkSpec("pcsc", "Virtual PCD 00 00", ("127.0.0.1", 35963))),
        ("pcsc:Virtual PCD 00 01", LinkSpec("pcsc", "Virtual PCD 00 01")),
        ("pcsc:R 00 00@10.0.0.2:4000", LinkSpec("pcsc", "R 00 00", ("10.0.0.2", 4000))),
        ("pcsc:@::1:35964", LinkSpec("pcsc", vpcd=("::1", 35964))),
    ],
)
def test_link_forms(text: str, spec: LinkSpec) -> None:
    assert parse_link(text) == spec
    assert parse_link(str(spec)) == spec  # its text reads back as itself
    assert spec.exclusive == (spec.kind == "pcsc")


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.log: list[str] = []

    def power_on(self) -> bytes:
        self.log.append("on")
        return self.name.encode()

    def power_off(self) -> None:
        self.log.append("off")

    def transceive(self, command: bytes) -> bytes:
        self.log.append(command.hex())
        return b"\x90\x00"


def test_an_empty_slot_powers_on_but_answers_nothing() -> None:
    slot = CardSlot(SLOT_ATS)
    assert slot.power_on() == SLOT_ATS
    with pytest.raises(CardRemoved, match="no card in the slot"):
        slot.transceive(b"\x00\xa4\x04\x00")
    slot.power_off()  # harmless


def test_cards_presented_in_turn_each_get_their_own_taps() -> None:
    slot, first, second = CardSlot(SLOT_ATS), Recorder("first"), Recorder("second")
    slot.present(first)
    assert slot.power_on() == b"first"
    assert slot.transceive(b"\x01\x02") == b"\x90\x00"
    slot.present(second)  # the first is taken away: powered off
    assert first.log == ["on", "0102", "off"]
    assert slot.power_on() == b"second"
    slot.present(None)
    assert second.log == ["on", "off"]
    with pytest.raises(CardRemoved):
        slot.transceive(b"\x01\x02")
