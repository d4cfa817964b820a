"""Run-wide state: every measurement of one ``pytest --egbench`` run.

The plugin creates one :class:`EgbenchSession` in ``pytest_configure`` (only with ``--egbench``)
and keeps it in ``config.stash``. Fixtures are handed its ``add_*`` methods. Nothing here imports
torch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .baselines import Baseline, Entry, RunRecord, find, fingerprint, fingerprint_name, load_dir, same_config
from .catalog import DERIVED_BY_NAME, Kind, Unit, metric_stages
from .names import STAGES
from .notes import Note
from .options import Settings
from .verdict import AB_TOLERANCE, CONTROL_REFERENCE, INCONCLUSIVE, SETTINGS_DIFFER, Reference, RefKind, Verdict, judge

if TYPE_CHECKING:
    from .timing import TimingResults

#: Units (:class:`~pytest_egbench.catalog.Unit`). Time metrics are stored in seconds, as
#: pytest-benchmark's format requires.
SECONDS, TOKENS, TOKENS_PER_S, BYTES, RATIO = Unit.SECONDS, Unit.TOKENS, Unit.TOKENS_PER_S, Unit.BYTES, Unit.RATIO
#: How a metric is judged (:class:`~pytest_egbench.catalog.Kind`, :mod:`pytest_egbench.verdict`).
LATENCY, EXACT, THROUGHPUT, RATE, INFO, MEMORY = Kind.LATENCY, Kind.EXACT, Kind.THROUGHPUT, Kind.RATE, Kind.INFO, Kind.MEMORY
#: Outcome of a metric that had nothing to be compared with (no baseline entry, no control rounds).
NOT_COMPARED = "not compared"
#: Outcome of a metric whose kind ``--egbench-gate`` leaves out: recorded and listed, never judged,
#: and not counted by ``--egbench-require-baseline`` (the user asked for no verdict).
NOT_GATED = "not gated"
#: Outcomes that are neither a pass nor a failure: listed in the summary, gated by
#: ``--egbench-require-baseline``.
UNJUDGED = frozenset({NOT_COMPARED, INCONCLUSIVE, SETTINGS_DIFFER})


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


#: Settings that must be equal for a baseline's numbers to measure the same work (rounds and
#: warm-up aside; preset, quantisation and runtime are in the fingerprint too).
COMPARED_SETTINGS = ("preset", "quant", "runtime", "max_new_tokens")


class SentToAb(NamedTuple):
    """A benchmark whose verdicts against the baseline were judged again by a same-machine A/B
    (plugin ``_confirm_on_this_machine``): whether it had regressed against the baseline, whether
    the A/B read a regression, and what it refuted, in words (``None``: nothing)."""

    nodeid: str
    regressed: bool
    confirmed: bool
    refuted: str | None


@dataclass(frozen=True)
class MachineCheck:
    """Outcome of :meth:`EgbenchSession.machine_check`: ``reason`` why latency cannot be judged
    against the baseline (``None``: it can), how many of the baseline's runs carried a
    calibration, and which of them match this machine."""

    reason: str | None
    calibrated_runs: int = 0
    #: ids of the baseline's runs measured on a machine like this one (``None``: no baseline)
    matching: frozenset[str] | None = None

    def runs_for(self, entry: Entry) -> list[list[float]]:
        """The runs of ``entry`` that latency may be judged against: those of :attr:`matching`."""
        if self.matching is None:
            return list(entry.runs)
        return [run for run, rid in zip(entry.runs, entry.run_ids) if rid in self.matching]


def measurements_from_timing(
    results: TimingResults,
    *,
    nodeid: str,
    test: str,
    group: str,
    model: str | None,
    params: Mapping[str, Any],
    extra_info: Mapping[str, Any],
    alternatives: bool = False,
) -> list[Measurement]:
    """Turn a stage timer's results into measurements.

    Each stage gives a latency in seconds; each stage with token counts gives ``tokens.<stage>``
    (exact); derived metrics (:data:`pytest_egbench.catalog.DERIVED`: TTFT, TPOT, tokens/s,
    total) come from the same rounds, without the sums of stages when ``alternatives`` (the
    benchmark's ``egbench(alternatives=True)``). Stage and derived metrics carry their control
    rounds' values too (empty without control rounds).
    """

    def labelled(**fields: Any) -> Measurement:
        """A measurement of this test, with its own copies of the parameters and extra info."""
        return Measurement(**fields, params=dict(params), extra_info=dict(extra_info), nodeid=nodeid, test=test, group=group, model=model)

    out: list[Measurement] = []
    for stage in results.stages:
        cold_ns = results.cold.get(stage)
        out.append(
            labelled(
                metric=stage,
                unit=SECONDS,
                kind=LATENCY,
                stage=stage,
                samples=[ns * 1e-9 for ns in results.steady[stage]],
                cold=None if cold_ns is None else cold_ns * 1e-9,
                warmup=[ns * 1e-9 for ns in results.warmup.get(stage, [])],
                control=[ns * 1e-9 for ns in results.control.get(stage, [])],
            )
        )
        counts = results.tokens.get(stage, [])
        known = [c for c in counts if c is not None]
        if counts and len(known) == len(counts):
            out.append(labelled(metric=f"tokens.{stage}", unit=TOKENS, kind=EXACT, stage=stage, samples=[float(c) for c in known]))
    cold_derived = results.derived_cold(alternatives=alternatives)
    control_derived = results.derived_control(alternatives=alternatives)
    for metric, values in results.derived(alternatives=alternatives).items():
        derived = DERIVED_BY_NAME[metric]
        cold = cold_derived.get(metric)
        out.append(
            labelled(
                metric=metric,
                unit=derived.unit,
                kind=derived.kind,
                samples=[v * derived.scale for v in values],
                cold=None if cold is None else cold * derived.scale,
                control=[v * derived.scale for v in control_derived.get(metric, [])],
            )
        )
    return out


class EgbenchSession:
    """Collects measurements and the facts needed to interpret them.

    ``settings``: the resolved :class:`~pytest_egbench.options.Settings` (device-dependent
    defaults filled once the device is known). ``device``: the ``torch.device`` benchmarked.
    ``device_block``: the device fingerprint from
    :func:`pytest_egbench.machine.device_info`, set by the ``egbench_device`` fixture.
    ``run_id``: this run's id (a fresh uuid4 hex), written to ``--egbench-json`` and to the
    baseline's run record, so that the same run is never added to a baseline twice.
    ``calibration``: an opaque description of the machine's speed during this run (or ``None``),
    carried into the results file and the run record.
    """

    def __init__(self, settings: Settings, device: Any = None) -> None:
        import uuid

        self.settings = settings
        self.run_id = uuid.uuid4().hex
        self.device = device
        self.measurements: list[Measurement] = []
        #: node id -> why it was skipped, for every test this run skipped (written to the results
        #: file, where an A/B's parent reads why a benchmark produced nothing in its processes)
        self.skipped: dict[str, str] = {}
        self.device_block: dict[str, Any] | None = None
        self.notes: list[str] = []  # facts about the run (A/B processes...), printed in the summary
        #: the notes issued as pytest warnings (:mod:`pytest_egbench.notes`), folded in the summary
        self.warned: list[Note] = []
        #: (warning class name, nodeid) of the egbench warnings pytest recorded, i.e. not filtered
        #: out; ``None`` when pytest's warnings plugin is off (then every note is shown)
        self.recorded: set[tuple[str, str]] | None = None
        #: metrics that got no pass/fail verdict: {"test", "metric", "kind", "status" (not compared,
        #: inconclusive, settings differ), "why"}; listed in the summary, gated by
        #: --egbench-require-baseline
        self.unjudged: list[dict[str, Any]] = []
        #: each measurement's entry in :attr:`unjudged` (by ``id``), for a later verdict to replace
        self._unjudged_of: dict[int, dict[str, Any]] = {}
        #: --egbench-ref: the reference checkout, then the A/B processes' sides (or the error that
        #: stopped them) and their samples by metric (see pytest_egbench.ab)
        self.ab_reference: Any = None
        self.ab_outcome: Any = None
        self.ab_runs: dict[str, Any] = {}
        #: an A/B run's speed metrics: ``{full name: (Holm-adjusted p, comparisons)}`` (:func:`pytest_egbench.ab.speed_family`)
        self.ab_family: dict[str, tuple[float, int]] | None = None
        #: node ids of the benchmarks an A/B ran a confirming pair for (:func:`~pytest_egbench.ab.unconfirmed`)
        self.ab_confirming: frozenset[str] = frozenset()
        #: the benchmarks sent to a same-machine A/B against the baseline's commit
        #: (``--egbench-fallback-ref``; plugin ``_confirm_on_this_machine``), in order
        self.baseline_confirmations: list[SentToAb] = []
        #: :func:`pytest_egbench.calibration.calibrate` of this run's device (``None`` until measured)
        self.calibration: dict[str, Any] | None = None
        self._machine: dict[str, Any] | None = None
        self._baselines: list[Baseline] | None = None
        self._machine_checks: dict[frozenset[str] | None, MachineCheck] = {}

    # ------------------------------------------------------------------ machine and baselines

    @functools.cached_property
    def nvml_gpu(self) -> int | str | None:
        """The physical GPU behind :attr:`device` as NVML and ``nvidia-smi`` name it
        (:func:`~pytest_egbench.machine.nvml_id`: they ignore ``CUDA_VISIBLE_DEVICES``); ``None``
        off CUDA."""
        if self.device is None or getattr(self.device, "type", None) != "cuda":
            return None
        from .machine import nvml_id

        return nvml_id(self.device)

    @property
    def machine(self) -> dict[str, Any]:
        """``machine_info`` of this run (computed once)."""
        if self._machine is None:
            from .machine import machine_info

            self._machine = machine_info(self.device_block, self.run_info())
        self._machine["egbench"]["calibration"] = self.calibration  # set after the machine may be read
        return self._machine

    @property
    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.machine, self.settings.preset or "", self.settings.quant or "", self.settings.runtime)

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

    def machine_check(self, probes: frozenset[str] | None = None) -> MachineCheck:
        """Which of this fingerprint's baseline runs were measured on a machine like this one
        on ``probes`` (``None``: all of them; computed once per set; see
        :mod:`pytest_egbench.calibration` and its :func:`~pytest_egbench.calibration.probes_for`).

        A baseline can hold runs from several hosts of one GPU type (leases differ from night to
        night); latency is judged only against the runs whose calibration matches this run's
        (:func:`~pytest_egbench.calibration.compare` finds no difference), listed in
        ``matching``. ``reason`` is ``None`` when at least one run matches (or there is no
        baseline), else why latency cannot be judged: the probes that differ, with figures, or
        that the baseline's runs (or this run) carry no calibration.
        """
        if probes not in self._machine_checks:
            self._machine_checks[probes] = self._check_machine(probes)
        return self._machine_checks[probes]

    def judged_probes(self) -> frozenset[str] | None:
        """The probes on which this machine must be like the baseline's runs for every latency and
        throughput the run gates against this fingerprint's baseline to be judged: the union of
        :func:`~pytest_egbench.calibration.probes_for` over the baseline's entries of those kinds
        left gated (``--egbench-gate``, ``--egbench-gate-exclude``); ``None`` (every probe) when
        one of them needs all, or without a baseline. What decides ``--egbench-fallback-ref``: a
        compiled-runtime run that gates only prefill and decode falls back to an A/B only where
        the GPU differs."""
        from .calibration import probes_for

        own = self.own_baseline()
        if own is None:
            return None
        needed: set[str] = set()
        for entry in own.entries.values():
            if entry.kind not in (LATENCY, THROUGHPUT) or self._left_out(entry.kind, entry.metric):
                continue
            probes = probes_for(entry.metric, self.settings.runtime)
            if probes is None:
                return None
            needed |= probes
        return frozenset(needed)

    def benchmarks_unlike_this_machine(self, nodeids: Sequence[str]) -> list[str]:
        """Of the benchmarks ``nodeids``, those whose latency and throughput entries in this
        fingerprint's baseline hold no run measured on a machine like this one, while other runs of
        the baseline match it (:meth:`machine_check` on every probe): each would be inconclusive
        against the baseline. ``[]`` without a baseline, where no run matches (the whole run is
        judged apart then), or with ``--egbench-ignore-machine``. A benchmark with no such entry is
        not listed (it is not compared, whatever the machine)."""
        own = self.own_baseline()
        check = self.machine_check(self.judged_probes())
        if own is None or check.reason or check.matching is None or self.settings.ignore_machine:
            return []
        held: dict[str, set[str]] = {}
        for name, entry in own.entries.items():
            if entry.kind in (LATENCY, THROUGHPUT):
                held.setdefault(name.rsplit("::", 1)[0], set()).update(entry.run_ids or [""])
        return [n for n in nodeids if n in held and not held[n] & check.matching]

    def _check_machine(self, probes: frozenset[str] | None) -> MachineCheck:
        from .calibration import compare, nearest_differences, only_probes

        own = self.own_baseline()
        if own is None:
            return MachineCheck(None)
        rev = (baseline_commit(own) or "REV")[:12]
        calibrated = [r for r in own.run_records_in_window() if isinstance(r.calibration, dict) and r.calibration.get("probes")]
        mine = only_probes(self.calibration, probes)
        if not self.calibration or not self.calibration.get("probes"):
            return MachineCheck("this run has no machine calibration, so nothing shows it is the machine of the baseline's runs")
        if not calibrated:
            return MachineCheck(
                f"the baseline's runs carry no machine calibration (saved before pytest-egbench measured machines), so nothing shows this is the same machine: re-save the baseline, or compare on this machine with --egbench-ref {rev}"
            )
        per_run = {r.id: compare(mine, [r.calibration])[0] for r in calibrated}
        matching = frozenset(rid for rid, diffs in per_run.items() if not diffs)
        if matching:
            return MachineCheck(None, len(calibrated), matching)
        diffs = nearest_differences(mine, [r.calibration for r in calibrated])
        return MachineCheck(
            "machine differs: " + "; ".join(d.describe() for d in diffs) + f". Compare on this machine instead: --egbench-ref {rev}",
            len(calibrated),
            frozenset(),
        )

    def settings_differ(self, baseline: Baseline) -> str | None:
        """How this run's settings differ from those of ``baseline``'s runs (``None`` if they do
        not, or if the baseline's runs did not record them). Compared: :data:`COMPARED_SETTINGS`
        (not ``rounds``/``warmup``: more rounds measure the same work)."""
        mine = self.run_info()
        for record in baseline.run_records_in_window():
            theirs = record.settings or {}
            diffs = [f"{k} {mine.get(k)!r} against {theirs[k]!r}" for k in COMPARED_SETTINGS if k in theirs and theirs[k] != mine.get(k)]
            if diffs:
                return ", ".join(diffs)
        return None

    def judge(self, measurements: list[Measurement], tolerances: dict[str, float] | None = None) -> tuple[list[Verdict], list[str]]:
        """Verdicts for one test's measurements, and the metrics that had nothing to compare with.

                Latency, throughput and rate metrics are compared only with the baseline of this machine's
                fingerprint; exact metrics with that one, else with any baseline of the same preset and
                quantisation (token counts do not depend on the machine). ``tolerances``: per-metric
                relative tolerances from the test's ``egbench`` marker (they win over the ini/command line;
        :meth:`tolerance_for`). Each verdict carries its :class:`~pytest_egbench.verdict.Reference`:
        the baseline's fingerprint name, commit and the run ids compared with.

                With ``--egbench-inject``, a latency or throughput metric that this fingerprint's baseline
                lacks is judged against its own control rounds instead (as a baseline of one run, verdict
                reference :data:`~pytest_egbench.verdict.CONTROL_REFERENCE`, paired: each steady round
                with the control round just before it), if it has control samples
                and is made of an injected stage (:func:`~pytest_egbench.timing.metric_stages`: the stage,
                ``total``, and the derived metrics that include it); with the tolerance the user gave, else
                :data:`~pytest_egbench.options.CONTROL_TOLERANCE` (:meth:`tolerance_for`).
                A baseline entry, when there is one, is used as without injection and the control ignored
                (unless the baseline cannot decide: then the control rounds do).

                Before the code, the machine: a latency or throughput metric against this fingerprint's
                baseline is :data:`~pytest_egbench.verdict.INCONCLUSIVE` when :meth:`machine_check` gives
                a reason (the message says it). A baseline whose runs had other settings
                (:meth:`settings_differ`) gives :data:`~pytest_egbench.verdict.SETTINGS_DIFFER` for every
                metric. Exact metrics, memory and rates are judged whatever the machine. With
                ``--egbench-ignore-machine`` latency is judged in any case (the plugin notes the difference).
        """
        injected = {stage for stage, _ in self.settings.inject}
        stages = [m.metric for m in measurements if m.stage == m.metric and m.unit == SECONDS]
        verdicts: list[Verdict] = []
        missing: list[str] = []
        for m in measurements:
            control = bool(m.control) and m.kind in (LATENCY, THROUGHPUT) and bool(injected.intersection(metric_stages(m.metric, stages)))
            v = self._judge_one(m, tolerances or {}, control)
            if v is None:
                missing.append(m.metric)
            else:
                verdicts.append(v)
        return verdicts, missing

    def tolerance_for(self, metric: str, reference: RefKind, marked: Mapping[str, float] | None = None) -> float:
        """The relative tolerance of ``metric`` against a reference of kind ``reference``: the
        benchmark's marker (``marked``) first, then the user's (command line, ini), else the
        default of the reference: the device's against a baseline
        (:meth:`Settings.tolerance_for`), :data:`~pytest_egbench.options.CONTROL_TOLERANCE` against
        control rounds, :data:`~pytest_egbench.verdict.AB_TOLERANCE` against an A/B revision."""
        if marked and metric in marked:
            return marked[metric]
        s = self.settings
        if reference is RefKind.CONTROL:
            return s.control_tolerance_for(metric)
        if reference is RefKind.AB:
            explicit = s.explicit_tolerance_for(metric)
            return AB_TOLERANCE if explicit is None else explicit
        return s.tolerance_for(metric)

    def not_gated(self, m: Measurement) -> Verdict | None:
        """The :data:`NOT_GATED` verdict of ``m`` when the settings leave it out (its kind not in
        ``--egbench-gate``, its name in ``--egbench-gate-exclude``), else ``None``: against a
        baseline, control rounds and an A/B alike."""
        option = self._left_out(m.kind, m.metric)
        if option is None:
            return None
        given = self.settings.gate if option == "--egbench-gate" else self.settings.gate_exclude
        return Verdict(m.metric, NOT_GATED, f"{m.metric}: not gated ({option} {','.join(given)})")

    def _left_out(self, kind: Any, metric: str) -> str | None:
        """The option that leaves a metric of ``kind`` named ``metric`` out of the gate
        (``--egbench-gate``: its kind; ``--egbench-gate-exclude``: its name), ``None`` when it is
        gated; ``info`` metrics are never judged and never "left out"."""
        if kind != INFO and str(kind) not in self.settings.gate:
            return "--egbench-gate"
        if metric in self.settings.gate_exclude:
            return "--egbench-gate-exclude"
        return None

    def _judge_one(self, m: Measurement, marked: Mapping[str, float], control: bool) -> Verdict | None:
        """The verdict of one measurement (:meth:`judge`), ``None`` when nothing to compare with."""
        if (left_out := self.not_gated(m)) is not None:
            return left_out
        source, entry = self._baseline_of(m)
        differ = self.settings_differ(source) if entry is not None and source is not None else None
        if differ and not control:
            return Verdict(m.metric, SETTINGS_DIFFER, f"{m.metric}: not compared, settings differ from the baseline's runs ({differ})")
        runs, blocked = self._runs_to_judge(m, source, entry)
        s = self.settings
        if entry is not None and source is not None and not blocked and not differ:
            ids = tuple(rid for _, rid in runs)
            reference = Reference(RefKind.BASELINE, fingerprint_name(source.fingerprint), baseline_commit(source), ids)
            tol = self.tolerance_for(m.metric, RefKind.BASELINE, marked)
            return judge(
                m.metric, m.kind, m.unit, [run for run, _ in runs], m.samples, tolerance=tol, tolerance_abs=s.tolerance_abs, alpha=s.pvalue, reference=reference
            )
        if control:
            tol = self.tolerance_for(m.metric, RefKind.CONTROL, marked)
            return judge(
                m.metric,
                m.kind,
                m.unit,
                [m.control],
                m.samples,
                tolerance=tol,
                tolerance_abs=s.tolerance_abs,
                alpha=s.pvalue,
                reference=CONTROL_REFERENCE,
                paired=True,
            )
        if entry is not None:
            return Verdict(m.metric, INCONCLUSIVE, f"{m.metric}: inconclusive against baseline {fingerprint_name(self.fingerprint)}: {blocked}")
        return None

    def _baseline_of(self, m: Measurement) -> tuple[Baseline | None, Entry | None]:
        """The baseline ``m`` is judged against and its entry: this fingerprint's; for an exact
        metric that one lacks, any baseline of the same preset and quantisation."""
        own = self.own_baseline()
        entry = own.entries.get(m.fullname) if own else None
        if entry is None and m.kind == EXACT:
            source = next((b for b in self.baselines if same_config(b.fingerprint, self.fingerprint) and m.fullname in b.entries), None)
            return source, source.entries[m.fullname] if source else None
        return own, entry

    def _runs_to_judge(self, m: Measurement, source: Baseline | None, entry: Entry | None) -> tuple[list[tuple[list[float], str]], str | None]:
        """``entry``'s runs that ``m`` may be judged against, with their ids, and why it cannot be
        judged at all (``None``: it can): a latency or throughput metric only against the runs of
        this fingerprint's baseline measured on a machine like this one (:meth:`machine_check`),
        unless ``--egbench-ignore-machine``."""
        if entry is None:
            return [], None
        runs = list(zip(entry.runs, entry.run_ids or [""] * len(entry.runs)))
        if m.kind not in (LATENCY, THROUGHPUT) or self.settings.ignore_machine:
            return runs, None
        from .calibration import probes_for

        check = self.machine_check(probes_for(m.metric, self.settings.runtime))
        if check.reason:
            return runs, check.reason
        if source is not self.own_baseline() or check.matching is None:
            return runs, None
        held = {rid for _, rid in runs}
        runs = [(run, rid) for run, rid in runs if rid in check.matching]
        if not runs:
            return runs, self._unlike_this_machine(held, probes_for(m.metric, self.settings.runtime), check)
        return runs, None

    def _unlike_this_machine(self, run_ids: set[str], probes: frozenset[str] | None, check: MachineCheck) -> str:
        """Why a metric whose baseline runs ``run_ids`` all come from other machines than this one
        (while other runs of the baseline match it) cannot be judged, with the figures: the probes
        on which this machine lies outside the range of those runs (:func:`~pytest_egbench.calibration.compare`),
        or, inside the range but like none of them, those of the nearest run."""
        from .calibration import nearest_differences, only_probes

        own = self.own_baseline()
        theirs = [
            r.calibration
            for r in (own.run_records_in_window() if own else [])
            if r.id in run_ids and isinstance(r.calibration, dict) and r.calibration.get("probes")
        ]
        diffs = nearest_differences(only_probes(self.calibration, probes), theirs) if theirs else []
        figures = ": " + "; ".join(d.describe() for d in diffs) if diffs else ""
        return (
            f"none of this metric's {len(run_ids)} run(s) in the baseline was measured on a machine like this one{figures} "
            f"(the baseline's runs like this machine, {len(check.matching or ())} of {check.calibrated_runs} calibrated, do not hold it)"
        )

    def record_verdict(self, m: Measurement, status: str, reference: Reference | None, message: str, why: str | None = None) -> None:
        """Keep ``m``'s outcome in ``extra_info["verdict"]`` (the JSON and the summary read it):
        ``status``, ``reference`` (its name as messages give it, ``None`` when not compared),
        ``reference_data`` (:meth:`Reference.as_dict`) and ``message``. An outcome that is neither
        pass nor failure (:data:`UNJUDGED`) is also listed in :attr:`unjudged`, with ``why``
        (default: ``message`` after its ``metric: `` prefix). A later outcome of ``m`` replaces an
        earlier one (a same-machine A/B's verdict replaces the baseline's)."""
        earlier = self._unjudged_of.pop(id(m), None)
        if earlier is not None:
            self.unjudged = [u for u in self.unjudged if u is not earlier]
        m.extra_info["verdict"] = {
            "status": status,
            "reference": reference.name if reference else None,
            "reference_data": reference.as_dict() if reference else None,
            "message": message,
        }
        if status in UNJUDGED:
            entry = {"test": m.test, "metric": m.metric, "status": status, "kind": str(m.kind), "why": why or message.split(": ", 1)[1]}
            self.unjudged.append(entry)
            self._unjudged_of[id(m)] = entry

    def judge_and_record(self, measurements: list[Measurement], tolerances: dict[str, float] | None = None) -> list[Verdict]:
        """:meth:`judge` one test's ``measurements`` and keep every outcome
        (:meth:`record_verdict`), a metric with nothing to compare with as
        :data:`NOT_COMPARED`, naming this fingerprint's baseline (or its absence). Returns the
        verdicts (the not-compared metrics have none)."""
        verdicts, missing = self.judge(measurements, tolerances)
        by_metric = {m.metric: m for m in measurements}
        for v in verdicts:
            self.record_verdict(by_metric[v.metric], v.status, v.reference, v.message)
        where = (
            f"no entry in baseline {self.fingerprint_name()}"
            if self.own_baseline() is not None
            else f"no baseline for this machine's fingerprint {self.fingerprint_name()} in {self.settings.baseline_dir}"
        )
        for metric in missing:
            self.record_verdict(by_metric[metric], NOT_COMPARED, None, f"{metric}: not compared: {where}", where)
        return verdicts

    @classmethod
    def replay(cls, settings: Settings, machine: dict[str, Any], calibration: dict[str, Any] | None, baselines: list[Baseline]) -> EgbenchSession:
        """A session that judges measurements taken earlier (``python -m pytest_egbench
        compare``): on the machine ``machine`` (a results file's ``machine_info``) with its
        ``calibration``, against ``baselines`` instead of the files in ``--egbench-baseline-dir``."""
        session = cls(settings)
        session._machine = {**machine, "egbench": dict(machine.get("egbench") or {})}
        session.calibration = calibration
        session.device_block = dict(machine.get("egbench") or {})
        session._baselines = list(baselines)
        return session

    def warn(self, note: Note) -> None:
        """Keep ``note`` for the folded summary and issue it as a pytest warning (which raises
        when the user's filters turn it into an error)."""
        import warnings

        self.warned.append(note)
        warnings.warn(note.warning(), stacklevel=2)

    def folded_notes(self) -> list[str]:
        """The notes the warning filters let through, one line per kind
        (:func:`pytest_egbench.notes.fold`)."""
        from .notes import fold

        shown = self.warned if self.recorded is None else [n for n in self.warned if (n.kind.__name__, n.nodeid) in self.recorded]
        return fold(shown)

    def baseline_entries(self) -> dict[str, Entry]:
        """This run's measurements as baseline entries, keyed by full name."""
        return {m.fullname: Entry(m.metric, m.unit, m.kind, [list(m.samples)], m.model, m.stage, _jsonable(m.params)) for m in self.measurements}

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

    def add_timing(self, results: TimingResults, *, alternatives: bool = False, **labels: Any) -> list[Measurement]:
        """Record every metric of a stage timer (see :func:`measurements_from_timing`)."""
        added = measurements_from_timing(results, alternatives=alternatives, **labels)
        for m in added:
            self.add(m)
        return added

    def to_wire(self) -> dict[str, Any]:
        """This session's measurements, notes and device as plain data (for pytest-xdist)."""
        from dataclasses import asdict

        return {
            "measurements": [
                {**asdict(m), "kind": str(m.kind), "unit": str(m.unit), "params": _jsonable(m.params), "extra_info": _plain(m.extra_info)}
                for m in self.measurements
            ],
            "notes": list(self.notes),
            "warned": [n.to_wire() for n in self.warned],
            "unjudged": list(self.unjudged),
            "calibration": self.calibration,
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
        self.warned.extend(Note.from_wire(n) for n in wire.get("warned", []))
        self.unjudged.extend(wire.get("unjudged", []))
        if self.calibration is None:
            self.calibration = wire.get("calibration")  # the first worker's machine describes the run
        block = wire.get("device_block") or {}
        merged = self.device_block if self.device_block and self.device_block.get("workers") else {**(block or {}), "workers": []}
        merged["workers"].append(block)
        self.device_block = merged
        self._machine = None

    def run_info(self) -> dict[str, Any]:
        """Settings that make two runs comparable: preset, quant, runtime, rounds, warm-up, tokens."""
        s = self.settings
        return {
            "preset": s.preset,
            "quant": s.quant,
            "runtime": s.runtime,
            "rounds": s.rounds,
            "warmup": s.warmup,
            "max_new_tokens": s.max_new_tokens,
            "inject": {stage: pct for stage, pct in s.inject},
        }

    def run_record(self) -> RunRecord:
        """This run as a baseline run record: its id, now (UTC, ISO 8601), the git commit, the
        settings of :meth:`run_info` and :attr:`calibration`."""
        from datetime import datetime, timezone

        from .machine import commit_info

        return RunRecord(self.run_id, datetime.now(timezone.utc).isoformat(), commit_info().get("id"), _plain(self.run_info()), self.calibration)

    def stage_order(self, stages: set[str]) -> list[str]:
        """Known stages in pipeline order, then free names alphabetically."""
        return [s for s in STAGES if s in stages] + sorted(stages - set(STAGES))


def baseline_commit(baseline: Baseline) -> str | None:
    """The commit of the newest run still in ``baseline``'s window that recorded one, else the
    file's ``commit``: the revision a same-machine A/B should compare with. Only git object ids
    count (pytest-benchmark records ``unversioned`` outside a repository)."""
    ids = [baseline.commit] + [r.commit for r in baseline.run_records_in_window()]
    return next((c for c in reversed(ids) if c and re.fullmatch(r"[0-9a-f]{7,40}", c)), None)


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
