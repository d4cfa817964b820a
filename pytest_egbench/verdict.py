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
* **many metrics in one A/B run** (``--egbench-ref``): the latency and throughput p-values of the
  whole run are adjusted together (:func:`holm_adjusted`) before they are compared with alpha,
  so that unchanged code fails a run with probability about alpha however many metrics it has.

What the samples are compared with is a :class:`Reference`, carried by every :class:`Verdict` as
data (its kind, label, revision and run ids): a saved baseline's runs (:attr:`RefKind.BASELINE`),
this run's interleaved control rounds (:attr:`RefKind.CONTROL`, an ``--egbench-inject`` run on a
machine without a baseline), the processes of an A/B revision on this machine
(:attr:`RefKind.AB`, ``--egbench-ref``), or a metric's saved history (:attr:`RefKind.HISTORY`,
room for the history issue). One judge (:func:`judge_runs`) hands each comparison to the check of
its metric kind (:data:`CHECKS`: one small class per kind, as pytest-benchmark has one class per
regression check); how the samples pair up (unpaired runs, paired rounds, paired processes) is
part of the comparison, not of the check. Which reference and which tolerance a metric gets is
decided in :meth:`pytest_egbench.session.EgbenchSession.judge` and
:func:`pytest_egbench.ab.judge_item`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .catalog import Kind, _StrEnum, parse_kind
from .stats import bootstrap_median_ci, bootstrap_ratio_ci, mann_whitney_u, summarize, wilcoxon_signed_rank

MIN_ROUNDS = 6
PASS, REGRESSION, IMPROVEMENT, NOISE_ONLY = "pass", "regression", "improvement", "pass (not significant)"
#: Neither a pass nor a failure: the reference cannot decide (the machine differs from the
#: baseline's runs, see :mod:`pytest_egbench.calibration`), or the settings of the run differ from
#: the baseline's (``max_new_tokens``, prompt...), so the numbers measure different work.
INCONCLUSIVE, SETTINGS_DIFFER = "inconclusive", "settings differ"
#: Default relative tolerance of a same-machine A/B comparison (``--egbench-ref``): both sides run
#: on this machine, interleaved, so the drift between machines and between hours cancels; what
#: remains is the spread between processes (docs/machines.md#same-machine-ab; tools/ab_study.py).
AB_TOLERANCE = 0.03


class RefKind(_StrEnum):
    """What a :class:`Reference` is."""

    BASELINE = "baseline"
    CONTROL = "control"
    AB = "ab"
    HISTORY = "history"


@dataclass(frozen=True)
class Reference:
    """What a metric's samples are compared with, as data.

    ``kind``: :class:`RefKind`; ``label``: the baseline's fingerprint name, or the A/B revision as
    given and resolved (``REV main~1 (abc1234)``); ``revision``: the commit, when known;
    ``run_ids``: the saved runs compared with (baseline, history).
    """

    kind: RefKind
    label: str = ""
    revision: str | None = None
    run_ids: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How messages name it: ``baseline``, ``control (this run's interleaved unchanged
        rounds)``, ``REV abc1234 on this machine``, ``history <label>``."""
        if self.kind is RefKind.CONTROL:
            return "control (this run's interleaved unchanged rounds)"
        if self.kind is RefKind.AB:
            return f"{self.label} on this machine"
        if self.kind is RefKind.HISTORY:
            return f"history {self.label}".strip()
        return "baseline"

    @property
    def against(self) -> str:
        """How a failure names it: ``baseline <fingerprint>``, ``this run's control rounds``,
        the A/B label."""
        if self.kind is RefKind.CONTROL:
            return "this run's control rounds"
        if self.kind is RefKind.BASELINE:
            return f"baseline {self.label}".strip()
        return self.label or self.name

    @property
    def resave_hint(self) -> str:
        """What to do about an improvement: add runs to a baseline (nothing against the others)."""
        if self.kind is not RefKind.BASELINE:
            return ""
        return "; add runs with --egbench-save (the baseline keeps its last 5 runs; delete its file to start afresh)"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a results file: ``kind``, ``label``, ``revision``, ``run_ids``."""
        return {"kind": str(self.kind), "label": self.label, "revision": self.revision, "run_ids": list(self.run_ids)}


#: The reference of a comparison with a saved baseline, when no label is needed.
BASELINE_REFERENCE = Reference(RefKind.BASELINE)
#: The reference of an ``--egbench-inject`` run judged against its own control rounds.
CONTROL_REFERENCE = Reference(RefKind.CONTROL)


def ab_reference(label: str, revision: str | None = None) -> Reference:
    """The reference of a same-machine A/B run against revision ``label`` (``REV abc1234``)."""
    return Reference(RefKind.AB, label, revision)


@dataclass(frozen=True)
class Verdict:
    """The outcome for one metric. ``status`` is one of :data:`PASS`, :data:`REGRESSION`,
    :data:`IMPROVEMENT`, :data:`NOISE_ONLY`, :data:`INCONCLUSIVE`, :data:`SETTINGS_DIFFER`;
    ``message`` is the line shown to the user; ``change`` the relative (absolute for rates)
    change, ``p`` the test's p-value, ``warning`` why the test could not decide (too few rounds);
    ``reference`` what it was compared with."""

    metric: str
    status: str
    message: str
    change: float | None = None
    p: float | None = None
    warning: str | None = None
    reference: Reference = field(default=BASELINE_REFERENCE)


@dataclass(frozen=True)
class Comparison:
    """One metric's samples against its reference's.

    ``reference_runs``/``current_runs``: one list of samples per run (a baseline's saved runs
    against this run's one; a control run against this run's; A/B: one per process, the i-th of
    each side run next to each other). ``paired``: ``current_runs[i][j]`` was measured next to
    ``reference_runs[i][j]`` (control rounds, A/B processes), so latency and throughput are judged
    by the per-pair ratios. ``tolerance``: relative (0.05 = 5 %); ``tolerance_abs``: for rates;
    ``alpha``: significance level.
    """

    name: str
    kind: Kind
    unit: str
    reference_runs: Sequence[Sequence[float]]
    current_runs: Sequence[Sequence[float]]
    reference: Reference
    tolerance: float
    tolerance_abs: float
    alpha: float
    paired: bool = False
    #: ``(Holm-adjusted p, comparisons in the family)`` when this comparison is one of a run's
    #: family of tests (an A/B run's speed metrics): significance is then judged on the adjusted p
    family: tuple[float, int] | None = None

    @property
    def reference_pooled(self) -> list[float]:
        return [v for run in self.reference_runs for v in run]

    @property
    def current_pooled(self) -> list[float]:
        return [v for run in self.current_runs for v in run]

    def verdict(self, status: str, message: str, change: float | None = None, p: float | None = None, warning: str | None = None) -> Verdict:
        return Verdict(self.name, status, message, change, p, warning, self.reference)

    def head(self) -> str:
        """``name: reference median [IQR, n], current median [IQR, n]``."""
        base, cur = summarize(self.reference_pooled), summarize(self.current_pooled)
        runs = len(self.reference_runs)
        if self.reference.kind is RefKind.AB:
            of_runs = f" in {runs} processes"
        else:
            of_runs = f" over {runs} runs" if runs > 1 else ""
        return f"{self.name}: {self.reference.name} {_fmt(base.median, self.unit)} [IQR {_fmt(base.iqr, self.unit)}, n={base.n}{of_runs}], current {_fmt(cur.median, self.unit)} [IQR {_fmt(cur.iqr, self.unit)}, n={cur.n}]"


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e3:.4g} ms"
    if unit == "bytes":
        return f"{value:.0f} B"
    return f"{value:.4g} {unit}" if unit not in ("ratio", "") else f"{value:.4g}"


def run_spread(runs: Sequence[Sequence[float]]) -> float:
    """Largest ``|median(run) / median(all runs pooled) - 1|``; 0 for a single run."""
    if len(runs) < 2:
        return 0.0
    pooled = summarize([v for run in runs for v in run]).median
    if pooled == 0:
        return 0.0
    return max(abs(summarize(run).median / pooled - 1) for run in runs)


class Check(Protocol):
    """The regression check of one metric kind."""

    def __call__(self, c: Comparison) -> Verdict: ...


class InfoCheck:
    """Figures about the tool itself: stored, never gated."""

    def __call__(self, c: Comparison) -> Verdict:
        return c.verdict(PASS, f"{c.head()}: informational, not gated")


class ExactCheck:
    """Every current sample equals the reference's one value."""

    def __call__(self, c: Comparison) -> Verdict:
        base, cur = sorted(set(c.reference_pooled)), sorted(set(c.current_pooled))
        if cur == base and len(cur) == 1:
            return c.verdict(PASS, f"{c.head()}: equal")
        return c.verdict(REGRESSION, f"{c.head()}: exact metric changed (baseline values {base}, current {cur})")


class MemoryCheck:
    """The median grew by more than the relative tolerance; no test (one run's samples are
    usually identical)."""

    def __call__(self, c: Comparison) -> Verdict:
        base, cur = summarize(c.reference_pooled).median, summarize(c.current_pooled).median
        change = (cur - base) / base if base else 0.0
        text = f"{c.head()}, change {change:+.1%} (tolerance {c.tolerance:.1%})"
        if change > c.tolerance:
            return c.verdict(REGRESSION, f"{text}: more memory", change)
        return c.verdict(IMPROVEMENT if change < -c.tolerance else PASS, text, change)


class RateCheck:
    """The median dropped by more than the absolute tolerance (higher is better)."""

    def __call__(self, c: Comparison) -> Verdict:
        change = summarize(c.current_pooled).median - summarize(c.reference_pooled).median
        text = f"{c.head()}, change {change:+.4f} (absolute tolerance {c.tolerance_abs:.4f})"
        if change < -c.tolerance_abs:
            return c.verdict(REGRESSION, text, change)
        if change > c.tolerance_abs:
            return c.verdict(IMPROVEMENT, f"{text}: improved{c.reference.resave_hint}", change)
        return c.verdict(PASS, text, change)


@dataclass(frozen=True)
class _Shift:
    """How far current moved from the reference, and how sure that is."""

    change: float
    low: float
    high: float
    test: str
    p: float
    of_change: str = ""
    per_pair: str = ""
    #: whether the test can reach p < alpha at all; else ``shortfall`` says why
    enough: bool = True
    shortfall: str = ""
    #: A/B: every process pair moved the same way
    agree: bool = True


class SpeedCheck:
    """Latency (lower is better) or throughput (higher is better): a regression when the change
    is beyond the tolerance the wrong way *and* a one-sided test says p < alpha (module
    docstring). Unpaired: change of the medians, Mann-Whitney U, tolerance raised to the
    reference's :func:`run_spread`. Paired: median of the per-pair ratios, Wilcoxon signed-rank;
    with several process pairs (A/B), each pair's median ratio must also move the same way."""

    def __init__(self, lower_is_better: bool) -> None:
        self.lower_is_better = lower_is_better

    def __call__(self, c: Comparison) -> Verdict:
        base, current = c.reference_pooled, c.current_pooled
        if c.paired and (len(c.reference_runs) != len(c.current_runs) or any(len(a) != len(b) for a, b in zip(c.reference_runs, c.current_runs))):
            raise ValueError(
                f"{c.name}: a paired comparison needs reference runs as long as the current ones, got {[len(r) for r in c.reference_runs]} and {[len(r) for r in c.current_runs]}"
            )
        if c.reference.kind is RefKind.AB and (not base or min(base) <= 0 or min(current) <= 0):
            raise ValueError(f"{c.name}: an A/B comparison needs positive rounds on both sides, got {len(base)} reference and {len(current)} current")
        if summarize(base).median == 0:
            return c.verdict(PASS, f"{c.head()}: {c.reference.name} median is 0, nothing to compare")
        if c.paired and min(base) <= 0:
            return c.verdict(PASS, f"{c.head()}: {c.reference.name} has a value <= 0, no ratio to compare")
        shift = self._paired(c) if c.paired else self._unpaired(c)
        return self._decide(c, shift)

    def _worse(self, change: float) -> float:
        return change if self.lower_is_better else -change

    def _one_sided(self, change: float, ref: Sequence[float], cur: Sequence[float]) -> tuple[Sequence[float], Sequence[float]]:
        """(slower, faster) for the one-sided test in the direction of ``change``."""
        return (cur, ref) if (self._worse(change) > 0) == self.lower_is_better else (ref, cur)

    def _unpaired(self, c: Comparison) -> _Shift:
        base, cur = summarize(c.reference_pooled), summarize(c.current_pooled)
        change = (cur.median - base.median) / base.median
        p = mann_whitney_u(*self._one_sided(change, c.reference_pooled, c.current_pooled)).p
        _, low, high = bootstrap_ratio_ci(c.current_pooled, c.reference_pooled, resamples=1000)
        n = min(base.n, cur.n)
        shortfall = f"only {n} rounds on one side (< {MIN_ROUNDS}): the Mann-Whitney test cannot reach p < {c.alpha}"
        return _Shift(change, low, high, "Mann-Whitney", p, enough=n >= MIN_ROUNDS, shortfall=shortfall)

    def _paired(self, c: Comparison) -> _Shift:
        ref, cur = c.reference_pooled, c.current_pooled
        ratio, low, high = bootstrap_median_ci([b / a for a, b in zip(ref, cur)], resamples=1000)
        change = ratio - 1
        p = wilcoxon_signed_rank(*self._one_sided(change, ref, cur)).p
        if c.reference.kind is not RefKind.AB:
            shortfall = f"only {len(cur)} pairs: the Wilcoxon test cannot reach p < {c.alpha}"
            return _Shift(
                change, low, high, "Wilcoxon signed-rank", p, f" (median of {len(cur)} paired ratios)", enough=2.0 ** -len(cur) < c.alpha, shortfall=shortfall
            )
        # each pair's own median of its per-round ratios: the pooled change's statistic, per pair
        # (a ratio of the two medians would drop the pairing: one process with a slow stretch of
        # rounds read -6.9 % against +16.9 % paired, in a 20 % slower decode on the 2-CPU VM)
        per_pair = [summarize([y / x for x, y in zip(a, b)]).median - 1 for a, b in zip(c.reference_runs, c.current_runs)]
        agree = all(x > 0 for x in per_pair) or all(x < 0 for x in per_pair)
        pairs = ", per process pair " + ", ".join(f"{x:+.1%}" for x in per_pair)
        return _Shift(change, low, high, "Wilcoxon signed-rank", p, f" (median of {len(cur)} paired rounds)", pairs, agree=agree)

    def _decide(self, c: Comparison, s: _Shift) -> Verdict:
        tolerance = c.tolerance
        spread = run_spread(c.reference_runs) if not c.paired else 0.0
        if spread > tolerance:
            tolerance = spread
        worse = self._worse(s.change)
        warning = None if s.enough else f"{c.name}: {s.shortfall}; judged by the {tolerance:.0%} tolerance alone"
        widened = ", raised to the baseline's run-to-run spread" if spread >= tolerance and spread > 0 else ""
        p, corrected = s.p, ""
        if c.family is not None:
            p, corrected = c.family[0], f", Holm-adjusted p={c.family[0]:.3g} over {c.family[1]} comparisons"
        text = f"{c.head()}, change {s.change:+.1%}{s.of_change} [95% CI {s.low - 1:+.1%} to {s.high - 1:+.1%}]{s.per_pair}, one-sided {s.test} p={s.p:.3g}{corrected} (tolerance {tolerance:.1%}{widened}, alpha {c.alpha})"
        verdict = lambda status, message: c.verdict(status, message, s.change, s.p, warning)  # noqa: E731
        if abs(worse) <= tolerance:
            return verdict(PASS, text)
        if s.enough and p >= c.alpha:
            return verdict(NOISE_ONLY, f"{text}: beyond the tolerance but not significant")
        if not s.agree:
            return verdict(NOISE_ONLY, f"{text}: beyond the tolerance but the process pairs disagree on the direction")
        if worse > 0:
            return verdict(REGRESSION, f"{text}: {'slower' if self.lower_is_better else 'lower throughput'}")
        if c.reference.kind is RefKind.AB:
            return verdict(IMPROVEMENT, f"{text}: faster than the reference")
        return verdict(IMPROVEMENT, f"{text}: improved beyond the tolerance{c.reference.resave_hint}")


#: One regression check per metric kind.
CHECKS: dict[Kind, Check] = {
    Kind.LATENCY: SpeedCheck(lower_is_better=True),
    Kind.THROUGHPUT: SpeedCheck(lower_is_better=False),
    Kind.EXACT: ExactCheck(),
    Kind.RATE: RateCheck(),
    Kind.MEMORY: MemoryCheck(),
    Kind.INFO: InfoCheck(),
}


def judge_runs(
    name: str,
    kind: str,
    unit: str,
    reference_runs: Sequence[Sequence[float]],
    current_runs: Sequence[Sequence[float]],
    *,
    reference: Reference,
    tolerance: float,
    tolerance_abs: float,
    alpha: float,
    paired: bool = False,
    family: tuple[float, int] | None = None,
) -> Verdict:
    """The judge: the :class:`Comparison` of one metric, handed to the check of its kind
    (:data:`CHECKS`). Arguments as in :class:`Comparison`. Raises ``ValueError`` for an unknown
    ``kind`` (naming the allowed ones), empty samples, a paired comparison whose runs do not
    match in number and length, or an A/B comparison with rounds <= 0."""
    k = parse_kind(kind, name)
    if not any(reference_runs) or not any(current_runs):
        raise ValueError(f"{name}: nothing to compare (empty samples)")
    c = Comparison(name, k, unit, reference_runs, current_runs, reference, tolerance, tolerance_abs, alpha, paired, family)
    return CHECKS[k](c)


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
    reference: Reference = BASELINE_REFERENCE,
    paired: bool = False,
) -> Verdict:
    """:func:`judge_runs` of this run's ``current`` samples (one run) against ``baseline_runs``
    (a baseline's saved runs; a control comparison's one run). ``paired``: ``current[i]`` was
    measured next to ``baseline_runs[0][i]`` (interleaved control rounds), so that a drift of the
    machine that moves both rounds of a pair cancels; raises ``ValueError`` when there is not
    exactly one reference run as long as ``current``."""
    return judge_runs(
        name, kind, unit, baseline_runs, [current], reference=reference, tolerance=tolerance, tolerance_abs=tolerance_abs, alpha=alpha, paired=paired
    )


def judge_ab(
    name: str,
    kind: str,
    unit: str,
    reference_runs: Sequence[Sequence[float]],
    current_runs: Sequence[Sequence[float]],
    *,
    reference: Reference,
    tolerance: float,
    tolerance_abs: float,
    alpha: float,
    family: tuple[float, int] | None = None,
) -> Verdict:
    """:func:`judge_runs` of a same-machine A/B run (``--egbench-ref``): ``reference_runs[i]``
    and ``current_runs[i]`` are the steady rounds of the i-th pair of processes; latency and
    throughput are paired round by round (each pair cut to its shorter side). The change is the
    median of the per-round ratios over every pair; a regression (or improvement) needs, besides
    the change beyond ``tolerance`` and p < ``alpha`` (the ``family``'s Holm-adjusted p when
    given, see :func:`holm_adjusted`), every process pair's median ratio on the same side of 1,
    so that one odd process cannot decide alone. Other kinds are judged on the reference's runs
    as a baseline's."""
    if not isinstance(CHECKS[parse_kind(kind, name)], SpeedCheck):
        return judge_runs(name, kind, unit, reference_runs, current_runs, reference=reference, tolerance=tolerance, tolerance_abs=tolerance_abs, alpha=alpha)
    pairs = [(list(a[: min(len(a), len(b))]), list(b[: min(len(a), len(b))])) for a, b in zip(reference_runs, current_runs)]
    ref, cur = [a for a, _ in pairs], [b for _, b in pairs]
    if not any(ref):
        raise ValueError(f"{name}: an A/B comparison needs positive rounds on both sides, got 0 reference and {sum(map(len, cur))} current")
    return judge_runs(
        name, kind, unit, ref, cur, reference=reference, tolerance=tolerance, tolerance_abs=tolerance_abs, alpha=alpha, paired=True, family=family
    )


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: with the ``m`` p-values sorted
    ascending, ``adjusted(i) = max over j <= i of min(1, (m - j + 1) * p(j))`` (1-based). Rejecting
    every hypothesis whose adjusted p is below alpha keeps the probability of rejecting any true
    one at most alpha, whatever the dependence between the tests (Holm 1979, "A simple
    sequentially rejective multiple test procedure", Scand. J. Statist. 6, 65-70). ``ValueError``
    for a p-value outside [0, 1]."""
    if any(not 0.0 <= p <= 1.0 for p in pvalues):
        raise ValueError(f"p-values must lie in [0, 1], got {[p for p in pvalues if not 0.0 <= p <= 1.0]}")
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
