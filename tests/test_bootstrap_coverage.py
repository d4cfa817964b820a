"""The bootstrap intervals of :mod:`pytest_egbench.stats` against what a confidence level means.

A c-level interval should cover the true value in about a fraction c of repeated experiments. Here
the experiments are synthetic: samples drawn from a log-normal distribution whose median is known
(1.0; and 1.2 / 1.0 for the ratio of two medians), several hundred times from a fixed-seed
generator, so the test is fast and the same on every run of one numpy version.

The bounds are binomial: with N draws, the number of covering intervals is Binomial(N, c) when the
true coverage is c. At N = 600 its standard deviation is 0.0089 at c = 0.95 and 0.020 at c = 0.5,
so the bands [0.90, 0.99] and [0.40, 0.60] are about 5 standard deviations either side. That
leaves room for the percentile bootstrap's known small-sample bias (over 3000 draws of 31 values
it covered the median 93-94 % of the time at 95 %, and the ratio 96-97 %), still at least 3
standard deviations inside the band, while a wrong percentile (a 90 % interval called 95 %, a
level ignored, the tails swapped) lands outside one of the two bands. No p-value and nothing
timed.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_egbench.stats import bootstrap_median_ci, bootstrap_ratio_ci

N_DRAWS, N_VALUES, RESAMPLES, SIGMA = 600, 31, 400, 0.5
TRUE_MEDIAN, TRUE_RATIO = 1.0, 1.2
BANDS = {0.95: (0.90, 0.99), 0.5: (0.40, 0.60)}


@pytest.fixture(scope="module")
def coverage():
    """{(which, level): fraction of the N_DRAWS intervals that covered the true value}."""
    rng = np.random.default_rng(20240601)
    hits = {(which, level): 0 for which in ("median", "ratio") for level in BANDS}
    for i in range(N_DRAWS):
        base = rng.lognormal(np.log(TRUE_MEDIAN), SIGMA, N_VALUES)
        current = rng.lognormal(np.log(TRUE_MEDIAN * TRUE_RATIO), SIGMA, N_VALUES)
        for level in BANDS:
            _, low, high = bootstrap_median_ci(base, confidence=level, resamples=RESAMPLES, seed=i)
            hits["median", level] += low <= TRUE_MEDIAN <= high
            _, low, high = bootstrap_ratio_ci(current, base, confidence=level, resamples=RESAMPLES, seed=i)
            hits["ratio", level] += low <= TRUE_RATIO <= high
    return {k: v / N_DRAWS for k, v in hits.items()}


@pytest.mark.parametrize("level", sorted(BANDS))
@pytest.mark.parametrize("which", ["median", "ratio"])
def test_coverage_matches_the_confidence_level(coverage, which, level):
    low, high = BANDS[level]
    assert low <= coverage[which, level] <= high, f"{which} interval at {level:.0%} covered the true value in {coverage[which, level]:.1%} of {N_DRAWS} draws"


@pytest.mark.parametrize("which", ["median", "ratio"])
def test_a_higher_level_gives_a_wider_interval_from_the_same_resamples(which):
    """Same seed, same resamples: the quantiles of a higher level lie outside those of a lower."""
    rng = np.random.default_rng(3)
    base, current = rng.lognormal(0, SIGMA, 21), rng.lognormal(0.2, SIGMA, 21)
    ci = (lambda c: bootstrap_median_ci(base, confidence=c)) if which == "median" else (lambda c: bootstrap_ratio_ci(current, base, confidence=c))
    intervals = [ci(c)[1:] for c in (0.5, 0.8, 0.95, 0.99)]
    for (lo_in, hi_in), (lo_out, hi_out) in zip(intervals, intervals[1:]):
        assert lo_out <= lo_in <= hi_in <= hi_out
    assert intervals[0][1] - intervals[0][0] < intervals[-1][1] - intervals[-1][0]


@pytest.mark.parametrize("which", ["median", "ratio"])
def test_same_seed_same_interval_other_seed_another(which):
    rng = np.random.default_rng(5)
    base, current = rng.lognormal(0, SIGMA, 24), rng.lognormal(0.2, SIGMA, 24)

    def ci(seed, resamples=2000):
        if which == "median":
            return bootstrap_median_ci(base, seed=seed, resamples=resamples)
        return bootstrap_ratio_ci(current, base, seed=seed, resamples=resamples)

    # same inputs, same seed, same process and code path: identical, bit for bit
    assert ci(7) == ci(7) and ci(0) == ci(0)
    assert len({ci(seed)[0] for seed in range(10)}) == 1  # the point estimate does not depend on the seed
    # The ends of a median's bootstrap interval are (interpolated) order statistics of the sample,
    # so with many resamples seeds often agree on them; with 200 resamples they generally do
    # not (10 distinct intervals of 10 seeds, for both functions, when written).
    assert len({ci(seed)[1:] for seed in range(10)}) > 1
    few = {ci(seed, resamples=200)[1:] for seed in range(10)}
    assert len(few) >= 8, f"10 seeds gave only {len(few)} different intervals"
