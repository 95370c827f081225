"""scenarios.pcscd without a daemon: its reader configuration and its refusals.
(The daemon itself runs in tests/scenarios/test_real_links.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.pcscd import VPCD_DRIVER, PcscdError, PrivatePcscd, reader_conf


def test_the_reader_configuration_names_the_driver_and_the_port() -> None:
    lines = reader_conf(40000).splitlines()
    assert lines == [
        'FRIENDLYNAME "Virtual PCD"',
        "DEVICENAME /dev/null:0x9C40",
        f"LIBPATH {VPCD_DRIVER}",
        "CHANNELID 0x9C40",
    ]


def test_before_start_there_is_no_namespace_to_enter(tmp_path: Path) -> None:
    daemon = PrivatePcscd(tmp_path)
    assert not daemon.running
    assert daemon.env == {"PCSCLITE_CSOCK_NAME": str(tmp_path / "run" / "pcscd.comm")}
    with pytest.raises(PcscdError, match="not started"):
        daemon.in_netns(["true"])
    daemon.close()  # harmless when never started


def test_a_missing_tool_is_a_clear_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scenarios.pcscd.unavailable_reason", lambda: "missing pcscd")
    with pytest.raises(PcscdError, match="missing pcscd"), PrivatePcscd(tmp_path):
        pass
