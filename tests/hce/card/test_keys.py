"""The plastic card's counters: the two-slot counter file (torn and damaged files
included) and the ATC that advances through it."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from emv.crypto import kd
from hce.card.keys import (
    MAX_ATC,
    RECORD_SIZE,
    SLOT_OFFSETS,
    AtcExhausted,
    CounterError,
    Counters,
    FileCounterStore,
    MemoryCounterStore,
    PlasticKeys,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "counters"


def slot(path: Path, index: int) -> bytes:
    """The raw record in slot ``index`` (short or empty when the file ends early)."""
    with path.open("rb") as file:
        file.seek(SLOT_OFFSETS[index])
        return file.read(RECORD_SIZE)


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


def record(magic: bytes, sequence: int, atc: int, count: int = 0, amount: int = 0) -> bytes:
    """A record as the file holds it, with a correct CRC-32."""
    body = struct.pack(">4sQQQQ", magic, sequence, atc, count, amount)
    return body + struct.pack(">I", zlib.crc32(body))


def test_no_file_is_a_new_card(path: Path) -> None:
    assert FileCounterStore(path).load() == Counters()
    assert not path.exists()


def test_the_first_save_makes_the_file_with_slot_0_only(path: Path) -> None:
    FileCounterStore(path).save(Counters(1, 2, 300))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == RECORD_SIZE
    assert slot(path, 0) == record(b"ETC1", 1, 1, 2, 300)
    assert FileCounterStore(path).load() == Counters(1, 2, 300)


def test_saves_alternate_between_the_slots_with_rising_sequence_numbers(path: Path) -> None:
    store = FileCounterStore(path)
    for atc in range(1, 6):
        store.save(Counters(atc, atc, 10 * atc))
        assert FileCounterStore(path).load() == Counters(atc, atc, 10 * atc)
    assert path.stat().st_size == SLOT_OFFSETS[1] + RECORD_SIZE
    assert slot(path, 0) == record(b"ETC1", 5, 5, 5, 50)  # saves 1, 3, 5
    assert slot(path, 1) == record(b"ETC1", 4, 4, 4, 40)  # saves 2, 4


def test_a_save_is_one_pwrite_and_one_fdatasync(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCounterStore(path)
    store.save(Counters(1))
    calls: list[str] = []
    pwrite, fdatasync = os.pwrite, os.fdatasync

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(f"pwrite {len(data)} at {offset}")
        return pwrite(fd, data, offset)

    def counting_fdatasync(fd: int) -> None:
        calls.append("fdatasync")
        fdatasync(fd)

    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(os, "replace", lambda *args: calls.append("replace"))
    store.save(Counters(2))
    assert calls == [f"pwrite {RECORD_SIZE} at {SLOT_OFFSETS[1]}", "fdatasync"]


# --- torn writes: the older record stands --------------------------------------------------


@pytest.mark.parametrize(
    "torn",
    [
        pytest.param(lambda new: new[:17], id="cut short"),
        pytest.param(lambda new: new[:30] + bytes(RECORD_SIZE - 30), id="tail still zero"),
        pytest.param(lambda new: new[:-1] + bytes((new[-1] ^ 1,)), id="one bit flipped"),
        pytest.param(lambda new: b"\xa5" * RECORD_SIZE, id="garbage"),
    ],
)
def test_a_torn_save_leaves_the_previous_counters(
    path: Path, torn: Callable[[bytes], bytes]
) -> None:
    store = FileCounterStore(path)
    store.save(Counters(7, 1, 100))
    store.save(Counters(8, 1, 100))  # slot 1, sequence 2
    new = record(b"ETC1", 3, 9, 2, 600)  # what the third save writes into slot 0
    overwrite(path, SLOT_OFFSETS[0], torn(new))
    assert FileCounterStore(path).load() == Counters(8, 1, 100)
    store.save(Counters(9, 1, 100))  # the torn slot is the one written again
    assert slot(path, 0) == record(b"ETC1", 3, 9, 1, 100)
    assert FileCounterStore(path).load() == Counters(9, 1, 100)


def test_a_save_killed_inside_its_write_leaves_the_previous_counters(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCounterStore(path)
    store.save(Counters(41))
    store.save(Counters(42))
    real_pwrite = os.pwrite

    def crash_half_way(fd: int, data: bytes, offset: int) -> int:
        real_pwrite(fd, data[: len(data) // 2], offset)
        raise SystemExit("killed")

    monkeypatch.setattr(os, "pwrite", crash_half_way)
    with pytest.raises(SystemExit):
        store.save(Counters(43))
    monkeypatch.undo()
    assert FileCounterStore(path).load() == Counters(42)


def test_a_torn_second_save_leaves_the_first(path: Path) -> None:
    store = FileCounterStore(path)
    store.save(Counters(1))
    overwrite(path, SLOT_OFFSETS[1], record(b"ETC1", 2, 2)[:5])
    assert store.load() == Counters(1)


# --- damaged files: an error that names the file and each slot ---------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            b"",
            r"slot at offset 0: missing \(the file ends before it\); "
            r"slot at offset 4096: missing",
        ),
        (record(b"ETC1", 1, 1)[:12], r"slot at offset 0: short: 12 of 40 bytes"),
        (
            b'{"atc": 3, "offline_count": 0, "offline_amount": 0}',
            r"slot at offset 0: not a counter record \(it starts 7B226174\)",
        ),
        (
            record(b"ETC1", 1, 1)[:-1] + b"\x00",
            r"slot at offset 0: CRC-32 mismatch \(a torn or damaged record\)",
        ),
        (
            record(b"ETC2", 1, 1) + bytes(SLOT_OFFSETS[1] - RECORD_SIZE) + b"\xff" * RECORD_SIZE,
            r"slot at offset 0: not a counter record \(it starts 45544332\); "
            r"slot at offset 4096: not a counter record \(it starts FFFFFFFF\)",
        ),
    ],
    ids=["empty", "short", "json", "crc", "neither slot"],
)
def test_a_file_without_a_valid_record_is_an_error(path: Path, content: bytes, words: str) -> None:
    path.write_bytes(content)
    with pytest.raises(CounterError, match=rf"counter file {path} holds no valid record: {words}"):
        FileCounterStore(path).load()


def test_a_file_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CounterError, match=rf"counter file {tmp_path} is unreadable: .*directory"):
        FileCounterStore(tmp_path).load()


def test_a_save_over_a_damaged_file_writes_a_record_that_loads(path: Path) -> None:
    path.write_bytes(b"\x00" * 100)
    FileCounterStore(path).save(Counters(5))
    assert FileCounterStore(path).load() == Counters(5)


def test_counters_that_do_not_fit_a_record_are_refused(path: Path) -> None:
    with pytest.raises(CounterError, match="do not fit a counter record"):
        FileCounterStore(path).save(Counters(offline_amount=1 << 64))
    assert not path.exists()


# --- the ATC through the store ---------------------------------------------------------------


def test_advance_persists_before_it_answers(path: Path) -> None:
    keys = PlasticKeys(mk_ac=bytes(16), store=FileCounterStore(path))
    first = keys.advance(keys.counters)
    assert (first, first.atc_bytes) == (Counters(1), b"\x00\x01")
    assert keys.advance(first, offline_amount=250) == Counters(2, 1, 250)
    assert FileCounterStore(path).load() == Counters(2, 1, 250)
    assert (keys.atc, keys.counters) == (2, Counters(2, 1, 250))
    assert keys.advance(keys.counters) == Counters(3, 1, 250)  # online: the offline totals stay
    assert keys.counters == Counters(3, 1, 250)


def test_the_atc_stops_at_ffff() -> None:
    keys = PlasticKeys(mk_ac=bytes(16), store=MemoryCounterStore(Counters(MAX_ATC)))
    with pytest.raises(AtcExhausted, match="ATC has reached FFFF"):
        keys.advance(keys.counters)
    assert keys.counters == Counters(MAX_ATC)
    assert issubclass(AtcExhausted, CounterError)


# --- the session keys of MK-AC --------------------------------------------------------------------


MK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


@pytest.mark.parametrize(
    "r",
    [
        b"\x00\x01" + bytes(6),  # ATC || '00'x6 (Book 2 A1.3.1)
        b"\xfe\xdc" + bytes(6),
        kd.mastercard_sk_r(b"\x01\x02", bytes.fromhex("1A2B3C4D")),  # M/Chip SKD
    ],
)
def test_the_common_session_key_is_book_2_a1_3_1(r: bytes) -> None:
    keys = PlasticKeys(mk_ac=MK_AC, store=MemoryCounterStore())
    assert keys.common_session_key(r) == kd.derive_common_sk(MK_AC, r)
    assert keys.common_session_key(r) == kd.derive_common_sk(MK_AC, r)  # the kept cipher again


def test_plastic_keys_take_a_des2_mk_ac_and_show_no_key() -> None:
    with pytest.raises(ValueError, match="mk_ac"):
        PlasticKeys(mk_ac=bytes(24), store=MemoryCounterStore())
    keys = PlasticKeys(mk_ac=MK_AC, store=MemoryCounterStore(), mk_cvc3=MK_AC)
    keys.common_session_key(bytes(8))
    assert MK_AC.hex() not in repr(keys).lower() and "TdeaEcb" not in repr(keys)
