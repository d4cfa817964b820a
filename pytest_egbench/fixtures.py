"""Public fixtures of pytest-egbench, registered by the plugin in ``pytest_configure`` (the
collection hooks that parametrise and select the benchmarks are in :mod:`pytest_egbench.collection`).

Module level imports stay light (no torch); each fixture imports what it needs when it runs.
Fixtures are handed the run's collaborators (settings, the session's ``add_timing``) from
``config.stash`` instead of reaching into globals.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .collection import selection
from .layout import wrap
from .options import Settings
from .stash import SESSION_KEY, SETTINGS_KEY, TIMERS_KEY, item_labels

if TYPE_CHECKING:
    import torch

    from .data.dataset import Dataset, Sample
    from .models.base import ModelAdapter
    from .session import EgbenchSession
    from .timing import StageTimer


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


def terminal_progress(config: pytest.Config) -> Callable[[str], None]:
    """A function that writes one line to the terminal now, past output capturing, wrapped to
    :data:`~pytest_egbench.layout.WIDTH` columns (stderr, unwrapped, when there is no terminal
    reporter)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capture is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            for part in wrap(line):
                reporter.write_line(part)

    return write


@pytest.fixture(scope="session")
def egbench_progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """``egbench_progress(line)`` writes one line to the terminal now, past output capturing:
    for long work inside a benchmark (compiling a runtime, building data), as model loading
    reports itself."""
    return terminal_progress(pytestconfig)


@pytest.fixture(scope="session")
def egbench_model(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> Iterator[Callable[[str], ModelAdapter]]:
    """``egbench_model(name)`` -> the :class:`~pytest_egbench.models.base.ModelAdapter` of
    ``name`` (a registered model: eventgpt, video_llava, llava or a third-party adapter, see
    docs/adapters.md), loaded once per run and kept for the session.

    Loads with ``--egbench-preset``, ``--egbench-quant`` on the benchmark device, from the folder
    of ``--egbench-checkpoint NAME=DIR`` when given (else seeded dummy weights). A line on the
    terminal says what is loading and, when done, how long it took (``adapter.load_seconds``,
    seconds) and the weights' footprint (MiB). Skips a model that ``--egbench-models`` leaves
    out; a model that failed to load raises the same error again for every test that asks.
    """
    from .models.base import ModelSpec
    from .models.registry import adapter_class, load_model
    from .models.runtime import quant_unsupported

    settings = egbench_session.settings
    device = egbench_session.device
    write = terminal_progress(pytestconfig)
    loaded: dict[str, ModelAdapter | BaseException] = {}

    def get(name: str) -> ModelAdapter:
        if name not in settings.models:
            pytest.skip(f"{name} is not in --egbench-models ({', '.join(settings.models)})")
        unsupported = adapter_class(name).runtime_unsupported(settings.runtime)
        if unsupported:  # before loading a model for nothing
            pytest.skip(f"--egbench-runtime {settings.runtime}: {unsupported}")
        unsupported = quant_unsupported(settings.runtime, str(settings.quant), device.type)
        if unsupported:
            pytest.skip(unsupported)
        if name not in loaded:
            checkpoint = settings.checkpoint_for(name)
            spec = ModelSpec(name, preset=str(settings.preset), quant=str(settings.quant), device=str(device), checkpoint=checkpoint)
            weights = f"checkpoint {checkpoint}" if checkpoint else "dummy weights"
            write(f"egbench: loading {name} ({spec.preset}, {spec.quant}, {weights}) on {device} ...")
            try:
                adapter = load_model(spec)
                adapter.use_runtime(settings.runtime)
                adapter.runtime.progress = write  # a compiled runtime says what it compiles
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
    "throughput", "rate" or "info" (never gated): :class:`pytest_egbench.catalog.Kind`. Raises
    ``ValueError`` for a metric recorded twice in one test, and, before anything is recorded, for
    an unknown kind (naming the allowed ones), a unit that does not fit the kind (latency in "s",
    memory in "bytes", throughput per second) or a value out of the kind's range
    (:func:`pytest_egbench.catalog.check_metric`). In an untimed run (pytest-benchmark's
    ``--benchmark-disable``) the measurement is checked and built, so bad arguments still raise,
    and then dropped.
    """
    from .catalog import check_metric
    from .session import Measurement

    labels = item_labels(request.node)

    def record(metric: str, samples: Any, *, unit: str, kind: str, model: str | None = None, stage: str | None = None, **extra: Any) -> None:
        values = [float(v) for v in (samples if isinstance(samples, (list, tuple)) else [samples])]
        checked = check_metric(f"egbench_record({metric!r})", kind, unit, values)
        measurement = Measurement(**labels, metric=metric, unit=unit, kind=checked, samples=values, model=model, stage=stage, extra_info=extra)
        if not egbench_session.settings.untimed:
            egbench_session.add(measurement)

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
    are applied through the timer's stage hook (:func:`pytest_egbench.inject.stage_hook`), and then ``rounds()`` gives, after the warm-up
    rounds, an unchanged control round before each steady round (``2 x --egbench-rounds`` rounds):
    without a baseline for this machine, the injected metrics are judged against them. In an
    untimed run (pytest-benchmark's ``--benchmark-disable``) ``rounds()`` gives 1 cold and 1
    steady round, and nothing is recorded.
    """
    from .inject import stage_hook
    from .timing import StageTimer, clocks_for

    settings = egbench_session.settings
    device_clock, host_clock = clocks_for(egbench_session.device)
    hook = stage_hook(settings, egbench_session.device)
    timer = StageTimer(device_clock, host_clock, rounds=settings.rounds, warmup=settings.warmup, stage_hook=hook)
    request.node.stash.setdefault(TIMERS_KEY, []).append(timer)
    return timer


@pytest.fixture(scope="session")
def egbench_dataset(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> Dataset:
    """The run's :class:`~pytest_egbench.data.dataset.Dataset`: the ``--egbench-data`` folder,
    else the bundled real samples (``pytest_egbench/data/bundled/``, see its PROVENANCE.md)."""
    return selection(pytestconfig)[0]


@pytest.fixture(scope="session")
def egbench_samples(pytestconfig: pytest.Config, egbench_session: EgbenchSession) -> list[Sample]:
    """The selected samples (:class:`~pytest_egbench.data.dataset.Sample`, index order).

    Selection per kind, ``--egbench-samples N`` (default 1): the first N samples that have events
    and the first N that have video (a paired sample counts for both), merged in index order. So
    every benchmark gets up to N samples it can use, and models compared on paired samples see
    the same ones. With the bundled set and N = 1: the DSEC clip (event-only) and the cup clip
    (paired). Benchmarks taking one sample at a time use ``egbench_sample`` instead.
    """
    return list(selection(pytestconfig)[1])


@pytest.fixture
def egbench_sample(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> Sample:
    """One selected sample per test (parametrised by sample id, see
    :func:`pytest_egbench.collection.pytest_generate_tests`).

    Mark the test ``@pytest.mark.egbench_needs("video")`` (or ``"events"``, ``"event_image"``) to
    skip, with the reason shown, the samples that lack it.
    """
    sample_id = getattr(request, "param", None)
    if sample_id is None:
        pytest.skip("egbench samples need --egbench")
    return selection(request.config)[0].by_id(sample_id)


def require_sample(sample: Sample, *needs: str) -> Sample:
    """Skip the calling test, with the reason, unless ``sample`` has every one of ``needs``
    (``"events"``, ``"video"``, ``"event_image"``). For tests that iterate ``egbench_samples``."""
    for need in needs:
        reason = sample.lacks(need)
        if reason:
            pytest.skip(reason)
    return sample


def require_eager(settings: Settings, why: str) -> None:
    """Skip the calling test, with ``why``, unless the run's runtime (``--egbench-runtime``) is
    eager: for benchmarks whose code runs only eagerly, so that a compiled run never reports
    eager figures under the compiled runtime's fingerprint."""
    if settings.runtime != "eager":
        pytest.skip(f"--egbench-runtime {settings.runtime}: {why}; run it with --egbench-runtime eager")
