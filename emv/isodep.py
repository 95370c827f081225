"""ISO/IEC 14443-4 (ISO-DEP), the half-duplex block transmission protocol of a
contactless card, the bytes of it: activation (RATS and ATS), the blocks, and the
rules each side follows. The radio lives elsewhere (:mod:`hce.card.nfc` the card,
:mod:`terminal.readers.nfc` the reader, both through nfcpy).

Clause numbers are those of the 2001 and 2008 editions of ISO/IEC 14443-4 (§5.1
RATS, §5.2 ATS, §5.3 PPS, §7.1 block format, §7.2 FWT, §7.3 WTX, §7.5 protocol
operation, §8 deactivation; later editions moved some clauses). Rule numbers are
those of the 2016 edition, whose Rule 11 merges the earlier Rules 11 and 13.

Activation (Type A, after ISO/IEC 14443-3 anticollision): the PCD (reader) sends
RATS ``E0 xy`` (§5.1: x is FSDI, the largest frame it can receive; y its CID for
the card), the PICC (card) answers its ATS (§5.2): TL (the length, itself
included), T0 (b7 b6 b5 say TC(1) TB(1) TA(1) follow; b4-b1 FSCI, the largest
frame the card can receive), TA(1) (bit rates), TB(1) (FWI, SFGI), TC(1) (NAD and
CID support), then the historical bytes. :func:`build_ats` makes this card's:
``05 78 80 E0 00`` by default, i.e. 256-byte frames, 106 kbit/s only, FWI 14
(a frame waiting time of 4.9 s: a card emulated in Python, behind a simulated
link, needs a long one), SFGI 0, and neither NAD nor CID.

A block (§7.1) is a prologue (PCB, then a CID byte if PCB b4 says so, then a NAD
byte if PCB b3 says so: I-blocks only), the information field INF, and an
epilogue (the CRC_A, two bytes, added and checked by the contactless chip: the
frames here never carry it, but frame sizes count it). The PCB:

========  =====================================================================
I-block   ``0 0 0 c i n 1 b``: c chaining (more follows), i CID, n NAD, b block number
R-block   ``1 0 1 k i 0 1 b``: k 0 ACK, 1 NAK
S-block   ``1 1 s s i 0 1 0``: ss 00 DESELECT (no INF), 11 WTX (INF: power level, WTXM)
========  =====================================================================

The rules (§7.5): the PCD starts (Rule 1), a chained I-block is acknowledged by
an R(ACK) (Rule 2), S-blocks come in pairs (Rule 3). Block numbers: the
PCD starts at 0 (Rule A) and toggles when it receives an I-block or an R(ACK) with
its own number (Rule B); the PICC starts at 1 (Rule C), toggles on every I-block
(Rule D) and on an R(ACK) with a number other than its own (Rule E). Block
handling: the PCD answers a time-out or an invalid block with R(NAK)
(Rule 4), or R(ACK) while the PICC chains (Rule 5), and re-sends its last I-block
on an R(ACK) with another number (Rule 6); the PICC ignores an invalid block
(Rule 10), re-sends its last block on an R(ACK) or R(NAK) with its own number
(Rule 11), answers an R(NAK) with another number with an R(ACK) (Rule 12), and
goes on chaining on an R(ACK) with another number (Rule 13). S(DESELECT) ends
the session (§8).

:class:`Picc` is the card's side of one activation, :class:`Pcd` the reader's;
both are state machines fed one frame at a time, with no clock: the caller says
when a frame waiting time ran out (:meth:`Pcd.timeout`). Malformed input raises
:class:`IsoDepError` naming what and where; :meth:`Picc.receive` turns it into
the protocol's answer, silence (Rule 10), and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ATS",
    "DELTA_FWT",
    "FC",
    "FRAME_SIZES",
    "FSCI",
    "FWI",
    "MAX_FRAME",
    "SFGI",
    "S_DESELECT",
    "Ats",
    "Block",
    "BlockType",
    "IsoDepError",
    "Pcd",
    "PcdStep",
    "Picc",
    "PiccReply",
    "Rats",
    "Unanswered",
    "build_ats",
    "frame_size",
    "frame_size_index",
    "frame_waiting_time",
    "i_block",
    "parse_ats",
    "parse_block",
    "parse_rats",
    "r_ack",
    "r_nak",
    "s_wtx",
]

FC = 13_560_000
"""The carrier frequency fc, in Hz (ISO/IEC 14443-2)."""
FWI = 14
"""The frame waiting time integer this card announces: the longest there is
(4.9 s, :func:`frame_waiting_time`), for a card emulated in Python behind a
simulated RF link."""
FSCI = 8
"""The frame size integer this card announces: 256-byte frames."""
SFGI = 0
"""The start-up frame guard time integer this card announces: no guard time."""
FRAME_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096)
"""Frame sizes in bytes by FSDI / FSCI 0 to C (§5.1, §5.2.3; 9 to C were RFU
before the 2016 edition, which takes D to F, still RFU, as C)."""
MAX_FRAME = 256
"""The longest frame (CRC included) this implementation sends or announces it can
receive: 256 bytes, the longest FSCI 8 allows and all nfcpy's drivers carry."""
DELTA_FWT = 49152 / FC
"""ΔFWT, the time a PCD waits beyond FWT before it takes a frame for lost (§7.2)."""
MAX_COMMAND = 4 + 3 + 65535 + 2
"""The longest command APDU (extended Lc and Le): a PCD chaining more is ignored."""

_START_RATS = 0xE0
_PPSS = 0xD0  # high nibble of the PPS start byte (low nibble: the CID)
_CRC = 2  # the epilogue: CRC_A, counted in frame sizes, never in the frames here
_TA_106_ONLY = 0x80  # TA(1): the same bit rate both ways, 106 kbit/s only
_TC_NO_NAD_NO_CID = 0x00
_WTXM_MAX = 59


class IsoDepError(ValueError):
    """A frame that is not what ISO/IEC 14443-4 allows there, or a protocol rule
    broken: says which frame (in hex) and what is wrong."""


class Unanswered(IsoDepError):
    """No valid answer from the PICC, retransmissions included (:meth:`Pcd.timeout`)."""


def _hex(frame: bytes) -> str:
    return frame.hex().upper() or "(empty)"


# --- frame sizes and times -----------------------------------------------------------------


def frame_size(index: int) -> int:
    """The frame size FSDI (RATS) or FSCI (ATS) stands for, in bytes, CRC included
    (§5.1, §5.2.3): 16 for 0 up to 4096 for C; D to F are RFU and taken as C."""
    if not 0 <= index <= 0xF:
        raise IsoDepError(f"a frame size integer is 0 to F, not {index}")
    return FRAME_SIZES[min(index, len(FRAME_SIZES) - 1)]


def frame_size_index(size: int) -> int:
    """The FSDI / FSCI of a frame size (one of :data:`FRAME_SIZES`)."""
    if size not in FRAME_SIZES:
        sizes = ", ".join(str(s) for s in FRAME_SIZES)
        raise IsoDepError(f"no frame size integer stands for {size} bytes ({sizes})")
    return FRAME_SIZES.index(size)


def frame_waiting_time(fwi: int) -> float:
    """The frame waiting time FWT for ``fwi``, in seconds (§7.2):
    FWT = (256 × 16 / fc) × 2^FWI, from 302 µs (FWI 0) to 4.9 s (FWI 14)."""
    if not 0 <= fwi <= 14:
        raise IsoDepError(f"FWI {fwi}: 0 to 14 (15 is RFU)")
    return 256 * 16 / FC * (1 << fwi)


# --- activation: RATS and ATS --------------------------------------------------------------


@dataclass(frozen=True)
class Rats:
    """Request for answer to select (§5.1): FSDI (the PCD's largest frame) and the CID."""

    fsdi: int = 8
    cid: int = 0

    @property
    def fsd(self) -> int:
        """The largest frame the PCD receives, in bytes (CRC included)."""
        return frame_size(self.fsdi)

    def to_bytes(self) -> bytes:
        if not 0 <= self.fsdi <= 0xF:
            raise IsoDepError(f"RATS: FSDI is 0 to F, not {self.fsdi}")
        if not 0 <= self.cid <= 14:
            raise IsoDepError(f"RATS: CID is 0 to 14 (15 is RFU), not {self.cid}")
        return bytes((_START_RATS, self.fsdi << 4 | self.cid))


def parse_rats(frame: bytes) -> Rats:
    """RATS ``E0 xy`` (§5.1, no CRC): x FSDI, y CID. A CID of 15 is RFU (a PICC
    does not answer it): :class:`IsoDepError`, as for any other malformed RATS."""
    if len(frame) != 2:
        raise IsoDepError(f"RATS {_hex(frame)}: 2 bytes (E0, then FSDI and CID), not {len(frame)}")
    if frame[0] != _START_RATS:
        raise IsoDepError(f"RATS {_hex(frame)}: the start byte is {frame[0]:02X}, not E0")
    if frame[1] & 0x0F == 0x0F:
        raise IsoDepError(f"RATS {_hex(frame)}: CID 15 is RFU")
    return Rats(frame[1] >> 4, frame[1] & 0x0F)


@dataclass(frozen=True)
class Ats:
    """An answer to select (§5.2), decoded. An absent interface byte has its
    default: FSCI 2 (32 bytes), TA(1) 106 kbit/s only, FWI 4, SFGI 0, TC(1) CID
    supported and NAD not (§5.2.3 to §5.2.6)."""

    fsci: int = 2
    ta: int | None = None
    tb: int | None = None
    tc: int | None = None
    historical: bytes = b""

    @property
    def fsc(self) -> int:
        """The largest frame the PICC receives, in bytes (CRC included)."""
        return frame_size(self.fsci)

    @property
    def fwi(self) -> int:
        """FWI from TB(1) (4 when absent; 15, RFU, is taken as 4: §5.2.5)."""
        fwi = 4 if self.tb is None else self.tb >> 4
        return 4 if fwi == 15 else fwi

    @property
    def sfgi(self) -> int:
        """SFGI from TB(1) (0 when absent; 15, RFU, is taken as 0)."""
        sfgi = 0 if self.tb is None else self.tb & 0x0F
        return 0 if sfgi == 15 else sfgi

    @property
    def fwt(self) -> float:
        """The frame waiting time, in seconds."""
        return frame_waiting_time(self.fwi)

    @property
    def cid_supported(self) -> bool:
        return self.tc is None or bool(self.tc & 0x02)

    @property
    def nad_supported(self) -> bool:
        return self.tc is not None and bool(self.tc & 0x01)

    def to_bytes(self) -> bytes:
        if not 0 <= self.fsci <= 0xF:
            raise IsoDepError(f"ATS: FSCI is 0 to F, not {self.fsci}")
        t0 = self.fsci
        body = bytearray()
        for bit, byte in ((0x10, self.ta), (0x20, self.tb), (0x40, self.tc)):
            if byte is not None:
                t0 |= bit
                body.append(byte)
        ats = bytes((t0, *body)) + self.historical
        if len(ats) + 1 > MAX_FRAME - _CRC:
            raise IsoDepError(f"ATS: {len(ats) + 1} bytes, more than {MAX_FRAME - _CRC}")
        return bytes((len(ats) + 1,)) + ats


def build_ats(
    *, fsci: int = FSCI, fwi: int = FWI, sfgi: int = SFGI, historical: bytes = b""
) -> bytes:
    """This card's ATS (§5.2): TL, T0 (TA TB TC follow, ``fsci``), TA(1) ``80``
    (106 kbit/s only, both ways), TB(1) (``fwi``, ``sfgi``), TC(1) ``00`` (no NAD,
    no CID: a PCD must send neither), then ``historical``."""
    if not 0 <= fsci <= FSCI:
        raise IsoDepError(f"FSCI {fsci}: 0 to {FSCI} here (frames of at most {MAX_FRAME} bytes)")
    frame_waiting_time(fwi)  # checks the range
    if not 0 <= sfgi <= 14:
        raise IsoDepError(f"SFGI {sfgi}: 0 to 14 (15 is RFU)")
    ats = Ats(fsci, _TA_106_ONLY, fwi << 4 | sfgi, _TC_NO_NAD_NO_CID, historical)
    return ats.to_bytes()


ATS = build_ats()
"""This card's ATS: ``05 78 80 E0 00``."""


def parse_ats(frame: bytes) -> Ats:
    """An ATS (§5.2, no CRC). TL must be its length and T0 b8 zero; T0 must not
    announce more interface bytes than there are."""
    if not frame:
        raise IsoDepError("ATS (empty): no TL")
    if frame[0] != len(frame):
        raise IsoDepError(f"ATS {_hex(frame)}: TL says {frame[0]} bytes, the ATS has {len(frame)}")
    if len(frame) == 1:
        return Ats()
    t0 = frame[1]
    if t0 & 0x80:
        raise IsoDepError(f"ATS {_hex(frame)}: T0 {t0:02X} has b8 set (RFU, shall be 0)")
    at = 2
    found: list[int | None] = []
    for bit, name in ((0x10, "TA(1)"), (0x20, "TB(1)"), (0x40, "TC(1)")):
        if not t0 & bit:
            found.append(None)
            continue
        if at >= len(frame):
            raise IsoDepError(f"ATS {_hex(frame)}: T0 announces {name}, the ATS ends before it")
        found.append(frame[at])
        at += 1
    ta, tb, tc = found
    return Ats(t0 & 0x0F, ta, tb, tc, frame[at:])


# --- blocks --------------------------------------------------------------------------------


class BlockType(Enum):
    I = "I-block"  # noqa: E741 (the standard's name)
    R_ACK = "R(ACK)"
    R_NAK = "R(NAK)"
    DESELECT = "S(DESELECT)"
    WTX = "S(WTX)"


@dataclass(frozen=True)
class Block:
    """One block (§7.1): its type, block number (I- and R-blocks), chaining bit
    (I-blocks), CID and NAD (None: absent) and INF (I-blocks: data; S(WTX): the
    power level and WTXM byte)."""

    type: BlockType
    number: int = 0
    chaining: bool = False
    inf: bytes = b""
    cid: int | None = None
    nad: int | None = None

    @property
    def wtxm(self) -> int:
        """The waiting time extension multiplier of an S(WTX) (INF b6-b1)."""
        if self.type is not BlockType.WTX:
            raise IsoDepError(f"{self.type.value} carries no WTXM")
        return self.inf[0] & 0x3F

    def to_bytes(self) -> bytes:
        if self.number not in (0, 1):
            raise IsoDepError(f"a block number is 0 or 1, not {self.number}")
        pcb = {
            BlockType.I: 0x02 | self.chaining << 4,
            BlockType.R_ACK: 0xA2,
            BlockType.R_NAK: 0xB2,
            BlockType.DESELECT: 0xC2,
            BlockType.WTX: 0xF2,
        }[self.type]
        if self.type in (BlockType.I, BlockType.R_ACK, BlockType.R_NAK):
            pcb |= self.number
        prologue = bytearray()
        if self.cid is not None:
            pcb |= 0x08
            prologue.append(self.cid)
        if self.nad is not None:
            if self.type is not BlockType.I:
                raise IsoDepError(f"only an I-block carries a NAD, not {self.type.value}")
            pcb |= 0x04
            prologue.append(self.nad)
        return bytes((pcb, *prologue)) + self.inf


def i_block(number: int, inf: bytes, *, chaining: bool = False) -> bytes:
    """An I-block without CID or NAD."""
    return Block(BlockType.I, number, chaining, inf).to_bytes()


def r_ack(number: int) -> bytes:
    """An R(ACK) without CID: ``A2`` or ``A3``."""
    return Block(BlockType.R_ACK, number).to_bytes()


def r_nak(number: int) -> bytes:
    """An R(NAK) without CID: ``B2`` or ``B3``."""
    return Block(BlockType.R_NAK, number).to_bytes()


S_DESELECT = bytes((0xC2,))
"""S(DESELECT) without CID, request and response alike."""


def s_wtx(wtxm: int) -> bytes:
    """An S(WTX) without CID: ``F2`` then WTXM (1 to 59; power level 0)."""
    if not 1 <= wtxm <= _WTXM_MAX:
        raise IsoDepError(f"WTXM {wtxm}: 1 to {_WTXM_MAX}")
    return bytes((0xF2, wtxm))


def parse_block(frame: bytes) -> Block:
    """One block (§7.1, no CRC). Every RFU bit must have its value (b2 of every
    PCB is 1; an I-block's b6 is 0, an R-block's b6 is 1; R- and S-blocks have b3
    0 and no NAD), the CID and NAD bytes the PCB announces must be there, R-blocks
    and S(DESELECT) carry no INF and S(WTX) one byte with a WTXM of 1 to 59;
    S-blocks other than DESELECT and WTX (b6 b5 01 or 10) are refused."""
    if not frame:
        raise IsoDepError("an empty frame: no PCB")
    pcb = frame[0]
    where = f"frame {_hex(frame)}: PCB {pcb:02X}"
    if pcb & 0xC0 == 0x40:
        raise IsoDepError(f"{where}: b8 b7 01 is RFU (not an I-, R- or S-block)")
    if not pcb & 0x02:
        raise IsoDepError(f"{where}: b2 is 0 (shall be 1)")
    kind = pcb >> 6
    if kind == 0b00:
        if pcb & 0x20:
            raise IsoDepError(f"{where}: an I-block with b6 set (shall be 0)")
        block_type = BlockType.I
    elif kind == 0b10:
        if not pcb & 0x20:
            raise IsoDepError(f"{where}: an R-block with b6 clear (shall be 1)")
        block_type = BlockType.R_NAK if pcb & 0x10 else BlockType.R_ACK
    else:
        kinds = {0x00: BlockType.DESELECT, 0x30: BlockType.WTX}
        if pcb & 0x30 not in kinds:
            raise IsoDepError(f"{where}: S-block b6 b5 {pcb >> 4 & 3:02b} is not supported")
        if pcb & 0x01:
            raise IsoDepError(f"{where}: an S-block with b1 set (shall be 0)")
        block_type = kinds[pcb & 0x30]
    if block_type is not BlockType.I and pcb & 0x04:
        raise IsoDepError(f"{where}: b3 (NAD) is set in an {block_type.value} (shall be 0)")
    at = 1
    cid = nad = None
    if pcb & 0x08:
        if at >= len(frame):
            raise IsoDepError(f"{where} announces a CID byte, the frame ends before it")
        cid, at = frame[at] & 0x0F, at + 1
    if pcb & 0x04:
        if at >= len(frame):
            raise IsoDepError(f"{where} announces a NAD byte, the frame ends before it")
        nad, at = frame[at], at + 1
    inf = frame[at:]
    if block_type in (BlockType.R_ACK, BlockType.R_NAK, BlockType.DESELECT) and inf:
        raise IsoDepError(f"{where}: an {block_type.value} has no INF, {len(inf)} byte(s) follow")
    if block_type is BlockType.WTX:
        if len(inf) != 1:
            raise IsoDepError(f"{where}: an S(WTX) has a 1-byte INF, not {len(inf)}")
        if not 1 <= inf[0] & 0x3F <= _WTXM_MAX:
            raise IsoDepError(f"{where}: WTXM {inf[0] & 0x3F} (1 to {_WTXM_MAX})")
    return Block(block_type, pcb & 0x01, bool(pcb & 0x10) and kind == 0, inf, cid, nad)


# --- the PICC ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PiccReply:
    """What :meth:`Picc.receive` makes of a frame: ``send`` the frame to answer
    (None: stay silent and go on receiving); ``command`` a whole command APDU
    (answer it with :meth:`Picc.respond`, whose frame then goes back);
    ``deselected`` the session is over (after sending ``send``); ``ignored`` why
    the frame was ignored (Rule 10), None when it was not."""

    send: bytes | None = None
    command: bytes | None = None
    deselected: bool = False
    ignored: str | None = None


class Picc:
    """The card's side of one ISO-DEP activation (module docstring).

    ``ats`` is the ATS the card answered (its FSC bounds the frames it takes),
    ``fsd`` the largest frame the PCD takes (its RATS): responses longer than
    ``min(fsd, MAX_FRAME) - 3`` bytes (PCB, CRC) are chained. :meth:`activate`
    makes one from a RATS. Feed each frame received to :meth:`receive`; when it
    gives a command APDU, give the response APDU to :meth:`respond` and send what
    it returns::

        picc = Picc.activate(rats)          # send ATS back
        reply = picc.receive(frame)
        if reply.command is not None:
            send(picc.respond(card.transceive(reply.command)))
        elif reply.send is not None:
            send(reply.send)

    The card supports neither CID nor NAD (TC(1) ``00``) and ignores blocks that
    carry them (§7.1); it never asks for a waiting time extension. The first frame
    after the ATS may be a PPS request (§5.3), answered when it keeps 106 kbit/s.
    """

    def __init__(self, ats: bytes = ATS, *, fsd: int = MAX_FRAME, cid: int = 0) -> None:
        self.ats = ats
        self.fsc = min(parse_ats(ats).fsc, MAX_FRAME)
        if fsd < FRAME_SIZES[0]:
            raise IsoDepError(f"FSD {fsd}: at least {FRAME_SIZES[0]} bytes")
        if len(ats) > fsd - _CRC:
            raise IsoDepError(f"ATS {_hex(ats)}: longer than FSD {fsd} allows ({fsd - _CRC})")
        self.fsd = fsd
        self.cid = cid
        self.number = 1  # Rule C
        self.deselected = False
        self._received = bytearray()  # a command the PCD is chaining
        self._pending = b""  # the rest of a response this card is chaining
        self._chaining = False
        self._last: bytes | None = None  # the last block sent (Rule 11)
        self._waiting = False  # a command was handed out, its response not yet given
        self._first = True  # PPS is allowed before any block (§5.3)

    @classmethod
    def activate(cls, rats: bytes, ats: bytes = ATS) -> Picc:
        """The session a RATS opens (send ``ats`` back): FSD and CID from the RATS."""
        request = parse_rats(rats)
        return cls(ats, fsd=request.fsd, cid=request.cid)

    def __repr__(self) -> str:
        state = "deselected" if self.deselected else f"block number {self.number}"
        return f"Picc(FSD {self.fsd}, FSC {self.fsc}, {state})"

    @property
    def max_inf(self) -> int:
        """The most response bytes one I-block carries: the frame size less PCB and CRC."""
        return min(self.fsd, MAX_FRAME) - 1 - _CRC

    def receive(self, frame: bytes) -> PiccReply:
        """The answer to one frame from the PCD (see the class docstring)."""
        if self._waiting:
            raise RuntimeError("a command APDU waits for its response: call respond() first")
        if self.deselected:
            return PiccReply(ignored="deselected: only a new activation (RATS) wakes the card")
        first, self._first = self._first, False
        if first and frame and frame[0] & 0xF0 == _PPSS:
            return self._pps(frame)
        if len(frame) > self.fsc - _CRC:
            return PiccReply(
                ignored=f"a {len(frame)}-byte frame, longer than FSC {self.fsc} allows"
            )
        try:
            block = parse_block(frame)
        except IsoDepError as err:
            return PiccReply(ignored=str(err))
        if block.cid is not None:
            return PiccReply(ignored=f"a block with CID {block.cid}: this card supports none")
        if block.nad is not None:
            return PiccReply(ignored=f"a block with NAD {block.nad:02X}: this card supports none")
        if block.type is BlockType.I:
            return self._i_block(block)
        if block.type is BlockType.DESELECT:
            self.deselected = True
            self._received.clear()
            return PiccReply(send=S_DESELECT, deselected=True)
        if block.type is BlockType.WTX:
            return PiccReply(ignored="S(WTX) answers a request this card never makes")
        if block.number == self.number:  # Rule 11: the PCD missed our last block
            if self._last is None:
                return PiccReply(ignored=f"{block.type.value}: no block sent yet to send again")
            return PiccReply(send=self._last)
        if block.type is BlockType.R_NAK:  # Rule 12
            return PiccReply(send=r_ack(self.number))
        if not self._chaining:
            return PiccReply(ignored=f"R(ACK) {block.number} while the card is not chaining")
        self.number ^= 1  # Rule E, then Rule 13: go on chaining
        return PiccReply(send=self._next_block())

    def respond(self, response: bytes) -> bytes:
        """The first I-block of ``response``, the response APDU to the command
        :meth:`receive` gave; the rest follows on each R(ACK) (chaining)."""
        if not self._waiting:
            raise RuntimeError("no command APDU waits for a response")
        self._waiting = False
        self._pending = response
        return self._next_block()

    def _i_block(self, block: Block) -> PiccReply:
        self.number ^= 1  # Rule D
        if self._chaining:  # the PCD moved on: the rest of the response is dropped
            self._chaining, self._pending = False, b""
        self._received += block.inf
        if len(self._received) > MAX_COMMAND:
            self._received.clear()
            return PiccReply(ignored=f"a chained command longer than {MAX_COMMAND} bytes")
        if block.chaining:  # Rule 2
            self._last = r_ack(self.number)
            return PiccReply(send=self._last)
        command = bytes(self._received)
        self._received.clear()
        self._waiting = True
        return PiccReply(command=command)

    def _next_block(self) -> bytes:
        inf, self._pending = self._pending[: self.max_inf], self._pending[self.max_inf :]
        self._chaining = bool(self._pending)
        self._last = i_block(self.number, inf, chaining=self._chaining)
        return self._last

    def _pps(self, frame: bytes) -> PiccReply:
        """A PPS request (§5.3): PPSS (``D`` and the CID), PPS0 (``11`` when PPS1
        follows, else ``01``), PPS1 (DSI in b4 b3, DRI in b2 b1). Answered (PPSS
        echoed) when it asks for 106 kbit/s both ways, the only rate TA(1) offers."""
        where = f"PPS {_hex(frame)}"
        if frame[0] & 0x0F != self.cid:
            return PiccReply(ignored=f"{where}: CID {frame[0] & 0x0F}, this card's is {self.cid}")
        if len(frame) == 2 and frame[1] == 0x01:
            return PiccReply(send=frame[:1])
        if len(frame) == 3 and frame[1] == 0x11:
            if frame[2] == 0x00:
                return PiccReply(send=frame[:1])
            return PiccReply(ignored=f"{where}: PPS1 {frame[2]:02X} asks for another bit rate")
        return PiccReply(ignored=f"{where}: PPS0 and length do not match (01, or 11 then PPS1)")


# --- the PCD -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PcdStep:
    """What :class:`Pcd` makes of a frame: ``send`` the next frame to send, or
    ``response`` the whole response APDU (the exchange is over). ``wait``, when
    not None, is how long to wait for the answer to ``send`` (an S(WTX) asked for
    FWT × WTXM, §7.3)."""

    send: bytes | None = None
    response: bytes | None = None
    wait: float | None = None


class Pcd:
    """The reader's side of one ISO-DEP activation (module docstring).

    ``ats`` is the card's ATS, ``fsd`` the FSD of the RATS sent, ``max_frame`` the
    longest frame the reader's chip sends (commands longer than ``min(FSC,
    max_frame) - 3`` bytes are chained), ``retries`` how many time-outs or
    invalid blocks in a row are answered (Rules 4 and 5), and how many times one
    I-block is sent again on the PICC's word (Rule 6), before :class:`Unanswered`.
    :meth:`command` gives the first frame of an exchange; send it, then give each
    frame received to :meth:`receive` (or call :meth:`timeout` when none came in
    time) and send what it says, until it gives the response::

        frame = pcd.command(apdu)
        while True:
            step = pcd.receive(exchange(frame))   # or pcd.timeout() on a time-out
            if step.response is not None:
                break
            frame = step.send

    A block that breaks the protocol (a wrong block number, an unexpected block)
    raises :class:`IsoDepError`; the session is then unusable."""

    def __init__(
        self, ats: Ats, *, fsd: int = MAX_FRAME, max_frame: int = MAX_FRAME, retries: int = 2
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries: 0 or more, not {retries}")
        self.ats = ats
        self.fsd = fsd
        self.fsc = min(ats.fsc, max_frame)
        if self.fsc < FRAME_SIZES[0]:
            raise IsoDepError(f"frames of {self.fsc} bytes: at least {FRAME_SIZES[0]}")
        self.fwt = ats.fwt
        self.retries = retries
        self.number = 0  # Rule A
        self._segments: list[bytes] = []  # the command's INF fields still to send
        self._last = b""  # the last I-block sent (Rule 6)
        self._response = bytearray()
        self._state = "idle"  # idle, sending (chaining a command), waiting, receiving, broken
        self._failures = 0  # time-outs and invalid blocks in a row
        self._resent = 0  # times the last I-block was sent again (Rule 6)

    def __repr__(self) -> str:
        return f"Pcd(FSC {self.fsc}, FSD {self.fsd}, FWT {self.fwt:.4f} s, {self._state})"

    @property
    def max_inf(self) -> int:
        """The most command bytes one I-block carries: FSC less PCB and CRC."""
        return self.fsc - 1 - _CRC

    def command(self, apdu: bytes) -> bytes:
        """Start an exchange: the first I-block of ``apdu``."""
        self._check_usable()
        if self._state != "idle":
            raise RuntimeError(f"an exchange is in progress ({self._state})")
        size = self.max_inf
        self._segments = [apdu[at : at + size] for at in range(0, len(apdu), size)] or [b""]
        self._response.clear()
        self._failures = 0
        return self._next_segment()

    def receive(self, frame: bytes) -> PcdStep:
        """The next step after ``frame`` came from the PICC."""
        self._check_usable()
        if self._state == "idle":
            raise RuntimeError("no exchange in progress: call command() first")
        if len(frame) > self.fsd - _CRC:
            return PcdStep(send=self._recover(f"a {len(frame)}-byte frame, beyond FSD {self.fsd}"))
        try:
            block = parse_block(frame)
        except IsoDepError as err:
            return PcdStep(send=self._recover(str(err)))
        if block.cid is not None or block.nad is not None:
            return PcdStep(send=self._recover(f"frame {_hex(frame)}: a CID or NAD never sent"))
        if block.type is BlockType.WTX:  # §7.3: grant it, wait FWT x WTXM (at most FWT(14))
            wait = min(self.fwt * block.wtxm, frame_waiting_time(14))
            return PcdStep(send=s_wtx(block.wtxm), wait=wait)
        self._failures = 0  # a valid block
        missed = block.type is BlockType.R_ACK and block.number != self.number
        if missed and self._state in ("sending", "waiting"):  # Rule 6
            self._resent += 1
            if self._resent > self.retries:
                self._state = "broken"
                raise Unanswered(f"the PICC missed an I-block {self._resent} times")
            return PcdStep(send=self._last)
        if self._state == "sending":
            if block.type is not BlockType.R_ACK:
                raise self._broken(f"{block.type.value} {_hex(frame)} to a chained command")
            self.number ^= 1  # Rule B, then Rule 7: go on
            return PcdStep(send=self._next_segment())
        if block.type is not BlockType.I:
            raise self._broken(f"{block.type.value} {_hex(frame)} where an I-block was due")
        if block.number != self.number:
            raise self._broken(
                f"I-block {_hex(frame)} numbered {block.number}, expected {self.number}"
            )
        self.number ^= 1  # Rule B
        self._response += block.inf
        if block.chaining:  # Rule 2
            self._state = "receiving"
            return PcdStep(send=r_ack(self.number))
        self._state = "idle"
        return PcdStep(response=bytes(self._response))

    def timeout(self) -> bytes:
        """The frame to send when no answer came within the frame waiting time:
        R(NAK) (Rule 4), or R(ACK) while the PICC chains (Rule 5). After
        ``retries`` of them in a row: :class:`Unanswered`."""
        return self._recover("no answer")

    def invalid(self, problem: str) -> bytes:
        """The frame to send after a frame the chip could not read (``problem``: a
        CRC or parity error, a collision): as after a time-out (Rules 4 and 5)."""
        return self._recover(problem)

    def _check_usable(self) -> None:
        if self._state == "broken":
            raise IsoDepError("the ISO-DEP session is over after an error: activate the card again")

    def _next_segment(self) -> bytes:
        inf = self._segments.pop(0)
        chaining = bool(self._segments)
        self._last = i_block(self.number, inf, chaining=chaining)
        self._state = "sending" if chaining else "waiting"
        self._resent = 0
        return self._last

    def _recover(self, problem: str) -> bytes:
        self._check_usable()
        if self._state == "idle":
            raise RuntimeError("no exchange in progress")
        self._failures += 1
        if self._failures > self.retries:
            self._state = "broken"
            raise Unanswered(f"{problem}, after {self.retries} retransmission(s)")
        return r_ack(self.number) if self._state == "receiving" else r_nak(self.number)

    def _broken(self, problem: str) -> IsoDepError:
        self._state = "broken"
        return IsoDepError(f"ISO-DEP protocol error: {problem}")
