"""Memory (``python -m bench --only memory [--taps N] [--auths M]``), each figure from a
child process of its own, once (memory does not need medians):

* **emvtap run over N taps**: ``emvtap run FILE -q`` on one generated scenario of one
  tap repeated N times (``repeat: N``): N online taps of the Visa plastic card
  (Kernel 3, fDDA, token server in process, each expected Approved), its peak RSS
  (``ru_maxrss`` of the child, from ``wait4`` in a small launcher: see
  :data:`_LAUNCHER`); then the same with N/4 taps. Flat
  when N's peak is within :data:`FLAT` of N/4's.
* **the token server over M authorisations**: ``python -m bench.memory server M`` (this
  module's child): a token server (soft HSM, SQLite, :class:`bench.host.TokenServer`)
  authorises M Visa CVN 18 ARQCs of plastic cards (a card every 60,000: an ATC is two
  bytes), each must be approved; its VmRSS (``/proc/self/status``) after M/4 and
  after M is compared the same way.

The performance issue's figures are N = 10,000 (peak under 250 MB, not growing with N)
and M = 100,000 (flat); the defaults are smaller, to run in well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.rows import Row, reading, with_target

ROOT = Path(__file__).resolve().parent.parent
TAPS = 2_000
AUTHS = 20_000
PEAK_TARGET_MB = 250.0
FLAT = 0.05  # a figure "grows" when the larger run's is more than 5 % above the smaller's
ATCS_PER_CARD = 60_000


def scenario_text(taps: int) -> str:
    """One scenario of ``taps`` approved online taps of the Visa plastic card: one tap
    with ``repeat`` (a soak test; the file's size does not grow with ``taps``)."""
    return (
        "id: bench-memory\n"
        f"title: {taps} online taps of one Visa plastic card\n"
        "requirement: none (python -m bench --only memory)\n"
        "card: visa_qvsdc_plastic\n"
        "taps:\n"
        f'  - amount: "12.34"\n    repeat: {taps}\n'
        "    expect: {outcome: Approved, online: true}\n"
    )


def _emvtap() -> list[str]:
    """The ``emvtap`` command of this Python."""
    script = Path(sys.executable).parent / "emvtap"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "scenarios.cli"]


def run_peak_rss(taps: int) -> tuple[float, float]:
    """Peak RSS (MB) of ``emvtap run`` over one scenario of ``taps`` taps, and its seconds."""
    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        file = Path(folder) / "memory.yaml"
        file.write_text(scenario_text(taps), encoding="utf-8")
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, *_emvtap(), "run", str(file), "-q"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        seconds = time.perf_counter() - start
    *output, last = done.stdout.decode(errors="replace").strip().splitlines() or ["no output"]
    word, status, peak = [*last.split(), "", "", ""][:3]
    if done.returncode != 0 or word != "peak" or status != "0":
        said = output[-1:] or [last]
        raise RuntimeError(f"emvtap run over {taps} taps: status {status or '?'}: {said[0]}")
    return int(peak) / 1024, seconds  # Linux: kilobytes


# Starts the command it is given and prints "peak STATUS KB" after its output: the
# command's ru_maxrss from wait4. Linux counts in a process's peak the size of the one
# it was started from (the memory it shares until exec), so a launcher this small
# keeps the bench's own size out of the reading.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print('peak', os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)\n"
)


def server_rss(auths: int) -> dict[str, float]:
    """The token server child's readings (its VmRSS in MB after a quarter and after all
    ``auths``, its peak, the seconds of the authorisations)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "server", str(auths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"the token server child failed (status {done.returncode}): {last[0]}")
    readings: dict[str, float] = json.loads(done.stdout)
    return readings


def benchmarks(taps: int = TAPS, auths: int = AUTHS) -> list[Row]:
    """The group's rows (module docstring)."""
    rows: list[Row] = []
    quarter, _ = run_peak_rss(taps // 4)
    full, seconds = run_peak_rss(taps)
    name = "emvtap run, one scenario of N online taps (Kernel 3, plastic)"
    rows += [
        reading(f"{name}: peak RSS, N = {taps // 4:,}", "MB", quarter),
        with_target(
            reading(f"{name}: peak RSS, N = {taps:,} ({seconds:.0f} s)", "MB", full),
            "<=",
            PEAK_TARGET_MB,
            f"< {PEAK_TARGET_MB:.0f} MB",
        ),
        _growth(f"{name}: growth from N/4 to N", quarter, full, taps, "taps"),
    ]
    server = server_rss(auths)
    name = "token server, M Visa CVN 18 authorisations (soft HSM + SQLite)"
    rows += [
        reading(f"{name}: VmRSS after M/4 = {auths // 4:,}", "MB", server["quarter"]),
        reading(
            f"{name}: VmRSS after M = {auths:,} ({server['seconds']:.0f} s)", "MB", server["end"]
        ),
        _growth(f"{name}: growth from M/4 to M", server["quarter"], server["end"], auths, "auths"),
    ]
    return rows


def _growth(name: str, smaller: float, larger: float, count: int, what: str) -> Row:
    """KB per 1,000 ``what`` from the quarter run to the whole one, and whether that is
    flat (within :data:`FLAT`)."""
    per_thousand = (larger - smaller) * 1024 / (count * 3 / 4) * 1000
    row = reading(name, f"KB/1,000 {what}", per_thousand)
    row["target"] = {"op": "<=", "value": 0.0, "text": f"flat (within {FLAT:.0%})"}
    row["meets"] = larger <= smaller * (1 + FLAT)
    return row


# --- the token server child ------------------------------------------------------------------


def _vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _server_child(auths: int) -> None:
    """Authorise ``auths`` ARQCs (module docstring); print the readings as JSON."""
    from bench.host import TokenServer, luhn_pan, visa_request  # noqa: PLC0415

    readings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        server = TokenServer.create(Path(folder))
        try:
            start = time.perf_counter()
            pan = ""
            for done in range(auths):
                atc = done % ATCS_PER_CARD + 1
                if atc == 1:
                    pan = luhn_pan(f"476173900{done // ATCS_PER_CARD:06d}")
                    server.enrol_visa(pan)
                answer = server.service.authorise(visa_request(pan, atc), actor=server.acquirer)
                if answer.decision != "approved":
                    raise RuntimeError(f"authorisation {done + 1}: {answer.reason}")
                if done + 1 == auths // 4:
                    readings["quarter"] = _vm_rss_mb()
            readings["end"] = _vm_rss_mb()
            readings["seconds"] = time.perf_counter() - start
        finally:
            server.store.close()
    print(json.dumps(readings))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "server" or not sys.argv[2].isdigit():
        sys.exit("usage: python -m bench.memory server M (python -m bench --only memory runs it)")
    _server_child(int(sys.argv[2]))
