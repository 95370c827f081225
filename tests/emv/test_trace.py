"""Traces: recording through a link, the three writers, and tshark reading pcapng."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from itertools import count
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emv import apdu, tlv
from emv.link import CardRemoved, Link
from emv.tlv import Tlv
from emv.trace import (
    EventKind,
    RecordingLink,
    Trace,
    TraceError,
    crc_a,
    from_jsonl,
    to_jsonl,
    to_pcapng,
    to_text,
)

PAN = bytes.fromhex("4761739001010010")
SELECT_PPSE = apdu.select_ppse().to_bytes()


class ScriptedCard:
    """A Link answering from a table, then tearing: enough to drive the recorder."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.powered = False

    def power_on(self) -> bytes:
        self.powered = True
        return bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")

    def power_off(self) -> None:
        self.powered = False

    def transceive(self, command: bytes) -> bytes:
        if command not in self.answers:
            raise CardRemoved("card left the field")
        return self.answers[command]


def _record() -> Trace:
    fci = Tlv.template(0x6F, Tlv.primitive(0x84, b"2PAY.SYS.DDF01"))
    record = Tlv.template(0x70, Tlv.primitive(0x5A, PAN))
    read = apdu.read_record(1, 1).to_bytes()
    card = ScriptedCard(
        {SELECT_PPSE: fci.to_bytes() + b"\x90\x00", read: record.to_bytes() + b"\x90\x00"}
    )
    trace = Trace()
    ticks = count(1_000_000, 250_000)
    link: Link = RecordingLink(card, trace, lambda: next(ticks))
    link.power_on()
    link.transceive(SELECT_PPSE)
    link.transceive(read)
    with pytest.raises(CardRemoved):
        link.transceive(apdu.get_data(0x9F36).to_bytes())
    link.power_off()
    return trace


def test_recording_link_records_every_event_in_order() -> None:
    trace = _record()
    kinds = [e.kind for e in trace.events]
    assert kinds == [
        EventKind.FIELD_ON,
        EventKind.COMMAND,
        EventKind.RESPONSE,
        EventKind.COMMAND,
        EventKind.RESPONSE,
        EventKind.COMMAND,
        EventKind.ERROR,
        EventKind.FIELD_OFF,
    ]
    assert [e.time_ns for e in trace.events] == sorted(e.time_ns for e in trace.events)
    assert trace.events[6].note == "CardRemoved: card left the field"
    assert trace.commands()[0] == SELECT_PPSE


def test_text_names_commands_status_words_and_tags_and_masks() -> None:
    text = to_text(_record())
    assert "SELECT 2PAY.SYS.DDF01" in text
    assert "READ RECORD" in text
    assert "9000" in text
    assert "Application Primary Account Number" in text
    assert "4761739001010010" not in text and "476173" in text
    assert "CardRemoved" in text
    clear = to_text(_record(), mask=False)
    assert "4761739001010010" in clear and "IN CLEAR" in clear


def test_jsonl_round_trip_and_masking() -> None:
    trace = _record()
    assert from_jsonl(to_jsonl(trace, mask=False)) == trace
    masked = to_jsonl(trace)
    assert PAN.hex().upper() not in masked
    assert json.loads(masked.splitlines()[0]) == {"format": "emvtap-trace/1", "masked": True}
    again = from_jsonl(masked)
    assert [e.kind for e in again.events] == [e.kind for e in trace.events]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"format": "other"}\n', "line 1: expected header"),
        ('{"format": "emvtap-trace/1"}\n[1]\n', "line 2: expected a JSON object"),
        ('{"format": "emvtap-trace/1"}\n{"t_ns": 1, "event": "x"}\n', "line 2: field 'event'"),
        ('{"format": "emvtap-trace/1"}\n{"t_ns": -1, "event": "command"}\n', "field 't_ns'"),
        (
            '{"format": "emvtap-trace/1"}\n\n{"t_ns": 1, "event": "command", "hex": "0G"}',
            "line 3: field 'hex'",
        ),
        ('{"format": "emvtap-trace/1"}\n{"t_ns": 1,\n', "line 2: not JSON"),
    ],
)
def test_bad_jsonl_names_line_and_field(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        from_jsonl(text)


def test_crc_a_matches_iso14443_3_annex_b() -> None:
    # ISO/IEC 14443-3 Annex B, worked examples for CRC_A
    assert crc_a(bytes.fromhex("0000")) == bytes.fromhex("A01E")
    assert crc_a(bytes.fromhex("1234")) == bytes.fromhex("26CF")


def test_pcapng_structure() -> None:
    data = to_pcapng(_record())
    assert data[:4] == bytes.fromhex("0A0D0D0A")
    assert PAN not in data
    assert PAN in to_pcapng(_record(), mask=False)


@given(st.lists(st.binary(min_size=2, max_size=40), max_size=6))
def test_writers_never_raise_on_any_bytes(payloads: list[bytes]) -> None:
    trace = Trace()
    for number, payload in enumerate(payloads):
        trace.add(number, EventKind.COMMAND if number % 2 == 0 else EventKind.RESPONSE, payload)
    to_text(trace)
    to_pcapng(trace)
    assert from_jsonl(to_jsonl(trace, mask=False)) == trace


def _tshark() -> str:
    found = shutil.which("tshark")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is not installed: ./dev test installs it on Debian as root")
        pytest.skip("tshark is not installed (./dev test installs it on Debian as root)")
    return found


def test_tshark_dissects_the_select_and_its_response_as_iso7816(tmp_path: Path) -> None:
    capture = tmp_path / "tap.pcapng"
    capture.write_bytes(to_pcapng(_record()))
    fields = [
        "frame.number",
        "iso14443.event",
        "iso7816.apdu.ins",
        "iso7816.apdu.sw1",
        "iso7816.apdu.sw2",
        "iso7816.apdu.body",
        "frame.comment",
    ]
    command = [_tshark(), "-r", str(capture), "-d", "iso14443.subdissector,iso7816", "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    by_frame = {row[0]: dict(zip(fields, row, strict=True)) for row in rows}
    assert by_frame["1"]["iso14443.event"] == "0xfc"  # field on
    assert by_frame["1"]["frame.comment"].startswith("ATR 3B8F")
    select, response = by_frame["2"], by_frame["3"]
    assert select["iso7816.apdu.ins"] == "0xa4"
    assert bytes.fromhex(select["iso7816.apdu.body"]) == b"2PAY.SYS.DDF01"
    assert (response["iso7816.apdu.sw1"], response["iso7816.apdu.sw2"]) == ("0x90", "0x00")
    assert tlv.decode(bytes.fromhex(response["iso7816.apdu.body"]))[0].tag == 0x6F
    assert by_frame["4"]["iso7816.apdu.ins"] == "0xb2"  # READ RECORD
    assert "CardRemoved" in by_frame["7"]["frame.comment"]
