"""Collection-time hooks of pytest-egbench, registered by the plugin in ``pytest_configure``.

Which tests a run keeps, skips or deselects (:func:`pytest_collection_modifyitems`), the check of
the stage and metric names the user gave against the collected benchmarks (:func:`_check_names`),
and the parametrisation of ``egbench_sample`` over the dataset's selected samples
(:func:`pytest_generate_tests`). Light: no torch; with ``--egbench`` only the dataset's index is
read (JSON and file existence).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import inject, names, options
from .stash import NAMES_CHECKED_KEY, SETTINGS_KEY, xdist_worker

if TYPE_CHECKING:
    from .data.dataset import Dataset, Sample

#: The run's dataset and its selected samples, loaded once (at collection, or by a fixture).
_SELECTION_KEY = pytest.StashKey[tuple["Dataset", list["Sample"]]]()


def selection(config: pytest.Config) -> tuple[Dataset, list[Sample]]:
    """The dataset (``--egbench-data`` or the bundled set) and its selected samples, cached.

    Raises :class:`pytest.UsageError` with every problem of the dataset folder, by sample id and
    field. Only the index is read here (JSON and file existence): no numpy, no PyAV.
    """
    cached = config.stash.get(_SELECTION_KEY, None)
    if cached is not None:
        return cached
    from .data.dataset import bundled_dataset_dir, load_dataset
    from .data.errors import DatasetError

    settings = config.stash[SETTINGS_KEY]
    root = settings.data if settings.data is not None else bundled_dataset_dir()
    source = "--egbench-data" if settings.data is not None else "the bundled dataset"
    try:
        dataset = load_dataset(root)
    except DatasetError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None
    config.stash[_SELECTION_KEY] = (dataset, dataset.select(settings.samples))
    return config.stash[_SELECTION_KEY]


def _needs(node: Any) -> tuple[str, ...]:
    from .data.dataset import NEEDS

    needs: list[str] = []
    for marker in node.iter_markers("egbench_needs"):
        for need in marker.args:
            if need not in NEEDS:
                raise pytest.UsageError(f"{node.nodeid}: egbench_needs({need!r}) is unknown: choose from {', '.join(NEEDS)}")
            needs.append(need)
    return tuple(dict.fromkeys(needs))


def pytest_sessionstart(session: pytest.Session) -> None:
    """With ``--egbench``, read the dataset index before collection, so that a bad
    ``--egbench-data`` folder is a usage error (one message listing every problem), not a
    collection error per module."""
    if session.config.stash[SETTINGS_KEY].enabled:
        selection(session.config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``egbench_sample`` over the selected samples, one test per sample id.

    A sample that lacks what the test's ``egbench_needs(...)`` marker asks for (``"events"``,
    ``"video"``, ``"event_image"``) is collected as skipped, with the reason (for example
    ``sample dsec_sample1_50ms is event-only (no mp4_data): this benchmark needs video``).
    Without ``--egbench`` the dataset is not read: one placeholder that the skip covers.
    """
    if "egbench_sample" not in metafunc.fixturenames:
        return
    if not metafunc.config.stash[SETTINGS_KEY].enabled:
        metafunc.parametrize("egbench_sample", [pytest.param(None, id="samples")], indirect=True)
        return
    needs = _needs(metafunc.definition)
    params = []
    for sample in selection(metafunc.config)[1]:
        reasons = [r for r in (sample.lacks(need) for need in needs) if r]
        params.append(pytest.param(sample.id, id=sample.id, marks=[pytest.mark.skip(reason=reasons[0])] if reasons else []))
    metafunc.parametrize("egbench_sample", params, indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--egbench`` skip benchmarks; with it, check the stage and metric names the user
    gave against the collected benchmarks (:func:`_check_names`), then run only benchmarks (like
    pytest-benchmark's ``--benchmark-only``) and deselect the other tests.

    The benchmarks an ``--egbench`` run keeps: every egbench benchmark, and pytest-benchmark's
    (tests using its ``benchmark`` fixture) named on the command line by node id or, with
    ``--benchmark-only``, all of them (docs/pytest-benchmark.md). Raises
    :class:`pytest.UsageError` when ``--egbench-ref`` would keep a pytest-benchmark test: the A/B
    processes would run it again and again, and judge nothing of it."""
    settings = config.stash[SETTINGS_KEY]
    if not settings.enabled:
        skip = pytest.mark.skip(reason="egbench benchmark: run with --egbench")
        for item in items:
            if item.get_closest_marker("egbench"):
                item.add_marker(skip)
        return
    _check_names(config, settings, [i for i in items if i.get_closest_marker("egbench")])
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if _kept(config, item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if settings.ref and xdist_worker(config) is None:
        items[:] = _ab_items(items)


def _ab_items(items: list[pytest.Item]) -> list[pytest.Item]:
    """``--egbench-ref``: the benchmarks run in the A/B processes; here each becomes the item
    that judges it. :class:`pytest.UsageError` for a pytest-benchmark test among them."""
    theirs = [i.nodeid for i in items if not i.get_closest_marker("egbench")]
    if theirs:
        raise pytest.UsageError(
            f"--egbench-ref judges egbench benchmarks only; drop --benchmark-only or these pytest-benchmark tests from the command line: {', '.join(theirs)}"
        )
    from .ab import AbItem

    judged: list[pytest.Item] = []
    for i in items:
        if i.parent is None:  # a collected item always has its collector as parent
            raise RuntimeError(f"{i.nodeid}: collected item without a parent collector")
        judged.append(AbItem.from_parent(i.parent, name=i.name, original=i))
    return judged


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_fallback(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--egbench-fallback-ref`` where this machine matches some of the baseline's runs, but
    more than :data:`~pytest_egbench.plugin.CONFIRMATIONS` of the selected benchmarks (after
    ``-k`` and ``-m``: this hook runs last) have their latency entries only in the other runs:
    each would be inconclusive, and only that many are judged one by one by an A/B, so the rest
    would stay inconclusive (exit status 6 with ``--egbench-require-baseline``). The whole run is
    judged by the same-machine A/B against the baseline's commit instead, as where no run matches
    (:func:`~pytest_egbench.plugin.fall_back_to_ref`), and the note says how many benchmarks and
    which runs.

    Why: on an H200 lease (2026-12-01) the one baseline run like the machine held only the
    parallel-prefill benchmarks; the nightly stage step sent 8 of 30 such benchmarks to A/Bs and
    left 183 latencies inconclusive (docs/measurements/h200-x2-session12.md)."""
    settings = config.stash[SETTINGS_KEY]
    if not (settings.enabled and settings.fallback_ref) or settings.ref or settings.ignore_machine or settings.untimed or xdist_worker(config) is not None:
        return
    from .plugin import CONFIRMATIONS, fall_back_to_ref
    from .stash import SESSION_KEY

    egb = config.stash.get(SESSION_KEY, None)
    if egb is None or not items or config.option.collectonly:
        return
    benchmarks = [i.nodeid for i in items if i.get_closest_marker("egbench")]
    unlike = egb.benchmarks_unlike_this_machine(benchmarks)
    if len(unlike) <= CONFIRMATIONS:
        return
    check = egb.machine_check(egb.judged_probes())
    shown = ", ".join(n.rsplit("/", 1)[-1] for n in unlike[:3]) + (f" and {len(unlike) - 3} more" if len(unlike) > 3 else "")
    reason = (
        f"the baseline's runs like this machine ({len(check.matching or ())} of {check.calibrated_runs} calibrated) hold none of the latency entries of "
        f"{len(unlike)} of the {len(benchmarks)} selected benchmarks ({shown}), more than the {CONFIRMATIONS} a run judges one by one by an A/B"
    )
    config.stash[SETTINGS_KEY] = fall_back_to_ref(config, egb, reason)
    items[:] = _ab_items(items)


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_last(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--egbench --benchmark-only``: pytest-benchmark marks every test without its ``benchmark``
    fixture skipped ("Skipping non-benchmark"), egbench's benchmarks included; take that mark off
    them again (this hook runs after pytest-benchmark's)."""
    if not config.stash[SETTINGS_KEY].enabled or not config.getoption("benchmark_only", False):
        return
    for item in items:
        if item.get_closest_marker("egbench"):
            item.own_markers[:] = [m for m in item.own_markers if not (m.name == "skip" and "--benchmark-only" in str(m.kwargs.get("reason", "")))]


def uses_pytest_benchmark(item: pytest.Item) -> bool:
    """True for a test that asks for pytest-benchmark's ``benchmark`` fixture (pytest-benchmark's
    own test for "a benchmark", in its ``pytest_collection_modifyitems``)."""
    return "benchmark" in getattr(item, "fixturenames", ())


def _kept(config: pytest.Config, item: pytest.Item) -> bool:
    """Whether an ``--egbench`` run keeps ``item``: an egbench benchmark, or a pytest-benchmark
    test named on the command line or under ``--benchmark-only``."""
    if item.get_closest_marker("egbench"):
        return True
    if not uses_pytest_benchmark(item):
        return False
    return bool(config.getoption("benchmark_only", False)) or named_on_command_line(config, item)


def named_on_command_line(config: pytest.Config, item: pytest.Item) -> bool:
    """True when a command-line argument names ``item`` by node id (``FILE::TEST``,
    ``FILE::TEST[PARAMS]``, ``FILE::CLASS`` or ``FILE::CLASS::TEST``; ``FILE`` relative to the
    folder pytest was started in). A folder or a whole file does not name the tests in it."""
    _, _, own = item.nodeid.partition("::")
    for arg in config.args:
        path, sep, name = str(arg).partition("::")
        if not sep or Path(config.invocation_params.dir, path).resolve() != item.path.resolve():
            continue
        if own == name or own.startswith((f"{name}::", f"{name}[")):
            return True
    return False


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
    errors += inject.stage_errors(settings, run)
    source = settings.sources.get("metric_tolerances", "")
    where = f"ini option egbench_metric_tolerance in {config.inipath}:" if source.startswith("ini") else "--egbench-metric-tolerance"
    for metric, tolerance in settings.metric_tolerances:
        why = run.metric_error(metric)
        if why:
            errors.append(f"{where} {metric}={options.format_percent(tolerance)}: {why}")
    source = settings.sources.get("gate_exclude", "")
    where = f"ini option egbench_gate_exclude in {config.inipath}:" if source.startswith("ini") else "--egbench-gate-exclude"
    for metric in settings.gate_exclude:
        why = run.gate_error(metric)
        if why:
            errors.append(f"{where} {metric}: {why}")
    if errors:
        raise pytest.UsageError("\n".join(dict.fromkeys(errors)))
    config.stash[NAMES_CHECKED_KEY] = True
