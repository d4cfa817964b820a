"""A metric's history over the runs saved to one baseline, and the change points in it.

``python -m pytest_egbench.baselines history FILE [--metric NAME ...] [--plot out.png]`` prints,
for each selected metric, one line per saved run (date, commit, median, IQR, n, the machine's
calibration) and the change points found in the run medians; ``--plot`` draws the trend with
matplotlib (median per run, interquartile range as error bars, each segment's median as a line,
change points as vertical lines).

**Change-point detection** is `ruptures <https://centre-borelli.github.io/ruptures-docs/>`_
(C. Truong, L. Oudre, N. Vayatis, "Selective review of offline change point detection methods",
Signal Processing 167, 2020): PELT (Killick, Fearnhead, Eckley, JASA 2012) with the least-squares
cost (``model="l2"``) on the logarithm of the run medians, so that a step is a relative change
whatever the metric's scale, and a penalty of :data:`PENALTY_FACTOR` x sigma^2 x ln(n) per change
point (a BIC-type penalty, ``2 sigma^2 ln n`` in Killick et al., raised to 6 for fewer false
alarms on short histories). sigma, the run-to-run noise of the log medians, is estimated from the
history itself: the root mean square of the first differences with the largest one left out (so
one step does not inflate it), over sqrt(2), and never below :data:`NOISE_FLOOR`. Measured on
simulated histories with Gaussian noise of 2 % (``tests/test_history.py`` checks the step and
no-step cases): false alarms in 7 % of histories of 8 runs, 2.5 % of 12, 1 % of 20; a 20 % step
in the middle found at the right run in 99 % of them (82-94 % with 5 % noise).

Why not Apache Otava (``apache-otava`` on PyPI, the detector MongoDB and DataStax use)? Version
0.8.0, the newest, pins ``numpy==2.2.0.*`` and ``scipy<1.17`` and pulls in google-cloud-bigquery,
slack-sdk and pg8000 (about 30 packages): installing it would downgrade the numpy and scipy this
project supports (numpy>=1.24, tested up to 2.4) and cannot coexist with its lowest-versions run.
ruptures needs only numpy and scipy and works offline.

Needs ``ruptures`` and, for ``--plot``, ``matplotlib`` (both in the ``plot`` extra). No torch.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baselines import Baseline, BaselineError, MetricSummary, RunRecord

#: Penalty per change point, in units of sigma^2 ln(n) (see the module docstring).
PENALTY_FACTOR = 6.0
#: Smallest run-to-run noise assumed, relative (0.5 %): a perfectly flat history still needs a
#: change of about 1.5 % to be called a step.
NOISE_FLOOR = 0.005
#: Fewest runs a segment may have: one odd run is an outlier, not a change point.
MIN_SEGMENT = 2
#: Fewest runs of a metric the detector is run on: two segments of :data:`MIN_SEGMENT` runs and
#: enough differences besides the step to estimate the noise.
MIN_RUNS = 6


@dataclass(frozen=True)
class Point:
    """One saved run of one metric: its position in the baseline's history (1 = oldest run), its
    record (date, commit, settings, calibration) and its summary (median, quartiles, n, unit)."""

    number: int
    run: RunRecord
    summary: MetricSummary


@dataclass(frozen=True)
class Trend:
    """A metric's history: ``key`` (the baseline entry), its points (oldest first), the runs of the
    baseline that have no figures for it (out of the sample window before schema 4, or not
    measured), and ``change_points``: indices into ``points`` where a new segment starts (empty
    when none was found), or ``None`` with ``why`` when the detector could not run."""

    key: str
    points: list[Point]
    missing: int
    change_points: list[int] | None
    why: str | None = None


def select(baseline: Baseline, names: Sequence[str]) -> list[str]:
    """The entry keys of ``baseline`` that ``names`` select, in key order: a name selects an entry
    whose key equals it, whose metric is it (``decode``), or whose key matches it as a glob
    (``*eventgpt*::ttft``). No names: every latency and throughput entry. Raises
    :class:`BaselineError` naming the file and the name that selects nothing."""
    keys = set(baseline.entries) | {k for r in baseline.runs for k in r.summaries}
    kinds = {k: _kind(baseline, k) for k in keys}
    if not names:
        return sorted(k for k in keys if kinds[k] in ("latency", "throughput"))
    chosen: set[str] = set()
    for name in names:
        hits = {k for k in keys if k == name or k.rsplit("::", 1)[-1] == name or fnmatch.fnmatchcase(k, name)}
        if not hits:
            metrics = sorted({k.rsplit("::", 1)[-1] for k in keys})
            raise BaselineError(f"{baseline.path}: --metric {name!r} selects no metric (metrics: {', '.join(metrics)}; or a full key, or a glob)")
        chosen |= hits
    return sorted(chosen)


def _kind(baseline: Baseline, key: str) -> str:
    entry = baseline.entries.get(key)
    if entry is not None:
        return entry.kind
    return next(r.summaries[key].kind for r in baseline.runs if key in r.summaries)


def change_points(medians: Sequence[float]) -> list[int]:
    """Where the level of ``medians`` (one per run, oldest first, > 0) changes: the indices that
    start a new segment, found by ruptures' PELT (see the module docstring). Raises ``ValueError``
    with fewer than :data:`MIN_RUNS` values, or a value that is not finite and > 0."""
    import numpy as np
    import ruptures

    if len(medians) < MIN_RUNS:
        raise ValueError(f"{len(medians)} run(s): change points need at least {MIN_RUNS} (two segments of {MIN_SEGMENT} runs and the noise between runs)")
    if not all(math.isfinite(v) and v > 0 for v in medians):
        raise ValueError("change points need finite medians > 0")
    signal = np.log(np.asarray(medians, dtype=float))
    steps = np.sort(np.abs(np.diff(signal)))[:-1]
    sigma = max(float(np.sqrt(np.mean(steps**2)) / math.sqrt(2)), NOISE_FLOOR)
    penalty = PENALTY_FACTOR * sigma**2 * math.log(len(signal))
    ends = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(signal.reshape(-1, 1)).predict(pen=penalty)
    return [int(e) for e in ends[:-1]]


def trend(baseline: Baseline, key: str) -> Trend:
    """The history of entry ``key`` over ``baseline``'s runs, with its change points."""
    points = [Point(i, r, r.summaries[key]) for i, r in enumerate(baseline.runs, start=1) if key in r.summaries]
    missing = len(baseline.runs) - len(points)
    medians = [p.summary.median for p in points]
    try:
        return Trend(key, points, missing, change_points(medians))
    except ValueError as exc:
        return Trend(key, points, missing, None, str(exc))


def machine(record: RunRecord) -> str:
    """The run's machine as its calibration's probe medians (``-`` without a calibration)."""
    from .calibration import PROBES, probe_medians

    parts = [f"{name} {value:.3g} {PROBES.get(name, ('',))[0]}".rstrip() for name, value in probe_medians(record.calibration).items()]
    return ", ".join(parts) or "-"


def _scaled(summary: MetricSummary) -> tuple[float, str]:
    """Factor and unit a summary is shown in (milliseconds for seconds)."""
    return (1e3, "ms") if summary.unit == "s" else (1.0, summary.unit)


def trend_lines(t: Trend) -> list[str]:
    """The printout of one trend: a heading, one row per run, then the change points."""
    if not t.points:
        return [f"{t.key}: no run has figures for it"]
    scale, unit = _scaled(t.points[0].summary)
    lines = [
        f"{t.key} ({t.points[0].summary.kind}, {unit}): {len(t.points)} run(s)" + (f"; {t.missing} other run(s) without figures for it" if t.missing else "")
    ]
    lines.append(f"{'run':>4}  {'date':<16}  {'commit':<10}  {'median':>10}  {'IQR':>9}  {'n':>3}  machine")
    starts = set(t.change_points or [])
    for i, p in enumerate(t.points):
        s = p.summary
        mark = "  <- change point" if i in starts else ""
        date = (p.run.created or "-")[:16].replace("T", " ")
        lines.append(
            f"{p.number:>4}  {date:<16}  {(p.run.commit or '-')[:10]:<10}  {s.median * scale:>10.4g}  {s.iqr * scale:>9.3g}  {s.n:>3}  {machine(p.run)}{mark}"
        )
    if t.change_points is None:
        lines.append(f"change points: not looked for: {t.why}")
    elif not t.change_points:
        lines.append("change points: none")
    bounds = _bounds(t)
    for k, i in enumerate(t.change_points or [], start=1):
        before, after = _level(t, bounds[k - 1], i), _level(t, i, bounds[k + 1])
        run = t.points[i]
        lines.append(
            f"change point at run {run.number} ({(run.run.created or '-')[:10]}, commit {(run.run.commit or '-')[:10]}): segment median {before * scale:.4g} -> {after * scale:.4g} {unit} ({after / before - 1:+.1%})"
        )
    return lines


def _bounds(t: Trend) -> list[int]:
    """Segment boundaries: 0, each change point, the number of points."""
    return [0, *(t.change_points or []), len(t.points)]


def _level(t: Trend, lo: int, hi: int) -> float:
    """Median of the run medians of points ``lo`` to ``hi - 1`` (one segment)."""
    import statistics

    return statistics.median(p.summary.median for p in t.points[lo:hi])


def plot(trends: Sequence[Trend], path: Path, title: str) -> Path:
    """One panel per trend: each run's median with its IQR as an error bar against the run number
    (labelled by date and commit), each segment's median as a horizontal line and each change
    point as a dashed vertical line. PNG at ``path``; needs matplotlib (``ImportError`` without)."""
    from .report import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(len(trends), 1, figsize=(10, 2.8 * len(trends) + 0.6), squeeze=False, layout="constrained")
    for ax, t in zip(axes[:, 0], trends, strict=True):
        _draw(ax, t)
    fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


def _draw(ax: Any, t: Trend) -> None:
    if not t.points:
        ax.set_title(f"{t.key}: no figures", fontsize="small")
        return
    scale, unit = _scaled(t.points[0].summary)
    x = [p.number for p in t.points]
    y = [p.summary.median * scale for p in t.points]
    err = [[(p.summary.median - p.summary.q1) * scale for p in t.points], [(p.summary.q3 - p.summary.median) * scale for p in t.points]]
    ax.errorbar(x, y, yerr=err, fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3, label="median [IQR] of a run")
    bounds = _bounds(t)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        ax.hlines(_level(t, lo, hi) * scale, x[lo] - 0.3, x[hi - 1] + 0.3, color="tab:orange", label="segment median" if lo == 0 else None)
    for k, i in enumerate(t.change_points or []):
        ax.axvline((x[i - 1] + x[i]) / 2, color="tab:red", linestyle="--", label="change point" if k == 0 else None)
    ax.set_xticks(x, [f"{p.number}\n{(p.run.created or '')[5:10]}\n{(p.run.commit or '-')[:7]}" for p in t.points], fontsize="x-small")
    ax.set_ylabel(unit)
    status = "not looked for" if t.change_points is None else f"{len(t.change_points)} change point(s)"
    ax.set_title(f"{t.key} ({status})", fontsize="small")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", borderaxespad=0.0)


def command(baseline: Baseline, names: Sequence[str], plot_path: Path | None) -> list[str]:
    """What ``baselines history`` prints for ``baseline`` (and draws at ``plot_path``): the trend
    of every selected metric (:func:`select`). Raises :class:`BaselineError` for a name that
    selects nothing or a baseline without runs; ``ImportError`` without ruptures or matplotlib."""
    if not baseline.runs:
        raise BaselineError(f"{baseline.path}: records no runs: no history")
    trends = [trend(baseline, key) for key in select(baseline, names)]
    lines = [f"history of {baseline.path} ({len(baseline.runs)} run(s) saved; change points: ruptures PELT on log medians, see pytest_egbench/history.py)"]
    for t in trends:
        lines += ["", *trend_lines(t)]
    if plot_path is not None:
        name = baseline.path.name if baseline.path else "baseline"
        plot(trends, plot_path, f"history of {name}")
        lines += ["", f"plot: {plot_path}"]
    return lines
