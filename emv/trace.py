"""APDU traces: every exchange with a link, timestamped, and three ways to write it.

A :class:`Trace` is the ordered list of :class:`TraceEvent` s of one tap: field on
(with the ATR), each command and its response, errors (a tear, a mute card) and
field off. :class:`RecordingLink` fills one while passing everything through to
the link it wraps; the clock is given to it (``emv`` reads no clock itself).

Writers, all masking PANs unless told ``mask=False`` (see :mod:`emv.masking`):

* :func:`to_text`: a decoded transcript for people: command names, status word
  meanings and the response data as a named TLV tree;
* :func:`to_jsonl` / :func:`from_jsonl`: JSON lines, one event a line, for tools;
* :func:`to_pcapng`: a pcapng capture with link type 264 (LINKTYPE_ISO_14443),
  each APDU in an ISO/IEC 14443-4 I-block with its CRC_A, which Wireshark shows
  as ISO 7816 APDUs when opened with ``-d iso14443.subdissector,iso7816``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from emv import apdu, tags, tlv
from emv.link import Link, LinkError
from emv.masking import mask_tlv

__all__ = [
    "EventKind",
    "RecordingLink",
    "Trace",
    "TraceError",
    "TraceEvent",
    "crc_a",
    "from_jsonl",
    "to_jsonl",
    "to_pcapng",
    "to_text",
]

JSONL_FORMAT = "emvtap-trace/1"


class TraceError(ValueError):
    """A trace file that cannot be read: names the line and the problem."""


class EventKind(StrEnum):
    FIELD_ON = "field_on"
    COMMAND = "command"
    RESPONSE = "response"
    ERROR = "error"
    FIELD_OFF = "field_off"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened on the link. ``data`` is the ATR for FIELD_ON, the
    C-APDU for COMMAND and the R-APDU (data + SW1 SW2) for RESPONSE; ``note`` says
    what went wrong for ERROR."""

    time_ns: int
    kind: EventKind
    data: bytes = b""
    note: str = ""


@dataclass
class Trace:
    """The events of one tap, in order."""

    events: list[TraceEvent] = field(default_factory=list)

    def add(self, time_ns: int, kind: EventKind, data: bytes = b"", note: str = "") -> None:
        self.events.append(TraceEvent(time_ns, kind, bytes(data), note))

    def commands(self) -> list[bytes]:
        """The command APDUs sent, in order."""
        return [e.data for e in self.events if e.kind is EventKind.COMMAND]


class RecordingLink:
    """A :class:`~emv.link.Link` that records every event into ``trace``.

    ``clock`` returns nanoseconds (the caller passes a real clock). Failures of
    the wrapped link are recorded as ERROR events and re-raised unchanged.
    """

    def __init__(self, link: Link, trace: Trace, clock: Callable[[], int]) -> None:
        self._link = link
        self._trace = trace
        self._clock = clock

    def power_on(self) -> bytes:
        atr = self._guard(self._link.power_on)
        self._trace.add(self._clock(), EventKind.FIELD_ON, atr)
        return atr

    def power_off(self) -> None:
        self._link.power_off()
        self._trace.add(self._clock(), EventKind.FIELD_OFF)

    def transceive(self, command: bytes) -> bytes:
        self._trace.add(self._clock(), EventKind.COMMAND, command)
        response = self._guard(lambda: self._link.transceive(command))
        self._trace.add(self._clock(), EventKind.RESPONSE, response)
        return response

    def _guard(self, call: Callable[[], bytes]) -> bytes:
        try:
            return call()
        except LinkError as err:
            self._trace.add(self._clock(), EventKind.ERROR, note=f"{type(err).__name__}: {err}")
            raise


# --- masking -------------------------------------------------------------------------------


def _shown_data(event: TraceEvent, mask: bool) -> bytes:
    """The event's bytes as a writer may show them: response data PAN-masked."""
    if mask and event.kind is EventKind.RESPONSE and len(event.data) > 2:
        return mask_tlv(event.data[:-2]) + event.data[-2:]
    return event.data


# --- text ----------------------------------------------------------------------------------


def to_text(trace: Trace, *, mask: bool = True) -> str:
    """A transcript for people: one block per event, times relative to the first."""
    lines = [f"emvtap trace: {len(trace.commands())} command(s), PANs {_masked_word(mask)}"]
    start = trace.events[0].time_ns if trace.events else 0
    for event in trace.events:
        stamp = f"[{(event.time_ns - start) / 1e6:9.3f} ms]"
        head, body = _describe(event, _shown_data(event, mask), mask)
        lines.append(f"{stamp} {head}")
        lines.extend(f"{'':15}{line}" for line in body)
    return "\n".join(lines) + "\n"


def _masked_word(mask: bool) -> str:
    return "masked" if mask else "IN CLEAR"


def _describe(event: TraceEvent, data: bytes, mask: bool) -> tuple[str, list[str]]:
    if event.kind is EventKind.FIELD_ON:
        return f"field on, ATR {data.hex().upper()}", []
    if event.kind is EventKind.FIELD_OFF:
        return "field off", []
    if event.kind is EventKind.ERROR:
        return f"!! {event.note}", []
    if event.kind is EventKind.COMMAND:
        return f"-> {_command_name(data)}", [data.hex().upper()]
    return _describe_response(data, mask)


def _command_name(data: bytes) -> str:
    try:
        return apdu.command_name(apdu.CommandApdu.parse(data))
    except ValueError as err:
        return f"malformed command ({err})"


def _describe_response(data: bytes, mask: bool) -> tuple[str, list[str]]:
    if len(data) < 2:
        return f"<- malformed response {data.hex().upper()} (shorter than SW1 SW2)", []
    sw = int.from_bytes(data[-2:], "big")
    head = f"<- {sw:04X} {apdu.sw_meaning(sw)}"
    body = data[:-2]
    if not body:
        return head, []
    lines = [body.hex().upper()]
    objects = tlv.decode(body, strict=False)
    if objects:
        lines.extend(tags.render(objects, mask=mask).splitlines())
    return head, lines


# --- JSON lines ----------------------------------------------------------------------------


def to_jsonl(trace: Trace, *, mask: bool = True) -> str:
    """One JSON object a line: a header, then ``{"t_ns", "event", "hex"[, "note"]}``."""
    lines = [json.dumps({"format": JSONL_FORMAT, "masked": mask})]
    for event in trace.events:
        record: dict[str, object] = {
            "t_ns": event.time_ns,
            "event": event.kind.value,
            "hex": _shown_data(event, mask).hex().upper(),
        }
        if event.note:
            record["note"] = event.note
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def from_jsonl(text: str) -> Trace:
    """Read what :func:`to_jsonl` wrote; errors name the line and the field."""
    trace = Trace()
    rows = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise TraceError("trace is empty: expected a header line")
    header_line, header = rows[0][0], _json_object(*rows[0])
    if header.get("format") != JSONL_FORMAT:
        raise TraceError(f"line {header_line}: expected header with format {JSONL_FORMAT!r}")
    for number, line in rows[1:]:
        record = _json_object(number, line)
        trace.events.append(_event_from_record(number, record))
    return trace


def _json_object(number: int, line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise TraceError(f"line {number}: not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(value, dict):
        raise TraceError(f"line {number}: expected a JSON object")
    return value


def _event_from_record(number: int, record: dict[str, object]) -> TraceEvent:
    time_ns, kind, data, note = (
        record.get("t_ns"),
        record.get("event"),
        record.get("hex", ""),
        record.get("note", ""),
    )
    if not isinstance(time_ns, int) or time_ns < 0:
        raise TraceError(f"line {number}: field 't_ns' must be a non-negative integer")
    if kind not in {k.value for k in EventKind}:
        raise TraceError(
            f"line {number}: field 'event' must be one of {[k.value for k in EventKind]}"
        )
    if not isinstance(data, str) or not isinstance(note, str):
        raise TraceError(f"line {number}: fields 'hex' and 'note' must be strings")
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        raise TraceError(f"line {number}: field 'hex' is not hexadecimal") from None
    return TraceEvent(time_ns, EventKind(kind), raw, note)


# --- pcapng --------------------------------------------------------------------------------

LINKTYPE_ISO_14443 = 264
# Event byte of the ISO 14443 pseudo-header (Wireshark's iso14443 dissector).
_PCAP_PICC_TO_PCD = 0xFF
_PCAP_PCD_TO_PICC = 0xFE
_PCAP_FIELD_OFF = 0xFD
_PCAP_FIELD_ON = 0xFC
_I_BLOCK = 0x02  # ISO/IEC 14443-4 §7.1.1.1: I-block PCB, bit 1 = block number


def crc_a(data: bytes) -> bytes:
    """ISO/IEC 14443-3 Annex B CRC_A (initial value 6363), least significant byte first."""
    crc = 0x6363
    for byte in data:
        mixed = byte ^ (crc & 0xFF)
        mixed = (mixed ^ (mixed << 4)) & 0xFF
        crc = (crc >> 8) ^ (mixed << 8) ^ (mixed << 3) ^ (mixed >> 4)
    return crc.to_bytes(2, "little")


def to_pcapng(trace: Trace, *, mask: bool = True) -> bytes:
    """The trace as a pcapng file (one section, one ISO 14443 interface, ns timestamps).

    Commands and responses travel as I-blocks (PCB, APDU, CRC_A) whose block
    number toggles per exchange; field on/off are pseudo-header events; the ATR
    and errors become packet comments.
    """
    blocks = [_section_header_block(), _interface_description_block()]
    blocks.extend(_enhanced_packet_block(t, p, c) for t, p, c in _pcap_packets(trace, mask))
    return b"".join(blocks)


def _pcap_packets(trace: Trace, mask: bool) -> Iterator[tuple[int, bytes, str]]:
    block_number = 0
    for event in trace.events:
        data = _shown_data(event, mask)
        if event.kind is EventKind.FIELD_ON:
            yield event.time_ns, _pseudo(_PCAP_FIELD_ON, b""), f"ATR {data.hex().upper()}"
        elif event.kind is EventKind.FIELD_OFF:
            yield event.time_ns, _pseudo(_PCAP_FIELD_OFF, b""), ""
        elif event.kind is EventKind.ERROR:
            yield event.time_ns, _pseudo(_PCAP_FIELD_OFF, b""), event.note
        else:
            frame = bytes((_I_BLOCK | block_number,)) + data
            outbound = event.kind is EventKind.COMMAND
            direction = _PCAP_PCD_TO_PICC if outbound else _PCAP_PICC_TO_PCD
            yield event.time_ns, _pseudo(direction, frame + crc_a(frame)), ""
            if not outbound:
                block_number ^= 1


def _pseudo(event: int, payload: bytes) -> bytes:
    """The 4-byte ISO 14443 pseudo-header: version 0, event, payload length."""
    return struct.pack(">BBH", 0, event, len(payload)) + payload


def _block(block_type: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, body padded to 32 bits, total length."""
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


_OPT_END = b"\0\0\0\0"


def _section_header_block() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _interface_description_block() -> bytes:
    options = _option(9, b"\x09") + _OPT_END  # if_tsresol: 10^-9 s
    return _block(1, struct.pack("<HHI", LINKTYPE_ISO_14443, 0, 0) + options)


def _enhanced_packet_block(time_ns: int, packet: bytes, comment: str) -> bytes:
    header = struct.pack("<IIIII", 0, time_ns >> 32, time_ns & 0xFFFFFFFF, len(packet), len(packet))
    padded = packet + b"\0" * (-len(packet) % 4)
    options = _option(1, comment.encode()) + _OPT_END if comment else b""
    return _block(6, header + padded + options)
