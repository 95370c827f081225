"""Taps on more than one core, and the scenario runner (``python -m bench --only
scaling,runner``).

* ``scaling``: the in-process online tap (:mod:`bench.links`' ``TAPS``, token server in
  process, each tap approved online) in ``spawn``-started worker processes, each with
  its own :class:`scenarios.tap.TapEnvironment`. A round gives the workers the same
  start time and :data:`ROUND_SECONDS` of tapping; the rate of a round is the sum of
  each worker's taps over its own elapsed time. Rounds with one worker and with two
  alternate ``repeat`` times, so load from elsewhere falls on both alike; the scaling
  row is the median of each pair's ratio.
* ``runner``: what ``emvtap run scenarios/packs/kernel3 scenarios/packs/kernel2 -j N``
  does, in this process (:func:`scenarios.loader.load_paths` then
  :func:`scenarios.runner.run`; the interpreter's start and the printing are left
  out), in taps per second, the taps counted from the results; ``-j 1`` and ``-j 2``
  alternate, :data:`RUNNER_RUNS` times at most (a run takes seconds), and every
  scenario must pass. Then where one scenario's time goes: a cProfile of the first
  :data:`PROFILED` scenarios of the Kernel 3 pack, their keys from the process's key
  pool as in a run, split into building the environment, the RSA private-key
  operations (certificates and signed taps), the taps with their checks, and closing;
  its own-time leaders are the note under the table. Once with ``--fresh-keys`` (every
  scenario makes its five RSA keys), and a soak: one scenario of :data:`SOAK_TAPS` taps
  (``repeat``), only failing taps kept, as ``emvtap run -q`` does.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import pstats
import queue
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import links
from bench.rows import Row, reading, spread, with_target

if TYPE_CHECKING:
    from scenarios.model import Scenario
    from scenarios.runner import Keep

ROOT = Path(__file__).resolve().parent.parent
ROUND_SECONDS = 0.5  # each worker's tapping in a round
WORKER_TIMEOUT = 120.0  # seconds for a worker to build its environment or end a round
SCALING_TARGET = 1.8
PACKS = ("kernel3", "kernel2")
RUNNER_RUNS = 3
RUNNER_TARGET = 400.0  # taps/s on one core
SOAK_TAPS = 1_000
PROFILED = 10


# --- scaling ---------------------------------------------------------------------------------


def _tap_worker(profile: str, commands: Queue[Any], results: Queue[Any]) -> None:
    """A worker process: builds its environment, says "ready", then for each (start time,
    seconds) it is sent taps from that time for that long and answers (taps, elapsed);
    None ends it. An error is answered as ("error", message)."""
    try:
        with links.tapping(profile, "inprocess", profile) as tap:
            results.put(("ready", None))
            while (command := commands.get()) is not None:
                start_at, seconds = command
                time.sleep(max(0.0, start_at - time.time()))
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    tap()
                    count += 1
                results.put(("done", (count, time.perf_counter() - start)))
    except Exception as err:  # the parent says what failed
        results.put(("error", f"{type(err).__name__}: {err}"))


def _answer(results: Queue[Any], expected: str) -> Any:
    try:
        kind, value = results.get(timeout=WORKER_TIMEOUT)
    except queue.Empty:
        raise RuntimeError(f"a tap worker did not answer in {WORKER_TIMEOUT:.0f} s") from None
    if kind != expected:
        raise RuntimeError(f"a tap worker failed: {value}")
    return value


def _round(commands: list[Queue[Any]], results: Queue[Any]) -> float:
    """One round on the workers of ``commands``: their taps/s, summed."""
    start_at = time.time() + 0.02
    for command in commands:
        command.put((start_at, ROUND_SECONDS))
    done = [_answer(results, "done") for _ in commands]
    return float(sum(count / seconds for count, seconds in done))


def scaling(repeat: int) -> list[Row]:
    """Taps/s with one worker process and with two, and their ratio, for each kernel."""
    rows: list[Row] = []
    for profile, kernel in links.TAPS:
        one, two = _rounds(profile, repeat)
        name = f"online tap, {kernel} (in-process host)"
        rows += [
            spread(f"{name}, 1 worker process", "taps/s", one),
            spread(f"{name}, 2 worker processes", "taps/s", two),
            with_target(
                spread(
                    f"{name}: 2 processes / 1", "x", [b / a for a, b in zip(one, two, strict=True)]
                ),
                ">=",
                SCALING_TARGET,
            ),
        ]
    return rows


def _rounds(profile: str, repeat: int) -> tuple[list[float], list[float]]:
    """``repeat`` rounds on one worker and on two, alternating: their rates."""
    context = multiprocessing.get_context("spawn")
    results: Queue[Any] = context.Queue()
    commands: list[Queue[Any]] = [context.Queue(), context.Queue()]
    workers = [
        context.Process(target=_tap_worker, args=(profile, command, results), daemon=True)
        for command in commands
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _answer(results, "ready")
        one, two = [], []
        for _ in range(repeat):
            one.append(_round(commands[:1], results))
            two.append(_round(commands, results))
        return one, two
    finally:
        for command in commands:
            command.put(None)
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join()


# --- the scenario runner ---------------------------------------------------------------------


def runner(repeat: int) -> list[Row]:
    """``emvtap run`` over the packs with -j 1 and -j 2 and with fresh keys, a soak
    scenario, and the cost split of one scenario (module docstring)."""
    from scenarios.loader import load_paths  # noqa: PLC0415  (scenarios wires everything)

    paths = [ROOT / "scenarios" / "packs" / pack for pack in PACKS]
    rates: dict[int, list[float]] = {1: [], 2: []}
    counts = (0, 0)
    for _ in range(min(repeat, RUNNER_RUNS)):
        for jobs, kept in rates.items():
            counts, rate = _run_rate(load_paths(paths), jobs=jobs, keep="failures")
            kept.append(rate)
    _, fresh = _run_rate(load_paths(paths), jobs=1, fresh_keys=True, keep="failures")
    name = "emvtap run, Kernel 3 + Kernel 2 packs ({} scenarios, {} taps)".format(*counts)
    return [
        with_target(spread(f"{name}, -j 1", "taps/s", rates[1]), ">=", RUNNER_TARGET),
        spread(f"{name}, -j 2", "taps/s", rates[2]),
        with_target(
            spread(
                f"{name}: -j 2 / -j 1",
                "x",
                [b / a for a, b in zip(rates[1], rates[2], strict=True)],
            ),
            ">=",
            SCALING_TARGET,
        ),
        reading(f"{name}, -j 1 --fresh-keys (one run)", "taps/s", fresh),
        *soak(repeat),
        *cost_split(),
    ]


def _run_rate(
    scenarios: list[Scenario], *, jobs: int, fresh_keys: bool = False, keep: Keep = "all"
) -> tuple[tuple[int, int], float]:
    """(scenarios, taps) of one :func:`scenarios.runner.run`, and its taps per second;
    every scenario must pass."""
    from scenarios.runner import run  # noqa: PLC0415

    start = time.perf_counter()
    results = run(scenarios, jobs=jobs, fresh_keys=fresh_keys, keep=keep)
    seconds = time.perf_counter() - start
    failed = [r.scenario.id for r in results if r.verdict != "passed"]
    if failed:
        raise RuntimeError(f"emvtap run -j {jobs}: did not pass: {', '.join(failed)}")
    taps = sum(r.taps_made for r in results)
    return (len(results), taps), taps / seconds


def soak(repeat: int) -> list[Row]:
    """One scenario of :data:`SOAK_TAPS` approved online taps (``repeat``) of the Visa
    plastic card, run as ``emvtap run -q`` does (only failing taps kept): the runner's
    rate once its environment is built."""
    from bench.memory import scenario_text  # noqa: PLC0415
    from scenarios.loader import load_file  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="emvtap-bench-") as folder:
        file = Path(folder) / "soak.yaml"
        file.write_text(scenario_text(SOAK_TAPS), encoding="utf-8")
        scenarios = load_file(file)
        rates = [
            _run_rate(scenarios, jobs=1, keep="failures")[1]
            for _ in range(min(repeat, RUNNER_RUNS))
        ]
    name = f"emvtap run, one scenario of {SOAK_TAPS:,} online taps (repeat), -j 1"
    return [with_target(spread(name, "taps/s", rates), ">=", RUNNER_TARGET)]


def _key(function: Callable[..., Any]) -> tuple[str, int, str]:
    """How cProfile names ``function``."""
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def cost_split() -> list[Row]:
    """Where the time of a scenario goes (module docstring): milliseconds a scenario,
    under cProfile (which slows Python code more than C: compare the parts, not the
    total, with the runner's rate)."""
    from emv.crypto import oda  # noqa: PLC0415
    from scenarios import runner as scenario_runner  # noqa: PLC0415
    from scenarios.keypool import process_pool  # noqa: PLC0415
    from scenarios.loader import load_paths  # noqa: PLC0415
    from scenarios.tap import TapEnvironment  # noqa: PLC0415

    scenarios = load_paths([ROOT / "scenarios" / "packs" / PACKS[0]])[:PROFILED]
    keys = process_pool()
    for scenario in scenarios:  # the pool's keys made before the profile, as in a run
        scenario_runner.run_scenario(scenario, keys=keys)
    profile = cProfile.Profile()
    results = [
        profile.runcall(scenario_runner.run_scenario, scenario, keys=keys) for scenario in scenarios
    ]
    stats = pstats.Stats(profile)
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    parts = {
        "whole scenario (run_scenario)": scenario_runner.run_scenario,
        "environment build (TapEnvironment.from_scenario)": TapEnvironment.from_scenario.__func__,  # type: ignore[attr-defined]
        "RSA private-key operations, build and taps (oda.rsa_sign)": oda.rsa_sign,
        "taps, run and checked (runner._run_tap)": scenario_runner._run_tap,
        "closing (TapEnvironment.close)": TapEnvironment.close,
    }
    each = len(scenarios)
    spent = {part: table.get(_key(f), (0, 0, 0, 0.0))[3] * 1000 / each for part, f in parts.items()}
    taps = sum(r.taps_made for r in results)
    name = f"one scenario under cProfile ({each} Kernel 3 scenarios, {taps} taps)"
    rows = [reading(f"{name}: {part}", "ms/scenario", ms) for part, ms in spent.items()]
    whole = spent["whole scenario (run_scenario)"] or 1.0
    leaders = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:6]
    seconds = total_seconds(table)
    own = ", ".join(f"{_where(key)} {entry[2] / seconds:.0%}" for key, entry in leaders)
    shares = ", ".join(
        f"{part.split(' (')[0]} {ms / whole:.0%}" for part, ms in list(spent.items())[1:]
    )
    rows[0]["note"] = f"{name}: {shares}; own time, most first: {own}"
    return rows


def _where(key: tuple[str, int, str]) -> str:
    """A profile entry's name: file:line(function), or a built-in's own name."""
    file, line, function = key
    if file == "~":
        return function.strip("<>")
    return f"{Path(file).name}:{line}({function})"


def total_seconds(table: dict[tuple[str, int, str], tuple[Any, ...]]) -> float:
    """All the own time a profile recorded."""
    return sum(entry[2] for entry in table.values()) or 1.0
