"""``emvtap card serve``: the card in a process of its own, served to a vpcd reader
(terminal.readers.vpcd.VpcdReader standing in for pcscd's driver) or in nfcpy's
simulated RF field (``--nfc udp:...``, terminal.readers.nfc.NfcReader) over loopback."""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from emv import apdu
from emv.crypto.oda import CaKeyStore
from emv.link import CardRemoved
from hce.card.vpcd import PcscReaderCard
from scenarios.cli import main
from terminal.config import default_config, load_config, with_ca_keys
from terminal.pos import Terminal
from terminal.readers import VpcdReader
from terminal.readers.nfc import NfcReader
from terminal.transaction import Transaction

CLI = [sys.executable, "-m", "scenarios.cli", "card", "serve"]
ATR = bytes.fromhex("3B80800101")
WAIT_S = 30.0  # the card makes its RSA keys before it connects
EXIT_S = 10.0
OK = b"\x90\x00"


def _start(port: int, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return _start_at(["--vpcd", f"127.0.0.1:{port}"], tmp_path, *extra)


def _start_at(where: list[str], tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *CLI,
            "visa_qvsdc_plastic",
            *where,
            "--state",
            str(tmp_path / "state"),
            "--ca-keys",
            str(tmp_path / "ca.txt"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str], how: signal.Signals) -> tuple[int, str, str]:
    process.send_signal(how)
    out, err = process.communicate(timeout=EXIT_S)
    return process.returncode, out, err


@pytest.fixture
def reader() -> Iterator[VpcdReader]:
    with VpcdReader("127.0.0.1", 0, timeout=10.0) as listening:
        yield listening


@pytest.fixture
def served(reader: VpcdReader, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = _start(reader.port, tmp_path, "--reconnect-pause", "0.05")
    try:
        reader.accept(WAIT_S)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _transaction(amount: int) -> Transaction:
    return Transaction(amount, "0826", datetime.now(), bytes.fromhex("12345678"))


def test_a_whole_tap_across_the_process_boundary(
    reader: VpcdReader, served: subprocess.Popen[str], tmp_path: Path
) -> None:
    assert served.stdout is not None
    line = served.stdout.readline()
    assert f"127.0.0.1:{reader.port}" in line and "476173******0010" in line
    assert "4761739001010010" not in line

    assert reader.power_on() == ATR
    fci = reader.transceive(apdu.select_ppse().to_bytes())
    assert fci.endswith(OK) and b"2PAY.SYS.DDF01" in fci
    uid = reader.transceive(bytes.fromhex("FFCA000000"))
    assert uid.endswith(OK) and len(uid) == 6 and uid[0] == 0x08
    assert reader.transceive(bytes.fromhex("FFCA010000")) == OK  # the ATS has no history
    assert reader.transceive(bytes.fromhex("FFCA020000")) == b"\x6a\x81"
    assert reader.transceive(bytes.fromhex("FF00000000")) == b"\x6d\x00"

    keys = CaKeyStore.parse((tmp_path / "ca.txt").read_text())
    assert len(keys) == 1
    offline = Terminal(with_ca_keys(load_config("offline_only"), keys), None)
    result = offline.transact(reader, _transaction(100))
    assert result.approved and not result.online, result.outcome
    assert result.kernel is not None and result.kernel.oda.result == "passed"

    online = Terminal(with_ca_keys(default_config(), keys), None)
    result = online.transact(reader, _transaction(100))
    assert result.online and not result.approved
    assert result.host_error == "no host configured"

    code, _out, err = _stop(served, signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "state" / "counters.bin").is_file()


def test_the_card_comes_back_after_the_reader_drops_it(
    reader: VpcdReader, served: subprocess.Popen[str]
) -> None:
    assert reader.power_on() == ATR
    port = reader.port
    reader.close()
    with VpcdReader("127.0.0.1", port, timeout=10.0) as again:
        again.accept(WAIT_S)
        assert again.power_on() == ATR
        assert again.transceive(apdu.select_ppse().to_bytes()).endswith(OK)
        code, _out, err = _stop(served, signal.SIGTERM)
        assert code == 0, err
        with pytest.raises(CardRemoved):  # the card closed its socket on the way out
            again.transceive(apdu.select_ppse().to_bytes())


def test_the_atc_survives_a_restart(reader: VpcdReader, tmp_path: Path) -> None:
    atcs = []
    for _ in range(2):
        process = _start(reader.port, tmp_path)
        try:
            reader.accept(WAIT_S)
            keys = CaKeyStore.parse((tmp_path / "ca.txt").read_text())
            terminal = Terminal(with_ca_keys(load_config("offline_only"), keys), None)
            result = terminal.transact(reader, _transaction(100))
            assert result.kernel is not None
            atcs.append(int.from_bytes(result.kernel.card_data[0x9F36], "big"))
            assert _stop(process, signal.SIGINT)[0] == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert atcs[1] == atcs[0] + 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["no_such_profile", "--vpcd", "127.0.0.1:1"], "no_such_profile"),
        (["visa_qvsdc_plastic", "--vpcd", "localhost"], "HOST:PORT"),
        (["visa_qvsdc_plastic", "--vpcd", "127.0.0.1:70000"], "HOST:PORT"),
        (["visa_qvsdc_plastic", "--uid", "0102"], "--uid"),
        (["visa_qvsdc_plastic", "--nfc", "bogus:x"], "--nfc 'bogus:x': expected usb"),
        (["visa_qvsdc_plastic", "--nfc", "udp:127.0.0.1:70000"], "udp:HOST:PORT"),
        (["visa_qvsdc_plastic", "--nfc", "udp:127.0.0.1"], "udp:HOST:PORT"),
        (
            ["visa_qvsdc_plastic", "--nfc", "udp:127.0.0.1:0", "--reconnect-pause", "1"],
            "--reconnect-pause is for --vpcd only",
        ),
        (["visa_qvsdc_plastic", "--nfc", "usb", "--uid", "01020304"], "starting 08"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", "serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and err.startswith("emvtap: error:")


class _Plain:
    """A stand-in card: answers 9000 to anything, ATS with historical bytes."""

    def power_on(self) -> bytes:
        return bytes.fromhex("0778807002AABB")

    def power_off(self) -> None:
        pass

    def transceive(self, command: bytes) -> bytes:
        return OK


def test_reader_get_data_lengths() -> None:
    card = PcscReaderCard(_Plain(), bytes.fromhex("08A1B2C3"))
    card.power_on()
    assert card.transceive(bytes.fromhex("FFCA000000")) == bytes.fromhex("08A1B2C3") + OK
    assert card.transceive(bytes.fromhex("FFCA000002")) == b"\x6c\x04"
    assert card.transceive(bytes.fromhex("FFCA000008")) == bytes.fromhex("08A1B2C36282")
    assert card.transceive(bytes.fromhex("FFCA010000")) == bytes.fromhex("AABB") + OK
    assert card.transceive(bytes.fromhex("00A4040000")) == OK  # to the card


# --- --nfc: the card in nfcpy's simulated RF field ------------------------------------------

NFC_ATS = bytes.fromhex("057880E000")
NFC_WAIT_S = 10.0  # how long the reader waits for the card, and for each frame
SHORT_S = 0.2


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _banner(process: subprocess.Popen[str]) -> str:
    """The card's first line, once it is there (the card makes its RSA keys first)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], WAIT_S)
    assert ready, "the card did not say where it is"
    return process.stdout.readline()


@pytest.fixture
def in_the_field(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``emvtap card serve visa_qvsdc_plastic --nfc udp:127.0.0.1:PORT`` and its banner."""
    device = f"udp:127.0.0.1:{_free_udp_port()}"
    process = _start_at(["--nfc", device], tmp_path)
    try:
        line = _banner(process)
        assert device in line, line
        yield process, device
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_tap_in_the_nfc_field(
    in_the_field: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, device = in_the_field
    uid = (tmp_path / "state" / "uid").read_text(encoding="ascii").strip()
    assert uid.startswith("08") and len(uid) == 8  # what PN53x and RC-S380 chips need
    keys = CaKeyStore.parse((tmp_path / "ca.txt").read_text())
    assert len(keys) == 1

    with NfcReader(device, timeout=NFC_WAIT_S) as reader:
        offline = Terminal(with_ca_keys(load_config("offline_only"), keys), None)
        result = offline.transact(reader, _transaction(100))
        assert result.approved and not result.online, result.outcome
        assert result.kernel is not None and result.kernel.oda.result == "passed"
        first_atc = int.from_bytes(result.kernel.card_data[0x9F36], "big")

        online = Terminal(with_ca_keys(default_config(), keys), None)
        result = online.transact(reader, _transaction(100))
        assert result.online and not result.approved
        assert result.host_error == "no host configured"
        assert result.kernel is not None
        assert int.from_bytes(result.kernel.card_data[0x9F36], "big") == first_atc + 1

    code, _out, err = _stop(process, signal.SIGTERM)
    assert code == 0, err
    assert "card stopped" in err and "Traceback" not in err


def test_the_banner_names_the_card_and_masks_its_pan(tmp_path: Path) -> None:
    """Port 0: the card listens on a free port, which the banner names."""
    process = _start_at(["--nfc", "udp:127.0.0.1:0"], tmp_path, "--uid", "08C0FFEE")
    try:
        line = _banner(process)
        assert line.startswith("emvtap: card visa_qvsdc_plastic (PAN 476173******0010, ")
        assert "UID 08C0FFEE" in line and line.rstrip().endswith("Ctrl-C to stop")
        assert "4761739001010010" not in line
        device = line.split("listening on nfc ")[1].split(";")[0]
        assert device.startswith("udp:127.0.0.1:") and not device.endswith(":0")
        with NfcReader(device, timeout=SHORT_S) as reader:
            assert reader.power_on() == NFC_ATS
            assert reader.transceive(apdu.select_ppse().to_bytes()).endswith(OK)
            code, _out, err = _stop(process, signal.SIGINT)  # with the card in a session
            assert code == 0, err
            assert "card stopped" in err and "Traceback" not in err
            with pytest.raises(CardRemoved):  # the card left the field on the way out
                reader.transceive(apdu.select_ppse().to_bytes())
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_nfc_and_vpcd_together_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["card", "serve", "visa_qvsdc_plastic", "--nfc", "udp:127.0.0.1:1", "--vpcd"])
    assert exited.value.code == 2
    assert "--vpcd: not allowed with argument --nfc" in capsys.readouterr().err


def test_a_device_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    """A UDP address taken already: seen once the card is built, still one line, exit 2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        device = f"udp:127.0.0.1:{taken.getsockname()[1]}"
        process = _start_at(["--nfc", device], tmp_path)
        try:
            out, err = process.communicate(timeout=WAIT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 2
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"emvtap: error: --nfc {device}: cannot listen")
