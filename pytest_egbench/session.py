"""Run-wide state: every measurement of one ``pytest --egbench`` run.

The plugin creates one :class:`EgbenchSession` in ``pytest_configure`` (only with ``--egbench``)
and keeps it in ``config.stash``. Fixtures are handed its ``add_*`` methods. Nothing here imports
torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .baselines import Baseline, Entry, find, fingerprint, fingerprint_name, load_dir, same_config
from .names import STAGES
from .options import Settings
from .timing import metric_stages
from .verdict import CONTROL_REFERENCE, Verdict, judge

if TYPE_CHECKING:
    from .timing import TimingResults

#: Units. Time metrics are stored in seconds, as pytest-benchmark's format requires.
SECONDS, TOKENS, TOKENS_PER_S, BYTES, RATIO = "s", "tokens", "tokens/s", "bytes", "ratio"
#: How a metric is judged against a baseline: latency (relative tolerance + test), exact, rate.
LATENCY, EXACT, THROUGHPUT, RATE, INFO, MEMORY = "latency", "exact", "throughput", "rate", "info", "memory"


@dataclass
class Measurement:
    """One metric of one benchmark: its steady-state samples and where they came from.

    ``samples`` are per steady round, in ``unit``. ``cold`` is the cold first round's value,
    ``warmup`` the warm-up rounds' values; neither enters statistics. ``control``: the values of
    the control rounds interleaved with the steady ones (``--egbench-inject`` runs only; stage and
    derived metrics), in ``unit``: the reference an injected run is judged against when this
    machine has no baseline entry (see :meth:`EgbenchSession.judge`).
    """

    nodeid: str
    test: str
    group: str
    metric: str
    unit: str
    kind: str
    samples: list[float]
    model: str | None = None
    stage: str | None = None
    cold: float | None = None
    warmup: list[float] = field(default_factory=list)
    control: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``test_name[params]::metric``, unique within a run."""
        return f"{self.test}::{self.metric}"

    @property
    def fullname(self) -> str:
        return f"{self.nodeid}::{self.metric}"


_DERIVED = {
    "total": (SECONDS, LATENCY, 1e-9),
    "ttft": (SECONDS, LATENCY, 1e-9),
    "tpot": (SECONDS, LATENCY, 1e-9),
    "prefill_tokens_per_s": (TOKENS_PER_S, THROUGHPUT, 1.0),
    "decode_tokens_per_s": (TOKENS_PER_S, THROUGHPUT, 1.0),
}


def measurements_from_timing(
    results: TimingResults,
    *,
    nodeid: str,
    test: str,
    group: str,
    model: str | None,
    params: Mapping[str, Any],
    extra_info: Mapping[str, Any],
) -> list[Measurement]:
    """Turn a stage timer's results into measurements.

    Each stage gives a latency in seconds; each stage with token counts gives ``tokens.<stage>``
    (exact); derived metrics (TTFT, TPOT, tokens/s, total) come from the same rounds. Stage and
    derived metrics carry their control rounds' values too (empty without control rounds).
    """
    common = dict(nodeid=nodeid, test=test, group=group, model=model, params=dict(params), extra_info=dict(extra_info))
    out: list[Measurement] = []
    for stage in results.stages:
        cold = results.cold.get(stage)
        out.append(
            Measurement(
                metric=stage,
                unit=SECONDS,
                kind=LATENCY,
                stage=stage,
                samples=[ns * 1e-9 for ns in results.steady[stage]],
                cold=None if cold is None else cold * 1e-9,
                warmup=[ns * 1e-9 for ns in results.warmup.get(stage, [])],
                control=[ns * 1e-9 for ns in results.control.get(stage, [])],
                **common,
            )
        )
        counts = results.tokens.get(stage, [])
        if counts and all(c is not None for c in counts):
            out.append(Measurement(metric=f"tokens.{stage}", unit=TOKENS, kind=EXACT, stage=stage, samples=[float(c) for c in counts], **common))
    cold_derived = results.derived_cold()
    control_derived = results.derived_control()
    for metric, values in results.derived().items():
        unit, kind, scale = _DERIVED[metric]
        cold = cold_derived.get(metric)
        out.append(
            Measurement(
                metric=metric,
                unit=unit,
                kind=kind,
                samples=[v * scale for v in values],
                cold=None if cold is None else cold * scale,
                control=[v * scale for v in control_derived.get(metric, [])],
                **common,
            )
        )
    return out


class EgbenchSession:
    """Collects measurements and the facts needed to interpret them.

    ``settings``: the resolved :class:`~pytest_egbench.options.Settings` (device-dependent
    defaults filled once the device is known). ``device``: the ``torch.device`` benchmarked.
    ``device_block``: the device fingerprint from
    :func:`pytest_egbench.machine.device_info`, set by the ``egbench_device`` fixture.
    """

    def __init__(self, settings: Settings, device: Any = None) -> None:
        self.settings = settings
        self.device = device
        self.measurements: list[Measurement] = []
        self.device_block: dict[str, Any] | None = None
        self.notes: list[str] = []  # improvements and warnings, printed in the summary
        self._machine: dict[str, Any] | None = None
        self._baselines: list[Baseline] | None = None

    # ------------------------------------------------------------------ machine and baselines

    @property
    def machine(self) -> dict[str, Any]:
        """``machine_info`` of this run (computed once)."""
        if self._machine is None:
            from .machine import machine_info

            self._machine = machine_info(self.device_block, self.run_info())
        return self._machine

    @property
    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.machine, self.settings.preset or "", self.settings.quant or "")

    @property
    def baselines(self) -> list[Baseline]:
        """Every baseline in ``--egbench-baseline-dir`` (read once; a malformed file raises
        :class:`~pytest_egbench.baselines.BaselineError`)."""
        if self._baselines is None:
            self._baselines = load_dir(self.settings.baseline_dir) if self.settings.baseline_dir else []
        return self._baselines

    def own_baseline(self) -> Baseline | None:
        """The baseline of this machine's fingerprint, if there is one."""
        return find(self.baselines, self.fingerprint)

    def judge(self, measurements: list[Measurement], tolerances: dict[str, float] | None = None) -> tuple[list[Verdict], list[str]]:
        """Verdicts for one test's measurements, and the metrics that had nothing to compare with.

        Latency, throughput and rate metrics are compared only with the baseline of this machine's
        fingerprint; exact metrics with that one, else with any baseline of the same preset and
        quantisation (token counts do not depend on the machine). ``tolerances``: per-metric
        relative tolerances from the test's ``egbench`` marker (they win over the ini/command line).

        With ``--egbench-inject``, a latency or throughput metric that this fingerprint's baseline
        lacks is judged against its own control rounds instead (as a baseline of one run, verdict
        reference :data:`~pytest_egbench.verdict.CONTROL_REFERENCE`, paired: each steady round
        with the control round just before it), if it has control samples
        and is made of an injected stage (:func:`~pytest_egbench.timing.metric_stages`: the stage,
        ``total``, and the derived metrics that include it); with the tolerance the user gave, else
        :data:`~pytest_egbench.options.CONTROL_TOLERANCE` (:meth:`Settings.control_tolerance_for`).
        A baseline entry, when there is one, is used as without injection and the control ignored.
        """
        s = self.settings
        fp = self.fingerprint
        own = find(self.baselines, fp)
        config_peers = [b for b in self.baselines if same_config(b.fingerprint, fp)]
        injected = {stage for stage, _ in s.inject}
        stages = [m.metric for m in measurements if m.stage == m.metric and m.unit == SECONDS]
        verdicts: list[Verdict] = []
        missing: list[str] = []
        for m in measurements:
            entry = own.entries.get(m.fullname) if own else None
            if entry is None and m.kind == EXACT:
                entry = next((b.entries[m.fullname] for b in config_peers if m.fullname in b.entries), None)
            if entry is not None:
                tol = (tolerances or {}).get(m.metric, s.tolerance_for(m.metric))
                verdicts.append(judge(m.metric, m.kind, m.unit, entry.runs, m.samples, tolerance=tol, tolerance_abs=s.tolerance_abs, alpha=s.pvalue))
            elif m.control and m.kind in (LATENCY, THROUGHPUT) and injected.intersection(metric_stages(m.metric, stages)):
                tol = (tolerances or {}).get(m.metric, s.control_tolerance_for(m.metric))
                verdicts.append(judge(m.metric, m.kind, m.unit, [m.control], m.samples, tolerance=tol, tolerance_abs=s.tolerance_abs, alpha=s.pvalue, reference=CONTROL_REFERENCE, paired=True))
            else:
                missing.append(m.metric)
        return verdicts, missing

    def baseline_entries(self) -> dict[str, Entry]:
        """This run's measurements as baseline entries, keyed by full name."""
        return {
            m.fullname: Entry(m.metric, m.unit, m.kind, [list(m.samples)], m.model, m.stage, _jsonable(m.params))
            for m in self.measurements
        }

    def fingerprint_name(self) -> str:
        return fingerprint_name(self.fingerprint)

    def add(self, measurement: Measurement) -> None:
        """Record one measurement, stamped with the device it was measured on
        (``extra_info["device"]``, kept when already there: a pytest-xdist worker's measurements
        keep their worker's device when merged). Raises ``ValueError`` for a metric recorded twice."""
        if self.device is not None:
            measurement.extra_info.setdefault("device", str(self.device))
        names = {m.fullname for m in self.measurements}
        if measurement.fullname in names:
            raise ValueError(f"metric {measurement.fullname} was recorded twice")
        self.measurements.append(measurement)

    def add_timing(self, results: TimingResults, **labels: Any) -> list[Measurement]:
        """Record every metric of a stage timer (see :func:`measurements_from_timing`)."""
        added = measurements_from_timing(results, **labels)
        for m in added:
            self.add(m)
        return added

    def to_wire(self) -> dict[str, Any]:
        """This session's measurements, notes and device as plain data (for pytest-xdist)."""
        from dataclasses import asdict

        return {
            "measurements": [{**asdict(m), "params": _jsonable(m.params), "extra_info": _plain(m.extra_info)} for m in self.measurements],
            "notes": list(self.notes),
            "device_block": self.device_block,
        }

    def merge_wire(self, wire: dict[str, Any]) -> None:
        """Add a worker's :meth:`to_wire` data. The first worker's device block describes the run;
        every worker's is kept under ``device_block["workers"]``."""
        for raw in wire["measurements"]:
            self.add(Measurement(**raw))
        # workers finish in any order: keep tables and files stable by ordering on the test id
        # (a stable sort, so each test's metrics keep their order)
        self.measurements.sort(key=lambda m: m.nodeid)
        self.notes.extend(wire["notes"])
        block = wire.get("device_block") or {}
        merged = self.device_block if self.device_block and self.device_block.get("workers") else {**(block or {}), "workers": []}
        merged["workers"].append(block)
        self.device_block = merged
        self._machine = None

    def run_info(self) -> dict[str, Any]:
        """Settings that make two runs comparable: preset, quant, rounds, warm-up, tokens."""
        s = self.settings
        return {
            "preset": s.preset,
            "quant": s.quant,
            "rounds": s.rounds,
            "warmup": s.warmup,
            "max_new_tokens": s.max_new_tokens,
            "inject": {stage: pct for stage, pct in s.inject},
        }

    def stage_order(self, stages: set[str]) -> list[str]:
        """Known stages in pipeline order, then free names alphabetically."""
        return [s for s in STAGES if s in stages] + sorted(stages - set(STAGES))


def _plain(value: Any) -> Any:
    """``value`` with every container made of dicts, lists and JSON scalars (others by ``str``)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameter values as JSON scalars (others by ``str``)."""
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in params.items()}

