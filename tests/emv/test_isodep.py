"""ISO/IEC 14443-4 (emv.isodep): RATS and ATS, blocks, the card's and the reader's
rules, and the two sides against each other over a link that loses frames."""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import combinations

import pytest

from emv.isodep import (
    ATS,
    FRAME_SIZES,
    FWI,
    MAX_COMMAND,
    S_DESELECT,
    Ats,
    Block,
    BlockType,
    IsoDepError,
    Pcd,
    PcdStep,
    Picc,
    Rats,
    Unanswered,
    build_ats,
    frame_size,
    frame_size_index,
    frame_waiting_time,
    i_block,
    parse_ats,
    parse_block,
    parse_rats,
    r_ack,
    r_nak,
    s_wtx,
)

SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
OK = b"\x90\x00"
h = bytes.fromhex


# --- frame sizes and times -----------------------------------------------------------------


def test_frame_sizes_by_index() -> None:
    assert [frame_size(i) for i in range(16)] == [*FRAME_SIZES, 4096, 4096, 4096]
    assert frame_size_index(256) == 8
    assert frame_size_index(16) == 0
    with pytest.raises(IsoDepError, match="0 to F"):
        frame_size(16)
    with pytest.raises(IsoDepError, match="no frame size integer stands for 100 bytes"):
        frame_size_index(100)


def test_frame_waiting_time_is_256_times_16_over_fc_times_two_to_the_fwi() -> None:
    assert frame_waiting_time(0) == pytest.approx(302.06e-6, rel=1e-4)
    assert frame_waiting_time(4) == pytest.approx(4.833e-3, rel=1e-3)
    assert frame_waiting_time(FWI) == pytest.approx(4.949, rel=1e-3)
    for rfu in (15, -1):
        with pytest.raises(IsoDepError, match="15 is RFU"):
            frame_waiting_time(rfu)


# --- RATS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "fsdi", "cid", "fsd"),
    [
        (h("E080"), 8, 0, 256),
        (h("E025"), 2, 5, 32),
        (h("E00E"), 0, 14, 16),
        (h("E0C0"), 12, 0, 4096),
        (h("E0F0"), 15, 0, 4096),  # D to F are RFU: taken as C
    ],
)
def test_rats_gives_fsd_and_cid(frame: bytes, fsdi: int, cid: int, fsd: int) -> None:
    rats = parse_rats(frame)
    assert (rats.fsdi, rats.cid, rats.fsd) == (fsdi, cid, fsd)
    assert rats.to_bytes() == frame


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"", "RATS \\(empty\\): 2 bytes"),
        (h("E0"), "RATS E0: 2 bytes .* not 1"),
        (h("E08000"), "not 3"),
        (h("E180"), "the start byte is E1, not E0"),
        (h("E08F"), "CID 15 is RFU"),
    ],
)
def test_a_malformed_rats_is_refused(frame: bytes, problem: str) -> None:
    with pytest.raises(IsoDepError, match=problem):
        parse_rats(frame)


def test_a_rats_with_out_of_range_fields_cannot_be_built() -> None:
    with pytest.raises(IsoDepError, match="CID is 0 to 14"):
        Rats(8, 15).to_bytes()
    with pytest.raises(IsoDepError, match="FSDI is 0 to F"):
        Rats(16, 0).to_bytes()


# --- ATS -----------------------------------------------------------------------------------


def test_this_cards_ats() -> None:
    assert h("057880E000") == ATS == build_ats()
    ats = parse_ats(ATS)
    assert (ats.fsc, ats.fwi, ats.sfgi, ats.ta, ats.historical) == (256, 14, 0, 0x80, b"")
    assert ats.fwt == frame_waiting_time(14)
    assert not ats.cid_supported
    assert not ats.nad_supported


def test_an_ats_with_historical_bytes_and_small_frames() -> None:
    frame = build_ats(fsci=0, fwi=4, sfgi=2, historical=h("8001"))
    assert frame == h("0770 80 42 00 8001")
    ats = parse_ats(frame)
    assert (ats.fsc, ats.fwi, ats.sfgi, ats.historical) == (16, 4, 2, h("8001"))
    assert ats.to_bytes() == frame


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"fsci": 9}, "FSCI 9: 0 to 8"),
        ({"fwi": 15}, "FWI 15"),
        ({"sfgi": 15}, "SFGI 15"),
        ({"historical": bytes(250)}, "more than 254"),
    ],
)
def test_an_ats_out_of_range_cannot_be_built(arguments: dict[str, int], problem: str) -> None:
    with pytest.raises(IsoDepError, match=problem):
        build_ats(**arguments)  # type: ignore[arg-type]


def test_absent_interface_bytes_take_their_defaults() -> None:
    bare = parse_ats(h("01"))
    assert (bare.fsc, bare.fwi, bare.sfgi) == (32, 4, 0)
    assert bare.cid_supported
    assert not bare.nad_supported
    only_tc = parse_ats(h("034003"))
    assert (only_tc.ta, only_tc.tb, only_tc.tc) == (None, None, 0x03)
    assert only_tc.nad_supported


def test_rfu_fwi_and_sfgi_in_an_ats_are_taken_as_defaults() -> None:
    ats = parse_ats(h("0320FF"))
    assert (ats.fwi, ats.sfgi) == (4, 0)


def test_the_house_cards_ats_says_cid_supported() -> None:
    assert parse_ats(h("057880E002")).cid_supported


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"", "ATS \\(empty\\): no TL"),
        (h("0578"), "TL says 5 bytes, the ATS has 2"),
        (h("0288"), "T0 88 has b8 set"),
        (h("037880"), "T0 announces TB\\(1\\), the ATS ends before it"),
        (h("0270"), "announces TA\\(1\\)"),
    ],
)
def test_a_malformed_ats_is_refused(frame: bytes, problem: str) -> None:
    with pytest.raises(IsoDepError, match=problem):
        parse_ats(frame)


# --- blocks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "block"),
    [
        (h("02"), Block(BlockType.I, 0)),
        (h("039000"), Block(BlockType.I, 1, inf=OK)),
        (h("12AB"), Block(BlockType.I, 0, chaining=True, inf=h("AB"))),
        (h("0A05AB"), Block(BlockType.I, 0, inf=h("AB"), cid=5)),
        (h("0733AB"), Block(BlockType.I, 1, inf=h("AB"), nad=0x33)),
        (h("0E0133AB"), Block(BlockType.I, 0, inf=h("AB"), cid=1, nad=0x33)),
        (h("A2"), Block(BlockType.R_ACK, 0)),
        (h("A3"), Block(BlockType.R_ACK, 1)),
        (h("B2"), Block(BlockType.R_NAK, 0)),
        (h("BB02"), Block(BlockType.R_NAK, 1, cid=2)),
        (h("C2"), Block(BlockType.DESELECT)),
        (h("CA03"), Block(BlockType.DESELECT, cid=3)),
        (h("F23B"), Block(BlockType.WTX, inf=h("3B"))),
    ],
)
def test_blocks_parse_and_encode(frame: bytes, block: Block) -> None:
    assert parse_block(frame) == block
    assert block.to_bytes() == frame


def test_block_builders() -> None:
    assert i_block(1, OK, chaining=True) == h("139000")
    assert (r_ack(0), r_ack(1), r_nak(0), r_nak(1)) == (h("A2"), h("A3"), h("B2"), h("B3"))
    assert h("C2") == S_DESELECT
    assert s_wtx(59) == h("F23B")
    assert parse_block(h("F2C1")).wtxm == 1  # power level bits are not the WTXM
    with pytest.raises(IsoDepError, match="WTXM 60: 1 to 59"):
        s_wtx(60)
    with pytest.raises(IsoDepError, match="0 or 1, not 2"):
        Block(BlockType.I, 2).to_bytes()
    with pytest.raises(IsoDepError, match="only an I-block carries a NAD"):
        Block(BlockType.R_ACK, nad=1).to_bytes()
    with pytest.raises(IsoDepError, match="R\\(ACK\\) carries no WTXM"):
        _ = Block(BlockType.R_ACK).wtxm


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"", "an empty frame: no PCB"),
        (h("42"), "PCB 42: b8 b7 01 is RFU"),
        (h("00"), "PCB 00: b2 is 0"),
        (h("A0"), "PCB A0: b2 is 0"),
        (h("22"), "an I-block with b6 set"),
        (h("82"), "an R-block with b6 clear"),
        (h("A6"), "b3 \\(NAD\\) is set in an R\\(ACK\\)"),
        (h("C6"), "b3 \\(NAD\\) is set in an S\\(DESELECT\\)"),
        (h("D2"), "S-block b6 b5 01 is not supported"),
        (h("E2"), "S-block b6 b5 10 is not supported"),
        (h("C3"), "an S-block with b1 set"),
        (h("A200"), "an R\\(ACK\\) has no INF, 1 byte\\(s\\) follow"),
        (h("B30000"), "an R\\(NAK\\) has no INF, 2 byte"),
        (h("C200"), "an S\\(DESELECT\\) has no INF"),
        (h("F2"), "an S\\(WTX\\) has a 1-byte INF, not 0"),
        (h("F20102"), "an S\\(WTX\\) has a 1-byte INF, not 2"),
        (h("F200"), "WTXM 0 \\(1 to 59\\)"),
        (h("F23C"), "WTXM 60"),
        (h("0A"), "announces a CID byte, the frame ends"),
        (h("06"), "announces a NAD byte, the frame ends"),
        (h("0E01"), "announces a NAD byte"),
    ],
)
def test_a_malformed_block_is_refused(frame: bytes, problem: str) -> None:
    with pytest.raises(IsoDepError, match=problem):
        parse_block(frame)


# --- the PICC ------------------------------------------------------------------------------


@pytest.fixture
def picc() -> Picc:
    return Picc.activate(h("E080"))


def command(picc: Picc, frame: bytes) -> bytes:
    """The command APDU a frame completes (asserting it does)."""
    reply = picc.receive(frame)
    assert reply.command is not None, reply
    assert reply.send is None
    return reply.command


def test_activation_takes_fsd_and_cid_from_rats() -> None:
    picc = Picc.activate(h("E025"))
    assert (picc.fsd, picc.cid, picc.fsc, picc.number) == (32, 5, 256, 1)  # Rule C
    assert picc.max_inf == 29
    with pytest.raises(IsoDepError, match="CID 15 is RFU"):
        Picc.activate(h("E08F"))


def test_an_ats_longer_than_fsd_allows_is_refused() -> None:
    with pytest.raises(IsoDepError, match="longer than FSD 16 allows \\(14\\)"):
        Picc.activate(h("E000"), build_ats(historical=bytes(10)))


def test_block_numbers_toggle_with_each_i_block(picc: Picc) -> None:
    assert command(picc, h("02") + SELECT_PPSE) == SELECT_PPSE
    assert picc.respond(h("6A82")) == h("026A82")  # Rule D: 1 -> 0
    assert command(picc, h("03") + SELECT_PPSE) == SELECT_PPSE
    assert picc.respond(OK) == h("039000")
    assert command(picc, h("02") + SELECT_PPSE) == SELECT_PPSE
    assert picc.respond(b"") == h("02")  # an empty response is an empty I-block


def test_a_chained_command_is_acknowledged_then_handed_over_whole(picc: Picc) -> None:
    assert picc.receive(h("12") + SELECT_PPSE[:10]).send == h("A2")  # Rule 2
    assert picc.receive(h("13") + SELECT_PPSE[10:15]).send == h("A3")
    assert command(picc, h("02") + SELECT_PPSE[15:]) == SELECT_PPSE
    assert picc.respond(OK) == h("029000")


def test_a_response_longer_than_fsd_minus_3_is_chained() -> None:
    picc = Picc.activate(h("E000"))  # FSD 16: 13 bytes a block
    response = bytes(range(30)) + OK
    command(picc, h("02") + SELECT_PPSE[:13])
    first = picc.respond(response)
    assert first == h("12") + response[:13]
    second = picc.receive(h("A3")).send  # the PCD's R(ACK) carries its next number
    assert second == h("13") + response[13:26]  # Rule E then Rule 13
    last = picc.receive(h("A2")).send
    assert last == h("02") + response[26:]
    assert first[1:] + second[1:] + last[1:] == response


def test_frames_are_never_longer_than_256_bytes_whatever_the_fsd() -> None:
    picc = Picc.activate(h("E0C0"))  # FSD 4096
    command(picc, h("02") + SELECT_PPSE)
    assert len(picc.respond(bytes(300))) == 254  # 256 less the CRC


def test_a_nak_or_ack_of_the_cards_own_number_sends_the_last_block_again(picc: Picc) -> None:
    command(picc, h("02") + SELECT_PPSE)
    sent = picc.respond(OK)
    assert picc.receive(h("B2")).send == sent  # Rule 11
    assert picc.receive(h("A2")).send == sent


def test_the_last_chained_block_is_sent_again_when_the_pcd_missed_it() -> None:
    picc = Picc.activate(h("E000"))
    command(picc, h("02") + SELECT_PPSE[:13])
    first = picc.respond(bytes(20))
    assert picc.receive(h("A2")).send == first  # Rule 11: the PCD did not get it
    second = picc.receive(h("A3")).send
    assert second is not None and second[0] == 0x03


def test_a_nak_of_another_number_is_answered_with_an_ack(picc: Picc) -> None:
    assert picc.receive(h("B2")).send == h("A3")  # Rule 12: the PCD's I-block was lost
    command(picc, h("02") + SELECT_PPSE)
    picc.respond(OK)
    assert picc.receive(h("B3")).send == h("A2")


def test_an_ack_or_nak_with_nothing_to_send_again_is_ignored(picc: Picc) -> None:
    reply = picc.receive(h("B3"))
    assert reply.send is None
    assert reply.ignored == "R(NAK): no block sent yet to send again"
    reply = picc.receive(h("A2"))
    assert reply.send is None
    assert reply.ignored == "R(ACK) 0 while the card is not chaining"


def test_deselect_is_answered_and_ends_the_session(picc: Picc) -> None:
    reply = picc.receive(h("C2"))
    assert (reply.send, reply.deselected) == (S_DESELECT, True)
    assert picc.deselected
    after = picc.receive(h("02") + SELECT_PPSE)
    assert after.send is None and after.command is None
    assert after.ignored is not None and after.ignored.startswith("deselected")


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "an empty frame: no PCB"),
        (h("22") + SELECT_PPSE, "an I-block with b6 set"),
        (h("42"), "b8 b7 01 is RFU"),
        (h("A200"), "has no INF"),
        (h("0A00") + SELECT_PPSE, "a block with CID 0: this card supports none"),
        (h("0600") + SELECT_PPSE, "a block with NAD 00: this card supports none"),
        (h("F201"), "S\\(WTX\\) answers a request this card never makes"),
        (h("E080"), "PCB E0: b2 is 0"),  # a second RATS
    ],
)
def test_an_invalid_block_is_ignored_and_says_why(picc: Picc, frame: bytes, why: str) -> None:
    picc.receive(h("02") + SELECT_PPSE)
    picc.respond(OK)
    reply = picc.receive(frame)
    assert (reply.send, reply.command, reply.deselected) == (None, None, False)  # Rule 10
    assert reply.ignored is not None
    assert re.search(why, reply.ignored), reply.ignored
    assert picc.number == 0  # nothing changed: the next I-block is answered as usual
    command(picc, h("03") + SELECT_PPSE)


def test_a_frame_longer_than_fsc_is_ignored() -> None:
    picc = Picc(build_ats(fsci=0))  # FSC 16: 14 bytes without the CRC
    assert picc.receive(h("02") + bytes(14)).ignored == "a 15-byte frame, longer than FSC 16 allows"
    command(picc, h("02") + bytes(13))


def test_a_command_chained_beyond_the_longest_apdu_is_dropped(picc: Picc) -> None:
    chunk = bytes(253)
    for count in range(MAX_COMMAND // len(chunk)):
        assert picc.receive(bytes((0x12 | (count & 1),)) + chunk).send is not None
    reply = picc.receive(h("13") + chunk)
    assert reply.ignored == f"a chained command longer than {MAX_COMMAND} bytes"


def test_an_i_block_while_the_card_chains_drops_the_rest_of_the_response() -> None:
    picc = Picc.activate(h("E000"))
    command(picc, h("02") + SELECT_PPSE[:13])
    picc.respond(bytes(40))
    assert command(picc, h("03") + OK) == OK
    assert picc.respond(h("6985")) == h("036985")
    assert picc.receive(h("A2")).ignored == "R(ACK) 0 while the card is not chaining"


@pytest.mark.parametrize(
    ("pps", "answer"),
    [
        (h("D011 00"), h("D0")),
        (h("D001"), h("D0")),
        (h("D011 05"), None),  # another bit rate: TA(1) offers none
        (h("D501"), None),  # another CID
        (h("D0"), None),
        (h("D010 00"), None),
    ],
)
def test_pps_first_is_answered_when_it_keeps_106_kbits(pps: bytes, answer: bytes | None) -> None:
    picc = Picc.activate(h("E080"))
    reply = picc.receive(pps)
    assert reply.send == answer
    assert (reply.ignored is None) == (answer is not None)
    command(picc, h("02") + SELECT_PPSE)  # then the protocol goes on


def test_pps_after_the_first_block_is_an_invalid_block(picc: Picc) -> None:
    command(picc, h("02") + SELECT_PPSE)
    picc.respond(OK)
    assert picc.receive(h("D01100")).ignored is not None


def test_respond_and_receive_out_of_turn_are_usage_errors(picc: Picc) -> None:
    with pytest.raises(RuntimeError, match="no command APDU waits"):
        picc.respond(OK)
    command(picc, h("02") + SELECT_PPSE)
    with pytest.raises(RuntimeError, match="call respond\\(\\) first"):
        picc.receive(h("03") + SELECT_PPSE)


# --- the PCD -------------------------------------------------------------------------------


def pcd(ats: bytes = ATS, **options: int) -> Pcd:
    return Pcd(parse_ats(ats), **options)


def test_a_command_and_its_response() -> None:
    reader = pcd()
    assert reader.command(SELECT_PPSE) == h("02") + SELECT_PPSE  # Rule A
    assert reader.receive(h("026A82")) == PcdStep(response=h("6A82"))
    assert reader.command(SELECT_PPSE)[:1] == h("03")  # Rule B
    assert reader.receive(h("039000")).response == OK


def test_a_command_longer_than_fsc_minus_3_is_chained() -> None:
    reader = pcd(build_ats(fsci=0))  # FSC 16
    assert reader.max_inf == 13
    assert reader.command(SELECT_PPSE) == h("12") + SELECT_PPSE[:13]
    assert reader.receive(h("A2")).send == h("03") + SELECT_PPSE[13:]  # Rule 7
    assert reader.receive(h("039000")).response == OK


def test_the_reader_chip_can_limit_frames_below_fsc() -> None:
    assert pcd(max_frame=32).max_inf == 29


def test_a_chained_response_is_acknowledged_and_assembled() -> None:
    reader = pcd()
    reader.command(SELECT_PPSE)
    assert reader.receive(h("12AABB")).send == h("A3")  # Rule 2
    assert reader.receive(h("13CC")).send == h("A2")
    assert reader.receive(h("029000")).response == h("AABBCC9000")


def test_an_ack_of_another_number_sends_the_last_i_block_again() -> None:
    reader = pcd(build_ats(fsci=0))
    first = reader.command(SELECT_PPSE)
    assert reader.receive(h("A3")).send == first  # Rule 6: the PICC missed it
    last = reader.receive(h("A2")).send
    assert last is not None
    assert reader.receive(h("A2")).send == last  # and again for the last block


def test_a_time_out_is_answered_with_nak_or_with_ack_while_the_card_chains() -> None:
    reader = pcd()
    reader.command(SELECT_PPSE)
    assert reader.timeout() == h("B2")  # Rule 4
    assert reader.receive(h("12AA")).send == h("A3")
    assert reader.timeout() == h("A3")  # Rule 5
    assert reader.invalid("CRC error") == h("A3")
    assert reader.receive(h("039000")).response == h("AA9000")


def test_a_garbled_frame_is_answered_like_a_time_out() -> None:
    reader = pcd()
    reader.command(SELECT_PPSE)
    assert reader.receive(h("42")).send == h("B2")
    assert reader.receive(b"").send == h("B2")


def test_no_answer_after_the_retries_is_unanswered() -> None:
    reader = pcd(retries=2)
    reader.command(SELECT_PPSE)
    assert reader.timeout() == h("B2")
    assert reader.timeout() == h("B2")
    with pytest.raises(Unanswered, match="no answer, after 2 retransmission"):
        reader.timeout()


def test_a_valid_answer_resets_the_retry_count() -> None:
    reader = pcd(retries=1)
    reader.command(SELECT_PPSE)
    reader.timeout()
    assert reader.receive(h("12AA")).send == h("A3")
    assert reader.timeout() == h("A3")


def test_wtx_is_granted_with_a_longer_wait() -> None:
    reader = pcd(build_ats(fwi=4))
    reader.command(SELECT_PPSE)
    step = reader.receive(h("F20A"))
    assert step.send == h("F20A")
    assert step.wait == pytest.approx(10 * frame_waiting_time(4))
    long_wait = pcd()
    long_wait.command(SELECT_PPSE)
    assert long_wait.receive(h("F23B")).wait == frame_waiting_time(14)  # capped at FWT(14)


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([h("039000")], "I-block 039000 numbered 1, expected 0"),
        ([h("C2")], "S\\(DESELECT\\) C2 where an I-block was due"),
        ([h("A2")], "R\\(ACK\\) A2 where an I-block was due"),
        ([h("12AA"), h("A3")], "R\\(ACK\\) A3 where an I-block was due"),
    ],
)
def test_a_block_that_breaks_the_protocol_is_an_error(answers: list[bytes], problem: str) -> None:
    reader = pcd()
    reader.command(SELECT_PPSE)
    *before, last = answers
    for answer in before:
        reader.receive(answer)
    with pytest.raises(IsoDepError, match=problem):
        reader.receive(last)


def test_only_an_ack_continues_a_chained_command() -> None:
    reader = pcd(build_ats(fsci=0))
    reader.command(SELECT_PPSE)
    with pytest.raises(IsoDepError, match="I-block 029000 to a chained command"):
        reader.receive(h("029000"))


def test_frames_with_cid_or_beyond_fsd_are_invalid() -> None:
    reader = pcd(fsd=16)
    reader.command(SELECT_PPSE)
    assert reader.receive(h("0A00") + OK).send == h("B2")
    assert reader.receive(h("02") + bytes(14)).send == h("B2")


def test_out_of_turn_calls_are_usage_errors() -> None:
    reader = pcd()
    with pytest.raises(RuntimeError, match="call command\\(\\) first"):
        reader.receive(h("029000"))
    with pytest.raises(RuntimeError, match="no exchange"):
        reader.timeout()
    reader.command(SELECT_PPSE)
    with pytest.raises(RuntimeError, match="in progress"):
        reader.command(SELECT_PPSE)
    with pytest.raises(ValueError, match="retries"):
        pcd(retries=-1)


# --- both sides over a link that loses frames ----------------------------------------------


def exchange(
    reader: Pcd, picc: Picc, apdu: bytes, card: Callable[[bytes], bytes], lost: set[int]
) -> tuple[bytes, list[bytes]]:
    """``apdu`` from ``reader`` to ``picc``, frames numbered from 1 in the order they
    are sent (both ways); those in ``lost`` never arrive (the other side times out).
    The response and every command the card computed."""
    computed: list[bytes] = []
    sent = 0
    frame = reader.command(apdu)
    for _ in range(100):
        sent += 1
        answer = None
        if sent not in lost:
            reply = picc.receive(frame)
            answer = reply.send
            if reply.command is not None:
                computed.append(reply.command)
                answer = picc.respond(card(reply.command))
        if answer is not None:
            sent += 1
        step = PcdStep(send=reader.timeout()) if answer is None or sent in lost else None
        step = step or reader.receive(answer or b"")
        if step.response is not None:
            return step.response, computed
        assert step.send is not None
        frame = step.send
    raise AssertionError("the exchange never ended")


def long_card(command: bytes) -> bytes:
    return command[::-1] * 3 + OK


LOSSES = [set(), *({n} for n in range(1, 15)), *({a, b} for a, b in combinations(range(1, 13), 2))]


@pytest.mark.parametrize("lost", LOSSES, ids=lambda lost: "-".join(map(str, sorted(lost))) or "-")
def test_lost_frames_anywhere_are_recovered_and_the_command_runs_once(lost: set[int]) -> None:
    """Small frames both ways (FSC 16, FSD 16): the command goes in 2 blocks, the
    response comes back in 5 (12 frames in all); any one frame lost, or any two,
    costs retransmissions only."""
    reader = Pcd(parse_ats(build_ats(fsci=0)), fsd=16, retries=2)
    picc = Picc.activate(Rats(frame_size_index(16), 0).to_bytes(), build_ats(fsci=0))
    response, computed = exchange(reader, picc, SELECT_PPSE, long_card, lost)
    assert response == long_card(SELECT_PPSE)
    assert computed == [SELECT_PPSE]
    again, _ = exchange(reader, picc, SELECT_PPSE[:5], long_card, set())
    assert again == long_card(SELECT_PPSE[:5])  # block numbers still agree


def test_three_frames_lost_in_a_row_leave_the_exchange_unanswered() -> None:
    reader = Pcd(parse_ats(ATS), retries=2)
    picc = Picc.activate(h("E080"))
    with pytest.raises(Unanswered):
        exchange(reader, picc, SELECT_PPSE, long_card, {1, 2, 4, 6})


def test_an_i_block_the_picc_keeps_missing_is_unanswered() -> None:
    reader = pcd(retries=1)
    first = reader.command(SELECT_PPSE)
    assert reader.receive(h("A3")).send == first  # Rule 6
    with pytest.raises(Unanswered, match="missed an I-block 2 times"):
        reader.receive(h("A3"))


def test_after_an_error_the_session_is_over() -> None:
    reader = pcd()
    reader.command(SELECT_PPSE)
    with pytest.raises(IsoDepError):
        reader.receive(h("C2"))
    for call in (lambda: reader.command(SELECT_PPSE), reader.timeout, lambda: reader.receive(OK)):
        with pytest.raises(IsoDepError, match="activate the card again"):
            call()


def test_ats_dataclass_defaults_match_an_ats_of_tl_only() -> None:
    assert Ats() == parse_ats(h("01"))
    assert Ats().to_bytes() == h("0202")
    assert parse_ats(h("0202")) == Ats()
