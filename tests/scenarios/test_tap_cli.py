"""``emvtap tap`` from the command line: one transaction, printed, with its trace files.

Exit status 0 approved, 1 any other outcome, 2 usage errors (one line, no traceback).
PANs are masked in the printout and in every trace file unless ``--clear``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emv import trace
from scenarios.cli import main
from scenarios.tap_cli import TapUsageError, parse_amount, parse_currency

PAN = "4761739001010010"
MASKED = "476173******0010"
CARD_HCE = ("--card", "visa_qvsdc_hce")
FIELDS = ("-e", "iso7816.apdu.cla", "-e", "iso7816.apdu.ins")
DISSECT = ("-d", "iso14443.subdissector,iso7816")


def _tshark() -> str:
    found = shutil.which("tshark")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is not installed: ./dev test installs it on Debian as root")
        pytest.skip("tshark is not installed (./dev test installs it on Debian as root)")
    return found


def test_tap_prints_an_approved_transaction_and_its_trace_with_the_pan_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tap", "--card", "visa_qvsdc_plastic", "--amount", "12.34"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "Card:         visa_qvsdc_plastic (plastic)",
        "Outcome:      Approved (host approved)",
        "Transaction:  purchase 12.34 GBP",
        "Application:  A0000000031010 VISA CREDIT",
        f"PAN:          {MASKED}",
        "Kernel:       C-3, qVSDC",
        "ODA:          fDDA passed",
        "Cryptogram:   ARQC",
        "Host:         approved (approved), ARC '00', ARPC received",
        "TVR:",
        "Reader says:",
        "emvtap trace:",
        "-> SELECT",
        "-> GET PROCESSING OPTIONS",
    ):
        assert expected in out
    assert PAN not in out


def test_tap_writes_the_trace_as_text_json_lines_and_pcapng(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, lines, pcap = tmp_path / "tap.txt", tmp_path / "tap.jsonl", tmp_path / "tap.pcapng"
    argv = ["tap", "--card", "visa_qvsdc_plastic", "--amount", "12.34", "--trace-text", str(text)]
    assert main([*argv, "--trace-json", str(lines), "--pcapng", str(pcap)]) == 0
    out = capsys.readouterr().out
    transcript = text.read_text(encoding="utf-8")
    assert transcript in out, "the file holds the transcript that was printed"
    recorded = trace.from_jsonl(lines.read_text(encoding="utf-8"))
    commands = recorded.commands()
    assert [c[1] for c in commands[:3]] == [0xA4, 0xA4, 0xA8]  # PPSE, SELECT AID, GPO
    assert pcap.read_bytes()[:4] == bytes.fromhex("0A0D0D0A"), "a pcapng section header"
    for written in (transcript, lines.read_text(encoding="utf-8")):
        assert PAN not in written
    assert PAN.encode() not in pcap.read_bytes()
    assert bytes.fromhex(PAN) not in pcap.read_bytes()
    fields = subprocess.run(
        [
            _tshark(),
            "-r",
            str(pcap),
            *DISSECT,
            "-T",
            "fields",
            "-e",
            "iso7816.apdu.cla",
            "-e",
            "iso7816.apdu.ins",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # commands carry a class byte; tshark names the instruction of interindustry ones only
    dissected = [line.split("\t") for line in fields.stdout.splitlines() if line.strip()]
    assert dissected[:3] == [["0x00", "0xa4"], ["0x00", "0xa4"], ["0x80", ""]]  # GPO is '80A8'
    assert ["0x00", "0xb2"] in dissected  # READ RECORD


def test_tap_json_prints_one_document_with_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tap", "--card", "mastercard_mchip_plastic", "--amount", "7.50", "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["outcome"]["status"] == "Approved"
    assert document["card"] == "mastercard_mchip_plastic" and document["config"] == "default"
    assert document["kernel"]["name"] == "C-2"
    assert document["transaction"] == {
        **document["transaction"],
        "amount": 750,
        "currency": "0826",
        "type": "purchase",
    }
    assert document["host"]["decision"] == "approved" and document["host"]["arpc"] is True
    assert document["pan"] == "541333******0011"
    assert document["trace"][0]["format"] and document["trace"][1]["event"] == "field_on"


def test_tap_clear_shows_the_pan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tap", "--card", "visa_qvsdc_plastic", "--amount", "1", "--clear"]) == 0
    out = capsys.readouterr().out
    assert f"PAN:          {PAN}" in out and "PANs IN CLEAR" in out


def test_tap_over_https_to_the_token_server_approves_a_phone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tap", "--card", "mastercard_mchip_hce", "--amount", "5", "--host", "http"]
    assert main([*argv, "--currency", "GBP"]) == 0
    out = capsys.readouterr().out
    assert "Card:         mastercard_mchip_hce (hce)" in out and "host http" in out
    assert "Outcome:      Approved" in out


def test_a_tap_that_is_not_approved_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    # over the default configuration's contactless transaction limit (GBP 1000.00)
    assert main(["tap", "--card", "visa_qvsdc_hce", "--amount", "2000"]) == 1
    out = capsys.readouterr().out
    assert "Outcome:      Try Another Interface" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--amount", "12.345"], "--amount 12.345: more than 2 decimal(s)"),
        (["--amount", "abc"], "--amount 'abc': not a decimal amount"),
        (["--amount", "-1"], "--amount '-1': not a decimal amount"),
        (["--amount", "1e3"], "--amount '1e3': not a decimal amount"),
        (["--amount", "10000000000.00"], "does not fit the 12 digits"),
        (["--amount", "1", "--currency", "XYZ"], "--currency XYZ: not an ISO 4217 currency"),
        (["--amount", "1", "--currency", "0001"], "--currency 0001: not an ISO 4217"),
        (["--amount", "1", "--amount-other", "0.50"], "--amount-other: only for --type cashback"),
        (
            ["--amount", "1", "--type", "cashback", "--amount-other", "2"],
            "--amount-other: more than --amount",
        ),
        (["--amount", "1", "--config", "nosuchconfig"], "nosuchconfig"),
    ],
    ids=[
        "decimals",
        "letters",
        "negative",
        "exponent",
        "too-big",
        "currency",
        "currency-code",
        "other-not-cashback",
        "other-over-amount",
        "config",
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["tap", "--card", "visa_qvsdc_plastic", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emvtap: error: ")
    assert message in lines[0]


def test_an_unknown_profile_names_the_shipped_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tap", "--card", "nosuchcard", "--amount", "1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("emvtap: error: --card nosuchcard: no such profile")
    assert "visa_qvsdc_plastic" in line and "mastercard_mchip_hce" in line


def test_a_bad_configuration_file_names_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pos.yaml"
    config.write_text("name: broken\nterminal: {type: 99}\n", encoding="utf-8")
    argv = ["tap", "--card", "visa_qvsdc_plastic", "--amount", "1", "--config", str(config)]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"emvtap: error: {config}")


def test_the_console_script_taps_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "tap", *CARD_HCE, "--amount", "3.21", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"]["status"] == "Approved"
    assert result.stderr == ""


# --- amounts and currencies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "exponent", "minor"),
    [
        ("12.34", 2, 1234),
        ("12", 2, 1200),
        ("12.3", 2, 1230),
        ("0.01", 2, 1),
        ("1234", 0, 1234),
        ("1.234", 3, 1234),
        ("007.5", 2, 750),
    ],
)
def test_amounts_are_read_with_the_currency_exponent(text: str, exponent: int, minor: int) -> None:
    assert parse_amount(text, exponent) == minor


def test_an_amount_with_decimals_in_a_currency_without_minor_units_is_refused() -> None:
    with pytest.raises(TapUsageError, match="more than 0 decimal"):
        parse_amount("12.5", 0)


@pytest.mark.parametrize(
    ("text", "code"), [("GBP", "0826"), ("eur", "0978"), ("826", "0826"), ("0840", "0840")]
)
def test_currencies_are_read_as_iso_4217_alpha_or_numeric(text: str, code: str) -> None:
    assert parse_currency(text) == code
