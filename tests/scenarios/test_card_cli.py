"""``emvtap card show`` and ``emvtap server personalise`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emv.crypto import oda
from hce.hsm.keyfile import MASTER_KEY_ENV
from hce.server import Principal
from scenarios.cli import main
from scenarios.server_cli import ServerDir, open_service

PAN = "4761739001010010"


def test_card_show_decodes_the_profile_and_masks_the_pan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["card", "show", "visa_qvsdc_plastic"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "SELECT 2PAY.SYS.DDF01",
        "Application Label",
        "READ RECORD SFI 2 record 1, signed for ODA",
        "Issuer Public Key Certificate",
        "Application Interchange Profile",
    ):
        assert expected in out
    assert PAN not in out and "476173******0010" in out


def test_card_show_clear_shows_the_pan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "show", "visa_qvsdc_hce", "--clear"]) == 0
    assert PAN in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, "name: [unclosed", "name: x\nbrand: amex\n"])
def test_card_show_of_a_bad_profile_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["card", "show", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emvtap: error: {path}")


def _server_with_token(directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``emvtap server init DIR`` and one enrolled visa token; its id."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    assert main(["server", "init", str(directory)]) == 0
    with open_service(ServerDir(directory)) as service:
        admin = Principal("admin", "test")
        return service.enrol_token("4000123412341234", "2912", actor=admin).token_id


def test_server_personalise_prints_the_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "server"
    token_id = _server_with_token(directory, monkeypatch)
    capsys.readouterr()
    key = oda.generate_rsa_key(1024, 3).public_key
    argv = ["server", "personalise", str(directory), "--token", token_id]
    argv += ["--profile", "visa_qvsdc_hce", "--icc-modulus", f"{key.modulus:X}"]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["token_id"], answer["ca_index"], answer["expiry"]) == (token_id, 0x99, "291231")
    [icc] = answer["icc_certificates"]
    assert icc["aid"] == "A0000000031010" and icc["exponent"] == "03"
    assert main([*argv[:5], "--profile", "visa_qvsdc_hce"]) == 0  # a throw-away key
    assert json.loads(capsys.readouterr().out)["icc_certificates"][0]["certificate"]
    assert main([*argv[:4], "0" * 16, "--profile", "visa_qvsdc_hce"]) == 2
    assert capsys.readouterr().err.startswith("emvtap: error: token 0000000000000000: not found")
