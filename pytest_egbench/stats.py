"""Summaries of repeated measurements. Standard library and pytest-benchmark's ``stats`` only.

Quartiles follow pytest-benchmark's definition (``pytest_benchmark.stats.Stats``: Wikipedia's
"Method 2" for an even count, "Method 3" for an odd one), so the median and IQR printed in the
terminal table are the ones written to the JSON file and read back by ``pytest-benchmark compare``.
This module imports neither torch nor pytest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_benchmark.stats import Stats as _BenchmarkStats


@dataclass(frozen=True)
class Summary:
    """Distribution of one metric over rounds, in the metric's own unit."""

    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float
    mean: float
    stddev: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def cv(self) -> float:
        """Coefficient of variation, stddev / mean (0 for a zero mean)."""
        return self.stddev / self.mean if self.mean else 0.0


def _stats(samples: Sequence[float]) -> _BenchmarkStats:
    values = [float(x) for x in samples]
    if not values:
        raise ValueError("cannot summarise an empty list of samples")
    if any(not math.isfinite(x) for x in values):
        raise ValueError(f"samples must be finite numbers, got {values!r}")
    stats = _BenchmarkStats()
    for x in values:
        stats.update(x)
    return stats


def summarize(samples: Sequence[float]) -> Summary:
    """Median, quartiles, extremes, mean and sample standard deviation of ``samples``.

    Raises ``ValueError`` for an empty sequence or a non-finite value.
    """
    s = _stats(samples)
    return Summary(n=s.rounds, median=s.median, q1=s.q1, q3=s.q3, min=s.min, max=s.max, mean=s.mean, stddev=s.stddev)


def benchmark_stats(samples: Sequence[float], *, include_data: bool = True) -> dict[str, object]:
    """pytest-benchmark's ``stats`` block for ``samples`` (seconds, for time metrics).

    Keys: min, max, mean, stddev, rounds, median, iqr, q1, q3, iqr_outliers, stddev_outliers,
    outliers, ld15iqr, hd15iqr, ops, total, iterations (always 1: each sample is one round), and
    ``data`` (the raw samples) when ``include_data``.
    """
    s = _stats(samples)
    block: dict[str, object] = s.as_dict()
    block["iterations"] = 1
    if include_data:
        block["data"] = list(s.data)
    return block
