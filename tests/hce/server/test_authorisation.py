"""Authorisation of CBP-V and CBP-M cryptograms: the full flow through a soft HSM, every
decline reason, flipped bytes, replays, and one approval per ATC under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from emv import tlv
from emv.crypto import ac
from hce.server.authorisation import CSU_APPROVED, CSU_DECLINED


def _flipped(icc: bytes) -> list[tuple[str, bytes]]:
    """The request with one value byte flipped, for every byte of every value."""
    variants = []
    objects = tlv.decode(icc)
    for position, obj in enumerate(objects):
        for offset in range(len(obj.value)):
            value = bytearray(obj.value)
            value[offset] ^= 0x01
            changed = [*objects]
            changed[position] = tlv.Tlv.primitive(obj.tag, bytes(value))
            variants.append((f"{tlv.tag_hex(obj.tag)}[{offset}]", tlv.encode(changed)))
    return variants


def test_cbp_v_approved_with_arpc_method_1_under_the_session_key(server, make_card, kit):
    card = make_card("visa")
    tap = kit.tap_v(card, atc=1)
    answer = server.service.authorise(tap.icc, actor=server.acquirer)
    assert (answer.decision, answer.reason, answer.arc) == ("approved", "approved", b"00")
    assert answer.arpc == ac.generate_arpc_1(tap.key, tap.arqc, b"00")
    assert answer.csu is None


def test_a_second_submission_is_a_replay_without_arpc(server, make_card, kit):
    card = make_card("visa")
    tap = kit.tap_v(card, atc=1)
    assert server.service.authorise(tap.icc, actor=server.acquirer).decision == "approved"
    replay = server.service.authorise(tap.icc, actor=server.acquirer)
    assert (replay.decision, replay.reason, replay.arc, replay.arpc) == (
        "declined",
        "replay",
        b"05",
        None,
    )


@pytest.mark.parametrize(
    ("scheme", "pin"), [("visa", None), ("mastercard", None), ("mastercard", "4821")]
)
def test_every_flipped_byte_is_declined(server, make_card, kit, scheme, pin):
    card = make_card(scheme, pin=pin)
    tap = kit.tap_v(card, atc=1) if scheme == "visa" else kit.tap_m(card, atc=1, pin=pin)
    for where, icc in _flipped(tap.icc):
        answer = server.service.authorise(icc, actor=server.acquirer)
        assert answer.decision == "declined", where
    assert server.service.authorise(tap.icc, actor=server.acquirer).decision == "approved"


def test_cbp_m_suk_approved_with_arpc_method_2_and_csu(server, make_card, kit):
    card = make_card("mastercard", count=2)
    tap = kit.tap_m(card, atc=1)
    answer = server.service.authorise(tap.icc, actor=server.acquirer)
    assert (answer.decision, answer.csu) == ("approved", CSU_APPROVED)
    assert answer.arpc == ac.generate_arpc_2(tap.key, tap.arqc, CSU_APPROVED)


def test_cbp_m_suk_uv_needs_the_pin(server, make_card, kit):
    card = make_card("mastercard", count=2, pin="4821")
    wrong = kit.tap_m(card, atc=1, pin="4822")
    assert server.service.authorise(wrong.icc, actor=server.acquirer).reason == "bad_cryptogram"
    right = kit.tap_m(card, atc=1, pin="4821")
    answer = server.service.authorise(right.icc, actor=server.acquirer)
    assert answer.reason == "approved"
    assert answer.arpc == ac.generate_arpc_2(right.key, right.arqc, CSU_APPROVED)


def test_suk_uv_never_issued_without_a_pin_is_an_unknown_key(server, make_card, kit):
    card = make_card("mastercard", count=1)
    kit.load(card, "SUK", 1, "4821")  # ATC 2 has a SUK-UV, ATC 1 has not
    assert (
        server.service.authorise(kit.tap_m(card, 2, pin="4821").icc, actor=server.acquirer).reason
        == "approved"
    )
    forged = kit.tap_m(card, 1)
    icc = forged.icc.replace(bytes.fromhex("9F1006C200"), bytes.fromhex("9F1006C201"))
    assert server.service.authorise(icc, actor=server.acquirer).reason == "unknown_key"


def test_over_count_by_use_count_and_by_approvals(server, make_card, kit):
    card = make_card("visa")  # TEST_CONFIG: 3 transactions per LUK
    over = kit.tap_v(card, atc=1, use_count=4)
    assert server.service.authorise(over.icc, actor=server.acquirer).reason == "over_count"
    for atc in (2, 3, 4):
        tap = kit.tap_v(card, atc=atc, use_count=atc - 1)
        assert server.service.authorise(tap.icc, actor=server.acquirer).reason == "approved"
    fourth = kit.tap_v(card, atc=5, use_count=3)
    answer = server.service.authorise(fourth.icc, actor=server.acquirer)
    assert answer.reason == "over_count"
    assert answer.arpc == ac.generate_arpc_1(fourth.key, fourth.arqc, b"05")


def test_over_amount_is_cumulative_per_luk(server, make_card, kit):
    card = make_card("visa")  # 20000 minor units per LUK
    first = kit.tap_v(card, atc=1, amount=15_000)
    assert server.service.authorise(first.icc, actor=server.acquirer).reason == "approved"
    second = kit.tap_v(card, atc=2, amount=5_001, use_count=2)
    answer = server.service.authorise(second.icc, actor=server.acquirer)
    assert (answer.reason, answer.arc) == ("over_amount", b"05")
    assert answer.arpc == ac.generate_arpc_1(second.key, second.arqc, b"05")
    other_luk = kit.tap_v(card, atc=3, amount=5_001, luk=1)
    assert server.service.authorise(other_luk.icc, actor=server.acquirer).reason == "approved"


def test_a_declined_cbp_m_answer_carries_the_declined_csu(server, make_card, kit):
    card = make_card("mastercard")
    tap = kit.tap_m(card, atc=1, amount=20_001)
    answer = server.service.authorise(tap.icc, actor=server.acquirer)
    assert (answer.reason, answer.csu) == ("over_amount", CSU_DECLINED)
    assert answer.arpc == ac.generate_arpc_2(tap.key, tap.arqc, CSU_DECLINED)


def test_expired_key(server, make_card, kit):
    card = make_card("visa")
    server.clock.advance(71)
    assert (
        server.service.authorise(kit.tap_v(card, 1).icc, actor=server.acquirer).reason == "approved"
    )
    server.clock.advance(2)
    assert (
        server.service.authorise(kit.tap_v(card, 2).icc, actor=server.acquirer).reason
        == "expired_key"
    )


def test_unknown_key_index(server, make_card, kit):
    card = make_card("visa", count=1)
    luk = card.keys[0]
    card.keys[0] = type(luk)(
        luk.kind, (int.from_bytes(luk.ident, "big") + 1).to_bytes(4, "big"), luk.value, 3, 0, 0
    )
    assert (
        server.service.authorise(kit.tap_v(card, 1).icc, actor=server.acquirer).reason
        == "unknown_key"
    )


def test_unknown_atc_for_suk(server, make_card, kit):
    card = make_card("mastercard", count=1)
    tap = kit.tap_m(card, 1)
    icc = tap.icc.replace(bytes.fromhex("9F36020001"), bytes.fromhex("9F36020009"))
    assert server.service.authorise(icc, actor=server.acquirer).reason == "unknown_key"


def test_suspended_token_then_resumed(server, make_card, kit):
    card = make_card("visa")
    server.service.suspend(card.token_id, actor=server.admin)
    tap = kit.tap_v(card, 1)
    answer = server.service.authorise(tap.icc, actor=server.acquirer)
    assert (answer.reason, answer.arpc) == (
        "suspended_token",
        ac.generate_arpc_1(tap.key, tap.arqc, b"05"),
    )
    server.service.resume(card.token_id, actor=server.admin)
    assert server.service.authorise(tap.icc, actor=server.acquirer).reason == "approved"


def test_unknown_token(server, kit):
    data = kit.terminal_data(1)
    icc = kit.icc_data(
        "4895370000000002",
        data,
        bytes(8),
        bytes.fromhex("C1000000000000000000 01".replace(" ", "")),
    )
    answer = server.service.authorise(icc, actor=server.acquirer)
    assert (answer.reason, answer.arpc) == ("unknown_token", None)


def test_malformed_names_the_missing_tag(server, make_card, kit):
    card = make_card("visa")
    objects = [o for o in tlv.decode(kit.tap_v(card, 1).icc) if o.tag != 0x9F37]
    answer = server.service.authorise(tlv.encode(objects), actor=server.acquirer)
    assert (answer.reason, answer.arpc) == ("malformed", None)
    assert "9F37" in answer.detail
    assert server.service.authorise(b"\x9f\x26\x09", actor=server.acquirer).reason == "malformed"


def test_track2_instead_of_pan(server, make_card, kit):
    card = make_card("visa")
    tap = kit.tap_v(card, 1)
    objects = [o for o in tlv.decode(tap.icc) if o.tag != 0x5A]
    for expiry, reason in (("2812", "unknown_token"), (kit.expiry, "approved")):
        track2 = bytes.fromhex(f"{card.token_pan}D{expiry}20100000F")
        icc = tlv.encode([tlv.Tlv.primitive(0x57, track2), *objects])
        assert server.service.authorise(icc, actor=server.acquirer).reason == reason


def test_sixteen_concurrent_submissions_give_one_approval(server, make_card, kit):
    card = make_card("visa")
    tap = kit.tap_v(card, 1)
    barrier = threading.Barrier(16)

    def submit(_: int) -> tuple[str, bool]:
        barrier.wait()
        answer = server.service.authorise(tap.icc, actor=server.acquirer)
        return answer.reason, answer.arpc is not None

    with ThreadPoolExecutor(16) as pool:
        answers = sorted(pool.map(submit, range(16)))
    assert answers == [("approved", True)] + [("replay", False)] * 15
