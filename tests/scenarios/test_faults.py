"""Faults (scenarios/faults.py, docs/scenarios.md "Faults") change what happens in a tap.

Each kind is injected into a real tap (a card, its issuer or token server, the
terminal, the host: scenarios.tap.TapEnvironment) and compared with the same tap
without it; the link faults' finer rules (a torn card stays torn until the next
power-on, a mute card never sees the command, exactly which byte or bit changes)
are checked against a small scripted card. A fault whose parameters make no
sense, or that cannot apply here, or that never happened, is a FaultError whose
message starts with the fault's file:line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emv import apdu, tlv
from emv.link import CardRemoved, LinkError
from emv.trace import EventKind, Trace
from scenarios.faults import (
    HOST_TIMEOUT_S,
    KINDS,
    FaultError,
    TapFaults,
    make_fault,
)
from scenarios.model import FAULT_KINDS, Fault, ServerState, Source
from scenarios.tap import ScenarioClock, TapEnvironment
from terminal.config import load_config
from terminal.outcome import Status
from terminal.pos import TransactionResult

SOURCE = Source("packs/faults.yaml", 7)
ONLINE = 1234  # above the default configuration's floor limit: every card goes online
START_NS = 1_700_000_000 * 10**9


def _fault(kind: str, params: Any) -> Fault:
    """A fault as the loader makes it (a one-word form is {"value": word})."""
    return Fault(kind, params if isinstance(params, dict) else {"value": params}, SOURCE)


def _tap(
    env: TapEnvironment, *faults: Fault, amount: int = ONLINE
) -> tuple[TransactionResult, Trace, TapFaults]:
    applied = TapFaults(faults)
    applied.prepare(env)
    result, trace = env.tap(amount, **applied.tap_options())
    applied.finish(env, result)
    return result, trace, applied


def _events(trace: Trace) -> list[str]:
    """The trace as words: "on", command names, "!! <error>"."""
    words = []
    for event in trace.events:
        if event.kind is EventKind.FIELD_ON:
            words.append("on")
        elif event.kind is EventKind.COMMAND:
            words.append(apdu.command_name(apdu.CommandApdu.parse(event.data)))
        elif event.kind is EventKind.ERROR:
            words.append(f"!! {event.note}")
    return words


@pytest.fixture
def visa() -> Iterator[TapEnvironment]:
    with TapEnvironment("visa_qvsdc_plastic") as env:
        yield env


@pytest.fixture
def mastercard() -> Iterator[TapEnvironment]:
    with TapEnvironment("mastercard_mchip_plastic") as env:
        yield env


def test_every_documented_kind_has_a_class() -> None:
    assert set(KINDS) == set(FAULT_KINDS)


# --- a scripted card for the link faults' rules ---------------------------------------------------

GPO_ANSWER = bytes.fromhex("770F" + "8202" + "2000" + "9F3602" + "0001" + "9F2603" + "A1B2C3")


class ScriptedCard:
    """A card that answers GPO with GPO_ANSWER and anything else with 9000, and notes
    what reached it."""

    def __init__(self) -> None:
        self.powered = False
        self.received: list[str] = []
        self.power_ons = 0

    def power_on(self) -> bytes:
        self.powered, self.power_ons = True, self.power_ons + 1
        return b"\x3b\x00"

    def power_off(self) -> None:
        self.powered = False

    def transceive(self, command: bytes) -> bytes:
        if not self.powered:
            raise CardRemoved("not powered")
        name = apdu.command_name(apdu.CommandApdu.parse(command))
        self.received.append(name)
        return GPO_ANSWER + b"\x90\x00" if name.startswith("GET PROCESSING") else b"\x90\x00"


SELECT = apdu.select_ppse().to_bytes()
GPO = apdu.get_processing_options(b"").to_bytes()
READ = apdu.read_record(1, 1).to_bytes()


def _wrapped(fault: Fault, card: ScriptedCard | None = None) -> tuple[Any, ScriptedCard, Any]:
    """The scripted card behind ``fault``'s link, and the fault."""
    card = card or ScriptedCard()
    item = make_fault(fault)
    return item.link(card), card, item


def test_a_tear_loses_the_answer_and_the_card_stays_torn_until_the_next_power_on() -> None:
    link, card, _ = _wrapped(_fault("tear", {"after": "GET PROCESSING OPTIONS"}))
    link.power_on()
    assert link.transceive(SELECT) == b"\x90\x00"
    with pytest.raises(CardRemoved, match="after GET PROCESSING OPTIONS"):
        link.transceive(GPO)
    assert card.received == ["SELECT 2PAY.SYS.DDF01", "GET PROCESSING OPTIONS"]  # processed
    assert not card.powered  # the card left the field
    with pytest.raises(CardRemoved):
        link.transceive(READ)
    assert card.received[-1] == "GET PROCESSING OPTIONS"  # nothing reached it
    link.power_on()  # a retap finds it again, and the tear happens once
    assert link.transceive(GPO).endswith(b"\x90\x00")
    assert link.transceive(READ) == b"\x90\x00"


def test_a_tear_after_n_apdus_counts_commands_and_zero_tears_before_the_first() -> None:
    link, card, _ = _wrapped(_fault("tear", {"after_apdus": 2}))
    link.power_on()
    link.transceive(SELECT)
    with pytest.raises(CardRemoved):
        link.transceive(GPO)
    assert card.received == ["SELECT 2PAY.SYS.DDF01", "GET PROCESSING OPTIONS"]
    link, card, _ = _wrapped(_fault("tear", {"after_apdus": 0}))
    link.power_on()
    with pytest.raises(CardRemoved, match="at once"):
        link.transceive(SELECT)
    assert card.received == []


def test_second_tap_tears_only_in_the_first_activation() -> None:
    link, _, applied = _wrapped(_fault("second_tap", {"tear_after": "READ RECORD"}))
    link.power_on()
    link.transceive(SELECT)
    link.power_on()  # READ RECORD only comes in the second activation: no tear there
    assert link.transceive(READ) == b"\x90\x00"
    with pytest.raises(FaultError, match=r"^packs/faults\.yaml:7: second_tap: .*first activation"):
        applied.verify()
    link, _, applied = _wrapped(_fault("tear", {"after": "READ RECORD"}))
    link.power_on()
    link.transceive(SELECT)
    link.power_on()  # a plain tear tears in whichever activation
    with pytest.raises(CardRemoved):
        link.transceive(READ)


def test_a_mute_card_never_sees_the_command_and_answers_nothing_until_the_next_power_on() -> None:
    link, card, _ = _wrapped(_fault("mute", {"at": "get processing"}))  # case is ignored
    link.power_on()
    link.transceive(SELECT)
    with pytest.raises(LinkError, match="time-out") as raised:
        link.transceive(GPO)
    assert not isinstance(raised.value, CardRemoved)
    with pytest.raises(LinkError):
        link.transceive(READ)
    assert card.received == ["SELECT 2PAY.SYS.DDF01"]
    link.power_on()
    assert link.transceive(GPO).endswith(b"\x90\x00")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # bit 0 is the most significant bit of the value's first byte: A1 -> 21
        ({"tag": "9F26", "bit": 0}, "770F820220009F360200019F260321B2C3"),
        ({"tag": "9F26", "bit": 23}, "770F820220009F360200019F2603A1B2C2"),
        ({"byte": 2, "xor": "FF01"}, "770F7D0320009F360200019F2603A1B2C3"),
        ({"tlv": "drop", "tag": "9F36"}, "770A820220009F2603A1B2C3"),
        ({"tlv": "double", "tag": "9F36"}, "7714820220009F360200019F360200019F2603A1B2C3"),
        ({"tlv": "length", "tag": "9F36"}, "770F820220009F360300019F2603A1B2C3"),
    ],
    ids=["tag-bit-0", "tag-last-bit", "byte-xor", "tlv-drop", "tlv-double", "tlv-length"],
)
def test_corrupt_changes_exactly_what_it_names(params: dict[str, Any], expected: str) -> None:
    link, _, applied = _wrapped(_fault("corrupt", {"command": "GET PROCESSING OPTIONS", **params}))
    link.power_on()
    assert link.transceive(SELECT) == b"\x90\x00"  # another command: untouched
    assert link.transceive(GPO) == bytes.fromhex(expected) + b"\x90\x00"
    assert link.transceive(GPO) == GPO_ANSWER + b"\x90\x00"  # once per tap
    applied.verify()


def test_corrupt_sw_keeps_data_for_a_warning_and_drops_it_for_an_error() -> None:
    for sw, expected in (("6283", GPO_ANSWER + b"\x62\x83"), ("6985", b"\x69\x85")):
        link, _, _ = _wrapped(_fault("corrupt", {"command": "GET PROCESSING", "sw": sw}))
        link.power_on()
        assert link.transceive(GPO) == expected


def test_corrupt_that_does_not_fit_the_answer_is_an_error_after_the_tap() -> None:
    link, _, applied = _wrapped(_fault("corrupt", {"command": "GET", "byte": 16, "xor": "0101"}))
    link.power_on()
    assert link.transceive(GPO) == GPO_ANSWER + b"\x90\x00"
    with pytest.raises(FaultError, match=r"^packs/faults\.yaml:7: corrupt: byte 16 .* 17 byte"):
        applied.verify()
    link, _, applied = _wrapped(_fault("corrupt", {"command": "GET", "tag": "9F26", "bit": 24}))
    link.power_on()
    link.transceive(GPO)
    with pytest.raises(FaultError, match="bit 24: the value of 9F26 has 24 bit"):
        applied.verify()


# --- link faults in real taps ---------------------------------------------------------------------


def test_a_tear_after_generate_ac_is_recovered_with_recover_ac_on_the_retap(
    mastercard: TapEnvironment,
) -> None:
    """Book C-2: a torn GENERATE AC is logged; Try Again, and the next activation of
    the same card asks RECOVER AC for the cryptogram it computed."""
    plain, plain_trace, _ = _tap(mastercard)
    assert plain.entry.taps == 1 and "RECOVER AC" not in _events(plain_trace)
    result, trace, _ = _tap(mastercard, _fault("tear", {"after": "GENERATE AC"}))
    words = _events(trace)
    torn = next(i for i, word in enumerate(words) if word.startswith("!! CardRemoved"))
    assert words[torn - 1].startswith("GENERATE AC")
    assert "packs/faults.yaml:7" in words[torn]
    assert words[torn + 1] == "on" and words[-1] == "RECOVER AC"
    assert [w for w in words if w.startswith("GENERATE AC")] == [words[torn - 1]]
    assert result.entry.taps == 2
    assert result.outcome.status == Status.APPROVED, result.outcome


def test_a_tear_or_mute_on_kernel_3_asks_for_the_card_again(visa: TapEnvironment) -> None:
    for fault, error in (
        (_fault("tear", {"after": "GET PROCESSING OPTIONS"}), "!! CardRemoved"),
        (_fault("mute", {"at": "GET PROCESSING OPTIONS"}), "!! LinkError"),
        (_fault("second_tap", {"tear_after": "READ RECORD SFI 1"}), "!! CardRemoved"),
    ):
        result, trace, _ = _tap(visa, fault)
        words = _events(trace)
        assert words.count("on") == 2 and sum(w.startswith(error) for w in words) == 1
        assert result.entry.taps == 2 and result.approved, (fault, result.outcome)


def test_a_link_fault_that_never_happens_is_an_error(visa: TapEnvironment) -> None:
    """A Visa card gets no GENERATE AC: the scenario would test nothing."""
    with pytest.raises(FaultError, match=r"^packs/faults\.yaml:7: tear: no command 'GENERATE AC'"):
        _tap(visa, _fault("tear", {"after": "GENERATE AC"}))


def test_corrupted_answers_end_the_transaction_their_own_way(visa: TapEnvironment) -> None:
    plain, _, _ = _tap(visa)
    assert plain.approved
    cases: list[tuple[dict[str, Any], Status, str]] = [
        ({"sw": "6985"}, Status.TRY_ANOTHER_INTERFACE, "6985"),
        ({"tlv": "drop", "tag": "9F26"}, Status.END_APPLICATION, "(9F26)"),
        ({"tlv": "double", "tag": "9F36"}, Status.END_APPLICATION, "9F36 given twice"),
        ({"byte": 0, "xor": "01"}, Status.END_APPLICATION, "not Format 2"),
    ]
    for params, status, reason in cases:
        fault = _fault("corrupt", {"command": "GET PROCESSING OPTIONS", **params})
        result, _, _ = _tap(visa, fault)
        assert (result.outcome.status, reason in result.outcome.reason) == (status, True), (
            params,
            result.outcome,
        )


def test_a_flipped_signature_bit_fails_fdda_and_cda(
    visa: TapEnvironment, mastercard: TapEnvironment
) -> None:
    plain, _, _ = _tap(visa)
    assert plain.kernel is not None and str(plain.kernel.oda).startswith("fDDA passed")
    result, _, _ = _tap(visa, _fault("flip_signature", {"tag": "9F4B", "bit": 100}))
    assert result.kernel is not None and result.kernel.oda.result == "failed"
    assert "signed dynamic data" in result.kernel.oda.reason
    assert result.online  # Kernel 3: the CTQ asks to go online when fDDA fails
    result, _, _ = _tap(mastercard, _fault("flip_signature", {"tag": "9F4B", "bit": 5}))
    assert result.kernel is not None and result.kernel.oda.method == "CDA"
    assert result.kernel.oda.result == "failed"
    assert result.outcome.status == Status.END_APPLICATION
    result, _, _ = _tap(visa, _fault("flip_signature", {"tag": "90", "bit": 9}))
    assert result.kernel is not None and "issuer certificate" in result.kernel.oda.reason


def test_a_delay_shows_in_the_trace_timestamps_without_sleeping() -> None:
    clock = ScenarioClock(START_NS, monotonic_ns=lambda: 0)  # time stands still but for faults
    with TapEnvironment("visa_qvsdc_plastic", scenario_clock=clock) as env:
        _, plain, _ = _tap(env)
        _, trace, _ = _tap(env, _fault("delay", {"command": "READ RECORD", "ms": 250}))
    assert {event.time_ns for event in plain.events} == {START_NS}
    steps = [
        (apdu.command_name(apdu.CommandApdu.parse(command.data)), answer.time_ns - command.time_ns)
        for command, answer in zip(trace.events, trace.events[1:], strict=False)
        if command.kind is EventKind.COMMAND
    ]
    assert steps[:3] == [
        ("SELECT 2PAY.SYS.DDF01", 0),
        ("SELECT A0000000031010", 0),
        ("GET PROCESSING OPTIONS", 0),
    ]
    reads = [gap for name, gap in steps if name.startswith("READ RECORD")]
    assert reads and all(gap == 250_000_000 for gap in reads)  # every matching answer
    assert clock.advanced_ns == 250_000_000 * len(reads)


# --- host faults ----------------------------------------------------------------------------------


def test_host_down_declines_without_asking_the_host(visa: TapEnvironment) -> None:
    result, _, _ = _tap(visa, _fault("host", "down"))
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host unavailable: connection refused"
    assert visa.host is not None
    again = visa.host.authorise(result.icc_data)  # the host never saw it: no replay
    assert (again.approved, again.reason) == (True, "approved")


def test_host_slow_decides_but_answers_after_the_time_out(visa: TapEnvironment) -> None:
    before = visa.scenario_clock.advanced_ns
    result, _, _ = _tap(visa, _fault("host", "slow"))
    assert result.outcome.status == Status.DECLINED
    assert result.outcome.reason == "host unavailable: no answer within 10 s (time-out)"
    assert visa.scenario_clock.advanced_ns - before == HOST_TIMEOUT_S * 1e9
    assert visa.host is not None
    assert visa.host.authorise(result.icc_data).reason == "replay"  # it had decided


def test_host_faults_are_harmless_when_the_tap_stays_offline() -> None:
    config = load_config("offline_only")
    with TapEnvironment("visa_qvsdc_plastic", config=config) as env:
        result, _, _ = _tap(env, _fault("host", "down"), amount=1000)
    assert not result.online and result.approved


def test_replay_sends_the_previous_taps_icc_data_and_the_result_holds_that_answer(
    visa: TapEnvironment,
) -> None:
    first, _, _ = _tap(visa)
    second, _, applied = _tap(visa, _fault("replay", "previous"))
    assert second.outcome.status == Status.APPROVED  # this tap's own authorisation
    assert second.icc_data != first.icc_data
    assert second.host is not None and (second.host.approved, second.host.reason) == (
        False,
        "replay",
    )
    assert applied.notes() == ["Replay of tap 1's ICC data to the host: declined (replay)"]


def test_replay_needs_a_previous_tap_that_went_online() -> None:
    with TapEnvironment("visa_qvsdc_plastic") as env:
        with pytest.raises(FaultError, match="first tap: there is nothing to replay"):
            _tap(env, _fault("replay", "previous"))
        _tap(env, _fault("host", "down"))  # sent to a host that was down: replayable
        result, _, _ = _tap(env, _fault("replay", "previous"))
        assert result.host is not None and result.host.reason == "approved"
    with TapEnvironment("visa_qvsdc_plastic", config=load_config("offline_only")) as env:
        _tap(env, amount=1000)
        with pytest.raises(FaultError, match="tap 1 sent nothing to the host"):
            _tap(env, _fault("replay", "previous"), amount=1000)


# --- server faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "status", "reason"),
    [
        ("visa_qvsdc_hce", Status.TRY_ANOTHER_INTERFACE, "GET PROCESSING OPTIONS answered 6985"),
        ("mastercard_mchip_hce", Status.END_APPLICATION, "GENERATE AC status 6985"),
    ],
)
def test_exhausted_keys_leave_the_phone_unable_to_pay_for_that_tap(
    profile: str, status: Status, reason: str
) -> None:
    with TapEnvironment(profile, server=ServerState(keys=2)) as env:
        assert env.phone is not None
        plain, _, _ = _tap(env)
        assert plain.approved
        result, _, applied = _tap(env, _fault("keys", "exhausted"))
        assert (result.outcome.status, reason in result.outcome.reason) == (status, True)
        assert env.phone.wallet.usable_keys(env.phone.family) == 0  # and not replenished
        assert applied.items[0].used_up > 0  # type: ignore[attr-defined]
        after, _, _ = _tap(env)  # the next tap is replenished as usual
        assert after.approved, after.outcome


def test_expired_keys_are_declined_by_the_token_server() -> None:
    with TapEnvironment("visa_qvsdc_hce") as env:
        before = env.scenario_clock.advanced_ns
        result, _, _ = _tap(env, _fault("keys", "expired"))
        ttl = env.service.config.ttl_hours
        assert env.scenario_clock.advanced_ns - before == (ttl + 1) * 3600 * 10**9
    assert result.outcome.status == Status.DECLINED
    assert result.host is not None and result.host.reason == "expired_key"


def test_key_faults_are_for_hce_cards(visa: TapEnvironment) -> None:
    with pytest.raises(
        FaultError, match=r"keys: exhausted: profile visa_qvsdc_plastic is a plastic"
    ):
        _tap(visa, _fault("keys", "exhausted"))


# --- terminal faults ------------------------------------------------------------------------------


def test_a_missing_or_wrong_ca_key_fails_oda_for_that_tap_only(visa: TapEnvironment) -> None:
    assert visa.ca_key is not None
    rid, index = visa.ca_key.rid.hex().upper(), visa.ca_key.index
    result, _, _ = _tap(visa, _fault("ca_key", "missing"))
    assert result.kernel is not None and result.kernel.oda.result == "failed"
    assert f"no CA public key {rid} index {index:02X}" in result.kernel.oda.reason
    result, _, _ = _tap(visa, _fault("ca_key", "wrong"))
    assert result.kernel is not None and result.kernel.oda.result == "failed"
    assert "issuer certificate" in result.kernel.oda.reason
    result, _, _ = _tap(visa)
    assert result.kernel is not None and result.kernel.oda.result == "passed"
    assert visa.config.ca_keys.lookup(visa.ca_key.rid, index) == visa.ca_key


def test_ca_key_faults_need_a_card_with_oda() -> None:
    config = load_config("default")
    with TapEnvironment("visa_qvsdc_plastic", config=config) as env:
        env.ca_key = None  # as for a card that does no offline data authentication
        with pytest.raises(FaultError, match=r"ca_key: missing: .* no offline data auth"):
            _tap(env, _fault("ca_key", "missing"))


# --- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "problem"),
    [
        ("smash", {}, "unknown fault 'smash'"),
        ("tear", {}, "tear: give one of: after"),
        ("tear", {"after": "GPO", "after_apdus": 1}, "tear: unknown parameter|give one of"),
        ("tear", {"after": "GENRATE AC"}, "tear: after 'GENRATE AC' names no command"),
        ("tear", {"after_apdus": -1}, "after_apdus must be a whole number >= 0"),
        ("tear", {"before": "SELECT"}, "tear: unknown parameter\\(s\\) before"),
        ("mute", {}, "mute: missing at"),
        ("corrupt", {"command": "SELECT"}, "give exactly one of"),
        ("corrupt", {"command": "SELECT", "tag": "9F4B"}, "give exactly one of"),
        ("corrupt", {"command": "SELECT", "sw": "69"}, "sw must be 2 byte"),
        ("corrupt", {"command": "SELECT", "tlv": "swap", "tag": "9F36"}, "tlv must be drop"),
        ("corrupt", {"command": "SELECT", "tag": "XY", "bit": 1}, "tag must be a BER-TLV tag"),
        ("corrupt", {"tag": "9F36", "bit": 1}, "command must be a command name"),
        ("delay", {"command": "SELECT", "ms": 1.5}, "ms must be a whole number"),
        ("flip_signature", {"tag": "9F36", "bit": 1}, "tag must be one of 9F4B"),
        ("flip_signature", {"tag": "9F4B"}, "missing bit"),
        ("keys", "lost", "keys: expected one of exhausted, expired, got 'lost'"),
        ("host", "flaky", "host: expected one of down, slow"),
        ("ca_key", "stolen", "ca_key: expected one of missing, wrong"),
        ("replay", "next", "replay: expected one of previous"),
        ("second_tap", {"after": "SELECT"}, "second_tap: unknown parameter"),
    ],
)
def test_a_fault_that_makes_no_sense_is_an_error_naming_its_source(
    kind: str, params: Any, problem: str
) -> None:
    with pytest.raises(FaultError, match=rf"^packs/faults\.yaml:7: .*({problem})"):
        make_fault(_fault(kind, params))


def test_faults_that_need_a_host_refuse_a_scenario_without_one() -> None:
    with TapEnvironment("visa_qvsdc_plastic", host="none") as env:
        for fault in (_fault("host", "down"), _fault("replay", "previous")):
            with pytest.raises(FaultError, match="the scenario has no host"):
                TapFaults([fault]).prepare(env)


def test_tag_edits_reencode_the_templates_around_the_object() -> None:
    """Dropping an object inside a nested template fixes every enclosing length."""
    inner = tlv.Tlv.template(0xA5, tlv.Tlv.primitive(0x50, b"VISA"), tlv.Tlv.primitive(0x87, b"\1"))
    answer = tlv.Tlv.template(0x6F, tlv.Tlv.primitive(0x84, b"\xa0\0\0\0\3"), inner).to_bytes()

    class Fci(ScriptedCard):
        def transceive(self, command: bytes) -> bytes:
            super().transceive(command)
            return answer + b"\x90\x00"

    link, _, _ = _wrapped(
        _fault("corrupt", {"command": "SELECT", "tlv": "drop", "tag": "50"}), Fci()
    )
    link.power_on()
    changed = link.transceive(SELECT)[:-2]
    expected = tlv.Tlv.template(
        0x6F,
        tlv.Tlv.primitive(0x84, b"\xa0\0\0\0\3"),
        tlv.Tlv.template(0xA5, tlv.Tlv.primitive(0x87, b"\1")),
    )
    assert changed == expected.to_bytes()
    assert tlv.decode(changed)  # still well formed
