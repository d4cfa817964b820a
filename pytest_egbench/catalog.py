"""What a metric can be, in one place: its kind, its unit, and the metrics derived from a stage
timer's rounds. Standard library only (plain ``pytest`` loads it).

* :class:`Kind` -- how a metric is judged (:mod:`pytest_egbench.verdict` has one check per kind).
  :func:`check_metric` is the gate every metric passes where it enters (``egbench_record``, a
  baseline file): an unknown kind, a unit that does not fit the kind, or a value out of the kind's
  range raises ``ValueError`` naming the metric and what is allowed.
* :data:`DERIVED` -- the derived metrics (``total``, ``ttft``, ``tpot``, the tokens/s), each
  declared once with its unit, kind, the stages it is made of, its row title in the stage table
  and how it is computed (:func:`derive`). Formulas: docs/design.md#ttft-and-tpot (TTFT ends with
  prefill; TPOT = decode time / tokens produced in decode).

**Alternative stages.** Some benchmarks time stages that are not parts of one pipeline but
alternatives to each other (acceptance: draft decode, target decode, speculative decoding at each
gamma; parallel prefill: the end-to-end runs beside their parts). Their sum means nothing, so a
benchmark says so with ``@pytest.mark.egbench(alternatives=True)``: it then gets no derived metric
made of several stages (:attr:`Derived.sums_stages`: ``total``, ``ttft``) and the stage table shows
no ``share`` column for it (docs/judging.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class _StrEnum(str, Enum):
    """A ``str`` enum that prints as its value (``enum.StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Kind(_StrEnum):
    """How a metric is judged against its reference (:mod:`pytest_egbench.verdict`)."""

    #: seconds, lower is better: relative tolerance and a significance test
    LATENCY = "latency"
    #: per second, higher is better: as latency, the other way round
    THROUGHPUT = "throughput"
    #: counts that must equal the reference's (token counts, KV bytes)
    EXACT = "exact"
    #: a fraction in [0, 1] (acceptance, agreement): absolute tolerance, higher is better
    RATE = "rate"
    #: bytes that may move a little: relative tolerance, lower is better, no test
    MEMORY = "memory"
    #: figures about the tool itself: stored, never gated
    INFO = "info"


class Unit(_StrEnum):
    """The units the plugin computes with. ``egbench_record`` accepts other units for kinds that
    do not fix one (exact, rate, info: ``frames``, ``fraction``, ``x``...)."""

    SECONDS = "s"
    TOKENS = "tokens"
    TOKENS_PER_S = "tokens/s"
    BYTES = "bytes"
    RATIO = "ratio"


KINDS: tuple[str, ...] = tuple(k.value for k in Kind)
#: Per kind: the check every value must pass, and how to say it.
_RANGES: dict[Kind, tuple[Callable[[float], bool], str]] = {
    Kind.LATENCY: (lambda v: v > 0, "latencies must be > 0"),
    Kind.THROUGHPUT: (lambda v: v > 0, "throughputs must be > 0"),
    Kind.EXACT: (lambda v: v >= 0, "exact values must be >= 0"),
    Kind.MEMORY: (lambda v: v >= 0, "memory values must be >= 0"),
    Kind.RATE: (lambda v: 0 <= v <= 1, "rates must lie in [0, 1]"),
    Kind.INFO: (lambda v: True, ""),
}


def parse_kind(kind: object, what: str) -> Kind:
    """``kind`` as a :class:`Kind`. Raises ``ValueError`` naming ``what`` (the metric, the file
    entry) and the allowed kinds when ``kind`` is none of them."""
    try:
        return Kind(kind)
    except ValueError:
        raise ValueError(f"{what}: unknown kind {kind!r} (allowed: {', '.join(KINDS)})") from None


def unit_error(kind: Kind, unit: object) -> str | None:
    """Why ``unit`` does not fit ``kind``, or ``None``: latency is in seconds (``"s"``, the unit
    of pytest-benchmark's ``stats``), memory in ``"bytes"``, a throughput per second (``".../s"``);
    any other kind takes any non-empty unit name."""
    if not isinstance(unit, str) or not unit.strip():
        return f"unit must be a non-empty string, got {unit!r}"
    if kind is Kind.LATENCY and unit != Unit.SECONDS:
        return f"a latency is recorded in seconds (unit='s'), got unit {unit!r}"
    if kind is Kind.MEMORY and unit != Unit.BYTES:
        return f"a memory metric is recorded in bytes (unit='bytes'), got unit {unit!r}"
    if kind is Kind.THROUGHPUT and not unit.endswith("/s"):
        return f"a throughput is recorded per second (a unit such as 'tokens/s'), got unit {unit!r}"
    return None


def value_error(kind: Kind, values: Sequence[float]) -> str | None:
    """Why ``values`` cannot be samples of ``kind`` (not finite, or out of the kind's range), or
    ``None``."""
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        return f"holds {bad!r}: values must be finite numbers"
    ok, requirement = _RANGES[kind]
    bad = next((v for v in values if not ok(v)), None)
    return None if bad is None else f"holds {bad!r}: {requirement}"


def check_metric(what: str, kind: object, unit: object, values: Sequence[float]) -> Kind:
    """The gate where a metric enters: its kind as a :class:`Kind`. Raises ``ValueError`` naming
    ``what`` for an unknown kind (listing the allowed ones), a unit that does not fit the kind
    (:func:`unit_error`) or values out of its range (:func:`value_error`)."""
    k = parse_kind(kind, what)
    why = unit_error(k, unit) or value_error(k, values)
    if why:
        raise ValueError(f"{what} ({k}): {why}")
    return k


# --------------------------------------------------------------------------- derived metrics

#: ns durations per stage, token counts per stage, round index -> value
Compute = Callable[[Sequence[str], Mapping[str, Sequence[int]], Mapping[str, Sequence["int | None"]], int], float]


def _sum_of(metric: str) -> Compute:
    def compute(stages: Sequence[str], ns: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[int | None]], i: int) -> float:
        return float(sum(ns[s][i] for s in metric_stages(metric, stages)))

    return compute


def _per_token(stage: str) -> Compute:
    def compute(stages: Sequence[str], ns: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[int | None]], i: int) -> float:
        return ns[stage][i] / tokens[stage][i]  # type: ignore[operator]

    return compute


def _tokens_per_s(stage: str) -> Compute:
    def compute(stages: Sequence[str], ns: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[int | None]], i: int) -> float:
        return tokens[stage][i] / (ns[stage][i] * 1e-9)  # type: ignore[operator]

    return compute


@dataclass(frozen=True)
class Derived:
    """One metric derived from a stage timer's rounds.

    ``name``, ``unit``, ``kind``; ``title``: its row in the stage table; ``source``: the one stage
    it is made of, or ``None`` when it sums stages (:attr:`sums_stages`); ``upto``: for a sum, the
    last stage included (``None``: every stage); ``needs_tokens``: computed only when every round
    of ``source`` has a token count; ``scale``: from the computed value (ns, or tokens/s) to
    ``unit``; ``compute``: the value of one round (:data:`Compute`).
    """

    name: str
    unit: Unit
    kind: Kind
    title: str
    compute: Compute
    source: str | None = None
    upto: str | None = None
    needs_tokens: bool = False
    scale: float = 1.0

    @property
    def sums_stages(self) -> bool:
        """Whether the metric adds up several stages (meaningless when they are alternatives)."""
        return self.source is None

    def stages(self, stages: Sequence[str]) -> list[str]:
        """The stages of ``stages`` (pipeline order) that make up this metric; empty when the ones
        it needs are missing."""
        if self.source is not None:
            return [self.source] if self.source in stages else []
        if self.upto is None:
            return list(stages)
        return list(stages[: stages.index(self.upto) + 1]) if self.upto in stages else []

    def applies(self, stages: Sequence[str], tokens: Mapping[str, Sequence[int | None]]) -> bool:
        """Whether this metric can be computed from a timer with ``stages`` and ``tokens``."""
        if not self.stages(stages):
            return False
        return not self.needs_tokens or all(t for t in tokens.get(self.source or "", []))


DERIVED: tuple[Derived, ...] = (
    Derived("total", Unit.SECONDS, Kind.LATENCY, "total", _sum_of("total"), scale=1e-9),
    Derived("ttft", Unit.SECONDS, Kind.LATENCY, "TTFT", _sum_of("ttft"), upto="prefill", scale=1e-9),
    Derived("tpot", Unit.SECONDS, Kind.LATENCY, "TPOT", _per_token("decode"), source="decode", needs_tokens=True, scale=1e-9),
    Derived("prefill_tokens_per_s", Unit.TOKENS_PER_S, Kind.THROUGHPUT, "prefill tok/s", _tokens_per_s("prefill"), source="prefill", needs_tokens=True),
    Derived("decode_tokens_per_s", Unit.TOKENS_PER_S, Kind.THROUGHPUT, "decode tok/s", _tokens_per_s("decode"), source="decode", needs_tokens=True),
)
DERIVED_BY_NAME: dict[str, Derived] = {d.name: d for d in DERIVED}
DERIVED_NAMES: tuple[str, ...] = tuple(DERIVED_BY_NAME)


def metric_stages(metric: str, stages: Sequence[str]) -> list[str]:
    """The stages whose durations make up ``metric``, given a benchmark's ``stages`` in pipeline
    order: a stage is made of itself, a derived metric of :meth:`Derived.stages`. Empty for any
    other name (token counts, recorded figures), or when the stages it needs are not among
    ``stages``."""
    derived = DERIVED_BY_NAME.get(metric)
    if derived is not None:
        return derived.stages(stages)
    return [metric] if metric in stages else []


def derive(
    stages: Sequence[str], durations: Mapping[str, Sequence[int]], tokens: Mapping[str, Sequence[int | None]], *, alternatives: bool = False
) -> dict[str, list[float]]:
    """Every :data:`DERIVED` metric that applies, per round, in its computed unit (ns, ns/token,
    tokens/s; multiply by :attr:`Derived.scale` for its :attr:`Derived.unit`).

    ``durations[s]``: ns per round of stage ``s``; ``tokens[s]``: token counts per round (``None``
    where none). ``alternatives``: the stages are alternatives, not parts (module docstring), so
    the metrics that sum stages are left out.
    """
    n = len(next(iter(durations.values()), []))
    out: dict[str, list[float]] = {}
    for d in DERIVED:
        if (alternatives and d.sums_stages) or not d.applies(stages, tokens):
            continue
        out[d.name] = [d.compute(stages, durations, tokens, i) for i in range(n)]
    return out
