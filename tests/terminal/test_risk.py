"""Terminal risk management and terminal action analysis (Book 3 §10.6-§10.7, Book C-2 §7.8):
the floor limit, and the cryptogram asked for every kind of terminal against every TVR
bit, with Terminal Action Codes, Issuer Action Codes and their defaults when absent."""

from __future__ import annotations

import itertools

import pytest

from emv.apdu import CryptogramType
from terminal.config import Tacs
from terminal.risk import (
    DEFAULT_IAC_DEFAULT,
    DEFAULT_IAC_DENIAL,
    DEFAULT_IAC_ONLINE,
    ActionCodes,
    floor_limit_exceeded,
    matching_bits,
    terminal_action_analysis,
)

AAC, TC, ARQC = CryptogramType.AAC, CryptogramType.TC, CryptogramType.ARQC
ZERO = bytes(5)
ONLINE_CAPABLE = (0x12, 0x15, 0x22, 0x25, 0x32, 0x35)
ONLINE_ONLY = (0x11, 0x14, 0x21, 0x24, 0x34)
OFFLINE_ONLY = (0x13, 0x16, 0x23, 0x26, 0x36)
NO_TACS = Tacs()
ALL_BITS = [(byte, 1 << bit) for byte in range(5) for bit in range(8)]


def tvr_with(byte: int, mask: int) -> bytes:
    tvr = bytearray(5)
    tvr[byte] = mask
    return bytes(tvr)


def taa(
    tvr: bytes,
    *,
    tacs: Tacs = NO_TACS,
    iacs: ActionCodes | None = None,
    terminal_type: int = 0x22,
) -> CryptogramType:
    codes = iacs if iacs is not None else ActionCodes(ZERO, ZERO, ZERO)
    return terminal_action_analysis(tvr, tacs, codes, terminal_type).cryptogram


# --- floor limit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "limit", "exceeded"),
    [
        (0, 0, False),
        (1, 0, True),
        (1000, 1000, False),
        (1001, 1000, True),
        (10**12 - 1, None, False),
    ],
)
def test_floor_limit_is_exceeded_only_above_it(
    amount: int, limit: int | None, exceeded: bool
) -> None:
    assert floor_limit_exceeded(amount, limit) is exceeded


# --- denial --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("byte", "mask"), ALL_BITS)
@pytest.mark.parametrize("terminal_type", (0x22, 0x21, 0x23))
def test_any_bit_in_tac_denial_asks_for_an_aac(byte: int, mask: int, terminal_type: int) -> None:
    tvr = tvr_with(byte, mask)
    assert taa(tvr, tacs=Tacs(denial=tvr), terminal_type=terminal_type) == AAC


@pytest.mark.parametrize(("byte", "mask"), ALL_BITS)
def test_any_bit_in_iac_denial_asks_for_an_aac(byte: int, mask: int) -> None:
    tvr = tvr_with(byte, mask)
    assert taa(tvr, iacs=ActionCodes(denial=tvr, online=ZERO, default=ZERO)) == AAC


def test_an_absent_iac_denial_denies_nothing() -> None:
    everything = b"\xff" * 5
    assert DEFAULT_IAC_DENIAL == ZERO
    assert taa(everything, iacs=ActionCodes(None, ZERO, ZERO)) == TC


def test_denial_codes_without_a_matching_tvr_bit_do_not_deny() -> None:
    tvr = tvr_with(3, 0x80)
    assert taa(tvr, tacs=Tacs(denial=b"\xff\xff\xff\x7f\xff")) == TC


def test_denial_wins_over_an_online_only_terminal() -> None:
    tvr = tvr_with(0, 0x04)
    assert taa(tvr, tacs=Tacs(denial=tvr), terminal_type=0x21) == AAC


# --- online-only terminals -----------------------------------------------------------------------


@pytest.mark.parametrize("terminal_type", ONLINE_ONLY)
def test_an_online_only_terminal_asks_for_an_arqc(terminal_type: int) -> None:
    assert taa(ZERO, terminal_type=terminal_type) == ARQC


# --- offline terminals with online capability ----------------------------------------------------


@pytest.mark.parametrize(("byte", "mask"), ALL_BITS)
@pytest.mark.parametrize("source", ("tac", "iac"))
def test_any_bit_in_an_online_code_asks_for_an_arqc(byte: int, mask: int, source: str) -> None:
    tvr = tvr_with(byte, mask)
    tacs = Tacs(online=tvr) if source == "tac" else Tacs()
    iacs = ActionCodes(ZERO, tvr if source == "iac" else ZERO, ZERO)
    assert taa(tvr, tacs=tacs, iacs=iacs) == ARQC


@pytest.mark.parametrize("terminal_type", ONLINE_CAPABLE)
def test_an_online_capable_terminal_approves_offline_when_nothing_matches(
    terminal_type: int,
) -> None:
    tvr = tvr_with(1, 0x40)
    codes = ActionCodes(ZERO, tvr_with(1, 0x20), b"\xff" * 5)
    assert taa(tvr, iacs=codes, terminal_type=terminal_type) == TC


def test_an_absent_iac_online_sends_any_tvr_bit_online() -> None:
    assert DEFAULT_IAC_ONLINE == b"\xff" * 5
    assert taa(tvr_with(4, 0x01), iacs=ActionCodes(ZERO, None, ZERO)) == ARQC
    assert taa(ZERO, iacs=ActionCodes(ZERO, None, ZERO)) == TC


def test_an_online_capable_terminal_ignores_the_default_codes() -> None:
    tvr = tvr_with(0, 0x80)
    assert taa(tvr, tacs=Tacs(default=tvr), iacs=ActionCodes(ZERO, ZERO, tvr)) == TC


# --- offline-only terminals ----------------------------------------------------------------------


@pytest.mark.parametrize(("byte", "mask"), ALL_BITS)
@pytest.mark.parametrize("source", ("tac", "iac"))
def test_any_bit_in_a_default_code_declines_offline_only(byte: int, mask: int, source: str) -> None:
    tvr = tvr_with(byte, mask)
    tacs = Tacs(default=tvr) if source == "tac" else Tacs()
    iacs = ActionCodes(ZERO, ZERO, tvr if source == "iac" else ZERO)
    assert taa(tvr, tacs=tacs, iacs=iacs, terminal_type=0x23) == AAC


@pytest.mark.parametrize("terminal_type", OFFLINE_ONLY)
def test_an_offline_only_terminal_approves_when_no_default_code_matches(terminal_type: int) -> None:
    tvr = tvr_with(3, 0x80)
    codes = ActionCodes(ZERO, b"\xff" * 5, tvr_with(3, 0x7F))
    assert taa(tvr, iacs=codes, terminal_type=terminal_type) == TC


def test_an_absent_iac_default_declines_any_tvr_bit_offline_only() -> None:
    assert DEFAULT_IAC_DEFAULT == b"\xff" * 5
    assert taa(tvr_with(2, 0x08), iacs=ActionCodes(ZERO, ZERO, None), terminal_type=0x26) == AAC
    assert taa(ZERO, iacs=ActionCodes(ZERO, ZERO, None), terminal_type=0x26) == TC


def test_an_offline_only_terminal_never_asks_for_an_arqc() -> None:
    for byte, mask in ALL_BITS:
        tvr = tvr_with(byte, mask)
        assert taa(tvr, tacs=Tacs(online=tvr), terminal_type=0x23) in (TC, AAC)


# --- combinations and helpers --------------------------------------------------------------------


def test_every_action_code_combination_for_one_bit_follows_book_3() -> None:
    tvr = tvr_with(3, 0x80)
    for denial, online, default, terminal_type in itertools.product(
        (ZERO, tvr), (ZERO, tvr, None), (ZERO, tvr, None), ONLINE_CAPABLE + OFFLINE_ONLY
    ):
        result = taa(tvr, iacs=ActionCodes(denial, online, default), terminal_type=terminal_type)
        if denial == tvr:
            expected = AAC
        elif terminal_type & 0x0F in (3, 6):
            expected = TC if default == ZERO else AAC
        else:
            expected = TC if online == ZERO else ARQC
        assert result == expected, (denial, online, default, hex(terminal_type))


def test_matching_bits_combines_codes() -> None:
    assert matching_bits(
        bytes.fromhex("FF00FF0001"), bytes.fromhex("0F"), bytes.fromhex("0000F00001")
    ) == bytes.fromhex("0F00F00001")


def test_the_card_action_codes_must_be_five_bytes() -> None:
    codes = ActionCodes.from_card({0x9F0E: bytes(5), 0x9F0F: bytes(4), 0x9F0D: bytes(6)})
    assert codes == ActionCodes(denial=bytes(5), online=None, default=None)


def test_the_reason_names_the_matching_bits() -> None:
    tvr = tvr_with(3, 0x80)
    decision = terminal_action_analysis(tvr, Tacs(), ActionCodes(ZERO, tvr, ZERO), 0x22)
    assert decision.reason == "online action codes match: Transaction exceeds floor limit"
