"""The terminal survives a card that answers garbage: 20,000 taps, every one ends in an outcome.

Real conversations are recorded first (Entry Point and both kernels against the
emulated plastic Visa and Mastercard cards, online and offline, several amounts).
The fuzz card then answers each command from those recordings (a SELECT by its
name, any other command by its header within the application last selected, so
the conversation can go deep) with seeded mutations: bit flips, changed bytes, truncation, trailing
garbage, other status words (61xx and 6Cxx too), TLV surgery (a length changed, an
object doubled or dropped), wholly random answers, a card that leaves the field or
goes mute. Every tap must end with an Outcome whose status is one of Book A's,
through both kernels' exits, and no reason or decision may carry a card's PAN.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from emv import tlv
from emv.link import CardRemoved, LinkError
from emv.trace import RecordingLink, Trace
from hce.card import Card, MemoryCounterStore, SoftIssuer, load_profile, personalise
from terminal.config import default_config, with_ca_keys
from terminal.entry import EntryPoint, EntryResult
from terminal.kernels.mastercard import Kernel2
from terminal.kernels.visa import Kernel3
from terminal.outcome import Status
from terminal.transaction import Transaction

TAPS = 20_000
SEED = 20261126
WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PROFILES = ("visa_qvsdc_plastic", "mastercard_mchip_plastic")
INTERESTING_SW = (0x9000, 0x6A82, 0x6985, 0x6984, 0x6986, 0x6A88, 0x6700, 0x6D00, 0x6A86, 0x6F00)
ATS = bytes.fromhex("057880E000")


def _entry_point(issuer: SoftIssuer) -> EntryPoint:
    config = default_config()
    keys = [issuer.ca_public_key(load_profile(name)) for name in PROFILES]
    return EntryPoint(with_ca_keys(config, keys), {2: Kernel2(), 3: Kernel3()})


def _transaction(rng: random.Random, amount: int) -> Transaction:
    return Transaction(amount, "0826", WHEN, rng.randbytes(4))


Answers = dict[tuple[bytes, bytes], list[bytes]]


def _key(selected: bytes, command: bytes) -> tuple[bytes, bytes]:
    """Where an answer is filed: a SELECT by its whole command, any other command by
    the DF name last selected and its header (CLA INS P1 P2)."""
    if command[1:2] == b"\xa4":
        return b"", command
    return selected, command[:4]


def _record(rng: random.Random) -> tuple[SoftIssuer, Answers, set[str]]:
    """Responses of real conversations, filed by :func:`_key`."""
    issuer = SoftIssuer()
    answers: Answers = defaultdict(list)
    pans = set()
    entry = _entry_point(issuer)
    for name in PROFILES:
        profile = load_profile(name)
        pans.add(profile.pan)
        image = personalise(profile, issuer.signer(profile))
        card = Card(image, issuer.plastic_keys(profile, MemoryCounterStore()))
        for amount in (0, 100, 1234, 2999, 4000, 99_999):
            trace = Trace()
            entry.process(RecordingLink(card, trace, lambda: 0), _transaction(rng, amount))
            events = [e for e in trace.events if e.kind in ("command", "response")]
            selected = b""
            for command, response in zip(events[::2], events[1::2], strict=False):
                answers[_key(selected, command.data)].append(response.data)
                if command.data[1:2] == b"\xa4":
                    selected = command.data[5 : 5 + command.data[4]]
    return issuer, answers, pans


def _flip_bit(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data) * 8)
    out = bytearray(data)
    out[i // 8] ^= 0x80 >> (i % 8)
    return bytes(out)


def _set_byte(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _append(rng: random.Random, data: bytes) -> bytes:
    return data[:-2] + rng.randbytes(rng.randrange(1, 40)) + data[-2:]


def _status_word(rng: random.Random, data: bytes) -> bytes:
    sw = rng.choice((*INTERESTING_SW, 0x6100 | rng.randrange(256), 0x6C00 | rng.randrange(256)))
    return data[:-2] + sw.to_bytes(2, "big")


def _random(rng: random.Random, data: bytes) -> bytes:
    return rng.randbytes(rng.randrange(0, 300))


def _tlv_surgery(rng: random.Random, data: bytes) -> bytes:
    """Change one data object's length, double it or drop it."""
    body, sw = data[:-2], data[-2:]
    objects = [obj for top in tlv.decode(body, strict=False) for _, obj in top.walk()]
    if not objects:
        return data
    obj = rng.choice(objects)
    encoded = obj.to_bytes()
    start = body.find(encoded)
    if start < 0:
        return data
    end = start + len(encoded)
    choice = rng.randrange(3)
    if choice == 0:
        length_at = start + len(tlv.tag_bytes(obj.tag))
        out = bytearray(body)
        out[length_at] = (out[length_at] + rng.choice((-2, -1, 1, 2, 0x40))) % 256
        return bytes(out) + sw
    if choice == 1:
        return body[:end] + encoded + body[end:] + sw
    return body[:start] + body[end:] + sw


MUTATORS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _flip_bit,
    _set_byte,
    _truncate,
    _append,
    _status_word,
    _random,
    _tlv_surgery,
)


class FuzzCard:
    """A Link answering recorded responses, mutated at ``rate`` per response."""

    def __init__(self, rng: random.Random, answers: Answers, rate: float) -> None:
        self.rng = rng
        self.answers = answers
        self.rate = rate
        self.selected = b""

    def power_on(self) -> bytes:
        if self.rng.random() < 0.01:
            raise CardRemoved("no card in the field")
        return ATS

    def power_off(self) -> None:
        pass

    def transceive(self, command: bytes) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.01:
            raise CardRemoved("card left the field")
        if roll < 0.015:
            raise LinkError("mute card: time-out")
        recorded = self.answers.get(_key(self.selected, command))
        if command[1:2] == b"\xa4":
            self.selected = command[5 : 5 + command[4]] if len(command) > 5 else b""
        answer = rng.choice(recorded) if recorded else bytes((0x6A, 0x82))
        if rng.random() < self.rate:
            answer = rng.choice(MUTATORS)(rng, answer)
        return answer


def _pan_free(result: EntryResult, pans: set[str]) -> bool:
    texts = [result.outcome.reason]
    if result.kernel is not None:
        texts += result.kernel.decisions
    return not any(pan in text for pan in pans for text in texts)


def test_twenty_thousand_garbage_taps_each_end_in_an_outcome() -> None:
    rng = random.Random(SEED)
    issuer, answers, pans = _record(rng)
    entry = _entry_point(issuer)
    statuses: Counter[Status] = Counter()
    paths: Counter[str] = Counter()
    for _ in range(TAPS):
        card = FuzzCard(rng, answers, rng.choice((0.02, 0.1, 0.3, 1.0)))
        result = entry.process(card, _transaction(rng, rng.choice((0, 500, 1234, 4000, 99_999))))
        assert isinstance(result.outcome.status, Status)
        assert _pan_free(result, pans), result.outcome.reason
        statuses[result.outcome.status] += 1
        if result.kernel is not None:
            paths[f"{result.kernel.kernel} {result.kernel.path}"] += 1
    assert sum(statuses.values()) == TAPS
    # The garbage reached every kind of ending and both kernels, not just the first check.
    assert {Status.DECLINED, Status.ONLINE_REQUEST, Status.END_APPLICATION} <= set(statuses)
    assert {Status.TRY_AGAIN, Status.TRY_ANOTHER_INTERFACE} & set(statuses)
    assert any(path.startswith("C-2") for path in paths)
    assert any(path.startswith("C-3") for path in paths)
