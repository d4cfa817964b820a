"""pytest entry point of pytest-egbench (``pytest11`` entry point ``egbench``).

Hooks only. This module, and everything it imports at module level, must not import torch: plain
``pytest`` without ``--egbench`` stays as fast as before (``tests/test_plugin.py`` checks it).
The run-wide session object, the collection hooks (:mod:`pytest_egbench.collection`) and the
fixtures (:mod:`pytest_egbench.fixtures`) are loaded in ``pytest_configure``. The run's state lives
in ``config.stash`` under the keys of :mod:`.stash`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from . import fixtures, inject, names, options
from .layout import wrap
from .stash import (
    NAMES_CHECKED_KEY,
    OUTPUT_ERRORS_KEY,
    OUTPUT_WRITTEN_KEY,
    PREVIOUS_REGISTRY_KEY,
    SESSION_KEY,
    SETTINGS_KEY,
    TIMERS_KEY,
    item_labels,
    xdist_worker,
)

if TYPE_CHECKING:
    from .notes import Note
    from .session import EgbenchSession, Measurement
    from .verdict import Verdict

MARKERS = {
    "egbench": "egbench(group=None, stages=(), metrics=(), tolerances=None, alternatives=False): a benchmark of the egbench suite; skipped unless --egbench is given. stages: the stages its stage_timer times besides load, preprocess, vision, prefill, decode; alternatives: True when those stages are alternatives, not parts of one pipeline (then no total, no TTFT, no share column); metrics: the latency, throughput and memory metrics it records with egbench_record (--egbench-inject and the tolerances accept only names some benchmark produces); tolerances: per-metric tolerances, e.g. {'decode': '8%'}",
    "gpu": "gpu: needs a CUDA device; skipped, with the reason, when there is none or --egbench-device cpu",
    "egbench_needs": "egbench_needs(*needs): the benchmark needs these parts of a sample ('events', 'video', 'event_image'); egbench_sample skips samples without them, with the reason",
}


#: What an untimed run (pytest-benchmark's ``--benchmark-disable``) says under its summary.
UNTIMED_NOTE = "--benchmark-disable: each benchmark ran its body once (1 cold + 1 steady round, no warm-up), untimed: nothing was recorded, judged or written (--benchmark-enable overrides)"


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def _with_registry(config: pytest.Config, settings: options.Settings) -> options.Settings:
    """Complete the run's model registry (built-ins, then the entry points of
    :data:`~pytest_egbench.models.registry.ENTRY_POINT_GROUP`, then every
    ``pytest_egbench_adapters`` hook), make it current for the run, and return ``settings`` with
    ``models`` as registered names. Raises :class:`pytest.UsageError` for a bad registration, or
    for a name in ``--egbench-models`` or ``--egbench-checkpoint`` (or their ini keys) that is not
    registered, listing the known names."""
    from dataclasses import replace

    from .models.registry import Registry, RegistryError, use

    registry = Registry()
    try:
        registry.add_entry_points()
        for impl in config.hook.pytest_egbench_adapters.get_hookimpls():
            source = f"pytest_egbench_adapters in {impl.plugin_name}"
            registry.add_all(impl.function(**{arg: config for arg in impl.argnames}), source)
    except RegistryError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[PREVIOUS_REGISTRY_KEY] = use(registry)
    by_dest = {spec.dest: spec for spec in options.OPTIONS}
    try:
        models = registry.select(settings.models)
    except RegistryError as exc:
        raise pytest.UsageError(f"{by_dest['models'].flag} ({settings.sources.get('models', 'default')}): {exc}") from None
    for name, _ in settings.checkpoints:
        if name not in registry.names:
            raise pytest.UsageError(
                f"{by_dest['checkpoints'].flag} ({settings.sources.get('checkpoints', 'default')}): unknown model {name!r}: known are {', '.join(registry.names)}"
            )
    return replace(settings, models=models)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(PREVIOUS_REGISTRY_KEY, None)
    if previous is not None:
        from .models.registry import use

        use(previous)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", text)
    settings = options.resolve(config)
    options.check(settings, config.inipath)
    if settings.enabled:
        diverted = options.rootdir_taken_from(config.invocation_params.args, config.invocation_params.dir, config.rootpath, config.inipath)
        if diverted:
            raise pytest.UsageError(diverted)
    settings = _with_registry(config, settings)
    if settings.ref and _xdist_controller(config):
        raise pytest.UsageError("--egbench-ref with -n: the processes of an A/B run one after the other on this machine, never side by side; drop -n")
    if settings.enabled:
        from .device import resolve_device
        from .machine import device_info
        from .session import EgbenchSession

        device = resolve_device(settings, xdist_worker(config))
        settings = settings.for_device(device.type)
        session = EgbenchSession(settings, device)
        session.device_block = device_info(device)
        _record_warnings(config, session)
        from .baselines import BaselineError

        try:
            session.baselines  # read and validate every baseline file now, before any benchmark
        except BaselineError as exc:
            raise pytest.UsageError(f"--egbench-baseline-dir: {exc}") from None
        if settings.untimed:
            session.notes.append(UNTIMED_NOTE)
        elif not _xdist_controller(config) and not settings.ref:
            from . import lockstep
            from .calibration import calibrate

            with lockstep.turn("machine calibration"):
                session.calibration = calibrate(device)
        judged = not settings.untimed and session.own_baseline() is not None
        if settings.ignore_machine and judged:
            reason = session.machine_check(session.judged_probes()).reason
            if reason:
                _run_note(config, session, f"--egbench-ignore-machine: latency judged against the baseline although {reason.split('. Compare')[0]}")
        # on the probes the gated latencies need (a compiled run gating prefill and decode: the GPU's)
        reason = (
            session.machine_check(session.judged_probes()).reason
            if settings.fallback_ref and not settings.ref and judged and not settings.ignore_machine
            else None
        )
        if reason:
            settings = fall_back_to_ref(config, session, reason)
        config.stash[SESSION_KEY] = session
        if not config.pluginmanager.has_plugin("egbench-header-width"):
            config.pluginmanager.register(_HeaderWidth(), "egbench-header-width")
    config.stash[SETTINGS_KEY] = settings
    config.stash[OUTPUT_ERRORS_KEY] = []
    config.stash[OUTPUT_WRITTEN_KEY] = []
    from . import collection

    for name, module in (("egbench-collection", collection), ("egbench-fixtures", fixtures)):
        if not config.pluginmanager.is_registered(module):
            config.pluginmanager.register(module, name)


def fall_back_to_ref(config: pytest.Config, session: EgbenchSession, reason: str) -> options.Settings:
    """``--egbench-fallback-ref``: the baseline cannot judge this run's latency on this machine
    (``reason``: the machine differs from every run of the baseline, at configure time, or the
    runs like it hold too few of the collected benchmarks, :func:`.collection.pytest_collection_modifyitems_fallback`),
    so judge the whole run by a same-machine A/B against the commit of the baseline's newest run
    instead. Returns the new settings (also set on ``session``); :class:`pytest.UsageError` when
    the baseline records no commit."""
    from dataclasses import replace

    from .session import baseline_commit

    own = session.own_baseline()
    commit = baseline_commit(own) if own else None
    if not commit:
        raise pytest.UsageError(
            f"--egbench-fallback-ref: {reason}; but the baseline {session.fingerprint_name()} records no commit to compare with: give --egbench-ref REV"
        )
    _run_note(
        config,
        session,
        f"--egbench-fallback-ref: {reason.split('. Compare')[0]}; judging by a same-machine A/B against the baseline's commit {commit[:12]} instead",
    )
    session.settings = replace(session.settings, ref=commit)
    return session.settings


def _record_warnings(config: pytest.Config, session: EgbenchSession) -> None:
    """Let ``session`` know which of its warnings pytest recorded (those the filters did not
    ignore): only those are folded into the summary. Without pytest's warnings plugin
    (``-p no:warnings``) every note is shown."""
    from .notes import Recorder

    if config.pluginmanager.get_plugin("warnings") is None:
        return
    recorder = Recorder()
    config.pluginmanager.register(recorder, "egbench-warning-recorder")
    session.recorded = recorder.seen


def _run_note(config: pytest.Config, session: EgbenchSession, text: str) -> None:
    """Issue a note about the whole run as a configure-time
    :class:`~pytest_egbench.notes.SettingsWarning` (``-W error::...`` stops the run), and keep it
    for the folded summary."""
    from .notes import Note, SettingsWarning

    note = Note(SettingsWarning, detail=text)
    session.warned.append(note)
    config.issue_config_time_warning(note.warning(), stacklevel=2)


def _xdist_controller(config: pytest.Config) -> bool:
    """True in the pytest-xdist controller of ``-n N`` (it runs no benchmark: its workers do)."""
    return getattr(config, "workerinput", None) is None and bool(getattr(config.option, "numprocesses", None))


class _HeaderWidth:
    """With ``--egbench``, every plugin's header line wrapped to :data:`~pytest_egbench.layout.WIDTH`
    columns (pytest-benchmark's own runs to about 190), so that no line of the run is wider."""

    @pytest.hookimpl(wrapper=True)
    def pytest_report_header(self, config: pytest.Config) -> Generator[None, list[str | list[str]], list[list[str]]]:
        results = yield
        return [[part for line in ([r] if isinstance(r, str) else r) for part in wrap(line)] for r in results]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    s = session.settings
    gpu = session.device_block.get("gpu_name") if session.device_block else None
    where = f"{session.device} ({gpu})" if gpu else str(session.device)
    from .calibration import summary_line

    lines = wrap(
        f"egbench: device {where}, preset {s.preset}, weights {s.quant}, rounds {s.rounds} after 1 cold + {s.warmup} warm-up, max new tokens {s.max_new_tokens}"
    )
    if session.calibration:
        lines += wrap(f"egbench: {summary_line(session.calibration)}")
    return lines


def pytest_report_collectionfinish(config: pytest.Config) -> list[str] | None:
    """The injected slowdowns, said once their stages were checked against the collected
    benchmarks (not in the header, which comes before collection and so before the check)."""
    session = config.stash.get(SESSION_KEY, None)
    # pytest calls this hook even when collection failed, so only after the check passed
    if session is None or not session.settings.inject or not config.stash.get(NAMES_CHECKED_KEY, False):
        return None
    return wrap(inject.collection_line(session.settings, options.CONTROL_MIN_ROUNDS))


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, None, object]:
    """``--egbench-ref``: run the interleaved A/B processes before the verdict items run."""
    egb = session.config.stash.get(SESSION_KEY, None)
    if egb is not None and egb.settings.ref and session.items and not session.config.option.collectonly:
        _run_ab(session.config, egb, len(session.items))
    return (yield)


def _ab_pairs(config: pytest.Config, egb: EgbenchSession, reference: Any, args: list[str], workdir: Any, cpus: frozenset[int] | None) -> dict[str, Any]:
    """Run the A/B's ``--egbench-ref-pairs`` pairs of processes with ``args``, keep their sides and
    samples in ``egb``, and give a regression or improvement read from fewer than two pairs
    (:func:`~pytest_egbench.ab.unconfirmed`) one more pair, of only those benchmarks. Returns the
    sides; :class:`~pytest_egbench.ab.RefError` as :func:`~pytest_egbench.ab.run` raises it."""
    from . import ab

    progress = fixtures.terminal_progress(config)
    current_root = reference.worktree_of or config.rootpath
    where = (current_root, config.rootpath, config.invocation_params.dir)
    sides = ab.run(reference, *where, args, egb.settings.ref_pairs, workdir, progress, cpus)
    egb.ab_outcome = sides
    egb.ab_runs = {name: ab.runs_by_metric(side) for name, side in sides.items()}
    egb.ab_family = None
    egb.ab_confirming = frozenset()
    doubtful = ab.unconfirmed(egb, sides)
    if doubtful:
        # a regression read from one process pair: one more pair, of only those benchmarks
        only = ab.only_these(args, config.args, doubtful, config.rootpath, config.invocation_params.dir)
        shown = ", ".join(n.rsplit("/", 1)[-1] for n in doubtful[:3]) + (f" and {len(doubtful) - 3} more" if len(doubtful) > 3 else "")
        ab.run(reference, *where, only, 1, workdir, progress, cpus, sides=sides, why=f" (confirming {shown})")
        egb.ab_runs = {name: ab.runs_by_metric(side) for name, side in sides.items()}
        egb.ab_family = None
        egb.ab_confirming = frozenset(doubtful)
    egb.notes.extend(line for side in sides.values() for line in side.troubles if line not in egb.notes)
    return sides


def _run_ab(config: pytest.Config, egb: EgbenchSession, benchmarks: int) -> None:
    import tempfile
    from pathlib import Path

    from . import ab

    ref = egb.settings.ref
    if not ref:  # pytest_runtestloop runs the A/B only with --egbench-ref
        raise RuntimeError("the A/B run needs --egbench-ref")
    try:
        cpus = ab.pinned_cpus(egb.settings.ref_cpus)
        reference = ab.prepare(ref, config.rootpath)
    except ab.RefError as exc:
        raise pytest.UsageError(str(exc)) from None
    egb.ab_reference = reference
    workdir = Path(tempfile.mkdtemp(prefix="egbench-ab-"))
    pinned = f", each pinned to CPUs {','.join(map(str, sorted(cpus)))}" if cpus else ", not pinned to CPUs"
    more_rounds = ab.rounds_args(egb.settings.rounds, egb.settings.sources.get("rounds", "default"), egb.settings.ref_pairs)
    rounds = f", {more_rounds[-1] if more_rounds else egb.settings.rounds} steady rounds each"
    fixtures.terminal_progress(config)(
        f"egbench A/B: {benchmarks} benchmark(s), {egb.settings.ref_pairs} pair(s) of processes{pinned}{rounds}: {reference.label} (checkout {reference.root}) against the current code; logs in {workdir}"
    )
    try:
        sides = _ab_pairs(config, egb, reference, [*config.invocation_params.args, *more_rounds], workdir, cpus)
    except ab.RefError as exc:
        egb.ab_outcome = str(exc)
        return
    first = sides["current"].results[0] if sides["current"].results else {}
    egb.calibration = ((first.get("machine_info") or {}).get("egbench") or {}).get("calibration")
    egb.device_block = {
        k: v
        for k, v in ((first.get("machine_info") or {}).get("egbench") or {}).items()
        if k in ("device", "gpu_name", "gpu_memory_bytes", "gpu_capability", "gpu_count", "driver", "cuda", "torch_cuda")
    } or egb.device_block
    egb.notes.append(
        f"A/B against {reference.label}: {2 * len(sides['current'].results)} processes, {sum(sides['ref'].seconds):.0f} s reference + {sum(sides['current'].seconds):.0f} s current (logs in {workdir})"
    )
    family = len(ab.speed_family(egb, sides))
    if family > 1:
        egb.notes.append(
            f"A/B significance corrected for {family} latency and throughput comparisons (Holm): unchanged code fails a metric with probability about {egb.settings.pvalue:g} per run instead of up to {family} x {egb.settings.pvalue:g}"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None:
        return
    settings = item.config.stash[SETTINGS_KEY]
    if settings.device == "cpu":
        pytest.skip("needs a CUDA GPU: --egbench-device cpu was given")
    import torch  # only for tests that asked for a GPU

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep why a test was skipped (``EgbenchSession.skipped``, written to ``--egbench-json``);
    an expected failure (``xfail``) is not a skip."""
    report = yield
    egb = item.config.stash.get(SESSION_KEY, None)
    if egb is not None and report.skipped and isinstance(report.longrepr, tuple) and not hasattr(report, "wasxfail"):
        egb.skipped[item.nodeid] = str(report.longrepr[2]).removeprefix("Skipped: ")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a benchmark's body passed: record its stage timers, then judge its measurements
    against the baseline, so a regression is an ordinary test failure (not an error in teardown
    or in the terminal summary)."""
    egb = item.config.stash.get(SESSION_KEY, None)
    benchmark = egb is not None and not egb.settings.untimed and item.get_closest_marker("egbench") is not None and not getattr(item, "original_nodeid", None)
    if egb is None or not benchmark:
        return (yield)
    gpu = egb.nvml_gpu  # None off CUDA
    if gpu is not None:
        from .machine import gpu_state

        before = gpu_state(gpu)
    result = yield  # a failing body raises here, and nothing is recorded
    state = None
    if gpu is not None:
        state = {"before": before, "after": gpu_state(gpu)}
    _record_and_judge(egb, item, state)
    return result


def _record_and_judge(egb: EgbenchSession, item: pytest.Item, gpu: dict | None = None) -> None:
    """Record the item's stage timers, attach the GPU state read around it, judge it, issue its
    notes as warnings (:mod:`pytest_egbench.notes`), and fail it on a regression."""
    from .notes import Note

    measured = _record(egb, item, gpu)
    notes = _measurement_notes(item, measured, gpu)
    verdicts = _judge(egb, item, measured) if measured and not egb.settings.save else []
    if egb.settings.fallback_ref and not egb.settings.ref:  # judged against the baseline: confirm
        verdicts = _confirm_on_this_machine(egb, item, measured, verdicts)
    notes += _verdict_notes(egb, item, verdicts)
    kinds = dict.fromkeys(n.kind for n in notes)
    for kind in kinds:  # one warning per kind of note per benchmark
        names = tuple(name for n in notes if n.kind is kind for name in n.names)
        egb.warn(Note(kind, item.nodeid, item.name, names))
    _fail_on_regression(verdicts, notes)


def _record(egb: EgbenchSession, item: pytest.Item, gpu: dict | None) -> list[Measurement]:
    """Record the item's used stage timers (``egbench(alternatives=True)``: no sums of stages,
    :mod:`pytest_egbench.catalog`) and return all of its measurements, with the GPU state read
    around it in their ``extra_info``."""
    from .machine import throttled

    alternatives = any(m.kwargs.get("alternatives", False) for m in item.iter_markers("egbench"))
    for timer in item.stash.get(TIMERS_KEY, []):
        if timer.used:
            egb.add_timing(timer.results(), alternatives=alternatives, **item_labels(item), model=timer.extra_info.get("model"), extra_info=timer.extra_info)
    measured = [m for m in egb.measurements if m.nodeid == item.nodeid]
    slowed = throttled(gpu["after"]) if gpu else None
    for m in measured:
        if gpu:
            m.extra_info["gpu_state"] = gpu
        if slowed:
            m.extra_info["throttled"] = slowed
    return measured


def _measurement_notes(item: pytest.Item, measured: list[Measurement], gpu: dict | None) -> list[Note]:
    """Notes about how the item was measured: stages still getting faster (kept in their
    ``extra_info["unsettled"]``), a slowed-down GPU, metrics its marker does not declare."""
    from .machine import throttled
    from .notes import NotDeclaredWarning, Note, ThrottledWarning, UnsettledWarning
    from .session import LATENCY, MEMORY, THROUGHPUT
    from .stats import unsettled

    notes: list[Note] = []
    for m in measured:
        why = unsettled(m.warmup, m.samples) if m.stage is not None and m.kind == LATENCY else None
        if why:
            m.extra_info["unsettled"] = why
            notes.append(Note(UnsettledWarning, item.nodeid, item.name, (m.metric,), why))
    slowed = throttled(gpu["after"]) if gpu else None
    if slowed:
        notes.append(Note(ThrottledWarning, item.nodeid, item.name, (), slowed))
    declared = names.Producible.declared(item.iter_markers("egbench"))  # checked at collection
    undeclared = tuple(m.metric for m in measured if m.kind in (LATENCY, THROUGHPUT, MEMORY) and declared.metric_error(m.metric))
    if undeclared:
        notes.append(Note(NotDeclaredWarning, item.nodeid, item.name, undeclared))
    return notes


def _judge(egb: EgbenchSession, item: pytest.Item, measured: list[Measurement]) -> list[Verdict]:
    """Judge the item's measurements (:meth:`EgbenchSession.judge`) and keep each outcome in
    its measurement; return the verdicts."""
    return egb.judge_and_record(measured, options.marked_tolerances(item))


#: Benchmarks of one run sent to a same-machine A/B against the baseline's commit
#: (:func:`_confirm_on_this_machine`) at the most, and how many confirmed regressions end that.
CONFIRMATIONS, CONFIRMED_ENOUGH = 8, 2


def _confirm_on_this_machine(egb: EgbenchSession, item: pytest.Item, measured: list[Measurement], verdicts: list[Verdict]) -> list[Verdict]:
    """``--egbench-fallback-ref`` on a machine that matches the baseline's runs: the latency and
    throughput metrics the baseline cannot settle on this machine are judged by a same-machine A/B
    of this benchmark alone against the baseline's commit (``--egbench-ref-pairs`` pairs in
    lockstep, and a confirming pair where one pair reads a change; :func:`_ab_pairs`):

    * a **regression** against the baseline stands only if the A/B also reads it; else the A/B's
      verdict (pass, not significant, faster) replaces it, naming both readings;
    * an **inconclusive** verdict against the baseline (none of the metric's runs there was
      measured on a machine like this one, though other runs of the baseline were: a benchmark
      added on another lease, say) is replaced by the A/B's verdict, naming why the baseline could
      not judge it. (A baseline none of whose runs is like this machine sends the whole run to an
      A/B instead: :func:`fall_back_to_ref`.)

    The A/B takes :data:`~pytest_egbench.ab.MIN_PAIRED_ROUNDS` paired rounds at the least,
    whatever ``--egbench-rounds`` says. An A/B that fails leaves the verdicts as read, with the
    reason. Returns the verdicts, each also recorded.

    Bounds (:data:`CONFIRMATIONS`, :data:`CONFIRMED_ENOUGH`): once the A/Bs read two benchmarks
    slower, the code is slower, and later regressions stand as read (inconclusive metrics stay
    so), saying why; once eight benchmarks were sent, later regressions are
    :data:`~pytest_egbench.verdict.INCONCLUSIVE` (neither pass nor failure;
    ``--egbench-require-baseline`` fails the run on them), naming how many regressions the A/Bs
    refuted, with one: the baseline's verdicts do not hold on this machine.

    Why: a baseline holds a few runs, each one process, and a verdict against them pools rounds
    that all come from this one process. On an H200 host whose calibration matched one of the
    baseline's runs (2026-11-30), one process of unchanged code read a Video-LLaVA prefill +58 %
    (p = 8e-5) while its neighbours read -33 % and -19 %; on lease G one A/B process read a
    preprocess +45 % in all its rounds. A process's offset is told from the code's by running
    the baseline's code beside this code, on this machine, now. And on an H200 x2 host
    (2026-11-30) the two benchmarks whose baseline runs all came from other hosts left 20 metrics
    inconclusive, failing the nightly's ``--egbench-require-baseline`` with nothing slower."""
    import tempfile
    import time
    from dataclasses import replace
    from pathlib import Path

    from . import ab
    from .session import LATENCY, THROUGHPUT, SentToAb, baseline_commit
    from .verdict import INCONCLUSIVE, NOISE_ONLY, REGRESSION, RefKind, ab_reference

    by_metric = {m.metric: m for m in measured if m.kind in (LATENCY, THROUGHPUT)}
    against_baseline = [v for v in verdicts if v.reference.kind is RefKind.BASELINE and v.metric in by_metric]
    regressed = [v for v in against_baseline if v.status == REGRESSION]
    unjudged = [v for v in against_baseline if v.status == INCONCLUSIVE]
    own = egb.own_baseline()
    commit = baseline_commit(own) if own else None
    if not (regressed or unjudged) or not commit:
        return verdicts

    def settle(out: dict[str, Verdict], why: Mapping[str, str] | None = None) -> list[Verdict]:
        """Record the new verdicts ``out`` (by metric; ``why`` an inconclusive one's reason for
        the summary, by metric, where not its message) and return the item's verdicts with them."""
        for metric, v in out.items():
            egb.record_verdict(by_metric[metric], v.status, v.reference, v.message, (why or {}).get(metric))
        return [out.get(v.metric, v) for v in verdicts]

    def keep(why: str) -> list[Verdict]:
        return settle({v.metric: replace(v, message=f"{v.message}; {why}") for v in (*regressed, *unjudged)})

    config = item.config
    done = egb.baseline_confirmations
    slower = [d.nodeid for d in done if d.confirmed]
    refutations = [(d.nodeid, d.refuted) for d in done if d.refuted]
    if xdist_worker(config) is not None:
        return keep("not judged by a same-machine A/B: processes of an A/B never run beside -n workers")
    if len(slower) >= CONFIRMED_ENOUGH:
        return keep(f"not sent to a same-machine A/B: {len(slower)} benchmarks of this run were read slower on this machine already")
    if len(done) >= CONFIRMATIONS:
        example = f" ({refutations[0][0].rsplit('/', 1)[-1]}: {refutations[0][1]})" if refutations else ""
        tried = sum(d.regressed for d in done)
        why = (
            f"inconclusive: the same-machine A/Bs of this run refuted {len(refutations)} of {tried} regressions read against the baseline"
            f"{example}, so its verdicts do not hold on this machine, and no more A/Bs are run "
            f"(at most {CONFIRMATIONS}): compare on this machine with --egbench-ref {commit[:12]}"
        )
        stop = (
            f"not sent to a same-machine A/B: {len(done)} were run already (at most {CONFIRMATIONS}): compare on this machine with --egbench-ref {commit[:12]}"
        )
        capped = {v.metric: replace(v, status=INCONCLUSIVE, message=f"{v.message.rsplit(': ', 1)[0]}; {why}") for v in regressed}
        capped.update({v.metric: replace(v, message=f"{v.message}; {stop}") for v in unjudged})
        return settle(capped, {v.metric: why for v in regressed})
    read = [f"{len(regressed)} metric(s) read slower than the baseline"] if regressed else []
    read += [f"{len(unjudged)} metric(s) the baseline cannot judge on this machine"] if unjudged else []
    fixtures.terminal_progress(config)(f"\negbench: {item.nodeid}: {'; '.join(read)}; judging them by a same-machine A/B against its commit {commit[:12]} ...")
    start = time.perf_counter()
    try:
        cpus = ab.pinned_cpus(egb.settings.ref_cpus)
        if egb.ab_reference is None:
            egb.ab_reference = ab.prepare(commit, config.rootpath)
        reference = egb.ab_reference
        # the A/B's own rounds, whatever --egbench-rounds says: enough paired rounds to reach
        # significance after Holm over this benchmark's metrics (8 rounds cannot: p >= 1/256)
        rounds = ab.rounds_args(egb.settings.rounds, "default", egb.settings.ref_pairs)
        args = ab.only_these([*config.invocation_params.args, *rounds], config.args, [item.nodeid], config.rootpath, config.invocation_params.dir)
        sides = _ab_pairs(config, egb, reference, args, Path(tempfile.mkdtemp(prefix="egbench-ab-")), cpus)
    except ab.RefError as exc:  # neither confirms nor refutes: not counted
        return keep(f"the same-machine A/B against {commit[:12]} that was to judge it failed: {exc}")
    egb.notes.append(f"{item.nodeid}: judged again by a same-machine A/B against {reference.label} ({'; '.join(read)}): {time.perf_counter() - start:.0f} s")
    marked = options.marked_tolerances(item)
    against = ab_reference(sides["ref"].label, getattr(reference, "commit", None))
    out: dict[str, Verdict] = {}
    for v in (*regressed, *unjudged):
        m = by_metric[v.metric]
        ref, cur = ab.paired_runs(egb, m.fullname)
        if not ref:
            why = ab.unpaired_reason(egb, m.fullname) or "it produced no rounds of this metric"
            out[v.metric] = replace(v, message=f"{v.message}; not judged either way by the same-machine A/B against {reference.label}: {why}")
            continue
        w = ab.judge_metric(egb, sides, m, ref, cur, against, marked)
        if v.status == INCONCLUSIVE:
            out[v.metric] = replace(w, message=f"{w.message}; judged by this same-machine A/B because the baseline could not: {v.message.split(': ', 1)[-1]}")
            continue
        read_as = f"{v.change:+.1%}" if v.change is not None else "a regression"
        if w.status == REGRESSION:
            out[v.metric] = replace(v, message=f"{v.message}; confirmed on this machine: {w.message}")
        elif w.status == NOISE_ONLY:
            out[v.metric] = replace(w, message=f"{w.message}; against the baseline it read {read_as}: judged as this same-machine A/B reads it")
        else:
            out[v.metric] = replace(
                w,
                message=f"{w.message}; against the baseline it read {read_as}, which this A/B does not confirm: a difference of this machine or process, not of the code",
            )
    confirmed = any(v.status == REGRESSION for v in out.values())
    refuted = None
    if regressed and not confirmed:
        first = out[regressed[0].metric]
        refuted = f"{first.metric} {regressed[0].change or 0.0:+.1%} against the baseline, {first.change or 0.0:+.1%} in the A/B"
    done.append(SentToAb(item.nodeid, bool(regressed), confirmed, refuted))
    return settle(out)


def _verdict_notes(egb: EgbenchSession, item: pytest.Item, verdicts: list[Verdict]) -> list[Note]:
    """Notes about the verdicts: too few rounds for the test, improvements, an injected
    slowdown that the baseline did not catch."""
    from .notes import FewRoundsWarning, ImprovementWarning, InjectionMissedWarning, Note
    from .verdict import IMPROVEMENT, REGRESSION, RefKind

    injected = {stage for stage, _ in egb.settings.inject}
    notes: list[Note] = []
    for v in verdicts:
        if v.warning:
            notes.append(Note(FewRoundsWarning, item.nodeid, item.name, (v.metric,), v.warning))
        if v.status == IMPROVEMENT:
            notes.append(Note(ImprovementWarning, item.nodeid, item.name, (v.metric,), v.message))
        if v.metric in injected and v.reference.kind is RefKind.BASELINE and v.status != REGRESSION:
            notes.append(Note(InjectionMissedWarning, item.nodeid, item.name, (v.metric,), v.message))
    return notes


def _fail_on_regression(verdicts: list[Verdict], notes: list[Note]) -> None:
    """Fail the test when a verdict is a regression, naming each reference, with caveats from
    ``notes`` (a slowed-down GPU, stages not warm yet)."""
    from .notes import ThrottledWarning, UnsettledWarning
    from .verdict import REGRESSION, RefKind

    regressed = [v for v in verdicts if v.status == REGRESSION]
    if not regressed:
        return
    caveat = "".join(
        f"\n  NOTE: the GPU was slowed down during this benchmark ({n.detail}); the regression may be the machine's"
        for n in notes
        if n.kind is ThrottledWarning
    )
    unsettled = [name for n in notes if n.kind is UnsettledWarning for name in n.names]
    if unsettled:
        caveat += f"\n  NOTE: not warm yet when statistics began: {', '.join(unsettled)} (see the summary); the regression may be too short a warm-up"
    order = list(RefKind)
    against = dict.fromkeys(v.reference.against for v in sorted(regressed, key=lambda v: order.index(v.reference.kind)))
    pytest.fail(
        f"egbench: {len(regressed)} metric(s) regressed against {' and '.join(against)}:\n  " + "\n  ".join(v.message for v in regressed) + caveat,
        pytrace=False,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    egb = config.stash.get(SESSION_KEY, None)
    if egb is None:
        return
    if xdist_worker(config) is not None:
        # An xdist worker hands its measurements to the controller, which writes the files.
        config.workeroutput["egbench"] = egb.to_wire()  # type: ignore[attr-defined]
        return
    reference = getattr(egb, "ab_reference", None)
    if reference is not None:
        reference.cleanup()
    if not egb.measurements:
        return
    from .outputs import write_outputs

    written, errors = write_outputs(egb, save=egb.settings.save and session.testsfailed == 0)
    if egb.settings.save and session.testsfailed:
        errors.append(f"--egbench-save: {session.testsfailed} test(s) failed, so no baseline was saved")
    config.stash[OUTPUT_WRITTEN_KEY].extend(written)
    config.stash[OUTPUT_ERRORS_KEY].extend(errors)
    if errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    unjudged = [u for u in egb.unjudged if u["kind"] in ("latency", "throughput")]
    if egb.settings.require_baseline and unjudged and session.exitstatus == pytest.ExitCode.OK:
        config.stash[OUTPUT_ERRORS_KEY].append(
            f"--egbench-require-baseline: {len(unjudged)} latency/throughput metric(s) got no verdict (listed above); exit status {options.EXIT_NOT_COMPARED}"
        )
        session.exitstatus = options.EXIT_NOT_COMPARED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist controller: merge a finished worker's measurements into the run's session."""
    config = node.config  # type: ignore[attr-defined]
    egb = config.stash.get(SESSION_KEY, None)
    wire = getattr(node, "workeroutput", {}).get("egbench")
    if egb is not None and wire:
        egb.merge_wire(wire)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    egb = config.stash.get(SESSION_KEY, None)
    if egb is None:
        return
    tr = terminalreporter
    tr.write_sep("=", "egbench")
    if not egb.measurements:
        tr.write_line("no benchmark recorded a measurement")
    else:
        from .report import terminal_lines

        for line in terminal_lines(egb):
            tr.write_line(line)
    # every line within layout.WIDTH columns: the long ones wrapped, indented under their first
    for path in config.stash[OUTPUT_WRITTEN_KEY]:
        for line in wrap(f"egbench: wrote {path}"):
            tr.write_line(line)
    for note in egb.notes + egb.folded_notes():
        for line in wrap(f"egbench: {note}"):
            tr.write_line(line, yellow=True)
    for error in config.stash[OUTPUT_ERRORS_KEY]:
        for line in wrap(f"egbench: ERROR {error}"):
            tr.write_line(line, red=True, bold=True)
