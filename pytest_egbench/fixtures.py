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
from .plugin import CALL_FAILED_KEY, SESSION_KEY, SETTINGS_KEY

if TYPE_CHECKING:
    import torch

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


def _group(item: pytest.Item) -> str:
    marker = item.get_closest_marker("egbench")
    group = marker.kwargs.get("group") if marker else None
    return str(group or getattr(item, "originalname", item.name))


@pytest.fixture
def stage_timer(request: pytest.FixtureRequest, egbench_session: EgbenchSession) -> Iterator[StageTimer]:
    """A :class:`~pytest_egbench.timing.StageTimer` on the benchmark device.

    CUDA: stages are timed with CUDA events (``load`` and ``preprocess`` with the host clock after a
    device synchronisation); CPU: ``time.perf_counter_ns``. ``rounds()`` gives 1 cold round,
    ``--egbench-warmup`` warm-up rounds and ``--egbench-rounds`` steady rounds. Set
    ``stage_timer.extra_info["model"]`` to label the column in the stage table. When the test
    passes, every stage, token count and derived metric (TTFT, TPOT, tokens/s) is recorded in the
    session under the test's name and the group ``egbench(group=...)`` (default: the test function).
    """
    from .timing import StageTimer, clocks_for

    settings = egbench_session.settings
    device_clock, host_clock = clocks_for(egbench_session.device)
    timer = StageTimer(device_clock, host_clock, rounds=settings.rounds, warmup=settings.warmup)
    yield timer
    if not timer.used or request.node.stash.get(CALL_FAILED_KEY, False):
        return
    item = request.node
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = dict(callspec.params) if callspec else {}
    egbench_session.add_timing(
        timer.results(),
        nodeid=item.nodeid,
        test=item.name,
        group=_group(item),
        model=timer.extra_info.get("model"),
        params=params,
        extra_info=timer.extra_info,
    )
