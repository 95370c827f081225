"""emvtap benchmarks (not tests): ``python -m bench [--only GROUP,...] [--json OUT] [--repeat N]``.

Each figure is the median over ``--repeat`` runs of a timed batch, with the
spread (min..max) beside it; comparisons are measured in the same run. The groups
(``--only``, default all):

* ``emv``: BER-TLV decoding against pyemv's, trace rendering, the symmetric crypto a
  host pays per authorisation;
* ``card``: the emulated card's side of a qVSDC tap, the soft HSM's ARQC verification;
* ``taps``: whole online taps (Entry Point, kernel, token server in process) for
  Kernel 3 and Kernel 2, and one scenario from scratch (keys, token server, card,
  terminal, a tap);
* ``links``: an APDU round trip and whole online taps over each real link
  (vpcd-direct, nfc-udp, pcsc through a private pcscd), and the same APDU answered
  by vsmartcard's vicc over the same pcscd (:mod:`bench.links`), in milliseconds.

The performance issue extends this to the token server over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import links
from emv import apdu, dol, tlv, trace
from emv.crypto import ac, des, kd
from hce.card import Card, MemoryCounterStore, SoftIssuer, load_profile, personalise
from hce.hsm.interface import CommonSession, IccMaster, KeyKind, KeyPath
from hce.hsm.soft import SoftHsm

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "scenarios" / "samples" / "visa_qvsdc_tap.jsonl"


def measure(
    name: str, unit: str, per_call: int, call: Callable[[], object], repeat: int
) -> dict[str, object]:
    """Median rate over ``repeat`` batches sized to take about 0.2 s each."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - start > 0.05:
            break
        batch *= 4
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(batch):
            call()
        rates.append(batch * per_call / (time.perf_counter() - start))
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "runs": repeat,
    }


GROUPS = ("emv", "card", "taps", "links")


def benchmarks(repeat: int, groups: tuple[str, ...] = GROUPS) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    if "emv" in groups:
        results += _emv(repeat)
    if "card" in groups:
        results += _card_and_hsm(repeat)
    if "taps" in groups:
        results += _taps(repeat)
    if "links" in groups:
        results += links.benchmarks(repeat)
    return results


def _emv(repeat: int) -> list[dict[str, object]]:
    """TLV decoding (against pyemv's), trace rendering, a host's symmetric crypto."""
    recorded = trace.from_jsonl(SAMPLE.read_text(encoding="utf-8"))
    # The response data of the sample tap: PPSE and application FCIs, GPO, a record.
    bodies = [
        e.data[:-2]
        for e in recorded.events
        if e.kind is trace.EventKind.RESPONSE and len(e.data) > 2
    ]
    objects = sum(len(_walk(tlv.decode(body))) for body in bodies)
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    icc_mk = kd.derive_icc_mk_a(imk, "4761739001010010", b"\x01")
    data = bytes(range(37))
    results = [
        measure(
            "TLV decode, emvtap",
            "objects/s",
            objects,
            lambda: [tlv.decode(b) for b in bodies],
            repeat,
        ),
    ]
    try:
        from pyemv import tlv as pyemv_tlv  # noqa: PLC0415  (optional peer)
    except ImportError:
        pass
    else:
        results.append(
            measure(
                "TLV decode, pyemv",
                "objects/s",
                objects,
                lambda: [pyemv_tlv.decode(b) for b in bodies],
                repeat,
            )
        )
    results += [
        measure(
            "trace to text (sample tap)", "traces/s", 1, lambda: trace.to_text(recorded), repeat
        ),
        measure(
            "trace to pcapng (sample tap)", "traces/s", 1, lambda: trace.to_pcapng(recorded), repeat
        ),
        measure(
            "session key + ARQC (3DES, EMV CSK)",
            "cryptograms/s",
            1,
            lambda: ac.generate_ac(kd.derive_common_sk(icc_mk, b"\x00\x11" + bytes(6)), data),
            repeat,
        ),
    ]
    return results


def _taps(repeat: int) -> list[dict[str, object]]:
    """Whole online taps through the terminal and the in-process token server, and one
    scenario built from nothing (the runner's unit of work)."""
    from scenarios.loader import load_file  # noqa: PLC0415  (scenarios wires everything)
    from scenarios.runner import run_scenario  # noqa: PLC0415
    from scenarios.tap import TapEnvironment  # noqa: PLC0415

    results = []
    for profile, kernel in (
        ("visa_qvsdc_plastic", "Kernel 3, fDDA"),
        ("mastercard_mchip_plastic", "Kernel 2, CDA"),
    ):
        with TapEnvironment(profile) as env:
            results.append(
                measure(
                    f"online tap, {kernel} (in-process host)",
                    "taps/s",
                    1,
                    lambda: env.tap(1234),
                    repeat,
                )
            )
    (scenario,) = load_file(ROOT / "scenarios" / "packs" / "kernel3" / "online_approved.yaml")[:1]
    results.append(
        measure(
            "one scenario from scratch (keys, server, tap)",
            "scenarios/s",
            1,
            lambda: run_scenario(scenario),
            repeat,
        )
    )
    return results


# A qVSDC tap as a terminal drives it: PPSE, SELECT, GPO (fDDA asked), READ RECORDs.
_PDOL_VALUES = {
    0x9F66: bytes.fromhex("36004000"),
    0x9F02: bytes.fromhex("000000001500"),
    0x9F1A: bytes.fromhex("0826"),
    0x5F2A: bytes.fromhex("0826"),
    0x9A: bytes.fromhex("261126"),
    0x9F37: bytes.fromhex("5A1B3C4D"),
}


def _visa_tap(card: Card) -> None:
    card.power_on()
    card.transceive(apdu.select_ppse().to_bytes())
    fci = tlv.decode(card.transceive(apdu.select(bytes.fromhex("A0000000031010")).to_bytes())[:-2])
    pdol = tlv.find(fci, 0x9F38)
    assert pdol is not None
    data = dol.build_dol_data(dol.parse_dol(pdol.value), _PDOL_VALUES)
    gpo = tlv.index(tlv.decode(card.transceive(apdu.get_processing_options(data).to_bytes())[:-2]))
    afl = gpo[0x94]
    for i in range(0, len(afl), 4):
        for number in range(afl[i + 1], afl[i + 2] + 1):
            card.transceive(apdu.read_record(afl[i] >> 3, number).to_bytes())
    card.power_off()


def _card_and_hsm(repeat: int) -> list[dict[str, object]]:
    """The emulated card's side of a tap, and the soft HSM's ARQC check."""
    issuer = SoftIssuer()
    profile = load_profile("visa_qvsdc_plastic")
    card = Card(
        personalise(profile, issuer.signer(profile)),
        issuer.plastic_keys(profile, MemoryCounterStore()),
    )
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    with tempfile.TemporaryDirectory() as folder:
        hsm = SoftHsm.create(Path(folder) / "keys", bytes(32))
        hsm.import_key("imk", KeyKind.DES2, imk, des.kcv(imk))
        path = KeyPath(
            "imk",
            IccMaster("4761739001010010", b"\x01"),
            session=CommonSession(b"\x00\x11" + bytes(6)),
        )
        data = bytes(range(43))
        arqc = hsm.application_cryptogram(path, data, "emv")
        return [
            measure(
                "card side of a qVSDC tap (PPSE..READ RECORD, fDDA)",
                "taps/s",
                1,
                lambda: _visa_tap(card),
                repeat,
            ),
            measure(
                "soft HSM: verify ARQC (option A + session key)",
                "verifications/s",
                1,
                lambda: hsm.verify_application_cryptogram(path, data, "emv", arqc),
                repeat,
            ),
        ]


def _walk(objects: list[tlv.Tlv]) -> list[tlv.Tlv]:
    return [obj for top in objects for _, obj in top.walk()]


def table(results: list[dict[str, object]]) -> str:
    """The results as a text table: rates as whole numbers, milliseconds to 3 decimals,
    and the reason in place of the figures of a row that could not be measured."""
    width = max([48, *(len(str(r["name"])) for r in results)])
    lines = [f"{'benchmark':<{width}} {'median':>12}  {'spread (min..max)':<24} unit"]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['name']!s:<{width}} {'-':>12}  skipped: {r['skipped']}")
            continue
        digits = 3 if str(r["unit"]).startswith("ms/") else 0
        spread = f"{r['min']:,.{digits}f}..{r['max']:,.{digits}f}"
        lines.append(
            f"{r['name']!s:<{width}} {r['median']:>12,.{digits}f}  {spread:<24} {r['unit']}"
        )
    return "\n".join(lines)


def _cpu() -> str:
    """The processor's model name (Linux), or the platform's word for it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown processor"


def _groups(text: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected one or more of {', '.join(GROUPS)}, comma-separated"
        )
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="batches per figure (default 7)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument(
        "--only",
        type=_groups,
        default=GROUPS,
        metavar="GROUP,...",
        help=f"run only these groups: {', '.join(GROUPS)} (default: all)",
    )
    args = parser.parse_args()
    results = benchmarks(args.repeat, args.only)
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}, {_cpu()}"
    )
    notes = links.ratios(results)
    print(f"machine: {machine}")
    print(table(results))
    for note in notes:
        print(note)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "results": results, "notes": notes}, indent=2)
        )


if __name__ == "__main__":
    main()
