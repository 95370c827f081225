"""The real links, measured (``python -m bench --only links``): an APDU round trip and
whole online taps over each ``--link`` mode of :mod:`scenarios.links`, and the same
APDU answered by vsmartcard's own virtual card ``vicc`` over the same pcscd.

* **APDU round trip**: SELECT PPSE (``00 A4 04 00 0E 2PAY.SYS.DDF01 00``) sent
  again and again to a powered Visa plastic card by the terminal's side of the link.
  Over ``pcsc`` that is :class:`terminal.readers.pcsc.PcscReader` -> pcscd -> vpcd ->
  :class:`hce.card.vpcd.VpcdCard`; the same reader class then sends the same SELECT to
  ``vicc`` (:mod:`bench.vicc_card`) on the daemon's second vpcd reader, with its
  socket tuned as emvtap's card tunes its own, and as shipped.
* **online tap**: :meth:`scenarios.tap.TapEnvironment.tap` over the link, Kernel 3
  with fDDA (``visa_qvsdc_plastic``) and Kernel 2 with CDA
  (``mastercard_mchip_plastic``), token server in process, as the in-process rows
  of ``python -m bench``; every tap must be approved online.

Every figure is milliseconds per call: the median over ``repeat`` timed batches of
the batch's mean, with the spread (min..max) of those means. The rows of one kind are
measured **interleaved** (a batch of each in turn, ``repeat`` times), so that load
from elsewhere on the machine falls on all of them alike; vicc as shipped (some 40 ms
an APDU) comes alone, after.

pcsc-lite reads ``PCSCLITE_CSOCK_NAME`` once per process and vpcd listens inside the
private pcscd's network namespace (:mod:`scenarios.pcscd`), so when a private pcscd
can run, every row is measured in a child process, ``python -m bench.links``, started
inside that namespace with the daemon's environment (loopback is there for the other
links); it writes its rows as JSON. When it cannot (not root, no pcscd or vpcd
driver, no pyscard) or the child fails, the other links are measured in this process
and the pcsc rows say why; so do rows whose link lacks nfcpy, or vicc.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.rows import measure_together, spread
from emv import apdu
from emv.link import CardRemoved, Link, LinkError

if TYPE_CHECKING:  # the child process imports the card only where it builds one
    from hce.card import Card

ROOT = Path(__file__).resolve().parent.parent
VICC_CARD = Path(__file__).resolve().parent / "vicc_card.py"
SELECT_PPSE = apdu.select_ppse().to_bytes()
TAPS = (
    ("visa_qvsdc_plastic", "Kernel 3, fDDA"),
    ("mastercard_mchip_plastic", "Kernel 2, CDA"),
)
LINKS = ("inprocess", "vpcd-direct", "nfc-udp", "pcsc")
VICC_TUNED, VICC_SHIPPED = "vicc, TCP_NODELAY + QUICKACK", "vicc, as shipped"
CHILD_TIMEOUT = 900.0  # seconds for the whole pcsc child
VICC_READY = 10.0  # seconds for vicc to connect and pcscd to power its card

Row = dict[str, Any]


def round_trip_name(link: str, card: str = "") -> str:
    """The APDU round trip row's name (``card``: another card than emvtap's)."""
    return f"APDU round trip (SELECT PPSE), {link}" + (f", {card}" if card else "")


def tap_name(kernel: str, link: str) -> str:
    """The online tap row's name."""
    return f"online tap, {kernel}, {link}"


def skipped(name: str, unit: str, reason: str) -> Row:
    """A row that could not be measured here, and why."""
    return {"name": name, "unit": unit, "skipped": reason}


@dataclass
class Case:
    """One figure to measure: milliseconds per ``call``."""

    name: str
    unit: str
    call: Callable[[], object]


def interleaved(cases: list[Case], repeat: int) -> list[Row]:
    """Each case's milliseconds per call, timed in turn with the others
    (:func:`bench.rows.measure_together`: a batch of each case per round); the median
    of a case's batch means and their spread."""
    rated = measure_together([(case.name, case.unit, 1, case.call) for case in cases], repeat)
    return [
        spread(row["name"], row["unit"], [1000 / rate for rate in row["rounds"]]) for row in rated
    ]


def _missing(link: str) -> str | None:
    """What ``link`` needs that this Python lacks."""
    if link == "nfc-udp" and importlib.util.find_spec("nfc") is None:
        return "nfcpy is not installed (pip install emvtap[nfc])"
    if link == "pcsc" and importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed (pip install emvtap[pcsc])"
    return None


def _check_fci(response: bytes, where: str) -> None:
    if response[-2:] != b"\x90\x00" or response[:1] != b"\x6f":
        raise RuntimeError(f"{where}: SELECT PPSE answered {response.hex().upper()}, not an FCI")


def _select(reader: Link) -> Callable[[], object]:
    return lambda: reader.transceive(SELECT_PPSE)


# --- the cards on their links -------------------------------------------------------------


def visa_plastic_card() -> Card:
    """A Visa plastic card of a test issuer made now, its counters in memory."""
    from hce.card import Card, MemoryCounterStore, SoftIssuer, load_profile, personalise  # noqa: PLC0415

    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    return Card(
        personalise(profile, issuer.signer(profile)),
        issuer.plastic_keys(profile, MemoryCounterStore()),
    )


@contextmanager
def powered_card(link: str) -> Iterator[Link]:
    """A Visa plastic card on ``link``, powered on, its PPSE checked: the terminal's side."""
    from scenarios.links import attach, parse_link  # noqa: PLC0415

    attachment = attach(parse_link(link), visa_plastic_card())
    try:
        reader = attachment.link
        reader.power_on()
        _check_fci(reader.transceive(SELECT_PPSE), link)
        yield reader
        reader.power_off()
    finally:
        attachment.close()


@contextmanager
def tapping(profile: str, link: str, name: str) -> Iterator[Callable[[], None]]:
    """One online tap of ``profile`` over ``link`` (checked: approved online), once done."""
    from scenarios.tap import TapEnvironment  # noqa: PLC0415

    with TapEnvironment(profile, link=link) as env:

        def tap() -> None:
            result, _ = env.tap(1234)
            if not (result.online and result.approved):
                raise RuntimeError(f"{name}: not approved online: {result.outcome}")

        tap()
        yield tap


# --- vicc ---------------------------------------------------------------------------------


def vicc_unavailable() -> str | None:
    """Why vsmartcard's vicc cannot run here (None: it can)."""
    if shutil.which("vicc") is None:
        return "no vicc (Debian: vsmartcard-vpicc)"
    return _missing("pcsc")


def _vicc_python() -> str:
    """The interpreter of the ``vicc`` script (Debian's: /usr/bin/python3)."""
    script = shutil.which("vicc")
    assert script is not None
    with open(script, "rb") as file:
        first = file.readline().decode(errors="replace")
    command = first.removeprefix("#!").split()
    if command and command[0].endswith("/env") and len(command) > 1:
        command = command[1:]
    return command[0] if first.startswith("#!") and command else "/usr/bin/python3"


@contextmanager
def vicc_card(reader_name: str, port: int, *, quickack: bool) -> Iterator[Link]:
    """vicc (:mod:`bench.vicc_card`) joined to vpcd at 127.0.0.1:``port`` (this process
    must be in the vpcd's network namespace), powered on through PC/SC reader
    ``reader_name``, its PPSE checked. :class:`LinkError` when it does not start or
    answer."""
    from terminal.readers.pcsc import PcscReader  # noqa: PLC0415

    command = [_vicc_python(), str(VICC_CARD), "127.0.0.1", str(port)]
    if quickack:
        command.append("--quickack")
    with ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile())
        vicc = stack.enter_context(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log))
        stack.callback(vicc.kill)
        assert vicc.stdout is not None
        if vicc.stdout.readline().strip() != b"ready":
            vicc.wait(5)
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines() or ["no message"]
            raise LinkError(f"vicc did not start: {lines[-1]}")
        reader = stack.enter_context(PcscReader(reader_name, timeout=VICC_READY))
        _power_on(reader, VICC_READY)
        _check_fci(reader.transceive(SELECT_PPSE), "vicc")
        yield reader


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


# --- every link ---------------------------------------------------------------------------


def measure_links(
    links: tuple[str, ...], repeat: int, vicc: tuple[str, int] | None = None
) -> list[Row]:
    """The rows of ``links`` (and of vicc on ``vicc``: its PC/SC reader and vpcd port,
    with ``pcsc``): APDU round trips, then online taps."""
    usable = [link for link in links if _missing(link) is None]
    rows: list[Row] = []
    with ExitStack() as stack:
        cases = []
        for link in usable:
            reader = stack.enter_context(powered_card(link))
            cases.append(Case(round_trip_name(link), "ms/APDU", _select(reader)))
        vicc_row: Row | None = None
        if vicc is not None:
            name = round_trip_name("pcsc", VICC_TUNED)
            try:
                reader = stack.enter_context(vicc_card(*vicc, quickack=True))
            except (LinkError, RuntimeError) as err:
                vicc_row = skipped(name, "ms/APDU", str(err))
            else:
                cases.append(Case(name, "ms/APDU", _select(reader)))
        rows += interleaved(cases, repeat)
    if vicc is not None:
        rows += [vicc_row] if vicc_row else []
        name = round_trip_name("pcsc", VICC_SHIPPED)
        try:
            with vicc_card(*vicc, quickack=False) as reader:
                rows += interleaved([Case(name, "ms/APDU", _select(reader))], repeat)
        except (LinkError, RuntimeError) as err:
            rows.append(skipped(name, "ms/APDU", str(err)))
    for profile, kernel in TAPS:  # one kernel at a time: pcsc has one reader (one card)
        with ExitStack() as stack:
            cases = []
            for link in usable:
                name = tap_name(kernel, link)
                cases.append(
                    Case(name, "ms/tap", stack.enter_context(tapping(profile, link, name)))
                )
            rows += interleaved(cases, repeat)
    for link in links:
        reason = _missing(link)
        if reason is not None:
            rows.append(skipped(round_trip_name(link), "ms/APDU", reason))
            rows += [skipped(tap_name(kernel, link), "ms/tap", reason) for _, kernel in TAPS]
    return _ordered(rows)


def _ordered(rows: list[Row]) -> list[Row]:
    """APDU rows (by link, vicc after pcsc), then tap rows (by kernel, then link)."""
    order = [round_trip_name(link) for link in LINKS]
    order += [round_trip_name("pcsc", VICC_TUNED), round_trip_name("pcsc", VICC_SHIPPED)]
    order += [tap_name(kernel, link) for _, kernel in TAPS for link in LINKS]
    return sorted(rows, key=lambda row: order.index(row["name"]))


def benchmarks(repeat: int) -> list[Row]:
    """Every link's rows: from the pcsc child when a private pcscd runs here, else the
    other links from this process and the pcsc rows saying why (module docstring)."""
    from scenarios.pcscd import unavailable_reason  # noqa: PLC0415

    reason = unavailable_reason() or _missing("pcsc")
    if reason is None:
        rows = _run_pcsc_child(repeat)
        if not isinstance(rows, str):
            return rows
        reason = rows
    rows = measure_links(tuple(link for link in LINKS if link != "pcsc"), repeat)
    names = [round_trip_name("pcsc"), round_trip_name("pcsc", VICC_TUNED)]
    names.append(round_trip_name("pcsc", VICC_SHIPPED))
    rows += [skipped(name, "ms/APDU", reason) for name in names]
    rows += [skipped(tap_name(kernel, "pcsc"), "ms/tap", reason) for _, kernel in TAPS]
    return _ordered(rows)


def _run_pcsc_child(repeat: int) -> list[Row] | str:
    """The child's rows, or why it failed."""
    from scenarios.pcscd import PcscdError, PrivatePcscd  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        out = Path(folder) / "links.json"
        pcscd = PrivatePcscd(Path(folder) / "pcscd")
        try:
            pcscd.start()
            _, port = pcscd.vpcd_address
            command = [
                sys.executable, "-m", "bench.links", "--repeat", str(repeat), "--json", str(out),
                "--vicc-reader", pcscd.readers[1], "--vicc-port", str(port + 1),
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


def ratios(rows: list[Row]) -> list[str]:
    """One line per comparison worth stating: vicc against emvtap's card over pcsc."""
    by_name = {r["name"]: r for r in rows if "median" in r}
    emvtap = by_name.get(round_trip_name("pcsc"))
    lines = []
    for kind in (VICC_TUNED, VICC_SHIPPED):
        vicc = by_name.get(round_trip_name("pcsc", kind))
        if emvtap and vicc:
            lines.append(
                f"SELECT PPSE over pcscd+vpcd, {kind} / emvtap's card: "
                f"{vicc['median'] / emvtap['median']:,.1f}x the time"
            )
    return lines


def main() -> None:
    """The pcsc child (module docstring): every link's rows, as JSON in ``--json``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.links",
        description="the links bench's child process (python -m bench --only links starts it)",
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path, metavar="OUT", required=True)
    parser.add_argument("--vicc-reader", required=True, help="the PC/SC reader vicc is in")
    parser.add_argument("--vicc-port", type=int, required=True, help="its vpcd port")
    args = parser.parse_args()
    vicc = None if vicc_unavailable() else (args.vicc_reader, args.vicc_port)
    rows = measure_links(LINKS, args.repeat, vicc)
    if vicc is None:
        reason = vicc_unavailable() or ""
        for kind in (VICC_TUNED, VICC_SHIPPED):
            rows.append(skipped(round_trip_name("pcsc", kind), "ms/APDU", reason))
    args.json.write_text(json.dumps(_ordered(rows), indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
