"""The reader side of the nfcpy link (terminal.readers.nfc) against a scripted card
made here: a thread on a loopback UDP socket that speaks nfcpy's udp framing
("106A <hex>" datagrams), answers anticollision itself and every other frame from
a script. Waits are bounded by the reader's time-out or a queue's."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from emv.link import CardRemoved, Link, LinkError
from terminal.readers.nfc import NfcReader

WAIT_S = 5.0
SHORT_S = 0.2  # the reader's time-out where a card is made to stay silent
UID = bytes.fromhex("08A1B2C3")
ATS = bytes.fromhex("057880E000")
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
OK = b"\x90\x00"
RATS = bytes.fromhex("E080")


class Raw(bytes):
    """A datagram sent as it is (not a frame)."""


Script = Callable[[bytes], bytes | None]


def iso_dep(frame: bytes) -> bytes | None:
    """A card that gives its ATS and answers every I-block with 9000, DESELECT too."""
    if frame[:1] == b"\xe0":
        return ATS
    if frame[0] & 0xE2 == 0x02:
        return bytes((frame[0] & 0x03,)) + OK
    if frame == b"\xc2":
        return frame
    return None


class ScriptedCard:
    """A Type A card with a 4-byte UID on nfcpy's udp link: SENS_REQ, SDD_REQ and
    SEL_REQ answered (SEL_RES ``sel_res``), every other frame recorded in
    :attr:`frames` and answered by ``script`` (None: silence; :class:`Raw`: a
    datagram as it is); RFOFF counted in :attr:`rfoff`."""

    def __init__(self, script: Script = iso_dep, sel_res: int = 0x20) -> None:
        self.script = script
        self.sel_res = sel_res
        self.frames: queue.Queue[bytes] = queue.Queue()
        self.rfoff = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.path = f"udp:127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _answer(self, frame: bytes) -> bytes | None:
        bcc = UID[0] ^ UID[1] ^ UID[2] ^ UID[3]
        if frame == b"\x26":
            return b"\x04\x00"
        if frame == b"\x93\x20":
            return UID + bytes((bcc,))
        if frame == b"\x93\x70" + UID + bytes((bcc,)):
            return bytes((self.sel_res,))
        self.frames.put(frame)
        return self.script(frame)

    def _run(self) -> None:
        while True:
            data, sender = self.sock.recvfrom(1024)
            if data == b"STOP":
                return
            if data == b"RFOFF":
                self.rfoff += 1
                continue
            answer = self._answer(bytes.fromhex(data.split()[1].decode()))
            if isinstance(answer, Raw):
                self.sock.sendto(answer, sender)
            elif answer is not None:
                self.sock.sendto(b"106A " + answer.hex().encode(), sender)

    def received(self) -> list[bytes]:
        """The frames received since the last call."""
        frames = []
        while not self.frames.empty():
            frames.append(self.frames.get_nowait())
        return frames

    def leave(self) -> None:
        """The card leaves the field: its socket is closed."""
        if self._thread.is_alive():
            self.sock.sendto(b"STOP", ("127.0.0.1", self.port))
            self._thread.join(WAIT_S)
            assert not self._thread.is_alive()
        self.sock.close()


@pytest.fixture
def cards() -> Iterator[Callable[..., ScriptedCard]]:
    made: list[ScriptedCard] = []

    def make(script: Script = iso_dep, sel_res: int = 0x20) -> ScriptedCard:
        made.append(ScriptedCard(script, sel_res))
        return made[-1]

    yield make
    for card in made:
        card.leave()


@pytest.fixture
def card(cards: Callable[..., ScriptedCard]) -> ScriptedCard:
    return cards()


@pytest.fixture
def reader(card: ScriptedCard) -> Iterator[NfcReader]:
    with NfcReader(card.path, timeout=WAIT_S) as opened:
        yield opened


def test_it_is_a_link(reader: NfcReader) -> None:
    assert isinstance(reader, Link)
    assert reader.path.startswith("udp:127.0.0.1:")


def test_power_on_polls_sends_rats_and_returns_the_ats(
    reader: NfcReader, card: ScriptedCard
) -> None:
    assert reader.power_on() == ATS
    assert reader.ats == ATS
    assert card.received() == [RATS]


def test_rats_asks_for_the_fsd_given(card: ScriptedCard) -> None:
    with NfcReader(card.path, fsd=32) as small:
        small.power_on()
    assert card.received()[0] == bytes.fromhex("E020")
    with pytest.raises(ValueError, match="FSD 100: one of 16, 24"):
        NfcReader(card.path, fsd=100)
    with pytest.raises(ValueError, match="retries"):
        NfcReader(card.path, retries=-1)


def test_transceive_sends_i_blocks_with_toggling_numbers(
    reader: NfcReader, card: ScriptedCard
) -> None:
    reader.power_on()
    assert reader.transceive(SELECT_PPSE) == OK
    assert reader.transceive(SELECT_PPSE[:5]) == OK
    assert card.received() == [RATS, b"\x02" + SELECT_PPSE, b"\x03" + SELECT_PPSE[:5]]


def test_a_command_longer_than_the_cards_frames_is_chained(
    cards: Callable[..., ScriptedCard],
) -> None:
    def small_frames(frame: bytes) -> bytes | None:
        if frame == RATS:
            return bytes.fromhex("057080E000")  # FSCI 0: 16-byte frames
        return b"\xa2" if frame[0] == 0x12 else iso_dep(frame)

    card = cards(small_frames)
    with NfcReader(card.path) as reader:
        reader.power_on()
        assert reader.transceive(SELECT_PPSE) == OK
        assert card.received()[1:] == [b"\x12" + SELECT_PPSE[:13], b"\x03" + SELECT_PPSE[13:]]


def test_a_chained_response_is_acknowledged_and_assembled(
    cards: Callable[..., ScriptedCard],
) -> None:
    def chaining(frame: bytes) -> bytes | None:
        if frame[:1] == b"\x02":
            return b"\x12" + b"first "
        if frame == b"\xa3":
            return b"\x03" + b"last" + OK
        return iso_dep(frame)

    card = cards(chaining)
    with NfcReader(card.path) as reader:
        reader.power_on()
        assert reader.transceive(SELECT_PPSE) == b"first last" + OK
        assert card.received()[2:] == [b"\xa3"]


def test_a_waiting_time_extension_is_granted(cards: Callable[..., ScriptedCard]) -> None:
    def slow(frame: bytes) -> bytes | None:
        if frame[:1] == b"\x02":
            return b"\xf2\x02"
        if frame == b"\xf2\x02":
            return b"\x02" + OK
        return iso_dep(frame)

    card = cards(slow)
    with NfcReader(card.path) as reader:
        reader.power_on()
        assert reader.transceive(SELECT_PPSE) == OK
        assert card.received()[2:] == [b"\xf2\x02"]


def test_a_lost_frame_is_recovered_with_nak(cards: Callable[..., ScriptedCard]) -> None:
    seen: list[bytes] = []

    def deaf_once(frame: bytes) -> bytes | None:
        seen.append(frame)
        if frame[:1] == b"\x02" and seen.count(frame) == 1:
            return None  # the first I-block is lost
        if frame == b"\xb2":
            return b"\xa3"  # Rule 12: the card never got it
        return iso_dep(frame)

    card = cards(deaf_once)
    with NfcReader(card.path, timeout=SHORT_S) as reader:
        reader.power_on()
        assert reader.transceive(SELECT_PPSE) == OK
        assert card.received()[1:] == [b"\x02" + SELECT_PPSE, b"\xb2", b"\x02" + SELECT_PPSE]


def test_a_garbled_frame_is_answered_with_nak(cards: Callable[..., ScriptedCard]) -> None:
    def garbled_once(frame: bytes) -> bytes | None:
        if frame[:1] == b"\x02":
            return Raw(b"106A")  # nfcpy: "no data", a transmission error
        if frame == b"\xb2":
            return b"\x02" + OK  # Rule 11: the card sends its block again
        return iso_dep(frame)

    card = cards(garbled_once)
    with NfcReader(card.path) as reader:
        reader.power_on()
        assert reader.transceive(SELECT_PPSE) == OK
        assert card.received()[2:] == [b"\xb2"]


def test_power_off_deselects_then_switches_the_field_off(
    reader: NfcReader, card: ScriptedCard
) -> None:
    reader.power_on()
    reader.power_off()
    assert card.received() == [RATS, b"\xc2"]
    with pytest.raises(CardRemoved, match="no card activated"):
        reader.transceive(SELECT_PPSE)
    reader.power_off()  # harmless when off
    assert card.received() == []
    reader.power_on()  # a new tap: RATS again, block numbers from 0
    reader.transceive(SELECT_PPSE)
    assert card.received() == [RATS, b"\x02" + SELECT_PPSE]
    assert card.rfoff >= 1


def test_no_card_in_the_field_is_removed(card: ScriptedCard) -> None:
    card.leave()
    with (
        NfcReader(card.path, timeout=SHORT_S) as reader,
        pytest.raises(CardRemoved, match=f"no card in the field of {card.path}"),
    ):
        reader.power_on()


def test_a_card_that_is_not_iso_dep_is_a_link_error(cards: Callable[..., ScriptedCard]) -> None:
    card = cards(sel_res=0x00)  # a Type 2 tag
    with NfcReader(card.path) as reader, pytest.raises(LinkError) as raised:
        reader.power_on()
    assert not isinstance(raised.value, CardRemoved)
    assert "does not speak ISO/IEC 14443-4 (SEL_RES 00)" in str(raised.value)


def test_a_card_that_never_answers_rats_is_a_link_error(
    cards: Callable[..., ScriptedCard],
) -> None:
    card = cards(lambda frame: None)
    with NfcReader(card.path, timeout=SHORT_S) as reader, pytest.raises(LinkError) as raised:
        reader.power_on()
    assert not isinstance(raised.value, CardRemoved)
    assert "a card answered the poll but did not answer RATS" in str(raised.value)


def test_a_malformed_ats_is_a_link_error(cards: Callable[..., ScriptedCard]) -> None:
    card = cards(lambda frame: bytes.fromhex("0678"))
    with (
        NfcReader(card.path) as reader,
        pytest.raises(LinkError, match="the card's ATS: ATS 0678: TL says 6 bytes"),
    ):
        reader.power_on()


def test_a_response_without_a_status_word_is_a_link_error(
    cards: Callable[..., ScriptedCard],
) -> None:
    card = cards(lambda frame: ATS if frame == RATS else b"\x02\x90")
    with NfcReader(card.path) as reader:
        reader.power_on()
        with pytest.raises(LinkError, match="without a status word: 90"):
            reader.transceive(SELECT_PPSE)


def test_a_protocol_error_is_a_link_error_and_ends_the_activation(
    cards: Callable[..., ScriptedCard],
) -> None:
    card = cards(lambda frame: ATS if frame == RATS else b"\x03" + OK)  # wrong number
    with NfcReader(card.path) as reader:
        reader.power_on()
        with pytest.raises(LinkError, match="numbered 1, expected 0") as raised:
            reader.transceive(SELECT_PPSE)
        assert not isinstance(raised.value, CardRemoved)
        with pytest.raises(CardRemoved, match="power on first"):
            reader.transceive(SELECT_PPSE)


def test_a_card_that_leaves_the_field_is_removed(card: ScriptedCard) -> None:
    with NfcReader(card.path, timeout=SHORT_S) as quick:
        quick.power_on()
        card.leave()
        with pytest.raises(CardRemoved, match="the card left the field"):
            quick.transceive(SELECT_PPSE)


def test_a_mute_card_still_in_the_field_is_a_link_error(
    cards: Callable[..., ScriptedCard],
) -> None:
    card = cards(lambda frame: ATS if frame == RATS else None)
    with NfcReader(card.path, timeout=SHORT_S, retries=1) as reader:
        reader.power_on()
        with pytest.raises(LinkError, match="it is still in the field") as raised:
            reader.transceive(SELECT_PPSE)
        assert not isinstance(raised.value, CardRemoved)
    assert card.received() == [RATS, b"\x02" + SELECT_PPSE, b"\xb2"]  # one retry, no RATS


def test_rfoff_from_the_link_is_a_removed_card(cards: Callable[..., ScriptedCard]) -> None:
    card = cards(lambda frame: ATS if frame == RATS else Raw(b"RFOFF"))
    with NfcReader(card.path) as reader:
        reader.power_on()
        with pytest.raises(CardRemoved, match="RFOFF"):
            reader.transceive(SELECT_PPSE)


def test_a_usb_path_without_a_reader_is_an_os_error() -> None:
    with pytest.raises(OSError, match="usb:ffff:ffff: no NFC reader found"):
        NfcReader("usb:ffff:ffff")


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ("udp:127.0.0.1:x", "the port is not a number"),
        ("udp:127.0.0.1:0", "port 0 is not 1 to 65535"),
        ("udp:a:1:2", "expected udp:HOST:PORT"),
    ],
)
def test_bad_udp_paths_are_refused(device: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NfcReader(device)
