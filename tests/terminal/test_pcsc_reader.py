"""The PC/SC reader (terminal.readers.pcsc): the transport rules and the return-code
mapping as pure functions, then the reader itself against a real pcscd with
vsmartcard's vpcd driver and an ``emvtap card serve`` card (scenarios.pcscd).

pcsc-lite reads ``PCSCLITE_CSOCK_NAME`` once per process, at the first PC/SC call, and
keeps it. Every test here that talks to pcscd therefore drives the reader in a child
process of its own (:class:`Terminal`: one JSON request per line in, one answer per
line out) whose environment names that test's private pcscd: no test depends on what
the pytest process (or another test module in the same xdist worker) did with pyscard
first, and each test can have a daemon of its own. The pcscd tests skip where a
private pcscd cannot run (not root, no vpcd driver), except in CI (``CI`` set), where
that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emv.link import CardRemoved, Link, LinkError
from scenarios.pcscd import PrivatePcscd, unavailable_reason
from terminal.readers import pcsc
from terminal.readers.pcsc import (
    MAX_ROUNDS,
    SERVICE_NOT_AVAILABLE,
    PcscReader,
    exchange_apdu,
    list_readers,
    pcsc_error,
)

ROOT = Path(__file__).resolve().parents[2]
ATR = "3B80800101"
SELECT_PPSE = "00A404000E325041592E5359532E444446303100"
SELECT_VISA = "00A4040007A000000003101000"
GET_ATC = "80CA9F3600"  # GET DATA 9F36: answered by the selected application only
ANSWER_S = 30.0  # the longest a child may take to answer one request
FIRST_TAP_S = 20.0  # an `emvtap card serve` card builds itself (token server, wallet) first


# --- the transport rules (pure) -----------------------------------------------------------


class Card:
    """A scripted card for :func:`exchange_apdu`: answers in turn, commands recorded."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(answer) for answer in answers]
        self.commands: list[str] = []

    def __call__(self, command: bytes) -> bytes:
        self.commands.append(command.hex().upper())
        return self.answers.pop(0)


def exchanged(command: str, card: Callable[[bytes], bytes], **options: Any) -> str:
    return exchange_apdu(bytes.fromhex(command), card, **options).hex().upper()


def test_a_plain_answer_is_returned_after_one_exchange() -> None:
    card = Card("6F009000")
    assert exchanged(SELECT_PPSE, card) == "6F009000"
    assert card.commands == [SELECT_PPSE]


def test_61xx_is_followed_by_get_response_until_the_last_part() -> None:
    card = Card("6103", "AABBCC6102", "DDEE9000")
    assert exchanged(SELECT_PPSE, card) == "AABBCCDDEE9000"
    assert card.commands == [SELECT_PPSE, "00C0000003", "00C0000002"]


def test_data_sent_with_61xx_is_kept() -> None:
    card = Card("AB6101", "CD9000")
    assert exchanged(SELECT_PPSE, card) == "ABCD9000"


def test_6100_asks_for_256_bytes() -> None:
    card = Card("6100", "9000")
    exchanged(SELECT_PPSE, card)
    assert card.commands[1] == "00C0000000"


def test_6cxx_sends_the_same_command_again_with_le_xx() -> None:
    card = Card("6C04", "9F360200019000")
    assert exchanged(GET_ATC, card) == "9F360200019000"
    assert card.commands == [GET_ATC, "80CA9F3604"]


@pytest.mark.parametrize(
    ("command", "again"),
    [
        ("00A4040002AABB00", "00A4040002AABB11"),  # case 4: Le replaced
        ("00A4040002AABB", "00A4040002AABB11"),  # case 3: Le added
        ("80CA9F36", "80CA9F3611"),  # case 1: Le added
        ("80CA9F36000100", "80CA9F36000011"),  # extended case 2 stays extended
    ],
    ids=["case 4", "case 3", "case 1", "extended"],
)
def test_6cxx_keeps_the_command_and_its_form(command: str, again: str) -> None:
    card = Card("6C11", "9000")
    exchanged(command, card)
    assert card.commands == [command, again]


def test_6c00_asks_for_256_bytes() -> None:
    card = Card("6C00", "9000")
    exchanged(GET_ATC, card)
    assert card.commands[1] == "80CA9F3600"


def test_6cxx_then_61xx() -> None:
    card = Card("6C02", "6102", "ABCD9000")
    assert exchanged(GET_ATC, card) == "ABCD9000"
    assert card.commands == [GET_ATC, "80CA9F3602", "00C0000002"]


def test_6cxx_to_a_get_response_sends_the_get_response_again() -> None:
    card = Card("6110", "6C08", "00112233445566779000")
    assert exchanged(SELECT_PPSE, card) == "00112233445566779000"
    assert card.commands == [SELECT_PPSE, "00C0000010", "00C0000008"]


def test_a_last_status_that_is_not_9000_comes_back_with_the_data_gathered() -> None:
    card = Card("AB6102", "6F00")
    assert exchanged(SELECT_PPSE, card) == "AB6F00"


def test_a_card_that_answers_61xx_for_ever_is_cut_off() -> None:
    card = Card(*["6101"] * (MAX_ROUNDS + 1))
    with pytest.raises(LinkError, match=f"6101 after {MAX_ROUNDS} GET RESPONSE") as raised:
        exchanged(SELECT_PPSE, card, where="reader 'R'")
    assert not isinstance(raised.value, CardRemoved)
    assert "reader 'R'" in str(raised.value)
    assert len(card.commands) == MAX_ROUNDS + 1


def test_the_round_limit_can_be_set() -> None:
    card = Card("6101", "6101", "6101", "9000")
    with pytest.raises(LinkError, match="after 2 GET RESPONSE"):
        exchanged(SELECT_PPSE, card, max_rounds=2)
    assert exchanged(SELECT_PPSE, Card("6101", "AA6101", "BB9000"), max_rounds=2) == "AABB9000"


def test_a_one_byte_response_is_a_link_error() -> None:
    with pytest.raises(LinkError, match="needs at least SW1 SW2") as raised:
        exchanged(SELECT_PPSE, Card("90"), where="reader 'R'")
    assert not isinstance(raised.value, CardRemoved)
    assert str(raised.value).startswith("reader 'R' returned 90 to 00A404")


def test_an_empty_response_is_the_card_gone() -> None:
    with pytest.raises(CardRemoved, match="reader 'R' returned an empty response"):
        exchanged(SELECT_PPSE, Card(""), where="reader 'R'")


def test_6cxx_to_something_that_is_not_an_apdu_is_a_link_error() -> None:
    with pytest.raises(LinkError, match="not a command APDU"):
        exchanged("00A4040005AA", Card("6C02"))


def test_what_transmit_raises_goes_through() -> None:
    def gone(command: bytes) -> bytes:
        raise CardRemoved("gone")

    with pytest.raises(CardRemoved, match=r"^gone$"):
        exchanged(SELECT_PPSE, gone)


# --- return codes (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (0x80100069, CardRemoved),  # SCARD_W_REMOVED_CARD
        (0x8010000C, CardRemoved),  # SCARD_E_NO_SMARTCARD
        (0x80100068, CardRemoved),  # SCARD_W_RESET_CARD
        (0x80100067, CardRemoved),  # SCARD_W_UNPOWERED_CARD
        (0x80100017, CardRemoved),  # SCARD_E_READER_UNAVAILABLE
        (0x8010001D, LinkError),  # SCARD_E_NO_SERVICE
        (0x8010001E, LinkError),  # SCARD_E_SERVICE_STOPPED
        (0x8010000A, LinkError),  # SCARD_E_TIMEOUT
        (0x80100016, LinkError),  # SCARD_E_NOT_TRANSACTED
        (0x8010000B, LinkError),  # SCARD_E_SHARING_VIOLATION
        (0x80100066, LinkError),  # SCARD_W_UNRESPONSIVE_CARD
        (0x12345678, LinkError),  # anything else
    ],
)
def test_return_codes_map_to_card_removed_or_link_error(code: int, kind: type[LinkError]) -> None:
    error = pcsc_error(code, "sending 00A4 on reader 'R'", "Some text.")
    assert type(error) is kind
    assert str(error).startswith("sending 00A4 on reader 'R': ")
    assert str(error).endswith(f"Some text. (0x{code:08X})")


@pytest.mark.parametrize("code", [0x8010001D, 0x8010001E])
def test_a_lost_service_says_to_look_at_pcscd(code: int) -> None:
    assert SERVICE_NOT_AVAILABLE == "PC/SC service not available (is pcscd running?)"
    assert SERVICE_NOT_AVAILABLE in str(pcsc_error(code, "listing PC/SC readers", "x"))


def test_a_negative_code_is_read_as_32_bits() -> None:
    error = pcsc_error(0x80100069 - (1 << 32), "w", "t")  # a signed 32-bit LONG
    assert isinstance(error, CardRemoved)
    assert "(0x80100069)" in str(error)


def test_the_codes_are_pyscards() -> None:
    scard = pytest.importorskip("smartcard.scard")  # importing makes no PC/SC call
    for name in (
        "SCARD_E_INVALID_HANDLE",
        "SCARD_E_TIMEOUT",
        "SCARD_E_NO_SMARTCARD",
        "SCARD_E_NOT_TRANSACTED",
        "SCARD_E_READER_UNAVAILABLE",
        "SCARD_E_NO_SERVICE",
        "SCARD_E_SERVICE_STOPPED",
        "SCARD_E_NO_READERS_AVAILABLE",
        "SCARD_W_UNPOWERED_CARD",
        "SCARD_W_RESET_CARD",
        "SCARD_W_REMOVED_CARD",
    ):
        assert getattr(pcsc, name) == getattr(scard, name) & 0xFFFFFFFF, name


# --- the reader without pcscd ---------------------------------------------------------------


def test_the_reader_is_a_link() -> None:
    assert issubclass(PcscReader, Link)


def test_without_pyscard_the_reader_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smartcard", None)  # `from smartcard import ...` fails
    with pytest.raises(LinkError, match=r"needs pyscard .*: pip install emvtap\[pcsc\]$"):
        list_readers()
    with pytest.raises(LinkError, match=r"pip install emvtap\[pcsc\]$"):
        PcscReader()


def test_a_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds, got -1"):
        PcscReader(timeout=-1)


# --- the reader in a child process --------------------------------------------------------

# The child: a PcscReader driven by JSON requests, one a line ({"op": ..., args}); each
# answer is {"value": ...} or {"raised": class name, "message": ...}, with "seconds".
CHILD = r"""
import json, sys, time, traceback
from terminal.readers.pcsc import PcscReader, list_readers

reader = None

def run(request):
    global reader
    op = request["op"]
    if op == "list":
        return list_readers()
    if op == "open":
        reader = PcscReader(request.get("name"), timeout=request["timeout"])
        return reader.name
    if op == "power_on":
        return reader.power_on().hex().upper()
    if op == "transceive":
        return reader.transceive(bytes.fromhex(request["apdu"])).hex().upper()
    if op == "power_off":
        return reader.power_off()
    if op == "connected":
        return reader.connected
    if op == "close":
        return reader.close()
    raise ValueError(f"no op {op!r}")

for line in sys.stdin:
    started = time.monotonic()
    try:
        answer = {"value": run(json.loads(line))}
    except Exception as err:
        answer = {"raised": type(err).__name__, "message": str(err),
                  "traceback": traceback.format_exc()}
    answer["seconds"] = time.monotonic() - started
    print(json.dumps(answer), flush=True)
"""


@dataclass(frozen=True)
class Answer:
    value: Any = None
    raised: str | None = None
    message: str = ""
    seconds: float = 0.0
    traceback: str = ""

    def ok(self) -> Any:
        assert self.raised is None, f"{self.raised}: {self.message}\n{self.traceback}"
        return self.value


class Terminal:
    """A :class:`terminal.readers.pcsc.PcscReader` in a child process whose pcsc-lite
    talks to the daemon ``env`` names (module docstring)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-W", "error", "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
        )

    def call(self, op: str, **args: Any) -> Answer:
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps({"op": op, **args}) + "\n")
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], ANSWER_S)
        if not ready:
            child.kill()
            pytest.fail(f"the reader did not answer {op} in {ANSWER_S} s")
        line = child.stdout.readline()
        if not line:
            _, errors = child.communicate()
            pytest.fail(f"the reader's process ended during {op}: {errors}")
        return Answer(**json.loads(line))

    def close(self) -> None:
        child = self._child
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(ANSWER_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _unavailable() -> str | None:
    if importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed (pip install emvtap[pcsc])"
    return unavailable_reason()


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the PC/SC reader tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pcscd(tmp_path: Path) -> Iterator[PrivatePcscd]:
    _require(_unavailable())
    with PrivatePcscd(tmp_path / "pcscd") as daemon:
        yield daemon


@pytest.fixture
def terminal(pcscd: PrivatePcscd) -> Iterator[Terminal]:
    opened = Terminal(pcscd.env)
    yield opened
    opened.close()


@pytest.fixture
def card(pcscd: PrivatePcscd, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``emvtap card serve visa_qvsdc_hce`` connecting to reader ``00 00``."""
    host, port = pcscd.vpcd_address
    serve = [sys.executable, "-m", "scenarios.cli", "card", "serve", "visa_qvsdc_hce"]
    with (tmp_path / "card.log").open("wb") as log:
        process = subprocess.Popen(
            pcscd.in_netns([*serve, "--vpcd", f"{host}:{port}"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    yield process
    process.kill()
    process.wait()


def test_list_readers_without_pcscd_says_the_service_is_not_available(tmp_path: Path) -> None:
    if importlib.util.find_spec("smartcard") is None:
        _require("pyscard is not installed (pip install emvtap[pcsc])")
    terminal = Terminal({"PCSCLITE_CSOCK_NAME": str(tmp_path / "pcscd.comm")})
    try:
        listed = terminal.call("list")
        opened = terminal.call("open", timeout=1.0)
    finally:
        terminal.close()
    assert listed.raised == "LinkError"
    assert listed.message.startswith(f"listing PC/SC readers: {SERVICE_NOT_AVAILABLE}")
    assert opened.raised == "LinkError"
    assert SERVICE_NOT_AVAILABLE in opened.message


def test_list_readers_shows_both_vpcd_readers(pcscd: PrivatePcscd, terminal: Terminal) -> None:
    assert terminal.call("list").ok() == list(pcscd.readers)


def test_list_readers_of_a_pcscd_without_readers_is_empty(
    pcscd: PrivatePcscd, terminal: Terminal
) -> None:
    pcscd.stop()
    (pcscd.conf_dir / "vpcd").unlink()
    pcscd.start()
    assert terminal.call("list").ok() == []
    opened = terminal.call("open", timeout=1.0)
    assert (opened.raised, opened.message) == ("LinkError", "no PC/SC reader: pcscd lists none")


def test_an_unknown_reader_is_a_link_error_naming_the_readers(terminal: Terminal) -> None:
    opened = terminal.call("open", name="Nope 00 00", timeout=1.0)
    assert opened.raised == "LinkError"
    assert opened.message == (
        "no PC/SC reader 'Nope 00 00'; the readers are: 'Virtual PCD 00 00', 'Virtual PCD 00 01'"
    )


def test_no_name_is_the_first_reader(terminal: Terminal) -> None:
    assert terminal.call("open", timeout=1.0).ok() == "Virtual PCD 00 00"


def test_an_empty_reader_times_out_as_card_removed(terminal: Terminal) -> None:
    terminal.call("open", name="Virtual PCD 00 01", timeout=0.3).ok()
    tap = terminal.call("power_on")
    assert (tap.raised, tap.message) == (
        "CardRemoved",
        "no card on reader 'Virtual PCD 00 01' in 0.3 s",
    )
    assert 0.3 <= tap.seconds < 3.0  # it waited for a card, and no longer than asked
    assert terminal.call("power_off").ok() is None  # harmless: nothing connected
    sent = terminal.call("transceive", apdu=SELECT_PPSE)
    assert (sent.raised, sent.message) == (
        "CardRemoved",
        "no card powered on reader 'Virtual PCD 00 01' (power_on first)",
    )


@pytest.mark.usefixtures("card")
def test_a_tap_gets_the_atr_and_the_ppse(terminal: Terminal) -> None:
    terminal.call("open", timeout=FIRST_TAP_S).ok()
    assert terminal.call("power_on").ok() == ATR
    fci = terminal.call("transceive", apdu=SELECT_PPSE).ok()
    assert fci.startswith("6F")
    assert fci.endswith("9000")
    assert "A0000000031010" in fci


@pytest.mark.usefixtures("card")
def test_each_power_on_is_a_new_tap(terminal: Terminal) -> None:
    terminal.call("open", timeout=FIRST_TAP_S).ok()
    for tap in range(2):
        assert terminal.call("power_on").ok() == ATR, f"tap {tap}"
        assert terminal.call("transceive", apdu=GET_ATC).ok() == "6985", (
            f"tap {tap}"
        )  # none selected
        assert terminal.call("transceive", apdu=SELECT_VISA).ok().endswith("9000")
        assert terminal.call("transceive", apdu=GET_ATC).ok().startswith("9F3602")
        terminal.call("power_off").ok()
        assert terminal.call("connected").ok() is False


def test_a_card_that_dies_mid_tap_is_removed(
    terminal: Terminal, card: subprocess.Popen[bytes]
) -> None:
    terminal.call("open", timeout=FIRST_TAP_S).ok()
    terminal.call("power_on").ok()
    terminal.call("transceive", apdu=SELECT_PPSE).ok()
    card.kill()
    card.wait()
    sent = terminal.call("transceive", apdu=SELECT_PPSE)
    assert sent.raised == "CardRemoved", sent.message
    assert "'Virtual PCD 00 00'" in sent.message
    assert terminal.call("connected").ok() is False
    assert terminal.call("power_off").ok() is None


@pytest.mark.usefixtures("card")
def test_a_pcscd_restart_fails_the_tap_and_the_next_tap_works(
    pcscd: PrivatePcscd, terminal: Terminal
) -> None:
    terminal.call("open", timeout=FIRST_TAP_S).ok()
    terminal.call("power_on").ok()
    pcscd.restart()
    sent = terminal.call("transceive", apdu=SELECT_PPSE)
    assert sent.raised == "LinkError"
    assert sent.message.startswith(
        f"sending {SELECT_PPSE} to the card on reader 'Virtual PCD 00 00': {SERVICE_NOT_AVAILABLE}"
    )
    assert terminal.call("power_on").ok() == ATR  # the card comes back to the new pcscd
    assert terminal.call("transceive", apdu=SELECT_PPSE).ok().endswith("9000")


@pytest.mark.usefixtures("card")
def test_a_pcscd_restart_between_taps_goes_unnoticed(
    pcscd: PrivatePcscd, terminal: Terminal
) -> None:
    terminal.call("open", timeout=FIRST_TAP_S).ok()
    terminal.call("power_on").ok()
    terminal.call("power_off").ok()
    pcscd.restart()
    assert terminal.call("power_on").ok() == ATR
    assert terminal.call("transceive", apdu=SELECT_PPSE).ok().endswith("9000")


def test_pcscd_gone_for_good_is_a_link_error(pcscd: PrivatePcscd, terminal: Terminal) -> None:
    terminal.call("open", name="Virtual PCD 00 01", timeout=0.3).ok()
    pcscd.stop()
    tap = terminal.call("power_on")
    assert tap.raised == "LinkError"
    assert SERVICE_NOT_AVAILABLE in tap.message
    assert terminal.call("close").ok() is None
