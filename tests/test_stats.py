"""Summaries: hand-computed quartiles, pytest-benchmark's definitions, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_egbench.stats import benchmark_stats, outside_range, summarize

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_even_count_quartiles_are_medians_of_halves():
    s = summarize([7, 1, 3, 5, 2, 8])  # sorted: 1 2 3 | 5 7 8
    assert (s.median, s.q1, s.q3, s.iqr) == (4.0, 2.0, 7.0, 5.0)
    assert (s.min, s.max, s.n) == (1.0, 8.0, 6)


def test_odd_count_quartiles_method_3():
    # n = 5 -> n//4 = 1, n%4 = 1: q1 = 0.25*x[0] + 0.75*x[1], q3 = 0.75*x[3] + 0.25*x[4]
    s = summarize([10, 20, 30, 40, 50])
    assert s.q1 == pytest.approx(17.5) and s.q3 == pytest.approx(42.5) and s.median == 30


def test_single_sample():
    s = summarize([3.5])
    assert (s.median, s.q1, s.q3, s.stddev) == (3.5, 3.5, 3.5, 0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_empty_or_non_finite_is_refused(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_benchmark_stats_has_pytest_benchmark_fields_and_raw_data():
    block = benchmark_stats([0.002, 0.001, 0.003])
    for key in (
        "min",
        "max",
        "mean",
        "stddev",
        "rounds",
        "median",
        "iqr",
        "q1",
        "q3",
        "iqr_outliers",
        "stddev_outliers",
        "outliers",
        "ld15iqr",
        "hd15iqr",
        "ops",
        "total",
        "iterations",
        "data",
    ):
        assert key in block
    assert block["data"] == [0.002, 0.001, 0.003] and block["rounds"] == 3 and block["median"] == 0.002


@given(st.lists(finite, min_size=1, max_size=40), finite)
def test_shifting_every_sample_shifts_the_median_and_keeps_the_iqr(samples, shift):
    a, b = summarize(samples), summarize([x + shift for x in samples])
    assert b.median == pytest.approx(a.median + shift, abs=1e-6)
    assert b.iqr == pytest.approx(a.iqr, abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=40))
def test_quartiles_are_ordered_and_inside_the_range(samples):
    s = summarize(samples)
    tol = 1e-9 * max(1.0, abs(s.max), abs(s.min))
    assert s.min - tol <= s.q1 <= s.median + tol and s.median - tol <= s.q3 <= s.max + tol


# --------------------------------------------------------------------------- Mann-Whitney U

from pytest_egbench.stats import mann_whitney_u  # noqa: E402


def test_mwu_hand_computed_exact():
    # every x above every y: U = 3*3 = 9, and only 1 of the C(6,3) = 20 rankings is that extreme
    r = mann_whitney_u([4, 5, 6], [1, 2, 3])
    assert (r.u, r.method) == (9.0, "exact") and r.p == pytest.approx(1 / 20)
    # the mirror image: no evidence that x is larger
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]).p == pytest.approx(1.0)
    # one inversion: U = 8, P(U >= 8) = 2/20
    assert mann_whitney_u([3.5, 5, 6], [1, 2, 4]).p == pytest.approx(2 / 20)


def test_mwu_identical_samples_never_look_slower():
    r = mann_whitney_u([1.0] * 8, [1.0] * 8)
    assert r.p == 1.0 and r.method == "normal"


def test_mwu_empty_is_refused():
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


@given(
    st.lists(st.integers(0, 8), min_size=1, max_size=15),
    st.lists(st.integers(0, 8), min_size=1, max_size=15),
    st.booleans(),
)
@settings(deadline=None)  # the first call imports scipy
def test_mwu_matches_scipy(x, y, continuous):
    scipy_stats = pytest.importorskip("scipy.stats")
    if continuous:  # break ties deterministically so that the exact path is exercised
        x = [v + 0.001 * i for i, v in enumerate(x)]
        y = [v + 0.0005 + 0.001 * i for i, v in enumerate(y)]
    ours = mann_whitney_u(x, y)
    theirs = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="exact" if ours.method == "exact" else "asymptotic")
    assert ours.u == pytest.approx(theirs.statistic)
    assert ours.p == pytest.approx(theirs.pvalue, abs=1e-12)


@given(st.lists(finite, min_size=2, max_size=12), st.lists(finite, min_size=2, max_size=12))
def test_mwu_sides_are_complementary_without_ties(x, y):
    if set(x) & set(y) or len(set(x)) < len(x) or len(set(y)) < len(y):
        return
    greater, less = mann_whitney_u(x, y), mann_whitney_u(y, x)
    assert greater.u + less.u == len(x) * len(y)
    # exact distributions: P(U >= u) + P(U <= u - 1) = 1
    assert greater.p + less.p == pytest.approx(1 + _point(x, y), abs=1e-12)


def _point(x, y):
    """P(U = u observed), the overlap of the two one-sided tails."""
    from pytest_egbench.stats import _u_distribution

    u = int(mann_whitney_u(x, y).u)
    dist = _u_distribution(len(x), len(y))
    return dist[u] / sum(dist)


# --------------------------------------------------------------------------- bootstrap and verdict properties

from pytest_egbench.stats import bootstrap_ratio_ci  # noqa: E402
from pytest_egbench.verdict import PASS, REGRESSION, judge  # noqa: E402

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


def test_bootstrap_ci_brackets_a_clear_ratio():
    base = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 10.05, 9.95]
    ratio, low, high = bootstrap_ratio_ci([1.2 * x for x in base], base)
    assert ratio == pytest.approx(1.2) and low < 1.2 < high and low > 1.15 and high < 1.25
    assert bootstrap_ratio_ci([1.0, 2.0], [1.0, 2.0]) == bootstrap_ratio_ci([1.0, 2.0], [1.0, 2.0])  # seeded


def test_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([], [1.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [1.0], confidence=1.0)


@given(st.lists(positive, min_size=1, max_size=20))
@settings(deadline=None)
def test_bootstrap_interval_contains_the_point_for_identical_samples(samples):
    ratio, low, high = bootstrap_ratio_ci(samples, samples, resamples=200)
    assert ratio == 1.0 and low <= 1.0 <= high


KW = dict(tolerance=0.05, tolerance_abs=0.02, alpha=0.01)


@given(st.lists(positive, min_size=1, max_size=20))
def test_identical_samples_never_fail(samples):
    assert judge("m", "latency", "s", [samples], samples, **KW).status == PASS


@given(st.lists(st.floats(min_value=1.0, max_value=1.1), min_size=6, max_size=15), st.floats(min_value=1.2, max_value=3.0))
def test_verdict_is_symmetric(samples, factor):
    """Slower by a factor (every slow round above every fast one) is a regression; the same samples
    the other way round (the slow run as baseline) are an improvement, never a regression;
    throughput is judged the other way."""
    slow = [x * factor for x in samples]
    forward = judge("m", "latency", "s", [samples], slow, **KW)
    backward = judge("m", "latency", "s", [slow], samples, **KW)
    assert forward.status == REGRESSION and backward.status != REGRESSION
    assert judge("m", "throughput", "tokens/s", [slow], samples, **KW).status == REGRESSION


# --------------------------------------------------------------------------- warm-up check
from pytest_egbench.stats import unsettled  # noqa: E402


def test_rounds_still_getting_faster_are_unsettled():
    why = unsettled([30.0, 20.0], [18.0, 16.0, 15.0, 10.0, 10.0, 10.0])
    assert why is not None
    # first half median 16, second half 10: +60 %; last warm-up 20 against steady median 12.5
    assert "+60.0% above the last 3's" in why and "+60.0% against the steady median" in why
    assert "--egbench-warmup" in why


def test_flat_or_short_or_slowing_rounds_are_settled():
    assert unsettled([30.0], [10.0, 10.5, 9.8, 10.2, 10.1, 9.9]) is None
    assert unsettled([30.0], [20.0, 10.0, 10.0]) is None  # fewer than 4 rounds: no trend told
    assert unsettled([], [10.0, 10.0, 20.0, 20.0]) is None  # slower later is not a warm-up problem


def test_unsettled_threshold_is_the_boundary():
    steady = [11.0, 11.0, 10.0, 10.0]  # +10 % exactly
    assert unsettled([], steady, threshold=0.10) is None
    assert unsettled([], steady, threshold=0.09) is not None
    with pytest.raises(ValueError, match="threshold"):
        unsettled([], steady, threshold=-0.1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.1, 1e3), min_size=4, max_size=20), st.sampled_from([2.0**k for k in range(-10, 11)]))
def test_unsettled_does_not_depend_on_the_unit(samples, scale):
    # powers of two scale floats exactly, so the comparison at the threshold cannot round differently
    scaled = [x * scale for x in samples]
    assert (unsettled([], samples) is None) == (unsettled([], scaled) is None)


# --------------------------------------------------------------------------- Wilcoxon signed-rank
from pytest_egbench.stats import bootstrap_median_ci, wilcoxon_signed_rank  # noqa: E402


def test_wilcoxon_hand_computed():
    # differences +1, +2, -3, +4: W+ = 1 + 2 + 4 = 7; rank subsets summing to >= 7: {3,4}, {1,2,4},
    # {1,3,4}, {2,3,4}, {1,2,3,4}, so P(W+ >= 7) over the 16 sign patterns = 5/16
    r = wilcoxon_signed_rank([2, 4, 0, 8], [1, 2, 3, 4])
    assert r.u == 7 and r.method == "exact" and r.p == pytest.approx(5 / 16)
    assert wilcoxon_signed_rank([2] * 3, [2] * 3).p == 1.0  # every difference zero: no evidence
    with pytest.raises(ValueError, match="equal lengths"):
        wilcoxon_signed_rank([1, 2], [1])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 20).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0, 10).map(lambda v: round(v, 1)), min_size=n, max_size=n),
            st.lists(st.floats(0, 10).map(lambda v: round(v, 1)), min_size=n, max_size=n),
        )
    )
)
def test_wilcoxon_matches_scipy(pair):
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = pair
    if all(a == b for a, b in zip(x, y)):
        return
    mine = wilcoxon_signed_rank(x, y)
    ref = scipy_stats.wilcoxon(x, y, alternative="greater", zero_method="wilcox", method="exact" if mine.method == "exact" else "approx", correction=True)
    assert mine.p == pytest.approx(ref.pvalue, abs=1e-9)


def test_bootstrap_median_ci_brackets_the_median():
    med, low, high = bootstrap_median_ci([1.18, 1.2, 1.21, 1.19, 1.22, 1.2, 1.17, 1.2])
    assert med == pytest.approx(1.2) and low <= med <= high and high - low < 0.05


@pytest.mark.parametrize(
    ("value", "a", "b", "expected"),
    [
        (1696.1, 1662.3, 1689.5, 6.6),  # the H200 matmul: above the range by 6.6 us, not 20.2 from its middle
        (1696.1, 1689.5, 1662.3, 6.6),  # either order
        (1670.0, 1662.3, 1689.5, 0.0),  # inside
        (1662.3, 1662.3, 1689.5, 0.0),  # on an end
        (1650.0, 1662.3, 1689.5, -12.3),  # below: negative
        (5.0, 5.0, 5.0, 0.0),
    ],
)
def test_outside_range_is_the_signed_distance_from_the_interval(value, a, b, expected):
    assert outside_range(value, a, b) == pytest.approx(expected, abs=1e-9)
