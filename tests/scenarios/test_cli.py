"""The emvtap command line: decoding, traces, self-check, help and errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emv import trace
from scenarios.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "scenarios" / "samples" / "visa_qvsdc_tap.jsonl"
# PPSE FCI of a Visa card: 6F / 84 DF name / A5 / BF0C / 61 directory entry.
PPSE_FCI = (
    "6F33840E325041592E5359532E4444463031A521BF0C1E611C4F07A0000000031010"
    "500A566973612044656269748701019F2A0103"
)


def test_tlv_decode_prints_the_named_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlv", "decode", PPSE_FCI]) == 0
    out = capsys.readouterr().out
    for expected in (
        "6F",
        "File Control Information",
        "84",
        "2PAY.SYS.DDF01",
        "BF0C",
        "4F",
        "A0000000031010",
        "Visa Debit",
        "9F2A",
    ):
        assert expected in out
    lines = out.splitlines()

    def indent(tag: str) -> int:
        line = next(line for line in lines if line.lstrip().startswith(tag + " "))
        return len(line) - len(line.lstrip())

    assert indent("6F") < indent("A5") < indent("BF0C") < indent("61") < indent("4F")


# A real card's PPSE FCI (a Visa Debit card), the response EMVLab's TLV decoder
# shows as its sample and that many public EMV tutorials quote, status word removed.
REAL_PPSE_FCI = (
    "6F2F840E325041592E5359532E4444463031A51DBF0C1A61184F07A0000000031010"
    "500A56495341204445424954870101"
)


def test_tlv_decode_of_a_real_card_ppse_fci(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlv", "decode", REAL_PPSE_FCI]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [
        "6F",
        "84",
        "A5",
        "BF0C",
        "61",
        "4F",
        "50",
        "87",
    ]
    assert '"VISA DEBIT"' in out and "Visa Credit/Debit" in out and '"2PAY.SYS.DDF01"' in out


def test_tlv_decode_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlv", "decode", "--json", "9F2701809F360200A1"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert [item["tag"] for item in decoded] == ["9F27", "9F36"]


def test_tlv_decode_accepts_spaces_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["tlv", "decode", "9F27", "01", "80"]) == 0
    assert "9F27" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("9F36 02 00A1\n"))
    assert main(["tlv", "decode", "-"]) == 0
    assert "9F36" in capsys.readouterr().out


def test_pan_masked_unless_clear(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlv", "decode", "5A084761739001010010"]) == 0
    assert "4761739001010010" not in capsys.readouterr().out
    assert main(["tlv", "decode", "--clear", "5A084761739001010010"]) == 0
    assert "4761739001010010" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tlv", "decode", "5A08476173"], "offset 0: tag 5A declares length 8 but only 3"),
        (["tlv", "decode", "5A0G"], "character 4 ('G')"),
        (["tlv", "decode", "5A0"], "odd length"),
        (["trace", "show", "/nonexistent/trace.jsonl"], "No such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("emvtap: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_lenient_decode_of_truncated_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlv", "decode", "--lenient", "9F360200015A08476173"]) == 0
    assert "9F36" in capsys.readouterr().out


def test_trace_show_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    for expected in (
        "SELECT 2PAY.SYS.DDF01",
        "GET PROCESSING OPTIONS",
        "READ RECORD",
        "6A83",
        "Track 2 Equivalent Data",
        "Application Cryptogram",
    ):
        assert expected in out
    assert "4761739001010010" not in out


def test_trace_bad_file_names_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "emvtap-trace/1"}\n{"t_ns": 5, "event": "sideways"}\n')
    assert main(["trace", "show", str(bad)]) == 2
    assert f"{bad}: line 2: field 'event'" in capsys.readouterr().err


def test_trace_convert_writes_pcapng_and_text(tmp_path: Path) -> None:
    pcap, text = tmp_path / "tap.pcapng", tmp_path / "tap.txt"
    assert main(["trace", "convert", str(SAMPLE), "--pcapng", str(pcap), "--text", str(text)]) == 0
    recorded = trace.from_jsonl(SAMPLE.read_text())
    assert pcap.read_bytes() == trace.to_pcapng(recorded)
    assert "SELECT" in text.read_text()
    assert main(["trace", "convert", str(SAMPLE)]) == 2


def test_selfcheck_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("self-check PASSED")
    assert main(["selfcheck", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    groups = {r["group"] for r in results}
    assert {"kd.json", "mac.json", "ac.json", "oda"} <= groups
    assert all(r["passed"] for r in results)


@pytest.mark.parametrize(
    "args", [[], ["tlv"], ["trace"], ["tlv", "decode"], ["trace", "show"], ["selfcheck"]]
)
def test_help_everywhere(args: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("emvtap 0.")


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "tlv", "decode", "9F2701"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2 and "offset 0" in result.stderr


def test_server_help_lists_every_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    from hce.server.api import ROUTES  # noqa: PLC0415

    with pytest.raises(SystemExit):
        main(["server", "--help"])
    out = capsys.readouterr().out
    for route in ROUTES:
        assert route.path in out and route.summary in out
    assert "/v1/openapi.json" in out


def test_server_openapi_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "openapi"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["openapi"].startswith("3.1") and "/v1/authorisations" in document["paths"]


def test_server_commands_refuse_a_non_server_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["server", "run", str(tmp_path)]) == 2
    assert "is not a server directory" in capsys.readouterr().err


class _GoneReader(io.StringIO):
    """A stdout whose reader went away (`emvtap ... | head -1`)."""

    def __init__(self, spare: Path) -> None:
        super().__init__()
        self.spare = spare.open("w")  # what the CLI points the real descriptor at

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        return self.spare.fileno()


def test_a_reader_that_goes_away_stops_the_output_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No error message, and the status a shell gives a process killed by SIGPIPE."""
    gone = _GoneReader(tmp_path / "spare")
    monkeypatch.setattr(sys, "stdout", gone)
    assert main(["trace", "show", str(SAMPLE)]) == 141
    gone.spare.close()
    assert capsys.readouterr().err == ""
