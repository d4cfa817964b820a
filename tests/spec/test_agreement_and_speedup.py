"""Output agreement (never called acceptance) and the Leviathan et al. 2023 speed-up, by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_egbench.metrics.agreement import METRIC_NAME, output_agreement
from pytest_egbench.metrics.speedup import expected_tokens_per_step, measured_speedup, predicted_speedup


def test_agreement_is_named_agreement():
    assert METRIC_NAME == "output_agreement" and "accept" not in METRIC_NAME


def test_agreement_position_wise():
    a = output_agreement([5, 6, 7, 8], [5, 9, 7, 8])
    assert (a.matches, a.positions, a.common_prefix, a.rate) == (3, 4, 1, 0.75)


def test_shared_bos_is_not_a_free_match():
    a = output_agreement([1, 5, 6], [1, 7, 8], bos_id=1)
    assert (a.matches, a.positions, a.rate) == (0, 2, 0.0)
    # without bos_id the caller promised generated tokens only: a leading 1 is then a real token
    assert output_agreement([1, 5], [1, 7]).matches == 1


def test_missing_positions_disagree():
    a = output_agreement([5, 6, 7], [5])
    assert (a.matches, a.positions, a.rate) == (1, 3, 1 / 3)
    assert output_agreement([], []).rate == 0.0


def test_agreement_rejects_non_integers():
    with pytest.raises(TypeError):
        output_agreement([1.0], [1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=20), st.lists(st.integers(0, 5), max_size=20))
def test_agreement_bounds_and_symmetry(a, b):
    x, y = output_agreement(a, b), output_agreement(b, a)
    assert x == y
    assert 0 <= x.common_prefix <= x.matches <= x.positions
    assert output_agreement(a, a).rate == (1.0 if a else 0.0)


def test_predicted_speedup_by_hand():
    # alpha 0.8, gamma 4, c 0.1: (1 - 0.8^5) / (0.2 * 1.4) = 0.67232 / 0.28
    assert predicted_speedup(0.8, 4, 0.1) == pytest.approx(0.67232 / 0.28)
    assert expected_tokens_per_step(0.8, 4) == pytest.approx(3.3616)
    # alpha = 1: every proposal accepted, gamma + 1 tokens per step
    assert predicted_speedup(1.0, 3, 0.5) == pytest.approx(4 / 2.5)
    # alpha = 0: one token per step, draft time wasted
    assert predicted_speedup(0.0, 5, 0.2) == pytest.approx(1 / 2)
    # free draft: speed-up is the expected tokens per step
    assert predicted_speedup(0.5, 2, 0.0) == pytest.approx(1.75)


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 1), st.integers(1, 8))
def test_expected_tokens_bounded_and_continuous_at_one(alpha, gamma):
    assert 1.0 <= expected_tokens_per_step(alpha, gamma) <= gamma + 1 + 1e-9
    assert expected_tokens_per_step(1 - 1e-9, gamma) == pytest.approx(gamma + 1, rel=1e-6)


@pytest.mark.parametrize(("alpha", "gamma", "c"), [(-0.1, 1, 0.1), (1.1, 1, 0.1), (math.nan, 1, 0.1), (0.5, -1, 0.1), (0.5, 1, -1.0), (0.5, 1, math.inf)])
def test_bad_inputs(alpha, gamma, c):
    with pytest.raises(ValueError):
        predicted_speedup(alpha, gamma, c)


def test_measured_speedup():
    assert measured_speedup(20.0, 10.0) == 2.0
    with pytest.raises(ValueError):
        measured_speedup(0.0, 1.0)
