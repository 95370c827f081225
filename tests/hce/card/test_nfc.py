"""The card side of the nfcpy link (hce.card.nfc): an NfcCard serving a recording card
on nfcpy's udp link, driven by a reader made here from a loopback socket that speaks
the udp driver's framing ("106A <hex>" datagrams; RFOFF). Every wait is bounded by
a socket time-out or an event; silence is shown by the next answer being another
frame's. Last, nfcpy's own reader stack (nfc.tag.activate, Type4Tag) against it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import nfc
import nfc.clf
import nfc.clf.udp
import nfc.tag
import pytest

from emv.link import CardRemoved
from hce.card.nfc import NfcCard

WAIT_S = 5.0
UID = bytes.fromhex("08A1B2C3")
ATS = bytes.fromhex("057880E000")
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
OK = b"\x90\x00"


class Recorder:
    """A card that logs what happens to it and answers ``answer(command)``."""

    def __init__(self, answer: Callable[[bytes], bytes] = lambda command: OK) -> None:
        self.answer = answer
        self.log: list[str] = []
        self.off = threading.Event()

    def power_on(self) -> bytes:
        self.log.append("on")
        return bytes.fromhex("057880E002")

    def power_off(self) -> None:
        self.log.append("off")
        self.off.set()

    def transceive(self, command: bytes) -> bytes:
        self.log.append(command.hex().upper())
        return self.answer(command)


class Reader:
    """The reader's end of nfcpy's udp link, by hand."""

    def __init__(self, port: int) -> None:
        self.card = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT_S)

    def send(self, frame: bytes) -> None:
        self.sock.sendto(b"106A " + frame.hex().encode(), self.card)

    def receive(self) -> bytes:
        data, _ = self.sock.recvfrom(1024)
        brty, text = data.split()
        assert brty == b"106A"
        return bytes.fromhex(text.decode())

    def ask(self, frame: bytes) -> bytes:
        self.send(frame)
        return self.receive()

    def rfoff(self) -> None:
        self.sock.sendto(b"RFOFF", self.card)


Serve = Callable[..., tuple[NfcCard, Recorder, Reader]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(card=None, **options)``: an NfcCard on a free loopback port, served by
    a thread, and a reader for it; all closed and joined at the end."""
    started: list[tuple[NfcCard, threading.Thread, Reader]] = []

    def start(card: Recorder | None = None, **options: object) -> tuple[NfcCard, Recorder, Reader]:
        card = card or Recorder()
        target = NfcCard(card, "udp:127.0.0.1:0", uid=UID, **options)  # type: ignore[arg-type]
        thread = threading.Thread(target=target.serve, args=(threading.Event(),))
        thread.start()
        assert target.ready.wait(WAIT_S)
        reader = Reader(target.port or 0)
        started.append((target, thread, reader))
        return target, card, reader

    yield start
    for target, thread, reader in started:
        target.close()
        thread.join(WAIT_S)
        reader.sock.close()
        assert not thread.is_alive()


def test_it_listens_on_a_free_loopback_port(serve: Serve) -> None:
    target, _, _ = serve()
    assert target.port is not None and target.port > 0
    assert target.path == f"udp:127.0.0.1:{target.port}"
    assert target.ats == ATS
    assert target.sessions == 0


def test_rats_powers_the_card_on_then_gets_the_ats(serve: Serve) -> None:
    target, card, reader = serve()
    assert reader.ask(bytes.fromhex("E080")) == ATS
    assert card.log == ["on"]
    assert target.sessions == 1


def test_the_ats_has_the_fsci_and_historical_bytes_asked_for(serve: Serve) -> None:
    _, _, reader = serve(fsci=5, historical=b"\x80")
    assert reader.ask(bytes.fromhex("E080")) == bytes.fromhex("067580E00080")


def test_commands_go_to_the_card_and_responses_come_back(serve: Serve) -> None:
    _, card, reader = serve(Recorder(lambda command: command[:2] + OK))
    reader.ask(bytes.fromhex("E080"))
    assert reader.ask(b"\x02" + SELECT_PPSE) == b"\x02\x00\xa4\x90\x00"
    assert reader.ask(b"\x03\x80\xa8\x00\x00") == b"\x03\x80\xa8\x90\x00"
    assert card.log == ["on", SELECT_PPSE.hex().upper(), "80A80000"]


def test_a_long_response_is_chained_to_the_readers_fsd(serve: Serve) -> None:
    response = bytes(range(30)) + OK
    _, _, reader = serve(Recorder(lambda command: response))
    reader.ask(bytes.fromhex("E000"))  # FSD 16: 13 bytes a block
    assert reader.ask(b"\x02" + SELECT_PPSE[:5]) == b"\x12" + response[:13]
    assert reader.ask(b"\xa3") == b"\x13" + response[13:26]
    assert reader.ask(b"\xa2") == b"\x02" + response[26:]


def test_a_chained_command_is_acknowledged_and_given_whole(serve: Serve) -> None:
    _, card, reader = serve(fsci=0)  # FSC 16: the reader chains
    reader.ask(bytes.fromhex("E080"))
    assert reader.ask(b"\x12" + SELECT_PPSE[:13]) == b"\xa2"
    assert reader.ask(b"\x03" + SELECT_PPSE[13:]) == b"\x03" + OK
    assert card.log[-1] == SELECT_PPSE.hex().upper()


def test_a_lost_answer_is_sent_again_on_nak(serve: Serve) -> None:
    _, card, reader = serve()
    reader.ask(bytes.fromhex("E080"))
    assert reader.ask(b"\x02" + SELECT_PPSE) == b"\x02" + OK
    assert reader.ask(b"\xb2") == b"\x02" + OK  # Rule 11
    assert card.log.count(SELECT_PPSE.hex().upper()) == 1


def test_deselect_powers_the_card_off_before_its_answer(serve: Serve) -> None:
    target, card, reader = serve()
    reader.ask(bytes.fromhex("E080"))
    assert reader.ask(b"\xc2") == b"\xc2"
    assert card.log == ["on", "off"]
    assert reader.ask(bytes.fromhex("E080")) == ATS  # a new tap
    assert card.log == ["on", "off", "on"]
    assert target.ended == "deselected"
    assert target.sessions == 2


def test_rfoff_ends_the_session(serve: Serve) -> None:
    target, card, reader = serve()
    reader.ask(bytes.fromhex("E080"))
    reader.rfoff()
    assert card.off.wait(WAIT_S)
    assert reader.ask(bytes.fromhex("E080")) == ATS
    assert card.log == ["on", "off", "on"]
    assert target.ended == "the reader switched its field off (RFOFF)"


def test_a_silent_reader_ends_the_session_after_idle_timeout(serve: Serve) -> None:
    target, card, reader = serve(idle_timeout=0.05)
    reader.ask(bytes.fromhex("E080"))
    assert card.off.wait(WAIT_S)
    assert reader.ask(bytes.fromhex("E080")) == ATS
    assert target.ended == "no frame from the reader in 0.05 s"


def test_a_failing_card_answers_6f00_and_the_session_goes_on(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(command: bytes) -> bytes:
        if command == SELECT_PPSE:
            raise RuntimeError("broken applet")
        return OK

    _, card, reader = serve(Recorder(fail))
    reader.ask(bytes.fromhex("E080"))
    assert reader.ask(b"\x02" + SELECT_PPSE) == b"\x02\x6f\x00"
    assert reader.ask(b"\x03\x80\xca\x9f\x36\x00") == b"\x03" + OK
    assert "off" not in card.log
    assert "the card failed on 00A40400" in caplog.text


def test_a_card_that_left_the_field_is_mute_and_powered_off(serve: Serve) -> None:
    def leave(command: bytes) -> bytes:
        raise CardRemoved("torn")

    target, card, reader = serve(Recorder(leave))
    reader.ask(bytes.fromhex("E080"))
    reader.send(b"\x02" + SELECT_PPSE)  # no answer: the next frame's answer comes first
    assert card.off.wait(WAIT_S)
    assert reader.ask(bytes.fromhex("E080")) == ATS
    assert target.ended == "the card left the field: torn"


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # no frame at all: nfcpy's "no data"
        bytes.fromhex("22") + SELECT_PPSE,  # bad PCB
        bytes.fromhex("0A00") + SELECT_PPSE,  # a CID the card does not support
        bytes.fromhex("A200"),  # an R-block with INF
        bytes.fromhex("F201"),  # S(WTX) the card never asked for
    ],
)
def test_invalid_frames_get_no_answer(serve: Serve, frame: bytes) -> None:
    _, card, reader = serve()
    reader.ask(bytes.fromhex("E080"))
    reader.send(frame)
    assert reader.ask(b"\x02" + SELECT_PPSE) == b"\x02" + OK  # the first answer is this one's
    assert card.log == ["on", SELECT_PPSE.hex().upper()]


def test_a_rats_with_cid_15_gets_no_ats(serve: Serve) -> None:
    target, card, reader = serve()
    reader.send(bytes.fromhex("E08F"))
    assert reader.ask(bytes.fromhex("E080")) == ATS
    assert card.log == ["on"]
    assert target.sessions == 2


def test_anticollision_with_a_7_byte_uid(serve: Serve) -> None:
    uid = bytes.fromhex("04112233445566")
    target = NfcCard(Recorder(), "udp:127.0.0.1:0", uid=uid)
    thread = threading.Thread(target=target.serve_once, args=(WAIT_S,))
    thread.start()
    reader = Reader(target.port or 0)
    try:
        assert reader.ask(b"\x26") == b"\x44\x00"  # SENS_RES: double size UID
        cl1 = reader.ask(b"\x93\x20")
        assert cl1 == b"\x88" + uid[:3] + bytes([0x88 ^ uid[0] ^ uid[1] ^ uid[2]])
        assert reader.ask(b"\x93\x70" + cl1) == b"\x24"  # SEL_RES: cascade, ISO-DEP
        cl2 = reader.ask(b"\x95\x20")
        assert reader.ask(b"\x95\x70" + cl2) == b"\x20"
        assert reader.ask(bytes.fromhex("E080")) == ATS
    finally:
        target.close()
        thread.join(WAIT_S)
        reader.sock.close()
    assert not thread.is_alive()


def test_close_from_another_thread_ends_a_session_at_once() -> None:
    card = Recorder()
    target = NfcCard(card, "udp:127.0.0.1:0", uid=UID, idle_timeout=60.0)
    thread = threading.Thread(target=target.serve, args=(threading.Event(),))
    thread.start()
    reader = Reader(target.port or 0)
    try:
        reader.ask(bytes.fromhex("E080"))
        target.close()
        thread.join(WAIT_S)
        assert not thread.is_alive()
        assert card.log == ["on", "off"]
        assert target.ended == "closed"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", target.port or 0))  # the card's socket is closed
    finally:
        target.close()
        reader.sock.close()


@pytest.mark.parametrize("ending", ["close", "stop"])
def test_close_ends_a_listen_at_once_and_stop_within_poll(ending: str) -> None:
    poll = 60.0 if ending == "close" else 0.05  # close must not wait for the listen to end
    target = NfcCard(Recorder(), "udp:127.0.0.1:0", uid=UID, poll=poll)
    stop = threading.Event()
    thread = threading.Thread(target=target.serve, args=(stop,))
    thread.start()
    assert target.ready.wait(WAIT_S)
    if ending == "close":
        target.close()
    else:
        stop.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    target.close()
    target.close()  # harmless twice


def test_the_socket_is_bound_to_the_host_given_not_every_interface(serve: Serve) -> None:
    target, _, _ = serve()
    with pytest.raises(OSError, match="cannot listen"):
        NfcCard(Recorder(), f"udp:127.0.0.1:{target.port}", uid=UID)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.2", target.port or 0))  # 0.0.0.0 would hold it too


@pytest.mark.parametrize(
    ("device", "uid", "problem"),
    [
        ("udp:127.0.0.1:0", bytes(5), "4, 7 or 10 bytes"),
        ("udp:127.0.0.1:0", bytes.fromhex("88112233"), "cascade tag"),
        ("usb", bytes.fromhex("04112233445566"), "4-byte random UID starting with 08"),
        ("usb", bytes.fromhex("01020304"), "starting with 08"),
        ("udp:127.0.0.1:x", UID, "the port is not a number"),
        ("udp:127.0.0.1:70000", UID, "port 70000"),
        ("udp:a:1:2", UID, "expected udp:HOST:PORT"),
    ],
)
def test_bad_uids_and_paths_are_refused(device: str, uid: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NfcCard(Recorder(), device, uid=uid)


def test_a_usb_path_without_a_reader_is_an_os_error() -> None:
    with pytest.raises(OSError, match="usb:ffff:ffff: no NFC device found"):
        NfcCard(Recorder(), "usb:ffff:ffff", uid=UID)


# --- nfcpy's own reader stack ---------------------------------------------------------------


def test_nfcpys_type4_tag_talks_to_the_card(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """nfcpy's Type4ATag (RATS within 30 ms, FSD 256, its own chaining) against the card;
    its udp socket is bound to loopback here, as nfcpy would bind 0.0.0.0."""
    response = bytes(range(256)) * 2 + OK
    target, _, _ = serve(Recorder(lambda command: response))
    original = nfc.clf.udp.Device._create_socket

    def on_loopback(device: nfc.clf.udp.Device) -> None:
        fresh = device.socket is None
        original(device)
        if fresh:
            device.socket.bind(("127.0.0.1", 0))

    monkeypatch.setattr(nfc.clf.udp.Device, "_create_socket", on_loopback)
    clf = nfc.ContactlessFrontend(target.path)
    try:
        tag = None
        deadline = time.monotonic() + WAIT_S
        while tag is None and time.monotonic() < deadline:  # a missed 30 ms: poll again
            found = clf.sense(nfc.clf.RemoteTarget("106A"))
            tag = nfc.tag.activate(clf, found) if found is not None else None
        assert tag is not None
        assert tag.type == "Type4Tag"
        assert bytes(tag.identifier) == UID
        assert tag.transceive(SELECT_PPSE) == response
    finally:
        clf.close()
