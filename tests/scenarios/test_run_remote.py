"""`emvtap run --server URL` and `emvtap tap --server URL`: the scenarios against a token
server that already runs (`emvtap server init --tls --import-imk-ac ...` and `emvtap
server run` in processes of their own), everything over HTTPS with a pinned certificate.

Pack scenarios pass there (Visa and Mastercard, plastic and HCE, replay, host down,
suspension, replenishment), and the server log shows it did the work; what needs the
embedded server (`keys: expired`) or a key it lacks (a plastic card without
EMVTAP_IMK_AC) errors that scenario with the reason; a server that cannot be used (bad
URL, refused, wrong pin, wrong or non-admin credential) is one line and exit status 2
before any scenario runs.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from emv.crypto import des
from hce.server import vault
from scenarios.cli import main
from scenarios.remote import (
    CREDENTIAL_ENV,
    IMK_AC_ENV,
    RemoteError,
    RemoteServer,
    certificate_pin,
    fresh_pan,
)

if TYPE_CHECKING:
    from conftest import StartTokenServer
    from conftest import TokenServerProcess as Server

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "scenarios" / "packs"
IMK_AC = des.adjust_parity(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
PASSING = [
    "k3-online-approved[card=visa_qvsdc_plastic]",
    "k3-online-approved[card=visa_qvsdc_hce]",
    "k2-mchip-online-cda[card=mastercard_mchip_plastic]",
    "k2-mchip-online-cda[card=mastercard_mchip_hce]",
    "ts-replay-declined[card=visa_qvsdc_plastic]",
    "ts-replay-declined[card=mastercard_mchip_hce]",
    "fault-host-unavailable[mode=down,card=visa_qvsdc_plastic]",
    "fault-host-unavailable[mode=down,card=mastercard_mchip_hce]",
    "ts-suspended-token-declined[card=visa_qvsdc_hce]",
    "ts-suspended-token-declined[card=mastercard_mchip_plastic]",
    "ts-keys-exhausted-mastercard-then-replenished",
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_token_server: StartTokenServer
) -> Server:
    """A token server whose IMK-AC is the test issuer's, so plastic cards verify."""
    imk = ["--import-imk-ac", IMK_AC.hex().upper(), "--imk-ac-kcv", des.kcv(IMK_AC).hex()]
    return start_token_server(tmp_path_factory.mktemp("server"), imk)


@pytest.fixture
def remote_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The admin credential and the IMK-AC in the environment (this process's too)."""
    monkeypatch.setenv(CREDENTIAL_ENV, server.admin)
    monkeypatch.setenv(IMK_AC_ENV, IMK_AC.hex().upper())
    return dict(os.environ)


def test_pack_scenarios_pass_against_the_running_server(
    server: Server, remote_env: dict[str, str], tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    before = server.log().count("POST /v1/credentials")
    command = [
        *(sys.executable, "-m", "scenarios.cli", "run", str(PACKS)),
        *("-k", " or ".join(PASSING), "-j", "2", "--junit", str(junit)),
        *("--server", server.url, "--server-cert", str(server.directory / "tls" / "server.pem")),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=remote_env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"emvtap run: {len(PASSING)} passed, 0 failed, 0 errored" in done.stdout
    ran = {case.get("name") for case in ET.parse(junit).iter("testcase")}
    assert ran == set(PASSING)
    # the running server did the work, over HTTPS: cards, tokens, phones, authorisations
    endpoints = [
        "POST /v1/cards 200",
        "POST /v1/tokens 200",
        r"POST /v1/tokens/\w+/devices 200",
        r"POST /v1/devices/\w+/personalisation 200",
        r"POST /v1/devices/\w+/batches 200",
        r"POST /v1/tokens/\w+/suspend 200",
        r"POST /v1/cards/\w+/suspend 200",
        "POST /v1/authorisations 200",
    ]
    log = server.wait_log(lambda text: all(re.search(e, text) for e in endpoints))
    assert log.count("POST /v1/credentials") == before + 1, "one acquirer credential a run"
    assert server.admin not in done.stdout + done.stderr + log


def test_what_the_running_server_cannot_do_errors_that_scenario(
    server: Server,
    remote_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(IMK_AC_ENV)
    pin = server.pin.hex()
    selected = (
        "fault-keys-expired or k3-online-approved or delay-key-expires or aac-from-phone-declined"
    )
    status = main(["run", str(PACKS), "-k", selected, "--server", server.url, "--server-pin", pin])
    out = capsys.readouterr().out
    assert status == 1
    assert "emvtap run: 1 passed, 0 failed, 5 errored" in out  # the HCE online tap passes
    # keys: expired x2, a 74-hour delay, an HCE card whose overrides change what is signed
    assert out.count("needs the embedded server") == 4
    assert "the token server certified its shipped profile, whose signed data differs" in out
    assert "k3-online-approved[card=visa_qvsdc_plastic]" in out
    assert "is a plastic card: with --server its keys come from the IMK-AC" in out
    assert f"in {IMK_AC_ENV}" in out


def test_a_tap_on_the_running_server(
    server: Server, remote_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    certificate = str(server.directory / "tls" / "server.pem")
    for card in ("visa_qvsdc_plastic", "mastercard_mchip_hce"):
        options = ["--server", server.url, "--server-cert", certificate]
        status = main(["tap", "--card", card, "--amount", "5", *options])
        out = capsys.readouterr().out
        assert status == 0, out
        assert f"host {server.url}" in out and "Outcome:      Approved (host approved)" in out


def test_the_pin_comes_from_the_certificate_in_pem_or_der(server: Server, tmp_path: Path) -> None:
    pem = (server.directory / "tls" / "server.pem").read_bytes()
    der = tmp_path / "server.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert(pem.decode()))
    pin = server.pin
    assert certificate_pin(server.directory / "tls" / "server.pem") == pin
    assert certificate_pin(der) == pin
    assert (
        RemoteServer.from_options(
            server.url, pin=pin.hex(), environ={CREDENTIAL_ENV: "x"}
        ).pin_sha256
        == pin
    )
    with pytest.raises(RemoteError, match="not a PEM or DER certificate"):
        certificate_pin(_garbage(tmp_path))


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"not a certificate")
    return path


def test_a_plastic_card_gets_a_fresh_pan_of_its_bin() -> None:
    pans = {fresh_pan("4761739001010010") for _ in range(20)}
    assert len(pans) > 1  # a server enrols a PAN only once
    for pan in pans:
        assert len(pan) == 16 and pan.startswith("476173") and vault.luhn_valid(pan)


def _closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


UNUSABLE = {
    "refused": "token server 127.0.0.1:{port}: connection refused",
    "plain http": "--server 'http://127.0.0.1:{port}': expected https://HOST:PORT",
    "wrong pin": "TLS failed: the certificate does not match the pinned SHA-256",
    "wrong credential": "answered HTTP 401 unauthorised: unknown credential",
    "acquirer credential": "answered HTTP 403 forbidden",
    "no credential": f"goes in the environment variable {CREDENTIAL_ENV}",
}


@pytest.mark.parametrize("case", UNUSABLE)
def test_a_server_that_cannot_be_used_is_one_line_and_exit_2(
    server: Server,
    remote_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    url, port = server.url, int(server.url.rsplit(":", 1)[1])
    certificate = server.directory / "tls" / "server.pem"
    secret = server.admin
    if case == "refused":
        port = _closed_port()
        url = f"https://127.0.0.1:{port}"
    elif case == "plain http":
        url = url.replace("https://", "http://")
    elif case == "wrong pin":
        certificate = server.directory / "tls" / "ca.pem"  # the CA's, not the server's
    elif case == "wrong credential":
        monkeypatch.setenv(CREDENTIAL_ENV, "not-a-credential")
    elif case == "acquirer credential":
        answer = server.ok("/v1/credentials", {"role": "acquirer", "name": "pos"}, server.admin)
        secret = answer["credential"]
        monkeypatch.setenv(CREDENTIAL_ENV, secret)
    else:
        monkeypatch.delenv(CREDENTIAL_ENV)
    argv = ["run", str(PACKS / "kernel3"), "--server", url, "--server-cert", str(certificate)]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""  # nothing ran
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emvtap: error: "), captured.err
    assert UNUSABLE[case].format(port=port) in lines[0]
    assert secret not in captured.err
