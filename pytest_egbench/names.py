"""The stage and metric names the suite can produce, in one place, and the rule for names users give.

Users name stages (``--egbench-inject STAGE=PCT``) and metrics (``--egbench-metric-tolerance
METRIC=PCT``, its ini key, and the keys of the ``egbench(tolerances={...})`` marker). A name that
nothing produces would do nothing, silently, so the plugin checks each one after collection, before
any benchmark runs, against what the collected benchmarks can produce (:class:`Producible`):

* **stages** (what ``--egbench-inject`` accepts): the pipeline stages :data:`STAGES`, which any
  benchmark may time, and the other stages a benchmark times with its ``stage_timer``, which it
  declares with ``@pytest.mark.egbench(stages=[...])``;
* **metrics with a relative tolerance** (what the tolerances accept): those stages, the metrics
  derived from a stage timer's rounds (:data:`DERIVED_METRICS`), and the metrics of kind latency,
  throughput or memory a benchmark records with ``egbench_record``, which it declares with
  ``egbench(metrics=[...])``. Token counts (``tokens.<stage>``) are exact metrics and rates
  (acceptance) take ``--egbench-tolerance-abs``: a relative tolerance would not apply to them.

The package's own benchmarks declare their names the same way. When a benchmark records a stage
or gated metric it did not declare, the summary says so (``plugin._record_and_judge``).

Standard library only: this module is loaded by plain ``pytest``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .catalog import DERIVED_NAMES

#: Benchmark stages in pipeline order (docs/design.md#stages); the model adapters' stages.
STAGES: tuple[str, ...] = ("load", "preprocess", "vision", "prefill", "decode")
#: Metrics derived from a stage timer's rounds (declared in :data:`pytest_egbench.catalog.DERIVED`).
DERIVED_METRICS: tuple[str, ...] = DERIVED_NAMES
#: Token counts of a stage are recorded as ``tokens.<stage>`` (exact).
TOKENS_PREFIX = "tokens."
#: What a stage name may look like.
STAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple, set, frozenset)):  # not a string, nor a one-shot generator
        raise ValueError(f"{key}= must be a list of names, got {value!r}")
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not STAGE_NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"{key}=: {', '.join(map(repr, bad))} is not a name")
    return names


@dataclass(frozen=True)
class Producible:
    """The stages and gated recorded metrics some benchmarks can produce; the pipeline stages
    and the derived metrics always count."""

    stages: tuple[str, ...] = STAGES
    metrics: tuple[str, ...] = ()

    @classmethod
    def declared(cls, markers: Iterable[Any]) -> Producible:
        """What one benchmark declares in its ``egbench`` markers (``stages=``, ``metrics=``, all
        of its markers together: module and function). Raises ``ValueError`` for a declaration
        that is not a list of names, or an ``alternatives=`` that is not ``True`` or ``False``."""
        stages: list[str] = list(STAGES)
        metrics: list[str] = []
        for mark in markers:
            if not isinstance(mark.kwargs.get("alternatives", False), bool):
                raise ValueError(f"alternatives= must be True or False, got {mark.kwargs['alternatives']!r}")
            stages += _names(mark.kwargs.get("stages", ()), "stages")
            metrics += _names(mark.kwargs.get("metrics", ()), "metrics")
        return cls(tuple(dict.fromkeys(stages)), tuple(dict.fromkeys(metrics)))

    def __or__(self, other: Producible) -> Producible:
        return Producible(tuple(dict.fromkeys(self.stages + other.stages)), tuple(dict.fromkeys(self.metrics + other.metrics)))

    @property
    def tolerance_metrics(self) -> tuple[str, ...]:
        """Every metric name a relative tolerance applies to."""
        return tuple(dict.fromkeys(self.stages + DERIVED_METRICS + self.metrics))

    def stage_error(self, name: str) -> str | None:
        """Why ``name`` is not a stage these benchmarks time, or ``None`` when it is one."""
        if name in self.stages:
            return None
        return f"no collected benchmark times a stage {name!r}{_close(name, self.stages)}: the stages they time are {', '.join(self.stages)} (a benchmark declares its other stages with @pytest.mark.egbench(stages=[...]))"

    def metric_error(self, name: str) -> str | None:
        """Why ``name`` is not a metric a relative tolerance applies to, or ``None`` when it is."""
        valid = self.tolerance_metrics
        if name in valid:
            return None
        if name.startswith(TOKENS_PREFIX):
            return f"{name!r} is a token count, an exact metric: it must equal the baseline, so no tolerance applies to it"
        return f"no collected benchmark produces a metric {name!r} that takes a tolerance{_close(name, valid)}: the metrics they produce are {', '.join(valid)} (a benchmark declares the ones it records with @pytest.mark.egbench(metrics=[...]))"

    def gate_error(self, name: str) -> str | None:
        """Why ``name`` is not a metric these benchmarks produce (a stage, a derived or declared
        metric, a stage's token count ``tokens.STAGE``), or ``None`` when it is one."""
        valid = self.tolerance_metrics
        if name in valid or (name.startswith(TOKENS_PREFIX) and name[len(TOKENS_PREFIX) :] in self.stages):
            return None
        return f"no collected benchmark produces a metric {name!r}{_close(name, valid)}: the metrics they produce are {', '.join(valid)} and the token counts tokens.STAGE (a benchmark declares the ones it records with @pytest.mark.egbench(metrics=[...]))"


def _close(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
