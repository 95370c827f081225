"""The rows every bench group makes: a timed rate (:func:`measure`), rates timed in turn
(:func:`measure_together`), a row that could not be measured (:func:`skipped`), a ratio
of two rows (:func:`ratio`), a single reading (:func:`reading`), and the performance
issue's target on a row (:func:`with_target`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

Row = dict[str, Any]
BATCH_SECONDS = 0.05  # a timed batch lasts at least this long


def measure(name: str, unit: str, per_call: int, call: Callable[[], object], repeat: int) -> Row:
    """Median rate over ``repeat`` batches, each batch sized to take 0.05 s or more."""
    (rates,) = _rounds([(per_call, call)], repeat)
    return spread(name, unit, rates)


Case = tuple[str, str, int, Callable[[], object]]
"""A rate to measure: its row's name and unit, the operations per call, the call."""


def measure_together(cases: Sequence[Case], repeat: int) -> list[Row]:
    """Several rates measured in turn: each case's batch size found first, then
    ``repeat`` rounds of one timed batch of each case, so that the machine's speed,
    which drifts by up to half over minutes here, weighs on every case alike. Each row
    keeps its rounds' rates (``rounds``), for :func:`ratio`."""
    measured = _rounds([(per_call, call) for _, _, per_call, call in cases], repeat)
    return [
        {**spread(name, unit, rates), "rounds": rates}
        for (name, unit, _, _), rates in zip(cases, measured, strict=True)
    ]


def _rounds(calls: Sequence[tuple[int, Callable[[], object]]], repeat: int) -> list[list[float]]:
    """Each call's rates over ``repeat`` rounds of one batch of each in turn, a batch
    sized to take 0.05 s or more."""
    sizes = [_batch_size(call) for _, call in calls]
    rates: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for (per_call, call), size, kept in zip(calls, sizes, rates, strict=True):
            start = time.perf_counter()
            for _ in range(size):
                call()
            kept.append(size * per_call / (time.perf_counter() - start))
    return rates


def _batch_size(call: Callable[[], object]) -> int:
    """Calls in a batch that takes 0.05 s or more (a power of 4)."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - start > BATCH_SECONDS:
            return batch
        batch *= 4


def spread(name: str, unit: str, values: Sequence[float]) -> Row:
    """A row of several readings: their median and spread."""
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def reading(name: str, unit: str, value: float) -> Row:
    """A row of one reading (no spread)."""
    return {"name": name, "unit": unit, "median": value, "runs": 1}


def skipped(name: str, unit: str, reason: str) -> Row:
    """A row that could not be measured here, and why."""
    return {"name": name, "unit": unit, "skipped": reason}


def ratio(name: str, numerator: Row, denominator: Row) -> Row:
    """The ratio of two rate rows: of each round's rates when they were measured
    together (:func:`measure_together`), else of their medians, with the ratios of
    their extremes as its spread."""
    if "rounds" in numerator and "rounds" in denominator:
        pairs = zip(numerator["rounds"], denominator["rounds"], strict=True)
        return spread(name, "x", [top / bottom for top, bottom in pairs])
    return {
        "name": name,
        "unit": "x",
        "median": numerator["median"] / denominator["median"],
        "min": numerator["min"] / denominator["max"],
        "max": numerator["max"] / denominator["min"],
        "runs": numerator["runs"],
    }


def with_target(row: Row, op: Literal[">=", "<="], value: float, text: str = "") -> Row:
    """``row`` with the performance issue's target for its median (``text``: the target
    as the issue words it, when the row's unit is another) and whether the median meets
    it; a skipped row is left as it is."""
    if "median" in row:
        row["target"] = {"op": op, "value": value, "text": text}
        row["meets"] = row["median"] >= value if op == ">=" else row["median"] <= value
    return row
