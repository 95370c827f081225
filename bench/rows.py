"""The rows every bench group makes: a timed rate (:func:`measure`), a row that could not
be measured (:func:`skipped`), a ratio of two rows (:func:`ratio`), a single reading
(:func:`reading`), and the performance issue's target on a row (:func:`with_target`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

Row = dict[str, Any]


def measure(name: str, unit: str, per_call: int, call: Callable[[], object], repeat: int) -> Row:
    """Median rate over ``repeat`` batches, each batch sized to take 0.05 s or more."""
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
    return spread(name, unit, rates)


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
    """The ratio of two rate rows' medians; its spread, the ratios of their extremes."""
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
