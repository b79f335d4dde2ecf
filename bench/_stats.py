"""Figures every benchmark reports the same way: percentiles of raw samples, and the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile of an already sorted list (q in 0..1)."""
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summary(values_ms: Iterable[float], digits: int = 3) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of millisecond samples; None values when there are none."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {
        "p50": round(percentile(ordered, 0.50), digits),
        "p90": round(percentile(ordered, 0.90), digits),
        "p99": round(percentile(ordered, 0.99), digits),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
    }


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """`--json PATH`: the result as indented JSON (nothing when no path was given)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
