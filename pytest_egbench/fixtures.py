"""Public fixtures of pytest-egbench, registered by the plugin in ``pytest_configure``.

Module level imports stay light (no torch); each fixture imports what it needs when it runs.
Fixtures are handed the run's collaborators (settings, the session's ``add_timing``) from
``config.stash`` instead of reaching into globals.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .options import Settings
from .plugin import SESSION_KEY, SETTINGS_KEY, TIMERS_KEY, item_labels

if TYPE_CHECKING:
    import torch

    from .data.dataset import Dataset, Sample
    from .models.base import ModelAdapter
    from .session import EgbenchSession
    from .timing import StageTimer

#: The run's dataset and its selected samples, loaded once (at collection, or by a fixture).
_SELECTION_KEY = pytest.StashKey[tuple["Dataset", list["Sample"]]]()


def _session(config: pytest.Config) -> EgbenchSession:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.skip("egbench fixtures need --egbench")
    return session


@pytest.fixture(scope="session")
def egbench_settings(pytestconfig: pytest.Config) -> Settings:
    """The run's resolved :class:`~pytest_egbench.options.Settings` (preset and quantisation
    already filled for the device when ``--egbench`` is on)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def egbench_session(pytestconfig: pytest.Config) -> EgbenchSession:
    """The run-wide :class:`~pytest_egbench.session.EgbenchSession` (skips without ``--egbench``)."""
    return _session(pytestconfig)


@pytest.fixture(scope="session")
def egbench_device(egbench_session: EgbenchSession) -> torch.device:
    """The ``torch.device`` the suite benchmarks on (``--egbench-device``; ``auto`` resolved)."""
    return egbench_session.device


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """A function that writes one line to the terminal now, past output capturing (stderr when
    there is no terminal reporter)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capture is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return write


@pytest.fixture(scope="session")
def egbench_model(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> Iterator[Callable[[str], ModelAdapter]]:
    """``egbench_model(name)`` -> the :class:`~pytest_egbench.models.base.ModelAdapter` of
    ``name`` (eventgpt, video_llava, llava), loaded once per run and kept for the session.

    Loads with ``--egbench-preset``, ``--egbench-quant`` on the benchmark device, from the folder
    of ``--egbench-checkpoint NAME=DIR`` when given (else seeded dummy weights). A line on the
    terminal says what is loading and, when done, how long it took (``adapter.load_seconds``,
    seconds) and the weights' footprint (MiB). Skips a model that ``--egbench-models`` leaves
    out; a model that failed to load raises the same error again for every test that asks.
    """
    from .models.base import ModelSpec
    from .models.registry import load_model

    settings = egbench_session.settings
    device = egbench_session.device
    write = _progress(pytestconfig)
    loaded: dict[str, ModelAdapter | BaseException] = {}

    def get(name: str) -> ModelAdapter:
        if name not in settings.models:
            pytest.skip(f"{name} is not in --egbench-models ({', '.join(settings.models)})")
        if name not in loaded:
            checkpoint = settings.checkpoint_for(name)
            spec = ModelSpec(name, preset=str(settings.preset), quant=str(settings.quant), device=str(device), checkpoint=checkpoint)
            weights = f"checkpoint {checkpoint}" if checkpoint else "dummy weights"
            write(f"egbench: loading {name} ({spec.preset}, {spec.quant}, {weights}) on {device} ...")
            try:
                adapter = load_model(spec)
            except Exception as exc:
                loaded[name] = exc
                write(f"egbench: loading {name} failed: {exc}")
                raise
            loaded[name] = adapter
            write(f"egbench: loaded {name} in {adapter.load_seconds:.2f} s, weights {adapter.footprint_bytes() / 2**20:.1f} MiB")
        entry = loaded[name]
        if isinstance(entry, BaseException):
            raise entry
        return entry

    yield get
    loaded.clear()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


@pytest.fixture
def egbench_record(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> Callable[..., None]:
    """``egbench_record(metric, samples, *, unit, kind, model=None, stage=None, **extra_info)``
    records a measurement that is not a stage time (bytes, counts, info figures) under this test,
    judged with the test's other metrics when its body passes.

    ``samples``: a number or a list of numbers; ``unit``: "bytes", "tokens", "s", ...; ``kind``:
    "exact" (must equal the baseline), "memory" (relative tolerance, lower is better), "latency",
    "throughput", "rate" or "info" (never gated). Raises ``ValueError`` for a metric recorded
    twice in one test.
    """
    from .session import Measurement

    labels = item_labels(request.node)

    def record(metric: str, samples: Any, *, unit: str, kind: str, model: str | None = None, stage: str | None = None, **extra: Any) -> None:
        values = [float(v) for v in (samples if isinstance(samples, (list, tuple)) else [samples])]
        egbench_session.add(Measurement(**labels, metric=metric, unit=unit, kind=kind, samples=values, model=model, stage=stage, extra_info=extra))

    return record


@pytest.fixture
def stage_timer(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> StageTimer:
    """A :class:`~pytest_egbench.timing.StageTimer` on the benchmark device.

    CUDA: stages are timed with CUDA events (``load`` and ``preprocess`` with the host clock after a
    device synchronisation); CPU: ``time.perf_counter_ns``. ``rounds()`` gives 1 cold round,
    ``--egbench-warmup`` warm-up rounds and ``--egbench-rounds`` steady rounds. Set
    ``stage_timer.extra_info["model"]`` to label the column in the stage table. When the test body
    passes, every stage, token count and derived metric (TTFT, TPOT, tokens/s) is recorded under the
    test's name and the group ``egbench(group=...)`` (default: the test function), then judged
    against the baseline (see the plugin's ``pytest_runtest_call``). ``--egbench-inject`` slowdowns
    are applied through the timer's stage hook (a
    :class:`~pytest_egbench.timing.SlowdownInjector`), and then ``rounds()`` gives, after the warm-up
    rounds, an unchanged control round before each steady round (``2 x --egbench-rounds`` rounds):
    without a baseline for this machine, the injected metrics are judged against them.
    """
    from .timing import SlowdownInjector, StageTimer, clocks_for

    settings = egbench_session.settings
    device_clock, host_clock = clocks_for(egbench_session.device)
    hook = SlowdownInjector(dict(settings.inject), egbench_session.device) if settings.inject else None
    timer = StageTimer(device_clock, host_clock, rounds=settings.rounds, warmup=settings.warmup, stage_hook=hook)
    request.node.stash.setdefault(TIMERS_KEY, []).append(timer)
    return timer


# --------------------------------------------------------------------------- samples


def _selection(config: pytest.Config) -> tuple[Dataset, list[Sample]]:
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
        _selection(session.config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``egbench_sample`` over the selected samples, one test per sample id.

    A sample that lacks what the test's ``egbench_needs(...)`` marker asks for (``"events"``,
    ``"video"``, ``"event_image"``) is collected as skipped, with the reason (for example
    ``sample dsec_sample1_50ms: event-only (no mp4_data), needs video``).
    Without ``--egbench`` the dataset is not read: one placeholder that the skip covers.
    """
    if "egbench_sample" not in metafunc.fixturenames:
        return
    if not metafunc.config.stash[SETTINGS_KEY].enabled:
        metafunc.parametrize("egbench_sample", [pytest.param(None, id="samples")], indirect=True)
        return
    needs = _needs(metafunc.definition)
    params = []
    for sample in _selection(metafunc.config)[1]:
        reasons = [r for r in (sample.lacks(need) for need in needs) if r]
        params.append(pytest.param(sample.id, id=sample.id, marks=[pytest.mark.skip(reason=reasons[0])] if reasons else []))
    metafunc.parametrize("egbench_sample", params, indirect=True)


@pytest.fixture(scope="session")
def egbench_dataset(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> Dataset:
    """The run's :class:`~pytest_egbench.data.dataset.Dataset`: the ``--egbench-data`` folder,
    else the bundled real samples (``pytest_egbench/data/bundled/``, see its PROVENANCE.md)."""
    return _selection(pytestconfig)[0]


@pytest.fixture(scope="session")
def egbench_samples(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> list[Sample]:
    """The selected samples (:class:`~pytest_egbench.data.dataset.Sample`, index order).

    Selection per kind, ``--egbench-samples N`` (default 1): the first N samples that have events
    and the first N that have video (a paired sample counts for both), merged in index order. So
    every benchmark gets up to N samples it can use, and models compared on paired samples see
    the same ones. With the bundled set and N = 1: the DSEC clip (event-only) and the cup clip
    (paired). Benchmarks taking one sample at a time use ``egbench_sample`` instead.
    """
    return list(_selection(pytestconfig)[1])


@pytest.fixture
def egbench_sample(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> Sample:
    """One selected sample per test (parametrised by sample id, see :func:`pytest_generate_tests`).

    Mark the test ``@pytest.mark.egbench_needs("video")`` (or ``"events"``, ``"event_image"``) to
    skip, with the reason shown, the samples that lack it.
    """
    sample_id = getattr(request, "param", None)
    if sample_id is None:
        pytest.skip("egbench samples need --egbench")
    return _selection(request.config)[0].by_id(sample_id)


def require_sample(sample: Sample, *needs: str) -> Sample:
    """Skip the calling test, with the reason, unless ``sample`` has every one of ``needs``
    (``"events"``, ``"video"``, ``"event_image"``). For tests that iterate ``egbench_samples``."""
    for need in needs:
        reason = sample.lacks(need)
        if reason:
            pytest.skip(reason)
    return sample
