"""Summaries: hand-computed quartiles, pytest-benchmark's definitions, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_egbench.stats import benchmark_stats, summarize

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
    for key in ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers", "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations", "data"):
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
