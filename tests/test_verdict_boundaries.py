"""The tolerance boundary of :func:`pytest_egbench.verdict.judge`, on hand-built samples.

The rule (docs/baselines.md, "Verdicts"): a change *exactly at* the tolerance passes, one just
beyond it fails (given significance, for latency and throughput). Every value below is a dyadic
fraction (a multiple of 1/64), so medians, differences and the ratios against a median of 1.0 (or
4.0 for memory) are exact in binary floating point on any machine: "exactly at 25 %" is exactly
0.25, not 0.25000000000000006.
"""

from __future__ import annotations

import pytest

from pytest_egbench.verdict import IMPROVEMENT, PASS, REGRESSION, judge

TOL = 0.25
ALPHA = 0.01
#: seven rounds with median exactly 1.0, all within 1.0 +- 1/16 (one run: no run-to-run spread)
BASE = [0.9375, 0.953125, 0.96875, 1.0, 1.03125, 1.046875, 1.0625]
#: just beyond the boundary: far below any tolerance one would set, far above float rounding
NUDGE = 2.0**-20


def shifted(delta):
    return [x + delta for x in BASE]


def verdict(kind, baseline, current):
    return judge("m", kind, "s", [baseline], current, tolerance=TOL, tolerance_abs=TOL, alpha=ALPHA)


def test_the_hand_built_samples_are_significant():
    """Both sides: 7 rounds, every current round beyond every baseline round, so the exact
    one-sided Mann-Whitney p is 1 / C(14, 7) = 1/3432 < alpha: significance is never what
    decides the boundary cases below."""
    v = verdict("latency", BASE, shifted(+TOL))
    assert v.p is not None and v.p < ALPHA and v.p == pytest.approx(1 / 3432, rel=1e-9)
    assert v.change == 0.25  # exact: dyadic values


def test_latency_exactly_at_the_tolerance_passes_and_just_beyond_fails():
    at = verdict("latency", BASE, shifted(+TOL))
    assert at.status == PASS and at.change == TOL
    beyond = verdict("latency", BASE, shifted(+TOL + NUDGE))
    assert beyond.status == REGRESSION and beyond.change > TOL and beyond.p < ALPHA
    # the same boundary the other way: exactly 25 % faster passes, beyond is an improvement
    assert verdict("latency", BASE, shifted(-TOL)).status == PASS
    assert verdict("latency", BASE, shifted(-TOL - NUDGE)).status == IMPROVEMENT


def test_throughput_exactly_at_the_tolerance_passes_and_just_beyond_fails():
    at = judge("m", "throughput", "tokens/s", [BASE], shifted(-TOL), tolerance=TOL, tolerance_abs=TOL, alpha=ALPHA)
    assert at.status == PASS and at.change == -TOL
    beyond = judge("m", "throughput", "tokens/s", [BASE], shifted(-TOL - NUDGE), tolerance=TOL, tolerance_abs=TOL, alpha=ALPHA)
    assert beyond.status == REGRESSION and beyond.p < ALPHA
    more = judge("m", "throughput", "tokens/s", [BASE], shifted(TOL + NUDGE), tolerance=TOL, tolerance_abs=TOL, alpha=ALPHA)
    assert more.status == IMPROVEMENT


def test_memory_exactly_at_the_tolerance_passes_and_just_beyond_fails():
    # 4 MiB -> 5 MiB is +25 % exactly (memory has no significance test: one value per run)
    base = [4.0 * 2**20] * 3
    at = judge("m", "memory", "bytes", [base], [5.0 * 2**20] * 3, tolerance=TOL, tolerance_abs=0.0, alpha=ALPHA)
    assert at.status == PASS and at.change == TOL
    beyond = judge("m", "memory", "bytes", [base], [5.0 * 2**20 + 1] * 3, tolerance=TOL, tolerance_abs=0.0, alpha=ALPHA)
    assert beyond.status == REGRESSION
    less = judge("m", "memory", "bytes", [base], [3.0 * 2**20 - 1] * 3, tolerance=TOL, tolerance_abs=0.0, alpha=ALPHA)
    assert less.status == IMPROVEMENT


def test_rate_exactly_at_the_absolute_tolerance_passes_and_just_beyond_fails():
    # acceptance 0.75 -> 0.5 drops by 0.25 exactly; the tolerance of a rate is absolute
    base = [0.75] * 4
    at = judge("alpha", "rate", "fraction", [base], [0.5] * 4, tolerance=0.0, tolerance_abs=TOL, alpha=ALPHA)
    assert at.status == PASS and at.change == -TOL
    beyond = judge("alpha", "rate", "fraction", [base], [0.5 - NUDGE] * 4, tolerance=0.0, tolerance_abs=TOL, alpha=ALPHA)
    assert beyond.status == REGRESSION
    up = judge("alpha", "rate", "fraction", [base], [1.0 + NUDGE] * 4, tolerance=0.0, tolerance_abs=TOL, alpha=ALPHA)
    assert up.status == IMPROVEMENT
    assert judge("alpha", "rate", "fraction", [base], [1.0] * 4, tolerance=0.0, tolerance_abs=TOL, alpha=ALPHA).status == PASS


def test_beyond_the_tolerance_without_significance_is_not_a_regression():
    """The other half of "given significance": the same +25 % median change, but the rounds
    overlap so much that the one-sided test cannot reject (p >= alpha)."""
    base = [0.5, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    current = [0.5, 1.0, 1.0, 1.25 + NUDGE, 2.0, 2.0, 2.0]
    v = verdict("latency", base, current)
    assert v.change > TOL and v.p >= ALPHA and v.status != REGRESSION


def test_the_tolerance_is_raised_to_the_run_to_run_spread_inclusively():
    """Two saved runs whose medians sit 25 % away from the pooled median make the spread 0.25;
    a +25 % change (at the raised tolerance) passes even with a smaller tolerance given."""
    runs = [[0.75] * 4, [1.25] * 4]  # pooled median 1.0, each run 25 % away
    current = [1.25] * 4 + [1.25] * 4
    v = judge("m", "latency", "s", runs, current, tolerance=0.05, tolerance_abs=0.0, alpha=ALPHA)
    assert v.change == TOL and v.status == PASS and "raised to the baseline's run-to-run spread" in v.message
