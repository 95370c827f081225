"""The card side of a vpcd link (hce.card.vpcd) against a bare vpcd reader made here
from a loopback socket: framing, controls, APDUs, the ATR of PC/SC Part 3, and how a
session ends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from emv import apdu
from emv.vpcd import contactless_atr, frame, historical_bytes
from hce.card import Card
from hce.card.vpcd import VpcdCard

JOIN_S = 5.0


@dataclass
class Session:
    """A card served over one connection, and the reader's end of it."""

    card: Card
    vicc: VpcdCard
    sock: socket.socket
    thread: threading.Thread
    ended: list[str] = field(default_factory=list)

    def send(self, message: bytes) -> None:
        self.sock.sendall(frame(message))

    def receive(self) -> bytes:
        length = int.from_bytes(_exactly(self.sock, 2), "big")
        return _exactly(self.sock, length)

    def exchange(self, command: bytes) -> bytes:
        self.send(command)
        return self.receive()

    def power_on(self) -> bytes:
        self.send(b"\x01")
        self.send(b"\x04")
        return self.receive()

    def finished(self) -> str:
        """Why the card's session ended (it must end within JOIN_S)."""
        self.thread.join(JOIN_S)
        assert not self.thread.is_alive()
        return self.ended[0]


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "end of file"
        data += chunk
    return data


@pytest.fixture
def session(make_plastic: Callable[..., Card]) -> Iterator[Session]:
    card = make_plastic()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(JOIN_S)
        vicc = VpcdCard(card, "127.0.0.1", listener.getsockname()[1])
        ended: list[str] = []
        thread = threading.Thread(target=lambda: ended.append(vicc.serve_once()))
        thread.start()
        sock, _ = listener.accept()
    sock.settimeout(JOIN_S)
    out = Session(card, vicc, sock, thread, ended)
    try:
        yield out
    finally:
        vicc.close()
        sock.close()
        thread.join(JOIN_S)
        assert not thread.is_alive()


# --- the ATR -----------------------------------------------------------------------------------


def _xor(data: bytes) -> int:
    result = 0
    for byte in data:
        result ^= byte
    return result


def test_the_atr_of_a_card_without_historical_bytes() -> None:
    atr = contactless_atr(bytes.fromhex("057880E000"))  # the emvtap card's ATS
    assert atr == bytes.fromhex("3B80800101")
    assert _xor(atr[1:]) == 0  # T0 .. TCK


def test_the_atr_carries_the_ats_historical_bytes_and_a_tck() -> None:
    history = bytes.fromhex("8031B4")
    ats = bytes([5 + len(history)]) + bytes.fromhex("788077") + bytes.fromhex("02") + history
    atr = contactless_atr(ats)
    assert atr[:4] == bytes.fromhex("3B838001")  # TS, T0 (3 historical), TD1, TD2 (T=1)
    assert atr[4:-1] == history
    assert _xor(atr[1:]) == 0


@pytest.mark.parametrize(
    ("ats", "history"),
    [
        ("01", ""),
        ("0200", ""),
        ("0400AABB", "AABB"),
        ("051000AABB", "AABB"),
        ("0670000000CC", "CC"),
    ],
)
def test_historical_bytes_skip_the_interface_bytes_t0_announces(ats: str, history: str) -> None:
    assert historical_bytes(bytes.fromhex(ats)) == bytes.fromhex(history)


@pytest.mark.parametrize("ats", ["", "0578", "0370"])
def test_a_malformed_ats_is_refused(ats: str) -> None:
    with pytest.raises(ValueError, match="ATS"):
        historical_bytes(bytes.fromhex(ats))


# --- a session ---------------------------------------------------------------------------------


def test_power_on_answers_the_atr_and_ppse_answers_the_fci(session: Session) -> None:
    assert session.power_on() == bytes.fromhex("3B80800101")
    response = session.exchange(apdu.select_ppse().to_bytes())
    assert response == session.card.image.ppse_fci + b"\x90\x00"


def test_a_power_cycle_is_a_new_tap(session: Session) -> None:
    session.power_on()
    aid = session.card.applets[0].aid
    assert session.exchange(apdu.select(aid).to_bytes())[-2:] == b"\x90\x00"
    assert session.card.selected is not None
    session.send(b"\x00")
    assert session.exchange(apdu.select_ppse().to_bytes()) == b""  # not powered: no answer
    assert session.power_on() == bytes.fromhex("3B80800101")
    assert session.card.selected is None
    session.send(b"\x02")  # reset: off and on again
    session.send(b"\x04")
    assert session.receive() == bytes.fromhex("3B80800101")
    assert session.card.powered


def test_end_of_file_ends_the_session(session: Session) -> None:
    session.power_on()
    session.sock.shutdown(socket.SHUT_WR)
    assert session.finished() == "end of file"
    assert session.sock.recv(1) == b""  # the card hung up too


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\x00\x00", "zero-length"),
        (b"\x00\x01\x03", "unknown control 03"),
        (b"\x00\x10\x00\xa4", "after 2 of 16 bytes"),
        (b"\x00", "inside a length"),
    ],
)
def test_a_garbage_frame_ends_the_session_cleanly(
    session: Session, garbage: bytes, why: str
) -> None:
    session.power_on()
    session.sock.sendall(garbage)
    session.sock.shutdown(socket.SHUT_WR)
    ended = session.finished()
    assert "framing error" in ended
    assert why in ended


def test_close_ends_the_session_in_progress(session: Session) -> None:
    session.power_on()
    session.vicc.close()
    assert session.sock.recv(1) == b""
    session.finished()


def test_serve_connects_again_until_stopped(make_plastic: Callable[..., Card]) -> None:
    card = make_plastic()
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(JOIN_S)
        vicc = VpcdCard(card, "127.0.0.1", listener.getsockname()[1])
        thread = threading.Thread(target=vicc.serve, args=(stop,))
        thread.start()
        try:
            for _ in range(2):
                sock, _ = listener.accept()
                with sock:
                    sock.settimeout(JOIN_S)
                    sock.sendall(b"\x00\x01\x01\x00\x01\x04")
                    assert _exactly(sock, 7) == b"\x00\x05" + bytes.fromhex("3B80800101")
            stop.set()
        finally:
            stop.set()
            vicc.close()
            thread.join(JOIN_S)
    assert not thread.is_alive()


def test_a_reader_that_is_not_there_is_an_os_error(make_plastic: Callable[..., Card]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(OSError):
        VpcdCard(make_plastic(), "127.0.0.1", port).serve_once()
