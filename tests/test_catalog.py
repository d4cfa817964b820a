"""Metric kinds, units and derived metrics (pytest_egbench.catalog), checked against hand-computed
values and the definitions in docs/design.md#ttft-and-tpot."""

from __future__ import annotations

import pytest

from pytest_egbench.catalog import DERIVED, Kind, check_metric, derive

STAGES = ["load", "prefill", "decode"]
NS = {"load": [1000, 1100], "prefill": [2000, 2500], "decode": [3000, 6000]}
TOKENS = {"load": [None, None], "prefill": [4, 5], "decode": [3, 3]}


def test_derived_metrics_by_hand():
    d = derive(STAGES, NS, TOKENS)
    assert d["total"] == [6000.0, 9600.0]  # every stage
    assert d["ttft"] == [3000.0, 3600.0]  # load + prefill: TTFT ends with prefill
    assert d["tpot"] == [1000.0, 2000.0]  # decode ns / decode tokens
    assert d["decode_tokens_per_s"] == pytest.approx([1e6, 5e5])  # 3 tokens in 3 us, in 6 us
    assert d["prefill_tokens_per_s"] == pytest.approx([2e6, 2e6])  # 4 in 2 us, 5 in 2.5 us


def test_alternative_stages_get_no_sum():
    """Draft decode, target decode and speculative decoding are alternatives: their sum is no
    latency of anything, and neither is a TTFT summed over them."""
    d = derive(STAGES, NS, TOKENS, alternatives=True)
    assert "total" not in d and "ttft" not in d
    assert d["tpot"] == [1000.0, 2000.0]  # one stage's figures still mean what they say


def test_every_derived_metric_is_declared_once_with_a_kind_and_unit():
    names = [x.name for x in DERIVED]
    assert len(names) == len(set(names))
    for x in DERIVED:
        assert (x.kind, x.unit) in ((Kind.LATENCY, "s"), (Kind.THROUGHPUT, "tokens/s"))


@pytest.mark.parametrize(
    "kind, unit, values, problem",
    [
        ("latncy", "s", [1.0], "unknown kind 'latncy' (allowed: latency, throughput, exact, rate, memory, info)"),
        ("latency", "ms", [1.0], "a latency is recorded in seconds"),
        ("memory", "MiB", [1.0], "a memory metric is recorded in bytes"),
        ("throughput", "tokens", [1.0], "a throughput is recorded per second"),
        ("rate", "fraction", [1.5], "rates must lie in [0, 1]"),
        ("exact", "tokens", [float("nan")], "values must be finite"),
    ],
)
def test_a_bad_metric_is_refused_where_it_enters(kind, unit, values, problem):
    with pytest.raises(ValueError) as info:
        check_metric("egbench_record('x')", kind, unit, values)
    assert str(info.value).startswith("egbench_record('x')") and problem in str(info.value)


def test_a_good_metric_passes_as_its_kind():
    assert check_metric("m", "rate", "fraction", [0.0, 1.0]) is Kind.RATE
    assert check_metric("m", "info", "x", [-3.0]) is Kind.INFO  # info is never range-checked
