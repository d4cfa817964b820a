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
from typing import Any

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


def outside_range(value: float, a: float, b: float) -> float:
    """How far ``value`` lies outside the closed interval between ``a`` and ``b`` (either order),
    signed: ``0.0`` inside it, ``value - max(a, b)`` above, ``value - min(a, b)`` below. The error
    of a reading against a truth known only to lie between two measurements of it."""
    low, high = min(a, b), max(a, b)
    if value > high:
        return value - high
    if value < low:
        return value - low
    return 0.0


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


# --------------------------------------------------------------------------- Mann-Whitney U


@dataclass(frozen=True)
class MannWhitney:
    """Result of a one-sided Mann-Whitney U test of H1: "x tends to be larger than y".

    ``u``: the U statistic of ``x`` (the number of pairs (x_i, y_j) with x_i > y_j, ties counting
    one half); ``p``: the one-sided p-value; ``method``: "exact" or "normal".
    """

    u: float
    p: float
    method: str


def _u_distribution(m: int, n: int) -> list[int]:
    """Counts of each U = 0..m*n over the C(m+n, m) equally likely rankings (no ties).

    Recurrence f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u) (Mann & Whitney 1947).
    """
    # table[j] holds the distribution for (i, j) while i grows; start with i = 0: U = 0 always.
    table = [[1] for _ in range(n + 1)]
    for i in range(1, m + 1):
        row = [[1]]  # (i, 0): U = 0
        for j in range(1, n + 1):
            a = table[j]  # (i-1, j), shifted by j
            b = row[j - 1]  # (i, j-1)
            size = i * j + 1
            dist = [0] * size
            for u, c in enumerate(a):
                dist[u + j] += c
            for u, c in enumerate(b):
                dist[u] += c
            row.append(dist)
        table = row
    return table[n]


def _midranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Ranks 1..n of ``values`` in their own order, ties sharing the mean of their ranks, and the
    tie term sum(t**3 - t) over groups of t equal values (0 without ties)."""
    order = sorted(range(len(values)), key=lambda k: values[k])
    ranks = [0.0] * len(values)
    tie_term = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    return ranks, tie_term


def mann_whitney_u(x: Sequence[float], y: Sequence[float], *, exact_limit: int = 30) -> MannWhitney:
    """One-sided Mann-Whitney U test that ``x`` is stochastically larger than ``y``.

    Exact p-value when there are no ties and both samples have at most ``exact_limit`` values;
    otherwise the normal approximation with tie correction and continuity correction
    (Lehmann, *Nonparametrics*, 1975, ch. 1; the same as ``scipy.stats.mannwhitneyu(x, y,
    alternative="greater", method="asymptotic")``). Raises ``ValueError`` for an empty sample.
    """
    x, y = [float(v) for v in x], [float(v) for v in y]
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        raise ValueError("both samples need at least one value")
    ranks, tie_term = _midranks(x + y)
    u = sum(ranks[:m]) - m * (m + 1) / 2
    if tie_term == 0 and max(m, n) <= exact_limit:
        dist = _u_distribution(m, n)
        total = sum(dist)
        p = sum(dist[int(round(u)) :]) / total
        return MannWhitney(u, min(1.0, p), "exact")
    mu = m * n / 2
    big_n = m + n
    var = m * n / 12 * ((big_n + 1) - tie_term / (big_n * (big_n - 1)))
    if var <= 0:  # every value equal: no evidence either way
        return MannWhitney(u, 1.0, "normal")
    z = (u - mu - 0.5) / math.sqrt(var)
    return MannWhitney(u, 0.5 * math.erfc(z / math.sqrt(2)), "normal")


# --------------------------------------------------------------------------- Wilcoxon signed-rank


def _signed_rank_distribution(n: int) -> list[int]:
    """Counts of each W+ = 0..n(n+1)/2 over the 2**n equally likely sign patterns (ranks 1..n)."""
    dist = [1]
    for k in range(1, n + 1):
        nxt = dist + [0] * k
        for w, c in enumerate(dist):
            nxt[w + k] += c
        dist = nxt
    return dist


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float], *, exact_limit: int = 30) -> MannWhitney:
    """One-sided Wilcoxon signed-rank test of paired samples, H1: "``x_i - y_i`` tends to be > 0".

    Zero differences are dropped (Wilcoxon 1945); ``u`` of the result is W+, the sum of the ranks of
    the positive differences. Exact p-value when no two |differences| tie and at most
    ``exact_limit`` remain; otherwise the normal approximation with tie and continuity correction
    (the same as ``scipy.stats.wilcoxon(x, y, alternative="greater", zero_method="wilcox",
    method="approx", correction=True)``). With ``n`` pairs the smallest exact p is ``2**-n``: 7
    pairs are needed for p < 0.01. Raises ``ValueError`` for samples of different lengths or an
    empty sample. Returns p = 1 when every difference is zero.
    """
    if len(x) != len(y):
        raise ValueError(f"paired samples need equal lengths, got {len(x)} and {len(y)}")
    if not x:
        raise ValueError("paired samples need at least one pair")
    d = [float(a) - float(b) for a, b in zip(x, y)]
    d = [v for v in d if v != 0]
    n = len(d)
    if n == 0:
        return MannWhitney(0.0, 1.0, "exact")
    ranks, tie_term = _midranks([abs(v) for v in d])
    w_plus = sum(r for r, v in zip(ranks, d) if v > 0)
    if tie_term == 0 and n <= exact_limit:
        dist = _signed_rank_distribution(n)
        return MannWhitney(w_plus, min(1.0, sum(dist[int(round(w_plus)) :]) / 2**n), "exact")
    mu = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - tie_term / 48
    if var <= 0:
        return MannWhitney(w_plus, 1.0, "normal")
    z = (w_plus - mu - 0.5) / math.sqrt(var)
    return MannWhitney(w_plus, 0.5 * math.erfc(z / math.sqrt(2)), "normal")


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ratio_ci(
    current: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of ``median(current) / median(baseline)``.

    Each resample draws both samples with replacement, independently (Efron & Tibshirani, *An
    Introduction to the Bootstrap*, 1993, ch. 13). Returns ``(ratio, low, high)``. Seeded, so the
    same inputs give the same interval. Raises ``ValueError`` for an empty sample, a baseline
    median of zero, or a confidence outside (0, 1).
    """
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cur, base = np.asarray(current, dtype=float), np.asarray(baseline, dtype=float)
    if cur.size == 0 or base.size == 0:
        raise ValueError("both samples need at least one value")
    point_base = float(np.median(base))
    if point_base == 0:
        raise ValueError("the baseline median is 0: a ratio is undefined")
    rng = np.random.default_rng(seed)
    cur_med, base_med = _resampled_medians(cur, resamples, rng), _resampled_medians(base, resamples, rng)
    ratios = cur_med / np.where(base_med == 0, np.nan, base_med)
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(ratios, [tail, 1 - tail])
    return float(np.median(cur)) / point_base, float(low), float(high)


def _resampled_medians(values: Any, resamples: int, rng: Any) -> Any:
    """Medians of ``resamples`` draws, with replacement, of ``values`` (a numpy array)."""
    import numpy as np

    return np.median(rng.choice(values, size=(resamples, values.size), replace=True), axis=1)


# --------------------------------------------------------------------------- warm-up check

#: A stage whose steady rounds are still getting faster by more than this is flagged as unsettled.
UNSETTLED_THRESHOLD = 0.10


def unsettled(warmup: Sequence[float], steady: Sequence[float], *, threshold: float = UNSETTLED_THRESHOLD) -> str | None:
    """Why one stage's steady rounds do not look warm yet, or ``None``.

    Warm-up is checked, not assumed: with at least 4 steady rounds, the stage is *unsettled* when
    the median of the first half of the steady rounds is more than ``threshold`` above the median
    of the second half -- the rounds were still getting faster when statistics began (on an H200
    the origin saw decode at 39 ms a token for 64 steps after a 32-step warm-up, then 13.6 ms).
    The message also gives the last warm-up round against the steady median. Values in any one
    unit. Returns ``None`` with fewer than 4 steady rounds (no trend can be told from noise).
    Raises ``ValueError`` for a negative threshold or a non-positive steady median.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    n = len(steady)
    if n < 4:
        return None
    half = n // 2
    early, late = summarize(steady[:half]).median, summarize(steady[n - half :]).median
    if late <= 0:
        raise ValueError(f"steady rounds must be positive durations, got median {late}")
    if early <= late * (1 + threshold):
        return None
    tail = ""
    if warmup:
        tail = f"; the last warm-up round was {100 * (warmup[-1] / summarize(steady).median - 1):+.1f}% against the steady median"
    return f"still getting faster: the first {half} steady rounds' median is {100 * (early / late - 1):+.1f}% above the last {half}'s (more than {threshold:.0%}){tail}; raise --egbench-warmup"


def bootstrap_median_ci(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of ``median(values)`` (e.g. per-pair ratios of
    interleaved rounds). Returns ``(median, low, high)``; seeded. Raises ``ValueError`` for an empty
    sample or a confidence outside (0, 1)."""
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("need at least one value")
    meds = _resampled_medians(arr, resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    low, high = np.quantile(meds, [tail, 1 - tail])
    return float(np.median(arr)), float(low), float(high)
