"""Reconciling a device's chained transaction log (docs/cbp.md "The transaction log")."""

from __future__ import annotations

from emv import tlv
from emv.crypto import cbp
from emv.tlv import Tlv

ONLINE, OFFLINE = 0x01, 0x02


def _entry(tap, outcome: int) -> bytes:
    p = Tlv.primitive
    data = tap.data
    return Tlv.template(
        0xE2,
        p(0x9F36, data.atc),
        p(0x9F02, data.amount_authorised),
        p(0x5F2A, data.transaction_currency_code),
        p(0x9A, data.transaction_date),
        p(0x9F26, tap.arqc),
        p(0x9F27, b"\x80"),
        p(0xC2, bytes(4)),
        p(0xCB, bytes([outcome])),
    ).to_bytes()


def _macs(log_key: bytes, entries: list[bytes]) -> list[bytes]:
    macs, previous = [], bytes(8)
    for entry in entries:
        previous = cbp.chain_log_mac(log_key, previous, entry)
        macs.append(previous)
    return macs


def _approved_log(server, card, kit, count: int) -> list[bytes]:
    entries = []
    for atc in range(1, count + 1):
        tap = kit.tap_v(card, atc, use_count=atc)
        assert server.service.authorise(tap.icc, actor=server.acquirer).reason == "approved"
        entries.append(_entry(tap, ONLINE))
    return entries


def test_a_genuine_log_is_consistent(server, make_card, kit):
    card = make_card("visa")
    entries = _approved_log(server, card, kit, 3)
    report = server.service.reconcile(
        card.device_id, entries, _macs(card.log_key, entries), actor=card.device
    )
    assert report.consistent
    assert (report.entries, report.verified, report.forged) == (3, 3, ())


def test_a_tampered_entry_breaks_the_chain_from_there(server, make_card, kit):
    card = make_card("visa")
    entries = _approved_log(server, card, kit, 3)
    macs = _macs(card.log_key, entries)
    entries[1] = entries[1].replace(
        bytes.fromhex("9F0206000000001000"), bytes.fromhex("9F0206000000000100")
    )
    report = server.service.reconcile(card.device_id, entries, macs, actor=card.device)
    assert (report.verified, report.forged, report.consistent) == (1, (1, 2), False)


def test_a_removed_entry_is_a_gap_and_an_unlogged_approval(server, make_card, kit):
    card = make_card("visa")
    entries = _approved_log(server, card, kit, 3)
    macs = _macs(card.log_key, entries)
    del entries[1], macs[1]
    report = server.service.reconcile(card.device_id, entries, macs, actor=card.device)
    assert report.forged == (1,)
    assert report.missing_atcs == (2,)
    assert report.approved_not_logged == (2,)


def test_offline_and_unseen_online_entries_are_reported(server, make_card, kit):
    card = make_card("visa")
    entries = _approved_log(server, card, kit, 1)
    entries.append(_entry(kit.tap_v(card, 2, use_count=2), OFFLINE))
    report = server.service.reconcile(
        card.device_id, entries, _macs(card.log_key, entries), actor=card.device
    )
    assert (report.offline_unseen, report.consistent) == ((2,), True)
    entries.append(_entry(kit.tap_v(card, 3, use_count=3), ONLINE))
    report = server.service.reconcile(
        card.device_id, entries, _macs(card.log_key, entries), actor=card.device
    )
    assert (report.online_unseen, report.consistent) == ((3,), False)


def test_suk_gaps_count_only_atcs_issued_to_the_device(server, make_card, kit):
    card = make_card("mastercard", count=3)
    entries = []
    for atc in (1, 3):
        tap = kit.tap_m(card, atc)
        assert server.service.authorise(tap.icc, actor=server.acquirer).reason == "approved"
        entries.append(_entry(tap, ONLINE))
    report = server.service.reconcile(
        card.device_id, entries, _macs(card.log_key, entries), actor=card.device
    )
    assert (report.missing_atcs, report.approved_not_logged, report.verified) == ((2,), (), 2)


def test_a_malformed_entry_is_reported(server, make_card, kit):
    card = make_card("visa")
    entries = [tlv.encode([Tlv.primitive(0x9F36, b"\x00\x01")])]
    report = server.service.reconcile(
        card.device_id, entries, _macs(card.log_key, entries), actor=card.device
    )
    assert (report.malformed, report.forged) == ((0,), ())


def test_the_chain_goes_on_across_uploads_and_a_repeat_is_accepted(server, make_card, kit):
    import pytest  # noqa: PLC0415

    from hce.server.errors import InvalidRequest  # noqa: PLC0415

    card = make_card("visa")
    entries = _approved_log(server, card, kit, 3)
    macs = _macs(card.log_key, entries)
    service = server.service
    first = service.reconcile(card.device_id, entries[:2], macs[:2], actor=card.device)
    assert first.consistent  # ATC 3's approval belongs to the next upload
    second = service.reconcile(card.device_id, entries[2:], macs[2:], macs[1], actor=card.device)
    assert second.consistent
    again = service.reconcile(card.device_id, entries[2:], macs[2:], macs[1], actor=card.device)
    assert again.verified == 1
    with pytest.raises(InvalidRequest, match="previous"):
        service.reconcile(
            card.device_id, entries[2:], macs[2:], bytes(7) + b"\x01", actor=card.device
        )
