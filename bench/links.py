"""The real links, measured (``python -m bench --only links``): an APDU round trip and
whole online taps over each ``--link`` mode of :mod:`scenarios.links`, and the same
APDU answered by vsmartcard's own virtual card ``vicc`` over the same pcscd.

* **APDU round trip**: SELECT PPSE (``00 A4 04 00 0E 2PAY.SYS.DDF01 00``) sent
  again and again to a powered Visa plastic card, by the terminal's side of the link.
  Over ``pcsc`` that is :class:`terminal.readers.pcsc.PcscReader` -> pcscd -> vpcd ->
  :class:`hce.card.vpcd.VpcdCard`; the same reader type then sends the same SELECT to
  ``vicc`` (:mod:`bench.vicc_card`) on the daemon's second vpcd reader, as shipped
  and with its socket tuned as emvtap's card tunes its own.
* **online tap**: :meth:`scenarios.tap.TapEnvironment.tap` on the link, Kernel 3
  with fDDA (``visa_qvsdc_plastic``) and Kernel 2 with CDA
  (``mastercard_mchip_plastic``), token server in process, as the in-process rows.

Every figure is milliseconds per call: the median over ``repeat`` timed batches of
the batch's mean, with the spread (min..max) of those means.

pcsc-lite reads ``PCSCLITE_CSOCK_NAME`` once per process and vpcd listens inside the
private pcscd's network namespace (:mod:`scenarios.pcscd`), so the ``pcsc`` rows are
measured in a child process, ``python -m bench.links --pcsc-child``, started inside
that namespace with the daemon's environment; it writes its rows as JSON. When a
private pcscd cannot run here, or pyscard, nfcpy or vicc is missing, the rows it
would give say why instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emv import apdu
from emv.link import CardRemoved, Link, LinkError

ROOT = Path(__file__).resolve().parent.parent
VICC_CARD = Path(__file__).resolve().parent / "vicc_card.py"
SELECT_PPSE = apdu.select_ppse().to_bytes()
TAPS = (
    ("visa_qvsdc_plastic", "Kernel 3, fDDA"),
    ("mastercard_mchip_plastic", "Kernel 2, CDA"),
)
OTHER_LINKS = ("inprocess", "vpcd-direct", "nfc-udp")
CHILD_TIMEOUT = 900.0  # seconds for the whole pcsc child
VICC_READY = 10.0  # seconds for vicc to connect and pcscd to see its card

VICC_KINDS = {False: "as shipped", True: "TCP_NODELAY + QUICKACK"}

Row = dict[str, Any]


def round_trip_name(link: str, card: str = "") -> str:
    """The APDU round trip row's name (``card``: another card than emvtap's)."""
    return f"APDU round trip (SELECT PPSE), {link}" + (f", {card}" if card else "")


def tap_name(kernel: str, link: str) -> str:
    """The online tap row's name."""
    return f"online tap, {kernel}, {link}"


def latency(name: str, call: Callable[[], object], repeat: int, unit: str) -> Row:
    """Milliseconds per ``call``: the median of ``repeat`` batch means (batches sized
    to take 0.05 s or more) and their spread."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - start > 0.05:
            break
        batch *= 4
    means = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        means.append((time.perf_counter() - start) * 1000 / batch)
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(means),
        "min": min(means),
        "max": max(means),
        "runs": repeat,
        "batch": batch,
    }


def skipped(name: str, unit: str, reason: str) -> Row:
    """A row that could not be measured here, and why."""
    return {"name": name, "unit": unit, "skipped": reason}


def _missing(link: str) -> str | None:
    """What ``link`` needs that this Python lacks."""
    if link == "nfc-udp" and importlib.util.find_spec("nfc") is None:
        return "nfcpy is not installed (pip install emvtap[nfc])"
    if link == "pcsc" and importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed (pip install emvtap[pcsc])"
    return None


# --- one link -----------------------------------------------------------------------------


def apdu_round_trip(link: str, repeat: int) -> Row:
    """SELECT PPSE over ``link`` to a powered Visa plastic card."""
    from hce.card import Card, MemoryCounterStore, SoftIssuer, load_profile, personalise  # noqa: PLC0415
    from scenarios.links import attach, parse_link  # noqa: PLC0415

    name = round_trip_name(link)
    reason = _missing(link)
    if reason is not None:
        return skipped(name, "ms/APDU", reason)
    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    card = Card(
        personalise(profile, issuer.signer(profile)),
        issuer.plastic_keys(profile, MemoryCounterStore()),
    )
    attachment = attach(parse_link(link), card)
    try:
        reader = attachment.link
        reader.power_on()
        _check_fci(reader.transceive(SELECT_PPSE), link)
        row = latency(name, lambda: reader.transceive(SELECT_PPSE), repeat, "ms/APDU")
        reader.power_off()
    finally:
        attachment.close()
    return row


def online_taps(link: str, repeat: int) -> list[Row]:
    """Whole online taps over ``link``, both kernels."""
    from scenarios.tap import TapEnvironment  # noqa: PLC0415

    rows = []
    for profile, kernel in TAPS:
        name = tap_name(kernel, link)
        reason = _missing(link)
        if reason is not None:
            rows.append(skipped(name, "ms/tap", reason))
            continue
        with TapEnvironment(profile, link=link) as env:

            def tap(env: TapEnvironment = env, name: str = name) -> None:
                result, _ = env.tap(1234)
                if not (result.online and result.approved):
                    raise RuntimeError(f"{name}: not approved online: {result.outcome}")

            tap()
            rows.append(latency(name, tap, repeat, "ms/tap"))
    return rows


def _check_fci(response: bytes, where: str) -> None:
    if response[-2:] != b"\x90\x00" or response[:1] != b"\x6f":
        raise RuntimeError(f"{where}: SELECT PPSE answered {response.hex().upper()}, not an FCI")


# --- vicc ---------------------------------------------------------------------------------


def vicc_unavailable() -> str | None:
    """Why vsmartcard's vicc cannot run here (None: it can)."""
    if shutil.which("vicc") is None:
        return "no vicc (Debian: vsmartcard-vpicc)"
    return None


def _vicc_python() -> str:
    """The interpreter of the ``vicc`` script (Debian's: /usr/bin/python3)."""
    script = shutil.which("vicc")
    assert script is not None
    with open(script, "rb") as file:
        first = file.readline().decode(errors="replace")
    command = first.removeprefix("#!").split()
    if command and command[0].endswith("env") and len(command) > 1:
        command = command[1:]
    return command[0] if first.startswith("#!") and command else "/usr/bin/python3"


def vicc_round_trip(reader_name: str, port: int, repeat: int, *, quickack: bool) -> Row:
    """SELECT PPSE through PC/SC reader ``reader_name`` to vicc connected at vpcd's
    ``port`` (this process must be in the vpcd's network namespace). A vicc that does
    not start or answer gives a row saying why."""
    from terminal.readers.pcsc import PcscReader  # noqa: PLC0415

    name = round_trip_name("pcsc", f"vicc, {VICC_KINDS[quickack]}")
    reason = vicc_unavailable() or _missing("pcsc")
    if reason is not None:
        return skipped(name, "ms/APDU", reason)
    command = [_vicc_python(), str(VICC_CARD), "127.0.0.1", str(port)]
    if quickack:
        command.append("--quickack")
    with tempfile.TemporaryFile() as log:
        vicc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        try:
            assert vicc.stdout is not None
            if vicc.stdout.readline().strip() != b"ready":
                vicc.wait(5)
                log.seek(0)
                lines = log.read().decode(errors="replace").strip().splitlines() or ["?"]
                return skipped(name, "ms/APDU", f"vicc did not start: {lines[-1]}")
            with PcscReader(reader_name, timeout=VICC_READY) as reader:
                _power_on(reader, VICC_READY)
                _check_fci(reader.transceive(SELECT_PPSE), "vicc")
                return latency(name, lambda: reader.transceive(SELECT_PPSE), repeat, "ms/APDU")
        except (LinkError, RuntimeError) as err:
            return skipped(name, "ms/APDU", f"vicc: {err}")
        finally:
            vicc.kill()
            vicc.wait()
            if vicc.stdout is not None:
                vicc.stdout.close()


def _power_on(reader: Link, seconds: float) -> None:
    """Power on, again while pcscd reports the card unpowered: it shows a new vpcd card
    present a moment before it has powered it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            reader.power_on()
        except CardRemoved:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


# --- the pcsc child, and its parent --------------------------------------------------------


def pcsc_child(repeat: int, vicc_port: int, vicc_reader: str) -> list[Row]:
    """The pcsc rows (in the private pcscd's network namespace, with its environment)."""
    rows = [apdu_round_trip("pcsc", repeat)]
    for quickack in (False, True):
        rows.append(vicc_round_trip(vicc_reader, vicc_port, repeat, quickack=quickack))
    rows += online_taps("pcsc", repeat)
    return rows


def pcsc_rows(repeat: int) -> list[Row]:
    """The pcsc rows, from a child process in a private pcscd's namespaces (module
    docstring); rows saying why when that cannot run here."""
    from scenarios.pcscd import unavailable_reason  # noqa: PLC0415

    reason = unavailable_reason() or _missing("pcsc")
    if reason is None:
        rows = _run_pcsc_child(repeat)
        if not isinstance(rows, str):
            return rows
        reason = rows
    names = [round_trip_name("pcsc")]
    names += [round_trip_name("pcsc", f"vicc, {kind}") for kind in VICC_KINDS.values()]
    skips = [skipped(name, "ms/APDU", reason) for name in names]
    return skips + [skipped(tap_name(kernel, "pcsc"), "ms/tap", reason) for _, kernel in TAPS]


def _run_pcsc_child(repeat: int) -> list[Row] | str:
    """The child's rows, or why it failed."""
    from scenarios.pcscd import PcscdError, PrivatePcscd  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        out = Path(folder) / "pcsc.json"
        pcscd = PrivatePcscd(Path(folder) / "pcscd")
        try:
            pcscd.start()
            _, port = pcscd.vpcd_address
            command = [
                sys.executable, "-m", "bench.links", "--pcsc-child",
                "--repeat", str(repeat), "--json", str(out),
                "--vicc-port", str(port + 1), "--vicc-reader", pcscd.readers[1],
            ]  # fmt: skip
            done = subprocess.run(
                pcscd.in_netns(command),
                env=dict(os.environ, **pcscd.env),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
                check=False,
            )
        except PcscdError as err:
            return str(err)
        finally:
            pcscd.close()
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["no message"]
            return f"the pcsc child failed (status {done.returncode}): {last[0]}"
        rows: list[Row] = json.loads(out.read_text(encoding="utf-8"))
        return rows


def benchmarks(repeat: int) -> list[Row]:
    """Every link's rows: the links in this process, then pcsc's from the child."""
    rows = [apdu_round_trip(link, repeat) for link in OTHER_LINKS]
    pcsc = pcsc_rows(repeat)
    rows += pcsc[:3]
    for link in OTHER_LINKS:
        rows += online_taps(link, repeat)
    return rows + pcsc[3:]


def ratios(rows: list[Row]) -> list[str]:
    """One line per comparison worth stating: vicc against emvtap's card over pcsc."""
    by_name = {r["name"]: r for r in rows if "median" in r}
    emvtap = by_name.get(round_trip_name("pcsc"))
    lines = []
    for kind in VICC_KINDS.values():
        vicc = by_name.get(round_trip_name("pcsc", f"vicc, {kind}"))
        if emvtap and vicc:
            lines.append(
                f"SELECT PPSE over pcscd+vpcd, vicc ({kind}) / emvtap's card: "
                f"{vicc['median'] / emvtap['median']:,.1f}x the time"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.links", description=__doc__)
    parser.add_argument("--pcsc-child", action="store_true", help="be the pcsc child")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, metavar="OUT", required=True)
    parser.add_argument("--vicc-port", type=int, required=True)
    parser.add_argument("--vicc-reader", required=True)
    args = parser.parse_args()
    if not args.pcsc_child:
        parser.error("only --pcsc-child is run this way; the links bench is python -m bench")
    rows = pcsc_child(args.repeat, args.vicc_port, args.vicc_reader)
    args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
