"""pytest entry point of pytest-egbench (``pytest11`` entry point ``egbench``).

Hooks only. This module, and everything it imports at module level, must not import torch: plain
``pytest`` without ``--egbench`` stays as fast as before (``tests/test_plugin.py`` checks it).
The run-wide session object and the fixtures are loaded in ``pytest_configure``.
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from . import names, options

if TYPE_CHECKING:
    from .session import EgbenchSession

SETTINGS_KEY = pytest.StashKey["options.Settings"]()
SESSION_KEY = pytest.StashKey["EgbenchSession"]()
TIMERS_KEY = pytest.StashKey[list]()
OUTPUT_ERRORS_KEY = pytest.StashKey[list]()
OUTPUT_WRITTEN_KEY = pytest.StashKey[list]()
#: Set once the stage and metric names the user gave were checked against the collected benchmarks.
NAMES_CHECKED_KEY = pytest.StashKey[bool]()

MARKERS = {
    "egbench": "egbench(group=None, stages=(), metrics=(), tolerances=None): a benchmark of the egbench suite; skipped unless --egbench is given. stages: the stages its stage_timer times besides load, preprocess, vision, prefill, decode; metrics: the latency, throughput and memory metrics it records with egbench_record (--egbench-inject and the tolerances accept only names some benchmark produces); tolerances: per-metric tolerances, e.g. {'decode': '8%'}",
    "gpu": "gpu: needs a CUDA device; skipped, with the reason, when there is none or --egbench-device cpu",
    "egbench_needs": "egbench_needs(*needs): the benchmark needs these parts of a sample ('events', 'video', 'event_image'); egbench_sample skips samples without them, with the reason",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", text)
    settings = options.resolve(config)
    options.check(settings, config.inipath)
    if settings.ref and _xdist_controller(config):
        raise pytest.UsageError("--egbench-ref with -n: the processes of an A/B run one after the other on this machine, never side by side; drop -n")
    if settings.enabled:
        from .device import resolve_device
        from .machine import device_info
        from .session import EgbenchSession

        device = resolve_device(settings, _worker(config))
        settings = settings.for_device(device.type)
        session = EgbenchSession(settings, device)
        session.device_block = device_info(device)
        from .baselines import BaselineError

        try:
            session.baselines  # read and validate every baseline file now, before any benchmark
        except BaselineError as exc:
            raise pytest.UsageError(f"--egbench-baseline-dir: {exc}") from None
        if not _xdist_controller(config) and not settings.ref:
            from .calibration import calibrate

            session.calibration = calibrate(device)
        if settings.ignore_machine and session.own_baseline() is not None and session.machine_check().reason:
            session.notes.append(f"--egbench-ignore-machine: latency judged against the baseline although {session.machine_check().reason.split('. Compare')[0]}")
        if settings.fallback_ref and not settings.ref and session.own_baseline() is not None and session.machine_check().reason:
            settings = _fall_back_to_ref(session)
        config.stash[SESSION_KEY] = session
    config.stash[SETTINGS_KEY] = settings
    config.stash[OUTPUT_ERRORS_KEY] = []
    config.stash[OUTPUT_WRITTEN_KEY] = []
    from . import fixtures

    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "egbench-fixtures")


def _fall_back_to_ref(session: EgbenchSession) -> options.Settings:
    """``--egbench-fallback-ref``: the machine differs from the baseline's, so judge by a
    same-machine A/B against the commit of the baseline's newest run instead."""
    from dataclasses import replace

    from .session import baseline_commit

    own = session.own_baseline()
    commit = baseline_commit(own) if own else None
    if not commit:
        raise pytest.UsageError(f"--egbench-fallback-ref: {session.machine_check().reason}; but the baseline {session.fingerprint_name()} records no commit to compare with: give --egbench-ref REV")
    session.notes.append(f"--egbench-fallback-ref: {session.machine_check().reason.split('. Compare')[0]}; judging by a same-machine A/B against the baseline's commit {commit[:12]} instead")
    session.settings = replace(session.settings, ref=commit)
    return session.settings


def _xdist_controller(config: pytest.Config) -> bool:
    """True in the pytest-xdist controller of ``-n N`` (it runs no benchmark: its workers do)."""
    return getattr(config, "workerinput", None) is None and bool(getattr(config.option, "numprocesses", None))


def _worker(config: pytest.Config) -> tuple[int, int] | None:
    """``(index, count)`` when this process is a pytest-xdist worker, else ``None``."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return int(str(workerinput["workerid"]).lstrip("gw")), int(workerinput["workercount"])


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    s = session.settings
    gpu = session.device_block.get("gpu_name") if session.device_block else None
    where = f"{session.device} ({gpu})" if gpu else str(session.device)
    from .calibration import summary_line

    lines = [f"egbench: device {where}, preset {s.preset}, weights {s.quant}, rounds {s.rounds} after 1 cold + {s.warmup} warm-up, max new tokens {s.max_new_tokens}"]
    if session.calibration:
        lines.append(f"egbench: {summary_line(session.calibration)}")
    return lines


def pytest_report_collectionfinish(config: pytest.Config) -> list[str] | None:
    """The injected slowdowns, said once their stages were checked against the collected
    benchmarks (not in the header, which comes before collection and so before the check)."""
    session = config.stash.get(SESSION_KEY, None)
    # pytest calls this hook even when collection failed, so only after the check passed
    if session is None or not session.settings.inject or not config.stash.get(NAMES_CHECKED_KEY, False):
        return None
    s = session.settings
    slowdowns = ", ".join(f"{stage}=+{_percent(fraction)}" for stage, fraction in s.inject)
    return [f"egbench: injected slowdown {slowdowns}, each steady round after an unchanged control round (at least {options.CONTROL_MIN_ROUNDS} rounds when injecting)"]


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--egbench`` skip benchmarks; with it, check the stage and metric names the user
    gave against the collected benchmarks (:func:`_check_names`), then run only benchmarks (like
    pytest-benchmark's ``--benchmark-only``) and deselect the other tests."""
    settings = config.stash[SETTINGS_KEY]
    if not settings.enabled:
        skip = pytest.mark.skip(reason="egbench benchmark: run with --egbench")
        for item in items:
            if item.get_closest_marker("egbench"):
                item.add_marker(skip)
        return
    keep = [i for i in items if i.get_closest_marker("egbench")]
    _check_names(config, settings, keep)
    dropped = [i for i in items if not i.get_closest_marker("egbench")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if settings.ref and _worker(config) is None:
        from .ab import AbItem

        # the benchmarks run in the A/B processes; here each becomes the item that judges it
        items[:] = [AbItem.from_parent(i.parent, name=i.name, original=i) for i in items]


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, None, object]:
    """``--egbench-ref``: run the interleaved A/B processes before the verdict items run."""
    egb = session.config.stash.get(SESSION_KEY, None)
    if egb is not None and egb.settings.ref and session.items and not session.config.option.collectonly:
        _run_ab(session.config, egb, len(session.items))
    return (yield)


def _run_ab(config: pytest.Config, egb: EgbenchSession, benchmarks: int) -> None:
    import tempfile
    from pathlib import Path

    from . import ab

    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    try:
        cpus = ab.pinned_cpus(egb.settings.ref_cpus)
        reference = ab.prepare(egb.settings.ref, config.rootpath)
    except ab.RefError as exc:
        raise pytest.UsageError(str(exc)) from None
    egb.ab_reference = reference
    workdir = Path(tempfile.mkdtemp(prefix="egbench-ab-"))
    pinned = f", each pinned to CPUs {','.join(map(str, sorted(cpus)))}" if cpus else ", not pinned to CPUs"
    progress(f"egbench A/B: {benchmarks} benchmark(s), {egb.settings.ref_pairs} pair(s) of processes{pinned}: {reference.label} (checkout {reference.root}) against the current code; logs in {workdir}")
    try:
        current_root = reference.worktree_of or config.rootpath
        sides = ab.run(reference, current_root, config.rootpath, config.invocation_params.dir, config.invocation_params.args, egb.settings.ref_pairs, workdir, progress, cpus)
    except ab.RefError as exc:
        egb.ab_outcome = str(exc)
        return
    egb.ab_outcome = sides
    egb.ab_runs = {name: ab.runs_by_metric(side) for name, side in sides.items()}
    first = sides["current"].results[0] if sides["current"].results else {}
    egb.calibration = ((first.get("machine_info") or {}).get("egbench") or {}).get("calibration")
    egb.device_block = {k: v for k, v in ((first.get("machine_info") or {}).get("egbench") or {}).items() if k in ("device", "gpu_name", "gpu_memory_bytes", "gpu_capability", "gpu_count", "driver", "cuda", "torch_cuda")} or egb.device_block
    egb.notes.append(f"A/B against {reference.label}: {2 * egb.settings.ref_pairs} processes, {sum(sides['ref'].seconds):.0f} s reference + {sum(sides['current'].seconds):.0f} s current (logs in {workdir})")


def _check_names(config: pytest.Config, settings: options.Settings, benchmarks: list[pytest.Item]) -> None:
    """Raise :class:`pytest.UsageError`, one line per problem, for a stage in ``--egbench-inject``
    or a metric in ``--egbench-metric-tolerance`` (or its ini key) that none of ``benchmarks``
    (the collected ones, before ``-k``/``-m``) can produce, and for a benchmark's own
    ``egbench(tolerances=...)`` key that it cannot produce (rule: :mod:`pytest_egbench.names`).
    Runs after collection because benchmarks declare their names in their markers."""
    errors: list[str] = []
    run = names.Producible()
    for item in benchmarks:
        where = f"{item.nodeid.partition('[')[0]}: egbench marker"
        try:
            own = names.Producible.declared(item.iter_markers("egbench"))
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        run |= own
        tolerances = item.get_closest_marker("egbench").kwargs.get("tolerances") or {}  # type: ignore[union-attr]
        if not isinstance(tolerances, dict):
            errors.append(f"{where}: tolerances= must be a dict such as {{'decode': '8%'}}, got {tolerances!r}")
            continue
        for metric, value in tolerances.items():
            why = own.metric_error(str(metric))
            if why is None:
                try:
                    options.parse_percent(str(value))
                except argparse.ArgumentTypeError as exc:
                    why = str(exc)
            if why:
                errors.append(f"{where}: tolerances {metric}={value}: {why}")
    for stage, fraction in settings.inject:
        why = run.stage_error(stage)
        if why:
            errors.append(f"--egbench-inject {stage}={_percent(fraction)}: {why}")
    source = settings.sources.get("metric_tolerances", "")
    where = f"ini option egbench_metric_tolerance in {config.inipath}:" if source.startswith("ini") else "--egbench-metric-tolerance"
    for metric, tolerance in settings.metric_tolerances:
        why = run.metric_error(metric)
        if why:
            errors.append(f"{where} {metric}={_percent(tolerance)}: {why}")
    if errors:
        raise pytest.UsageError("\n".join(dict.fromkeys(errors)))
    config.stash[NAMES_CHECKED_KEY] = True


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
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a benchmark's body passed: record its stage timers, then judge its measurements
    against the baseline, so a regression is an ordinary test failure (not an error in teardown
    or in the terminal summary)."""
    egb = item.config.stash.get(SESSION_KEY, None)
    benchmark = egb is not None and item.get_closest_marker("egbench") is not None and not getattr(item, "original_nodeid", None)
    on_gpu = benchmark and egb.device is not None and egb.device.type == "cuda"
    if on_gpu:
        from .machine import gpu_state

        before = gpu_state(egb.device.index or 0)
    result = yield  # a failing body raises here, and nothing is recorded
    if not benchmark:
        return result
    state = None
    if on_gpu:
        state = {"before": before, "after": gpu_state(egb.device.index or 0)}
    _record_and_judge(egb, item, state)
    return result


def item_labels(item: pytest.Item) -> dict:
    """How a benchmark's measurements are labelled: ``nodeid``, ``test`` (name with parameters),
    ``group`` (``egbench(group=...)``, default the test function) and ``params``."""
    marker = item.get_closest_marker("egbench")
    callspec = getattr(item, "callspec", None)
    return {
        "nodeid": item.nodeid,
        "test": item.name,
        "group": str((marker.kwargs.get("group") if marker else None) or getattr(item, "originalname", item.name)),
        "params": dict(callspec.params) if callspec else {},
    }


def _record_and_judge(egb: EgbenchSession, item: pytest.Item, gpu: dict | None = None) -> None:
    """Record the item's stage timers, attach the GPU state read around it, and judge it."""
    from .machine import throttled
    from .session import LATENCY, MEMORY, THROUGHPUT
    from .stats import unsettled
    from .verdict import BASELINE_REFERENCE, CONTROL_REFERENCE, IMPROVEMENT, REGRESSION

    marker = item.get_closest_marker("egbench")
    for timer in item.stash.get(TIMERS_KEY, []):
        if timer.used:
            egb.add_timing(timer.results(), **item_labels(item), model=timer.extra_info.get("model"), extra_info=timer.extra_info)
    measured = [m for m in egb.measurements if m.nodeid == item.nodeid]
    slowed = throttled(gpu["after"]) if gpu else None
    unsettled_stages = []
    for m in measured:
        if gpu:
            m.extra_info["gpu_state"] = gpu
        if slowed:
            m.extra_info["throttled"] = slowed
        why = unsettled(m.warmup, m.samples) if m.stage is not None and m.kind == LATENCY else None
        if why:
            m.extra_info["unsettled"] = why
            unsettled_stages.append(m.metric)
            egb.notes.append(f"{item.name}: {m.metric}: {why}")
    if slowed:
        egb.notes.append(f"{item.name}: the GPU was slowed down during this benchmark: {slowed}")
    declared = names.Producible.declared(item.iter_markers("egbench"))  # checked at collection
    undeclared = [m.metric for m in measured if m.kind in (LATENCY, THROUGHPUT, MEMORY) and declared.metric_error(m.metric)]
    if undeclared:
        egb.notes.append(f"{item.name}: not declared in its egbench marker (stages=[...] for a stage, metrics=[...] for a recorded metric), so --egbench-inject and the tolerances refuse: {', '.join(undeclared)}")
    if not measured or egb.settings.save:
        return
    # names and values checked at collection (_check_names)
    tolerances = {k: options.parse_percent(str(v)) for k, v in (marker.kwargs.get("tolerances") or {}).items()}
    verdicts = egb.judge_and_record(measured, tolerances)
    injected = {stage for stage, _ in egb.settings.inject}
    for v in verdicts:
        if v.warning:
            egb.notes.append(f"{item.name}: {v.warning}")
        if v.status == IMPROVEMENT:
            egb.notes.append(f"{item.name}: {v.message}")
        if v.metric in injected and v.reference == BASELINE_REFERENCE and v.status != REGRESSION:
            egb.notes.append(f"{item.name}: the injected {v.metric} slowdown was NOT caught against the baseline (its tolerance is too wide for it): {v.message}")
    regressed = [v for v in verdicts if v.status == REGRESSION]
    if regressed:
        caveat = f"\n  NOTE: the GPU was slowed down during this benchmark ({slowed}); the regression may be the machine's" if slowed else ""
        if unsettled_stages:
            caveat += f"\n  NOTE: not warm yet when statistics began: {', '.join(unsettled_stages)} (see the summary); the regression may be too short a warm-up"
        against = [f"baseline {egb.fingerprint_name()}"] if any(v.reference != CONTROL_REFERENCE for v in regressed) else []
        against += ["this run's control rounds"] if any(v.reference == CONTROL_REFERENCE for v in regressed) else []
        pytest.fail(f"egbench: {len(regressed)} metric(s) regressed against {' and '.join(against)}:\n  " + "\n  ".join(v.message for v in regressed) + caveat, pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    egb = config.stash.get(SESSION_KEY, None)
    if egb is None:
        return
    if _worker(config) is not None:
        # An xdist worker hands its measurements to the controller, which writes the files.
        config.workeroutput["egbench"] = egb.to_wire()  # type: ignore[attr-defined]
        return
    reference = getattr(egb, "ab_reference", None)
    if reference is not None:
        reference.cleanup()
    if not egb.measurements:
        return
    from .report import write_outputs

    written, errors = write_outputs(egb, save=egb.settings.save and session.testsfailed == 0)
    if egb.settings.save and session.testsfailed:
        errors.append(f"--egbench-save: {session.testsfailed} test(s) failed, so no baseline was saved")
    config.stash[OUTPUT_WRITTEN_KEY].extend(written)
    config.stash[OUTPUT_ERRORS_KEY].extend(errors)
    if errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    unjudged = [u for u in egb.unjudged if u["kind"] in ("latency", "throughput")]
    if egb.settings.require_baseline and unjudged and session.exitstatus == pytest.ExitCode.OK:
        config.stash[OUTPUT_ERRORS_KEY].append(f"--egbench-require-baseline: {len(unjudged)} latency/throughput metric(s) got no verdict (listed above); exit status {options.EXIT_NOT_COMPARED}")
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
    for path in config.stash[OUTPUT_WRITTEN_KEY]:
        tr.write_line(f"egbench: wrote {path}")
    for note in egb.notes:
        tr.write_line(f"egbench: {note}", yellow=True)
    for error in config.stash[OUTPUT_ERRORS_KEY]:
        tr.write_line(f"egbench: ERROR {error}", red=True, bold=True)
