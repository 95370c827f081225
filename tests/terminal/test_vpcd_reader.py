"""The reader side of a vpcd link (terminal.readers.vpcd) against a bare vpcd card made
here from a loopback socket. The card's answers are written before the reader asks
(TCP buffers them), so no thread is needed; a time-out is a socket time-out."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from emv.link import CardRemoved, Link, LinkError
from emv.vpcd import frame
from terminal.readers import VpcdReader

ATR = bytes.fromhex("3B80800101")
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
WAIT_S = 5.0


def received(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "end of file"
        data += chunk
    return data


@pytest.fixture
def reader() -> Iterator[VpcdReader]:
    with VpcdReader("127.0.0.1", 0, timeout=WAIT_S) as opened:
        yield opened


@pytest.fixture
def card(reader: VpcdReader) -> Iterator[socket.socket]:
    """The card's end of a connection the reader accepted."""
    with socket.create_connection(("127.0.0.1", reader.port), timeout=WAIT_S) as sock:
        reader.accept(WAIT_S)
        yield sock


def test_it_is_a_link_on_a_free_port(reader: VpcdReader) -> None:
    assert isinstance(reader, Link)
    assert reader.port > 0
    assert not reader.connected


def test_power_on_sends_on_then_get_atr_and_returns_the_atr(
    reader: VpcdReader, card: socket.socket
) -> None:
    card.sendall(frame(ATR))
    assert reader.power_on() == ATR
    assert received(card, 6) == b"\x00\x01\x01" + b"\x00\x01\x04"


def test_transceive_frames_the_command_and_returns_the_response(
    reader: VpcdReader, card: socket.socket
) -> None:
    card.sendall(frame(b"\x6f\x00\x90\x00"))
    assert reader.transceive(SELECT_PPSE) == b"\x6f\x00\x90\x00"
    assert received(card, 2 + len(SELECT_PPSE)) == frame(SELECT_PPSE)


def test_power_off_sends_off(reader: VpcdReader, card: socket.socket) -> None:
    reader.power_off()
    assert received(card, 3) == b"\x00\x01\x00"


def test_a_card_that_hangs_up_is_removed(reader: VpcdReader, card: socket.socket) -> None:
    card.close()
    with pytest.raises(CardRemoved):
        reader.transceive(SELECT_PPSE)
    assert not reader.connected
    with pytest.raises(CardRemoved, match="no card connected"):
        reader.power_on()
    reader.power_off()  # harmless with no card


def test_an_empty_answer_is_a_card_out_of_the_field(
    reader: VpcdReader, card: socket.socket
) -> None:
    card.sendall(frame(b""))
    with pytest.raises(CardRemoved, match="answered nothing"):
        reader.transceive(SELECT_PPSE)


def test_an_answer_without_a_status_word_is_a_link_error(
    reader: VpcdReader, card: socket.socket
) -> None:
    card.sendall(frame(b"\x90"))
    with pytest.raises(LinkError) as raised:
        reader.transceive(SELECT_PPSE)
    assert not isinstance(raised.value, CardRemoved)


def test_a_card_that_does_not_answer_is_a_time_out() -> None:
    with (
        VpcdReader(timeout=0.05) as reader,
        socket.create_connection(("127.0.0.1", reader.port), timeout=WAIT_S),
    ):
        reader.accept(WAIT_S)
        with pytest.raises(LinkError, match="did not answer") as raised:
            reader.transceive(SELECT_PPSE)
        assert not isinstance(raised.value, CardRemoved)
        assert not reader.connected  # a late answer must not pass for the next one


def test_a_one_byte_command_cannot_be_sent(reader: VpcdReader, card: socket.socket) -> None:
    with pytest.raises(LinkError, match="1 byte is a control"):
        reader.transceive(b"\x00")


def test_no_card_in_time_is_a_link_error(reader: VpcdReader) -> None:
    with pytest.raises(LinkError, match="no card connected"):
        reader.accept(0.01)


def test_no_card_at_all_is_removed(reader: VpcdReader) -> None:
    with pytest.raises(CardRemoved):
        reader.transceive(SELECT_PPSE)


def test_close_hangs_up_and_stops_listening(reader: VpcdReader, card: socket.socket) -> None:
    port = reader.port
    reader.close()
    assert card.recv(1) == b""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()


def test_accept_drops_the_previous_card(reader: VpcdReader, card: socket.socket) -> None:
    with socket.create_connection(("127.0.0.1", reader.port), timeout=WAIT_S) as second:
        reader.accept(WAIT_S)
        assert card.recv(1) == b""
        second.sendall(frame(ATR))
        assert reader.power_on() == ATR
