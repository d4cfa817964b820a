"""Judging a measurement against its baseline. Standard library only (no torch, no pytest).

Rules (the baselines issue):

* **latency** (seconds; lower is better) and **throughput** (tokens/s; higher is better): a
  regression when the median moved the wrong way by more than the relative tolerance *and* a
  one-sided Mann-Whitney U test of the current rounds against the baseline's pooled rounds gives
  p < alpha. Rounds within one run are not independent of the run (clocks, host, lease), so the
  tolerance used is never below the baseline's own run-to-run spread: the largest relative
  distance of one saved run's median from the pooled median. With fewer than :data:`MIN_ROUNDS` rounds on
  either side the test has too little power to reach p < 0.01 and the tolerance alone decides;
  the verdict says so. A move the right way beyond the tolerance is an improvement: reported, not
  failed, with a hint to re-save the baseline.
* **exact** (token counts, KV bytes): every sample must equal the baseline's.
* **rate** (acceptance, agreement; 0..1): a regression when the median dropped by more than the
  absolute tolerance.
* **memory** (bytes that may move a little with allocator or library versions): a regression
  when the median grew by more than the relative tolerance; no significance test (the samples
  of one run are usually identical).
* **info** (figures about the tool itself, such as the timer's overhead): stored, never gated.

The reference is usually a saved baseline; an ``--egbench-inject`` run on a machine without one is
judged against its own interleaved control rounds instead (``reference=``:data:`CONTROL_REFERENCE`,
see :meth:`pytest_egbench.session.EgbenchSession.judge`), and the messages say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from .stats import Summary, bootstrap_median_ci, bootstrap_ratio_ci, mann_whitney_u, summarize, wilcoxon_signed_rank

MIN_ROUNDS = 6
PASS, REGRESSION, IMPROVEMENT, NOISE_ONLY = "pass", "regression", "improvement", "pass (not significant)"
#: Neither a pass nor a failure: the reference cannot decide (the machine differs from the
#: baseline's runs, see :mod:`pytest_egbench.calibration`), or the settings of the run differ from
#: the baseline's (``max_new_tokens``, prompt...), so the numbers measure different work.
INCONCLUSIVE, SETTINGS_DIFFER = "inconclusive", "settings differ"
LOWER_IS_BETTER = {"latency": True, "throughput": False}
#: What the samples are compared with, as the messages name it: a saved baseline, or the control
#: rounds of an ``--egbench-inject`` run.
BASELINE_REFERENCE = "baseline"
CONTROL_REFERENCE = "control (this run's interleaved unchanged rounds)"


@dataclass(frozen=True)
class Verdict:
    """The outcome for one metric. ``status`` is one of :data:`PASS`, :data:`REGRESSION`,
    :data:`IMPROVEMENT`, :data:`NOISE_ONLY`, :data:`INCONCLUSIVE`, :data:`SETTINGS_DIFFER`;
    ``message`` is the line shown to the user."""

    metric: str
    status: str
    message: str
    change: float | None = None
    p: float | None = None
    warning: str | None = None
    reference: str = BASELINE_REFERENCE


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e3:.4g} ms"
    if unit == "bytes":
        return f"{value:.0f} B"
    return f"{value:.4g} {unit}" if unit not in ("ratio", "") else f"{value:.4g}"


def _describe(name: str, base: Summary, cur: Summary, unit: str, runs: int, reference: str = BASELINE_REFERENCE) -> str:
    of_runs = f" over {runs} runs" if runs > 1 else ""
    return f"{name}: {reference} {_fmt(base.median, unit)} [IQR {_fmt(base.iqr, unit)}, n={base.n}{of_runs}], current {_fmt(cur.median, unit)} [IQR {_fmt(cur.iqr, unit)}, n={cur.n}]"


def _resave_hint(reference: str) -> str:
    """What to do about an improvement: add runs to the baseline (nothing against a control)."""
    if reference != BASELINE_REFERENCE:
        return ""
    return "; add runs with --egbench-save (the baseline keeps its last 5 runs; delete its file to start afresh)"


def run_spread(runs: Sequence[Sequence[float]]) -> float:
    """Largest ``|median(run) / median(all runs pooled) - 1|``; 0 for a single run."""
    if len(runs) < 2:
        return 0.0
    pooled = summarize([v for run in runs for v in run]).median
    if pooled == 0:
        return 0.0
    return max(abs(summarize(run).median / pooled - 1) for run in runs)


def judge(
    name: str,
    kind: str,
    unit: str,
    baseline_runs: Sequence[Sequence[float]],
    current: Sequence[float],
    *,
    tolerance: float,
    tolerance_abs: float,
    alpha: float,
    reference: str = BASELINE_REFERENCE,
    paired: bool = False,
) -> Verdict:
    """Compare ``current`` samples with a baseline's saved runs of one metric (see the module
    docstring).

    ``baseline_runs``: one list of samples per saved run (for a control comparison: the control
    rounds, as one run); ``tolerance``: relative (0.05 = 5 %), raised to the baseline's
    :func:`run_spread`; ``tolerance_abs``: for rates; ``alpha``: significance level;
    ``reference``: what ``baseline_runs`` are, as the message names them (:data:`BASELINE_REFERENCE`
    or :data:`CONTROL_REFERENCE`; kept in :attr:`Verdict.reference`). ``paired``: ``current[i]``
    and the single run ``baseline_runs[0][i]`` were measured next to each other (interleaved
    control rounds): latency and throughput are then judged by the median of the per-pair ratios
    and a one-sided Wilcoxon signed-rank test, so that a drift of the machine that moves both
    rounds of a pair cancels. Raises ``ValueError`` for an unknown ``kind``, empty samples, or
    ``paired`` with more than one run or unequal lengths.
    """
    baseline = [v for run in baseline_runs for v in run]
    base, cur = summarize(baseline), summarize(current)
    head = _describe(name, base, cur, unit, len(baseline_runs), reference)
    verdict = partial(Verdict, name, reference=reference)
    if kind == "info":
        return verdict(PASS, f"{head}: informational, not gated")
    if kind == "exact":
        if sorted(set(current)) == sorted(set(baseline)) and len(set(current)) == 1:
            return verdict(PASS, f"{head}: equal")
        return verdict(REGRESSION, f"{head}: exact metric changed (baseline values {sorted(set(baseline))}, current {sorted(set(current))})")
    if kind == "memory":
        change = (cur.median - base.median) / base.median if base.median else 0.0
        text = f"{head}, change {change:+.1%} (tolerance {tolerance:.1%})"
        if change > tolerance:
            return verdict(REGRESSION, f"{text}: more memory", change)
        return verdict(IMPROVEMENT if change < -tolerance else PASS, text, change)
    if kind == "rate":
        change = cur.median - base.median
        text = f"{head}, change {change:+.4f} (absolute tolerance {tolerance_abs:.4f})"
        if change < -tolerance_abs:
            return verdict(REGRESSION, text, change)
        if change > tolerance_abs:
            return verdict(IMPROVEMENT, f"{text}: improved{_resave_hint(reference)}", change)
        return verdict(PASS, text, change)
    if kind not in LOWER_IS_BETTER:
        raise ValueError(f"unknown metric kind {kind!r}")
    if base.median == 0:
        return verdict(PASS, f"{head}: {reference} median is 0, nothing to compare")
    if paired:
        if len(baseline_runs) != 1 or len(current) != len(baseline):
            raise ValueError(f"{name}: a paired comparison needs one reference run as long as the current one, got {[len(r) for r in baseline_runs]} and {len(current)}")
        if min(baseline) <= 0:
            return verdict(PASS, f"{head}: {reference} has a value <= 0, no ratio to compare")
        ratio, low, high = bootstrap_median_ci([c / b for c, b in zip(current, baseline)], resamples=1000)
        change = ratio - 1
    else:
        change = (cur.median - base.median) / base.median
    worse = change if LOWER_IS_BETTER[kind] else -change
    spread = run_spread(baseline_runs)
    if spread > tolerance:
        tolerance = spread
    if worse > 0:
        slower, faster = (current, baseline) if LOWER_IS_BETTER[kind] else (baseline, current)
    else:
        slower, faster = (baseline, current) if LOWER_IS_BETTER[kind] else (current, baseline)
    if paired:
        test, p = "Wilcoxon signed-rank", wilcoxon_signed_rank(slower, faster).p
        enough = 2.0 ** -cur.n < alpha
        shortfall = f"only {cur.n} pairs: the Wilcoxon test cannot reach p < {alpha}"
        of_change = f" (median of {cur.n} paired ratios)"
    else:
        test, p = "Mann-Whitney", mann_whitney_u(slower, faster).p
        enough = min(base.n, cur.n) >= MIN_ROUNDS
        shortfall = f"only {min(base.n, cur.n)} rounds on one side (< {MIN_ROUNDS}): the Mann-Whitney test cannot reach p < {alpha}"
        of_change = ""
        _, low, high = bootstrap_ratio_ci(current, baseline, resamples=1000)
    warning = None if enough else f"{name}: {shortfall}; judged by the {tolerance:.0%} tolerance alone"
    widened = f", raised to the baseline's run-to-run spread" if spread >= tolerance and spread > 0 else ""
    text = f"{head}, change {change:+.1%}{of_change} [95% CI {low - 1:+.1%} to {high - 1:+.1%}], one-sided {test} p={p:.3g} (tolerance {tolerance:.1%}{widened}, alpha {alpha})"
    significant = p < alpha or not enough
    if abs(worse) <= tolerance:
        return verdict(PASS, text, change, p, warning)
    if not significant:
        return verdict(NOISE_ONLY, f"{text}: beyond the tolerance but not significant", change, p, warning)
    if worse > 0:
        return verdict(REGRESSION, f"{text}: {'slower' if LOWER_IS_BETTER[kind] else 'lower throughput'}", change, p, warning)
    return verdict(IMPROVEMENT, f"{text}: improved beyond the tolerance{_resave_hint(reference)}", change, p, warning)


#: Default relative tolerance of a same-machine A/B comparison (``--egbench-ref``): both sides run
#: on this machine, interleaved, so the drift between machines and between hours cancels; what
#: remains is the spread between processes (docs/machines.md#same-machine-ab; tools/ab_study.py).
AB_TOLERANCE = 0.03


def ab_reference(label: str) -> str:
    """The reference of an A/B verdict as messages name it, e.g. ``REV abc1234 on this machine``."""
    return f"{label} on this machine"


def judge_ab(
    name: str,
    kind: str,
    unit: str,
    reference_runs: Sequence[Sequence[float]],
    current_runs: Sequence[Sequence[float]],
    *,
    reference: str,
    tolerance: float,
    tolerance_abs: float,
    alpha: float,
) -> Verdict:
    """Judge one metric of a same-machine A/B run (``--egbench-ref``).

    ``reference_runs[i]`` and ``current_runs[i]`` are the steady rounds of the i-th pair of
    processes, run next to each other on this machine (order alternating). Latency and throughput:
    the change is the median of the per-round ratios ``current_runs[i][j] / reference_runs[i][j]``
    over every pair ``i`` and round ``j``; the test a one-sided Wilcoxon signed-rank test on those
    round pairs; and a regression (or improvement) needs, besides ``change`` beyond ``tolerance``
    and p < ``alpha``, every process pair's median ratio on the same side of 1, so that one odd
    process cannot decide alone. Other kinds are judged as against a baseline of the reference's
    runs (:func:`judge`). Raises ``ValueError`` for an unknown kind or no common rounds.
    """
    if kind not in LOWER_IS_BETTER:
        return judge(name, kind, unit, [list(r) for r in reference_runs], [v for run in current_runs for v in run], tolerance=tolerance, tolerance_abs=tolerance_abs, alpha=alpha, reference=reference)
    pairs = [(list(a[: min(len(a), len(b))]), list(b[: min(len(a), len(b))])) for a, b in zip(reference_runs, current_runs)]
    ref = [v for a, _ in pairs for v in a]
    cur = [v for _, b in pairs for v in b]
    if not ref or min(ref) <= 0 or min(cur) <= 0:
        raise ValueError(f"{name}: an A/B comparison needs positive rounds on both sides, got {len(ref)} reference and {len(cur)} current")
    base, now = summarize(ref), summarize(cur)
    ratios = [c / r for c, r in zip(cur, ref)]
    ratio, low, high = bootstrap_median_ci(ratios, resamples=1000)
    change = ratio - 1
    lower_better = LOWER_IS_BETTER[kind]
    worse = change if lower_better else -change
    slower, faster = (cur, ref) if (worse > 0) == lower_better else (ref, cur)
    p = wilcoxon_signed_rank(slower, faster).p
    per_pair = [summarize(b).median / summarize(a).median - 1 for a, b in pairs]
    agree = all(c > 0 for c in per_pair) or all(c < 0 for c in per_pair)
    pair_text = ", ".join(f"{c:+.1%}" for c in per_pair)
    head = f"{name}: {reference} {_fmt(base.median, unit)} [IQR {_fmt(base.iqr, unit)}, n={base.n} in {len(pairs)} processes], current {_fmt(now.median, unit)} [IQR {_fmt(now.iqr, unit)}, n={now.n}]"
    text = f"{head}, change {change:+.1%} (median of {len(ratios)} paired rounds) [95% CI {low - 1:+.1%} to {high - 1:+.1%}], per process pair {pair_text}, one-sided Wilcoxon signed-rank p={p:.3g} (tolerance {tolerance:.1%}, alpha {alpha})"
    verdict = partial(Verdict, name, reference=reference)
    if abs(worse) <= tolerance:
        return verdict(PASS, text, change, p)
    if p >= alpha or not agree:
        why = "not significant" if p >= alpha else "the process pairs disagree on the direction"
        return verdict(NOISE_ONLY, f"{text}: beyond the tolerance but {why}", change, p)
    if worse > 0:
        return verdict(REGRESSION, f"{text}: {'slower' if lower_better else 'lower throughput'}", change, p)
    return verdict(IMPROVEMENT, f"{text}: faster than the reference", change, p)
